#include "traffic/route.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <set>

namespace mup::traffic {

using nlohmann::json;

namespace {

bool is_ip_literal(const std::string& host, bool v6) {
  unsigned char buf[16];
  return inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), buf) == 1;
}

// Collects the first error with its field path.
struct Checker {
  std::string* field_out;
  tl::unexpected<Error> bad(const std::string& field, const std::string& why) const {
    if (field_out) *field_out = field;
    return fail(Errc::invalid_argument, field + ": " + why);
  }
};

Status check_keys(const json& j, const std::string& where, std::initializer_list<const char*> known,
                  const Checker& c) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool ok = std::any_of(known.begin(), known.end(), [&](const char* k) { return it.key() == k; });
    if (!ok) return c.bad(where.empty() ? it.key() : where + "." + it.key(), "unknown field");
  }
  return {};
}

Result<std::string> get_string(const json& j, const std::string& key, const std::string& path,
                               const Checker& c, size_t max_len = 256) {
  auto it = j.find(key);
  if (it == j.end()) return c.bad(path, "missing (a string)");
  if (!it->is_string()) return c.bad(path, "must be a string");
  std::string s = it->get<std::string>();
  if (s.empty()) return c.bad(path, "must not be empty");
  if (s.size() > max_len) return c.bad(path, "longer than " + std::to_string(max_len) + " bytes");
  return s;
}

Result<uint32_t> get_uint(const json& j, const std::string& key, const std::string& path,
                          uint32_t max, const Checker& c) {
  const json& v = j.at(key);
  if (!v.is_number_integer()) return c.bad(path, "must be an integer");
  if (v.is_number_unsigned() ? v.get<uint64_t>() > max
                             : (v.get<int64_t>() < 0 || v.get<int64_t>() > max))
    return c.bad(path, "must be between 0 and " + std::to_string(max));
  return static_cast<uint32_t>(v.get<uint64_t>());
}

Result<BackendSpec> parse_backend(const json& j, const std::string& path, const Checker& c,
                                  bool with_status) {
  if (!j.is_object()) return c.bad(path, "must be an object");
  if (with_status) {
    MUP_TRY(check_keys(
        j, path, {"id", "version", "address", "weight", "state", "in_flight", "connections"}, c));
  } else {
    MUP_TRY(check_keys(j, path, {"id", "version", "address", "weight"}, c));
  }
  BackendSpec b;
  auto id = get_string(j, "id", path + ".id", c, 128);
  if (!id) return tl::unexpected(id.error());
  b.id = *id;
  auto version = get_string(j, "version", path + ".version", c, 128);
  if (!version) return tl::unexpected(version.error());
  b.version = *version;
  auto address = get_string(j, "address", path + ".address", c, 64);
  if (!address) return tl::unexpected(address.error());
  std::string host;
  uint16_t port = 0;
  if (!split_host_port(*address, host, port) || port == 0)
    return c.bad(path + ".address", "wants IP:PORT with a port 1-65535, got \"" + *address + "\"");
  b.address = *address;
  if (!j.contains("weight")) return c.bad(path + ".weight", "missing (an integer)");
  auto weight = get_uint(j, "weight", path + ".weight", kMaxWeight, c);
  if (!weight) return tl::unexpected(weight.error());
  b.weight = *weight;
  return b;
}

Result<RouteSpec> parse_spec(const json& j, std::string* field, bool as_route) {
  Checker c{field};
  if (!j.is_object()) return c.bad("body", "must be a JSON object");
  if (as_route) {
    MUP_TRY(check_keys(j, "", {"name", "listen", "bound", "protocol", "drain_ms", "backends"}, c));
  } else {
    MUP_TRY(check_keys(j, "", {"listen", "protocol", "drain_ms", "backends"}, c));
  }
  RouteSpec r;
  auto listen = get_string(j, "listen", "listen", c, 64);
  if (!listen) return tl::unexpected(listen.error());
  std::string host;
  uint16_t port = 0;
  if (!split_host_port(*listen, host, port))
    return c.bad("listen", "wants IP:PORT (e.g. 127.0.0.1:8080), got \"" + *listen + "\"");
  r.listen = *listen;
  if (auto it = j.find("protocol"); it != j.end()) {
    if (!it->is_string() || (*it != "http" && *it != "tcp"))
      return c.bad("protocol", "must be \"http\" or \"tcp\"");
    r.protocol = *it == "tcp" ? Protocol::tcp : Protocol::http;
  }
  if (j.contains("drain_ms")) {
    auto d = get_uint(j, "drain_ms", "drain_ms", kMaxDrainMs, c);
    if (!d) return tl::unexpected(d.error());
    r.drain_ms = *d;
  }
  auto it = j.find("backends");
  if (it == j.end()) return c.bad("backends", "missing (an array, may be empty)");
  if (!it->is_array()) return c.bad("backends", "must be an array");
  if (it->size() > kMaxBackends)
    return c.bad("backends", "more than " + std::to_string(kMaxBackends) + " backends");
  std::set<std::string> ids;
  for (size_t i = 0; i < it->size(); ++i) {
    std::string path = "backends[" + std::to_string(i) + "]";
    auto b = parse_backend((*it)[i], path, c, as_route);
    if (!b) return tl::unexpected(b.error());
    if (!ids.insert(b->id).second) return c.bad(path + ".id", "duplicate id \"" + b->id + "\"");
    r.backends.push_back(std::move(*b));
  }
  return r;
}

}  // namespace

