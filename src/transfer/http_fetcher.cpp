#include <curl/curl.h>

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
  if (opts_.total_timeout_s > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT, opts_.total_timeout_s);
  // A server that states a length above the limit is refused before any body is read.
  if (max_bytes < static_cast<uint64_t>(INT64_MAX))
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_bytes));
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (body.too_long || rc == CURLE_FILESIZE_EXCEEDED)
    return fail(Errc::corrupt, url + " is longer than the " + std::to_string(max_bytes) +
                                   " bytes allowed; refusing it (endless data?)");
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
