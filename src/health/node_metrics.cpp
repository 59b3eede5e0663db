#include "health/node_metrics.hpp"

#include <map>
#include <set>

#include "health/json_read.hpp"
#include "health/prometheus.hpp"
#include "health/window.hpp"
#include "traffic/stats.hpp"

namespace mup::health {

using nlohmann::json;

namespace {

void traffic(Exposition& e, const json& stats) {
  e.family("mup_requests_total", "counter",
           "Requests the proxy finished, by the status class sent to the client");
  e.family("mup_request_failures_total", "counter",
           "Requests users saw fail: a 5xx (the backend's or the proxy's) or a broken request");
  e.family("mup_request_retries_total", "counter",
           "Attempts on a backend of this version that failed and were retried on another");
  e.family("mup_request_duration_seconds", "histogram", "Time to answer a request, in seconds");
  e.family("mup_connections", "gauge", "Open upstream connections to the version's instances");
  e.family("mup_in_flight_requests", "gauge", "Requests being answered now");
  std::vector<double> bounds;
  for (uint64_t b : traffic::latency_bounds_us()) bounds.push_back(static_cast<double>(b) / 1e6);
  for (const auto& [name, svc] : field(stats, "services").items()) {
    for (const auto& [version, vs] : field(svc, "versions").items()) {
      const Labels l = {{"component", name}, {"version", version}};
      double classified = 0;
      for (const char* code : {"1xx", "2xx", "3xx", "4xx", "5xx"}) {
        double n = num_of(field(vs, "responses"), code);
        classified += n;
        Labels lc = l;
        lc.emplace_back("code", code);
        e.add("mup_requests_total", lc, n);
      }
      if (double none = num_of(vs, "requests") - classified; none > 0) {
        Labels lc = l;
        lc.emplace_back("code", "none");
        e.add("mup_requests_total", lc, none);
      }
      e.add("mup_request_failures_total", l, num_of(vs, "failed"));
      e.add("mup_request_retries_total", l, num_of(vs, "retries"));
      LatencySnapshot s = latency_snapshot(vs, 0);
      const double sum_us = s.has_sum ? static_cast<double>(s.sum_us) : approx_sum_us(s.counts);
      e.histogram("mup_request_duration_seconds", l, bounds, s.counts, sum_us / 1e6);
      e.add("mup_connections", l, num_of(vs, "connections"));
      e.add("mup_in_flight_requests", l, num_of(vs, "in_flight"));
    }
  }
}

void instances(Exposition& e, const json& services) {
  e.family("mup_traffic_weight", "gauge", "Share of new requests routed to the version (0-100)");
  e.family("mup_instance_cpu_percent", "gauge",
           "CPU use of the instance's main process, in percent of one CPU");
  e.family("mup_instance_memory_bytes", "gauge", "Resident memory of the instance, in bytes");
  e.family("mup_instance_ready", "gauge", "1 when the instance passed its readiness check");
  for (const auto& svc : field(services, "services")) {
    const std::string name = str_of(svc, "name");
    for (const auto& v : field(svc, "versions")) {
      const std::string version = str_of(v, "version");
      e.add("mup_traffic_weight", {{"component", name}, {"version", version}}, int_of(v, "weight"));
      for (const auto& i : field(v, "instances")) {
        const Labels l = {{"component", name}, {"version", version}, {"instance", str_of(i, "id")}};
        e.add("mup_instance_cpu_percent", l, num_of(i, "cpu_percent"));
        e.add("mup_instance_memory_bytes", l, num_of(i, "rss_bytes"));
        e.add("mup_instance_ready", l, str_of(i, "state") == "ready" ? 1 : 0);
      }
    }
  }
}

void health(Exposition& e, const json& report) {
  e.family("mup_health_score", "gauge",
           "Health score 0-100 of the version (docs/agent.md); absent while unknown");
  e.family("mup_health_alert_level", "gauge", "Alert level: 0 ok, 1 warning, 2 critical");
  for (const auto& c : field(report, "components")) {
    for (const auto& v : field(c, "versions")) {
      const Labels l = {{"component", str_of(c, "name")}, {"version", str_of(v, "version")}};
      if (field(v, "score").is_number()) e.add("mup_health_score", l, v["score"].get<double>());
      const std::string a = str_of(v, "alert", "ok");
      e.add("mup_health_alert_level", l, a == "critical" ? 2 : a == "warning" ? 1 : 0);
    }
  }
}

void deployments(Exposition& e, const std::vector<DeploymentFact>& ds, const json& services) {
  e.family("mup_deployment_info", "gauge",
           "The latest deployment of each component: 1, with its id, strategy and state");
  e.family("mup_rollbacks_total", "counter", "Deployments of the component that were rolled back");
  e.family("mup_rollback_decision_statistic", "gauge",
           "The statistic the rollback judge decided on, per deployment and metric");
  e.family("mup_rollback_decision_threshold", "gauge",
           "The threshold the judge compared its statistic with");
  std::map<std::string, uint64_t> rollbacks;
  for (const auto& svc : field(services, "services")) rollbacks[str_of(svc, "name")] = 0;
  std::set<std::string> latest;
  for (const auto& d : ds) {
    rollbacks[d.component] += d.state == "rolled-back" ? 1 : 0;
    if (latest.insert(d.component).second)
      e.add("mup_deployment_info",
            {{"component", d.component},
             {"id", std::to_string(d.id)},
             {"strategy", d.strategy},
             {"state", d.state}},
            1);
    if (!d.decision.is_object()) continue;
    const Labels l = {{"component", d.component},
                      {"deployment", std::to_string(d.id)},
                      {"metric", str_of(d.decision, "metric")}};
    if (field(d.decision, "statistic").is_number())
      e.add("mup_rollback_decision_statistic", l, d.decision["statistic"].get<double>());
    if (field(d.decision, "threshold").is_number())
      e.add("mup_rollback_decision_threshold", l, d.decision["threshold"].get<double>());
  }
  for (const auto& [c, n] : rollbacks) e.add("mup_rollbacks_total", {{"component", c}}, n);
}

}  // namespace

std::string render_node_metrics(const NodeMetricsInput& in) {
  Exposition e;
  traffic(e, in.stats);
  instances(e, in.services);
  health(e, in.health);
  deployments(e, in.deployments, in.services);
  return e.text();
}

}  // namespace mup::health
