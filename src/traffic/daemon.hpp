// ProxyDaemon: the `mup proxy --root R` process around a Proxy; ProxyClient: the agent's
// way to reach it. Contract in docs/agent.md ("Why the data plane is its own process",
// "traffic").
//
// ProxyDaemon::start(root):
//   - takes <root>/proxy/proxy.lock (flock, held for the daemon's life: one proxy per root;
//     a second start is Errc::busy naming the pid in <root>/proxy/proxy.pid),
//   - reloads <root>/proxy/routes.json, so a restarted proxy serves the same routes on the
//     same sockets addresses (a route asked with port 0 is persisted with the port it got);
//     a route that cannot be restored (its port taken meanwhile) is logged and skipped,
//   - serves the control API on <root>/proxy.sock with api::Server:
//       GET /v1/health, GET /v1/routes, GET|PUT|DELETE /v1/routes/{service}, GET /v1/stats
//   - after every change, atomically replaces routes.json before answering.
// The destructor (or stop()) closes the API, then the proxy, and releases the lock.
// Thread-safe: the API handlers serialise changes on one mutex.
//
// ProxyClient: requests over api::Client on <root>/proxy.sock. ensure_running() starts
// `<mup_binary> proxy --root R` fully detached (double fork, own session, stdio to
// <root>/proxy/proxy.log, other descriptors closed) when nothing answers, and waits (5 s)
// until it does. Errors map back to codes: 400 invalid_argument, 404 not_found, 409 busy;
// nothing listening is api::Code::unavailable. Thread-safe (api::Client is).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "traffic/proxy.hpp"
#include "traffic/route.hpp"

namespace mup::api {
class Client;
}

namespace mup::traffic {

class ProxyDaemon {
 public:
  [[nodiscard]] static Result<std::unique_ptr<ProxyDaemon>> start(const std::filesystem::path& root,
                                                                  ProxyOptions options = {});
  ~ProxyDaemon();
  ProxyDaemon(const ProxyDaemon&) = delete;
  ProxyDaemon& operator=(const ProxyDaemon&) = delete;

  Proxy& proxy();
  void stop();

 private:
  struct Impl;
  explicit ProxyDaemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class ProxyClient {
 public:
  explicit ProxyClient(const std::filesystem::path& root);
  ~ProxyClient();
  ProxyClient(ProxyClient&&) noexcept;
  ProxyClient& operator=(ProxyClient&&) noexcept;

  // Starts the proxy for `root` unless one answers already.
  [[nodiscard]] static Status ensure_running(
      const std::filesystem::path& root, const std::filesystem::path& mup_binary,
      std::chrono::milliseconds wait = std::chrono::seconds(5));

  [[nodiscard]] Result<nlohmann::json> health();
  [[nodiscard]] Result<Route> put_route(const std::string& name, const RouteSpec& spec);
  [[nodiscard]] Status delete_route(const std::string& name);
  [[nodiscard]] Result<std::vector<Route>> routes();
  [[nodiscard]] Result<nlohmann::json> stats();

 private:
  std::unique_ptr<api::Client> client_;
};

}  // namespace mup::traffic
