#include <curl/curl.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <string>

#include "transfer/fetcher.hpp"

namespace mup::transfer {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Body {
  std::vector<uint8_t> data;
  uint64_t max_bytes;
  bool too_long = false;
};

size_t on_data(char* ptr, size_t size, size_t nmemb, void* user) {
  auto* b = static_cast<Body*>(user);
  size_t n = size * nmemb;
  if (b->data.size() + n > b->max_bytes) {
    b->too_long = true;
    return 0;  // aborts the transfer: endless data stops at the limit
  }
  b->data.insert(b->data.end(), ptr, ptr + n);
  return n;
}

}  // namespace

HttpFetcher::HttpFetcher(HttpOptions opts) : opts_(opts) {
  global_init();
  curl_ = curl_easy_init();
}

HttpFetcher::~HttpFetcher() {
  if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Result<std::vector<uint8_t>> HttpFetcher::fetch(const std::string& url, uint64_t max_bytes) {
  auto* c = static_cast<CURL*>(curl_);
  if (c == nullptr) return fail(Errc::internal, "libcurl could not be initialised");
  curl_easy_reset(c);
  Body body{{}, max_bytes};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, opts_.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, opts_.low_speed_bytes_per_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, opts_.low_speed_time_s);
  // The deadline: the whole fetch at the minimum average rate (slow retrieval), or the
  // configured total, whichever comes first.
  long deadline_ms = opts_.total_timeout_s > 0 ? opts_.total_timeout_s * 1000 : 0;
  bool by_rate = false;
  if (opts_.min_average_bytes_per_s > 0 && max_bytes < (uint64_t{1} << 50)) {
    const uint64_t ms = static_cast<uint64_t>(opts_.connect_timeout_s) * 1000 +
                        static_cast<uint64_t>(opts_.deadline_grace_ms) +
                        max_bytes * 1000 / opts_.min_average_bytes_per_s;
    if (deadline_ms == 0 || ms < static_cast<uint64_t>(deadline_ms)) {
      deadline_ms = static_cast<long>(std::min<uint64_t>(ms, LONG_MAX));
      by_rate = true;
    }
  }
  if (deadline_ms > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, deadline_ms);
  // A server that states a length above the limit is refused before any body is read.
  if (max_bytes < static_cast<uint64_t>(INT64_MAX))
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_bytes));
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (body.too_long || rc == CURLE_FILESIZE_EXCEEDED)
    return fail(Errc::corrupt,
                url + " sends more than the " + std::to_string(max_bytes) +
                    " bytes expected (its signed length, or the size limit): a substituted, "
                    "corrupt or endless response; refusing it");
  curl_off_t elapsed_us = 0;
  curl_easy_getinfo(c, CURLINFO_TOTAL_TIME_T, &elapsed_us);
  if (rc == CURLE_OPERATION_TIMEDOUT && by_rate && elapsed_us / 1000 + 100 >= deadline_ms) {
    curl_off_t speed = 0;
    curl_easy_getinfo(c, CURLINFO_SPEED_DOWNLOAD_T, &speed);
    return fail(Errc::io, url + ": too slow: " + std::to_string(body.data.size()) + " bytes in " +
                              std::to_string(deadline_ms) + " ms (" + std::to_string(speed) +
                              " bytes/s; the minimum average is " +
                              std::to_string(opts_.min_average_bytes_per_s) +
                              ", $MUP_MIN_RATE); check the network or the mirror and retry");
  }
  if (rc == CURLE_OPERATION_TIMEDOUT)
    return fail(Errc::io, url + ": the transfer stalled or timed out (" + std::string(errbuf) +
                              "); check the network or the server and retry");
  // file:// remotes: a missing file is "not there", as a 404 is (TUF's next-root probe).
  if (rc == CURLE_FILE_COULDNT_READ_FILE)
    return fail(Errc::not_found, url + ": not found (" + std::string(errbuf) + ")");
  if (rc != CURLE_OK)
    return fail(Errc::io, url + ": " + (errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc)));
  if (status == 404 || status == 403 || status == 410)
    return fail(Errc::not_found,
                url + ": not found on the server (HTTP " + std::to_string(status) + ")");
  if (status >= 400)
    return fail(Errc::io, url + ": the server answered HTTP " + std::to_string(status));
  return std::move(body.data);
}

HttpOptions http_options_from_env() {
  HttpOptions o;
  if (const char* v = std::getenv("MUP_MIN_RATE"); v && *v) {
    char* end = nullptr;
    const unsigned long long n = std::strtoull(v, &end, 10);
    if (end && *end == '\0') o.min_average_bytes_per_s = n;
  }
  return o;
}

std::string percent_encode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    bool unreserved = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~';
    if (unreserved) {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back('%');
      out.push_back(kHex[ch >> 4]);
      out.push_back(kHex[ch & 15]);
    }
  }
  return out;
}

}  // namespace mup::transfer
