// Server: JSON over HTTP/1.1 on a unix socket and/or a loopback TCP address (Boost.Beast).
// It serves the proxy's control API (<root>/proxy.sock) and the agent's API (agent.sock,
// optionally 127.0.0.1:PORT); api::Client is its client.
//
// Contract:
// - start() listens and serves on its own threads until stop() or destruction. The unix
//   socket is created mode 0600 (only the owner may connect: that is its access control).
//   A stale socket file (nothing accepts on it) is replaced; one something answers on is
//   refused with api::Code::busy (Errc::busy): "another process serves <path>".
//   The check-then-replace is not atomic: two servers starting at the same moment on one
//   path race, so an owner that must be unique holds a lock first (the proxy's proxy.lock).
// - A TCP request must carry `Authorization: Bearer <token>` (compared in constant time),
//   else 401, answered on the header before any body is read, and the connection closes.
//   The exception is a route registered with Access::public_read (the agent's /metrics, for
//   a Prometheus scraper that has no token): it is served over TCP without the token; only
//   GET and HEAD may be public. TCP listens on loopback addresses only. Unix-socket requests
//   need no token.
// - Handlers get a Request and return a Response: JSON (`body`), or raw bytes with their own
//   Content-Type (`Response::text`, e.g. Prometheus' text format). Errors the server makes itself
//   share one shape, {"error":{"code","message","field"?}}: 400 bad_request (body not a JSON
//   object; looked at only once a route matched, so an unknown path is always a 404), 401
//   unauthorized, 404 not_found (no route), 405 method_not_allowed (route exists, other method),
//   413 too_large (body > max_body), 431 headers_too_large, 503 unavailable (over max_connections),
//   500 internal (the handler threw: caught and logged; the server goes on serving).
// - A request must arrive whole within read_timeout (counted from the first wait for it,
//   so an idle keep-alive connection is closed after read_timeout too); a slow client is
//   disconnected and blocks nobody else. Keep-alive unless the client says close.
// - route() is thread-safe and may be called before or after start(), also from a handler.
//   Handlers run on the server's threads, several at once: they must be thread-safe, and a
//   slow handler holds one of `threads`. stop() is idempotent, waits for running handlers,
//   and removes the socket file this server created (if it is still the one it created);
//   it must not be called from a handler. The destructor stops.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/errors.hpp"
#include "core/error.hpp"

namespace mup::api {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // undecoded, without the query: "/v1/deployments/42/abort"
  std::map<std::string, std::string> params;  // from the pattern's {name} segments, decoded
  std::map<std::string, std::string> query;   // decoded
  nlohmann::json body;                        // a JSON object, or null when there was none
  bool tcp = false;                           // came over TCP (authenticated by the token)
};

struct Response {
  int status = 200;
  nlohmann::json body = nlohmann::json::object();
  // When content_type is set, the answer is `raw` with that Content-Type and `body` is unused.
  std::string content_type;
  std::string raw;

  Response() = default;
  Response(int status_, nlohmann::json body_ = nlohmann::json::object())
      : status(status_), body(std::move(body_)) {}

  static Response ok(nlohmann::json body = nlohmann::json::object()) {
    return {200, std::move(body)};
  }
  static Response text(std::string raw, std::string content_type, int status = 200) {
    Response r(status, nullptr);
    r.content_type = std::move(content_type);
    r.raw = std::move(raw);
    return r;
  }
  // {"error":{"code":code,"message":message,"field":field}}; "field" only when not empty.
  static Response error(int status, std::string code, std::string message, std::string field = "");
};

using Handler = std::function<Response(const Request&)>;

// Who may call a route over TCP: only token holders (the default), or anyone (read-only
// routes; GET and HEAD only).
enum class Access { token, public_read };

struct ServerOptions {
  std::filesystem::path unix_socket;  // empty: no unix socket
  std::string tcp_listen;             // "127.0.0.1:PORT" (0 picks a port); empty: no TCP
  std::string bearer_token;           // required when tcp_listen is set
  unsigned threads = 2;
  size_t max_body = 1 << 20;
  size_t max_header = 16 << 10;
  size_t max_connections = 256;
  std::chrono::milliseconds read_timeout{10'000};
  // Where the server reports what it cannot answer to anyone (a handler that threw).
  // Empty: standard error.
  std::function<void(std::string_view)> log;
};

class Server {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Server>> start(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Adds (or replaces) the handler of `method` on `pattern`, e.g. "/v1/routes/{service}".
  // Fails on a malformed pattern, or a public route whose method is not GET or HEAD.
  [[nodiscard]] Status route(std::string method, std::string_view pattern, Handler handler,
                             Access access = Access::token);

  // The TCP port listened on, 0 without TCP.
  uint16_t port() const;
  void stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mup::api
