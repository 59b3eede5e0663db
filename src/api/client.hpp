// Client: the other end of api::Server, for the CLI and for the agent talking to the proxy.
//
// Contract: a Client keeps one connection (unix socket, or TCP with a bearer token) and
// opens it on first use and again whenever the server has closed it. request() sends one
// JSON request and waits for the whole reply, at most `timeout` (connect included). It
// never throws. Failures carry api codes a caller branches on:
//   api::Code::unavailable  nothing listens: "no server listening on <path>" (the CLI says
//                           "agent not running"); the socket file missing counts too
//   api::Code::timeout      no whole reply in time (the connection is dropped)
//   api::Code::protocol     the reply was not HTTP, or its body not JSON
// An HTTP error status is not a failure: the Reply holds it and its {"error":...} body.
// A request that fails because a kept connection turned out closed is retried once on a
// new connection, for idempotent methods (GET, HEAD, PUT, DELETE) only; a POST is instead
// sent on a fresh connection when the kept one has been idle a while (servers close idle
// connections). Thread-safe: requests from several threads take turns on the connection.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "api/errors.hpp"
#include "core/error.hpp"

namespace mup::api {

struct Reply {
  int status = 0;
  nlohmann::json body;  // null when the reply had no body
};

class Client {
 public:
  static Client unix_socket(std::filesystem::path path);
  // `host_port` like "127.0.0.1:8377".
  static Client tcp(std::string host_port, std::string token);

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // `body` null sends no body. `path` may carry a query ("/v1/x?since=3").
  [[nodiscard]] Result<Reply> request(const std::string& method, const std::string& path,
                                      const nlohmann::json& body = nullptr,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Where requests go: the socket path or "host:port", for messages.
  const std::string& target() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mup::api
