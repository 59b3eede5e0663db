// FileServer: a small static HTTP/1.1 file server (Boost.Beast) for repositories.
//
// Serves the regular files under a root directory: GET and HEAD, Content-Length, one
// byte range per request (Range: bytes=a-b, for resumed downloads), keep-alive. Paths are
// percent-decoded and must stay inside the root: "..", NUL, and symlinks leading out of
// the root answer 404, as do directories. It is what `mup repo serve` runs; any other
// static server works as well for clients. start() binds (port 0 picks a free port) and
// serves on its own threads until stop() or destruction. Thread-safe.
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
