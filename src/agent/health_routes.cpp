// The health monitor in the agent: its sources bound to the Runtime, its API
// (docs/agent.md, "Health"), and the node's Prometheus metrics at /metrics, which a scraper
// may read over TCP without the token (read-only; every other route still needs it).
#include "agent/internal.hpp"
#include "health/errors.hpp"
#include "health/node_metrics.hpp"
#include "health/prometheus.hpp"

namespace mup::agent {

namespace {

using api::Request;
using api::Response;
using nlohmann::json;

json thresholds_json(const health::Monitor& m, const std::string& name) {
  return {{"component", name},
          {"thresholds", health::to_json(m.thresholds(name))},
          {"custom", m.custom_thresholds(name)}};
}

Response error_of(const Error& e) {
  const int status = e.code() == Errc::not_found          ? 404
                     : e.code() == Errc::invalid_argument ? 400
                                                          : 500;
  // A bad threshold reads "field: why": the 400 names the field.
  const std::string m = e.message();
  const auto colon = m.find(':');
  const bool named =
      e.is(health::Code::bad_threshold) && colon != std::string::npos && m.find(' ') > colon;
  return Response::error(status, e.code_string(), m, named ? m.substr(0, colon) : "");
}

}  // namespace

Status start_health(Agent::Impl& a) {
  health::Sources src;
  Runtime* rt = a.runtime.get();
  src.stats = [rt] { return rt->proxy_stats(); };
  src.services = [rt] { return rt->services_json(); };
  src.ready_check = [rt](const std::string& c,
                         const std::string& v) -> std::optional<service::ReadyCheck> {
    auto def = rt->definition(c, v);
    if (!def) return std::nullopt;
    return def->ready;
  };
  health::MonitorOptions mo;
  mo.thresholds_file = a.opts.root / "health" / "thresholds.json";
  mo.clock = a.opts.clock;
  mo.log = [&a](std::string_view l) { a.say(std::string(l)); };
  auto m = health::Monitor::open(std::move(mo), std::move(src));
  if (!m) return tl::unexpected(m.error());
  a.health = std::move(*m);
  a.health->start();

  api::Server& s = *a.server;
  health::Monitor& h = *a.health;
  MUP_TRY(s.route("GET", "/v1/health", [&h](const Request&) { return Response::ok(h.report()); }));
  MUP_TRY(s.route("GET", "/v1/health/{name}", [&h](const Request& r) {
    auto c = h.report(r.params.at("name"));
    return c ? Response::ok(*c) : error_of(c.error());
  }));
  MUP_TRY(s.route("GET", "/v1/health/{name}/thresholds", [&h](const Request& r) {
    return Response::ok(thresholds_json(h, r.params.at("name")));
  }));
  MUP_TRY(s.route("PUT", "/v1/health/{name}/thresholds", [&h](const Request& r) {
    const std::string name = r.params.at("name");
    auto t = health::thresholds_from_json(r.body.is_null() ? json::object() : r.body,
                                          h.thresholds(name));
    if (!t) return error_of(t.error());
    if (auto st = h.set_thresholds(name, *t); !st) return error_of(st.error());
    return Response::ok(thresholds_json(h, name));
  }));
  MUP_TRY(s.route("DELETE", "/v1/health/{name}/thresholds", [&h](const Request& r) {
    const std::string name = r.params.at("name");
    if (auto st = h.reset_thresholds(name); !st) return error_of(st.error());
    return Response::ok(thresholds_json(h, name));
  }));
  Agent::Impl* ap = &a;
  MUP_TRY(s.route(
      "GET", "/metrics",
      [ap](const Request&) {
        health::NodeMetricsInput in;
        auto stats = ap->runtime->proxy_stats();
        in.stats = stats ? *stats : json();
        in.services = ap->runtime->services_json();
        in.health =
            ap->health->report_of(in.stats, stats ? "" : stats.error().message(), in.services);
        if (auto rows = ap->deployer->list("", 100000))
          for (const auto& row : *rows)
            in.deployments.push_back({row.id, row.component, row.strategy, row.state,
                                      row.detail.is_object() && row.detail.contains("decision")
                                          ? row.detail["decision"]
                                          : json()});
        return Response::text(health::render_node_metrics(in), health::kPrometheusContentType);
      },
      api::Access::public_read));
  return {};
}

}  // namespace mup::agent
