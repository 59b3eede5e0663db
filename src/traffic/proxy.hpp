// Proxy: the data plane, in process. Routes (one listener each) forward HTTP/1.1 or TCP to
// weighted backends, per the contract in docs/agent.md ("traffic").
//
//   Proxy proxy;                                   // 2 worker threads
//   auto r = proxy.set_route("web", spec);         // binds spec.listen on first use
//   proxy.set_route("web", spec_with_new_weights); // same listen: same socket, atomic swap
//   proxy.remove_route("web");                     // listener closed, backends drained
//
// set_route binds the listener the first time (and again only when `listen` changes: the
// new address is bound before the old socket is closed, so a failed rebind leaves the route
// as it was); an address that cannot be bound is Errc::busy ("address in use"). It swaps the
// backend table in one atomic store. A backend is identified by id and address: one that
// stays keeps its pooled connections; one that leaves drains (no new requests; in-flight
// ones finish within drain_ms, then their connections are cut; its idle pooled connections
// close at once) and is listed as "draining" until nothing is in flight.
//
// Thread-safety: every member function may be called from any thread. The control calls
// (set_route, remove_route, routes, route) serialise on one mutex that the data path never
// takes; stats() reads atomics. The destructor stops the workers and closes every socket.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "traffic/route.hpp"

namespace mup::traffic {

struct ProxyOptions {
  unsigned threads = 2;          // worker threads, each with its own io_context
  const Clock* clock = nullptr;  // for the per-second stats; null: system_clock()
  unsigned client_idle_ms = 60'000;
  unsigned connect_timeout_ms = 2'000;
  size_t max_header_bytes = 16 * 1024;
};

class Proxy {
 public:
  explicit Proxy(ProxyOptions options = {});
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  [[nodiscard]] Result<Route> set_route(const std::string& name, const RouteSpec& spec);
  // Errc::not_found when there is no such route.
  [[nodiscard]] Status remove_route(const std::string& name);
  std::vector<Route> routes() const;
  std::optional<Route> route(const std::string& name) const;
  // {"services":{name:{"versions":{version:VersionStats}}}} (stats.hpp says what counts).
  nlohmann::json stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mup::traffic
