// Fetcher: how mup downloads bytes. The seam between the update logic and the network.
//
// fetch() returns the whole body of a URL, or an error:
//   Errc::not_found  the server answered 404 (or 403/410): the object is not there;
//   Errc::corrupt    the body is longer than `max_bytes` (reading stops at the limit:
//                    endless-data attacks cost at most max_bytes + one buffer);
//   Errc::io         connection failed, an HTTP error status, or the transfer stalled
//                    (slow-retrieval attacks: below a minimum rate for too long).
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
  long total_timeout_s = 0;  // 0: none beyond the low-speed rule
};

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
