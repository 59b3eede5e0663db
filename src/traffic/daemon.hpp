// ProxyDaemon: the `mup proxy` process — a Proxy, its control API on <root>/proxy.sock
// (docs/agent.md, "traffic"), and its route table kept on disk.
//
// Why a process of its own: the proxy owns every service's listening socket and carries every
// request; it must keep serving while the agent is killed, crashes or is upgraded. The agent
// starts it detached and finds it again through the socket.
//
// start() takes <root>/proxy/proxy.lock (flock; Errc::busy when another proxy holds it),
// writes <root>/proxy/proxy.pid, loads <root>/proxy/routes.json (a route that cannot be set
// again, e.g. its address is taken now, is logged and skipped), then serves the control API.
// Every change the API makes is written back to routes.json (write temp, fsync, rename) before
// it is answered, so a restarted proxy serves the routes the agent last set. Thread-safe.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>

#include "core/error.hpp"
#include "traffic/proxy.hpp"

namespace mup::traffic {

struct DaemonOptions {
  std::filesystem::path root;
  ProxyOptions proxy;
  std::function<void(std::string_view)> log;  // empty: stderr
};

class ProxyDaemon {
 public:
  [[nodiscard]] static Result<std::unique_ptr<ProxyDaemon>> start(DaemonOptions options);
  ~ProxyDaemon();
  Proxy& proxy();
  // Stops the control API; the listeners close with the destructor.
  void stop();

  struct Impl;

 private:
  explicit ProxyDaemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mup::traffic
