// FileServer: a small static HTTP/1.1 file server (Boost.Beast) for repositories.
//
// Serves the regular files under a root directory: GET and HEAD, Content-Length, one
// byte range per request (Range: bytes=a-b, for resumed downloads), keep-alive. Paths are
// percent-decoded and must stay inside the root: "..", NUL, and symlinks leading out of
// the root answer 404, as do directories. It is what `mup repo serve` runs; any other
// static server works as well for clients. start() binds (port 0 picks a free port) and
// serves on its own threads until stop() or destruction. Thread-safe.
//
// Against hostile clients: bodies (whole files and ranges) are streamed 64 KiB at a time, so
// memory per connection is bounded whatever the file's size; a connection without progress
// for 30 s is closed (a slow reader that keeps reading is served); a request line over the
// header limit (16 KiB) or a target over 8 KiB answers 414, headers over the limit 431;
// more than max_connections (512) at once get 503; and accepting goes on after errors
// (out of file descriptors under a flood: it retries, backing off up to 1 s).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "core/error.hpp"

namespace mup::transfer {

class FileServer {
 public:
  // `listen` is "HOST:PORT" (e.g. "127.0.0.1:0").
  [[nodiscard]] static Result<std::unique_ptr<FileServer>> start(const std::filesystem::path& root,
                                                                 const std::string& listen,
                                                                 unsigned threads = 2);
  ~FileServer();
  uint16_t port() const;
  // Requests answered so far (every status), for tests and benchmarks that count round trips.
  uint64_t requests() const;
  // Connections served at once (default 512); more are answered 503 and closed.
  void set_max_connections(size_t n);
  std::string base_url() const;  // "http://HOST:PORT"
  void stop();
  // Blocks until stop() is called from another thread or a signal handler path.
  void wait();

 private:
  struct Impl;
  explicit FileServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mup::transfer
