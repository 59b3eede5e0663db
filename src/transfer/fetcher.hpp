// Fetcher: how mup downloads bytes. The seam between the update logic and the network.
//
// fetch() returns the whole body of a URL, or an error:
//   Errc::not_found  the server answered 404 (or 403/410): the object is not there;
//   Errc::corrupt    the body is longer than `max_bytes` (reading stops at the limit:
//                    endless-data attacks cost at most max_bytes + one buffer; a piece a
//                    mirror substituted with a longer one ends the same way);
//   Errc::io         connection failed, an HTTP error status, or the transfer stalled
//                    (slow-retrieval attacks: below a minimum rate for too long, or below
//                    the minimum average rate over the whole fetch: HttpOptions).
// HttpFetcher is the real implementation (libcurl, http:// and https:// and file://);
// tests use a real server on 127.0.0.1 or a fake behind this interface.
// One Fetcher may be used from one thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace mup::transfer {

class Fetcher {
 public:
  virtual ~Fetcher() = default;
  [[nodiscard]] virtual Result<std::vector<uint8_t>> fetch(const std::string& url,
                                                           uint64_t max_bytes) = 0;
};

struct HttpOptions {
  long connect_timeout_s = 10;
  // A transfer slower than low_speed_bytes_per_s for low_speed_time_s is abandoned.
  long low_speed_bytes_per_s = 1024;
  long low_speed_time_s = 10;
  long total_timeout_s = 0;  // 0: none beyond the rules here
  // Slow retrieval: a whole fetch must keep this average rate, so it has a deadline of
  // connect_timeout_s + deadline_grace_ms + max_bytes / min_average_bytes_per_s (a 64 MiB
  // piece at the default 64 KiB/s: ~17.5 min, where the low-speed floor alone allowed 18 h).
  // 0: no deadline. The engine takes it from $MUP_MIN_RATE (bytes per second).
  uint64_t min_average_bytes_per_s = 64 << 10;
  long deadline_grace_ms = 30000;
};

// HttpOptions with min_average_bytes_per_s from $MUP_MIN_RATE when it is set (a number of
// bytes per second; 0 turns the deadline off).
HttpOptions http_options_from_env();

class HttpFetcher : public Fetcher {
 public:
  explicit HttpFetcher(HttpOptions opts = {});
  ~HttpFetcher() override;
  HttpFetcher(const HttpFetcher&) = delete;
  HttpFetcher& operator=(const HttpFetcher&) = delete;

  [[nodiscard]] Result<std::vector<uint8_t>> fetch(const std::string& url,
                                                   uint64_t max_bytes) override;

 private:
  HttpOptions opts_;
  void* curl_;  // CURL*, reused across requests (keep-alive)
};

// Percent-encodes a string for use as one URL path segment or file name (RFC 3986
// unreserved characters stay as they are), as TUF clients must for role names.
std::string percent_encode(std::string_view s);

}  // namespace mup::transfer
