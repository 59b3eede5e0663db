// Route specifications: what the control plane asks the proxy to serve, and what it reports.
//
// A RouteSpec is the body of `PUT /v1/routes/{service}` (docs/agent.md, "traffic"): a listen
// address, a protocol, a drain time and a set of weighted backends. A Route is a RouteSpec
// plus, per backend, its state ("active" or "draining"), in_flight and connections, and the
// address the listener is actually bound to ("bound": differs from "listen" when port 0 was
// asked for). Parsing is strict: unknown fields, wrong types, out-of-range numbers, duplicate
// backend ids and malformed addresses are refused with Errc::invalid_argument and a message
// that starts with the offending field ("backends[1].weight: ..."), which is also returned
// through `field` so an API can answer 400 naming it. Plain values; thread-compatible.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace mup::traffic {

enum class Protocol { http, tcp };

struct BackendSpec {
  std::string id;       // unique within the route, e.g. "web@2.0.0#0"
  std::string version;  // the service version it runs: stats are kept per version
  std::string address;  // "HOST:PORT", an IP literal (IPv6 in brackets)
  uint32_t weight = 0;  // 0: kept warm, gets no new requests
  bool operator==(const BackendSpec&) const = default;
};

struct RouteSpec {
  std::string listen;  // "HOST:PORT"; port 0 picks a free port
  Protocol protocol = Protocol::http;
  uint32_t drain_ms = 10000;
  std::vector<BackendSpec> backends;
  bool operator==(const RouteSpec&) const = default;
};

struct BackendStatus {
  BackendSpec spec;
  bool draining = false;
  int64_t in_flight = 0;
  int64_t connections = 0;  // open upstream connections
};

struct Route {
  std::string name;
  RouteSpec spec;                       // spec.backends: the active set, as last PUT
  std::string bound;                    // "HOST:PORT" the listener is bound to
  std::vector<BackendStatus> backends;  // active ones first, then draining ones
};

inline constexpr uint32_t kMaxWeight = 1'000'000;
inline constexpr uint32_t kMaxDrainMs = 3'600'000;
inline constexpr size_t kMaxBackends = 256;

std::string_view protocol_name(Protocol p);

// Why `name` cannot name a route (empty when it can): 1-64 of [A-Za-z0-9._-].
std::string bad_route_name(std::string_view name);
// Splits "HOST:PORT" ("[::1]:80" for IPv6); false when malformed or the port is > 65535.
bool split_host_port(std::string_view s, std::string& host, uint16_t& port);

nlohmann::json to_json(const BackendSpec& b);
nlohmann::json to_json(const RouteSpec& r);
nlohmann::json to_json(const Route& r);

// Strict parsers; on error `field` (when given) receives the offending field's path.
[[nodiscard]] Result<RouteSpec> parse_route_spec(const nlohmann::json& j,
                                                 std::string* field = nullptr);
// A Route as to_json(Route) writes it (used to read a persisted route table back).
[[nodiscard]] Result<Route> parse_route(const nlohmann::json& j, std::string* field = nullptr);

}  // namespace mup::traffic