std::string_view protocol_name(Protocol p) {
  return p == Protocol::tcp ? "tcp" : "http";
}

std::string bad_route_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return "a route name has 1 to 64 characters";
  for (char ch : name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-'))
      return "a route name uses only letters, digits, '.', '_' and '-'";
  return {};
}

bool split_host_port(std::string_view s, std::string& host, uint16_t& port) {
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= s.size()) return false;
  std::string_view h = s.substr(0, colon), p = s.substr(colon + 1);
  bool v6 = false;
  if (h.front() == '[') {
    if (h.size() < 3 || h.back() != ']') return false;
    h = h.substr(1, h.size() - 2);
    v6 = true;
  }
  if (p.size() > 5) return false;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || end != p.data() + p.size() || value > 65535) return false;
  host = std::string(h);
  if (!is_ip_literal(host, v6)) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

json to_json(const BackendSpec& b) {
  return {{"id", b.id}, {"version", b.version}, {"address", b.address}, {"weight", b.weight}};
}

json to_json(const RouteSpec& r) {
  json backends = json::array();
  for (const auto& b : r.backends) backends.push_back(to_json(b));
  return {{"listen", r.listen},
          {"protocol", protocol_name(r.protocol)},
          {"drain_ms", r.drain_ms},
          {"backends", std::move(backends)}};
}

json to_json(const Route& r) {
  json j = to_json(r.spec);
  j["name"] = r.name;
  j["bound"] = r.bound;
  json backends = json::array();
  for (const auto& b : r.backends) {
    json e = to_json(b.spec);
    e["state"] = b.draining ? "draining" : "active";
    e["in_flight"] = b.in_flight;
    e["connections"] = b.connections;
    backends.push_back(std::move(e));
  }
  j["backends"] = std::move(backends);
  return j;
}

Result<RouteSpec> parse_route_spec(const json& j, std::string* field) {
  return parse_spec(j, field, false);
}

Result<Route> parse_route(const json& j, std::string* field) {
  Checker c{field};
  auto spec = parse_spec(j, field, true);
  if (!spec) return tl::unexpected(spec.error());
  Route r;
  if (auto n = j.find("name"); n != j.end()) {
    if (!n->is_string() || !bad_route_name(n->get<std::string>()).empty())
      return c.bad("name", "must be a route name (1-64 of [A-Za-z0-9._-])");
    r.name = *n;
  }
  if (auto b = j.find("bound"); b != j.end() && b->is_string()) r.bound = *b;
  const json& backends = j.at("backends");
  for (size_t i = 0; i < backends.size(); ++i) {
    const json& e = backends[i];
    std::string path = "backends[" + std::to_string(i) + "]";
    BackendStatus s;
    s.spec = spec->backends[i];
    if (auto st = e.find("state"); st != e.end()) {
      if (!st->is_string() || (*st != "active" && *st != "draining"))
        return c.bad(path + ".state", "must be \"active\" or \"draining\"");
      s.draining = *st == "draining";
    }
    for (auto [key, out] :
         {std::pair{"in_flight", &s.in_flight}, std::pair{"connections", &s.connections}}) {
      auto v = e.find(key);
      if (v == e.end()) continue;
      if (!v->is_number_integer()) return c.bad(path + "." + key, "must be an integer");
      *out = v->get<int64_t>();
    }
    r.backends.push_back(std::move(s));
  }
  // The spec lists the active set only; a duplicate id among draining ones is allowed.
  spec->backends.clear();
  for (const auto& b : r.backends)
    if (!b.draining) spec->backends.push_back(b.spec);
  r.spec = std::move(*spec);
  return r;
}

}  // namespace mup::traffic
