// The agent's /metrics: everything a node exposes to Prometheus, built from the same JSON
// the API answers (no second source of truth). Names and labels (README, "Metrics"):
//
//   mup_requests_total{component,version,code}        counter  code: 1xx..5xx; "none" for
//                                                              requests without a status
//                                                              (TCP mode, broken)
//   mup_request_failures_total{component,version}     counter  5xx or broken (the judge's)
//   mup_request_retries_total{component,version}      counter
//   mup_request_duration_seconds{component,version}   histogram (_bucket{le}, _sum, _count)
//   mup_connections{component,version}                gauge    open upstream connections
//   mup_in_flight_requests{component,version}         gauge
//   mup_traffic_weight{component,version}             gauge    0..100
//   mup_instance_cpu_percent{component,version,instance}  gauge of one CPU
//   mup_instance_memory_bytes{component,version,instance} gauge RSS
//   mup_instance_ready{component,version,instance}    gauge    1 ready, 0 not
//   mup_health_score{component,version}               gauge    0..100; absent while unknown
//   mup_health_alert_level{component,version}         gauge    0 ok, 1 warning, 2 critical
//   mup_deployment_info{component,id,strategy,state}  gauge 1  each component's latest
//   mup_rollbacks_total{component}                    counter  deployments now rolled-back
//   mup_rollback_decision_statistic{component,deployment,metric}  gauge, and
//   mup_rollback_decision_threshold{component,deployment,metric}  gauge: for each
//       deployment whose record carries the judge's decision (detail.decision)
//
// Pure: a function of its inputs. Thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mup::health {

// What the metrics need of a deployment row (state::DeploymentRow), newest first.
struct DeploymentFact {
  int64_t id = 0;
  std::string component, strategy, state;
  nlohmann::json decision;  // detail["decision"] when present, else null
};

struct NodeMetricsInput {
  nlohmann::json stats;     // the proxy's GET /v1/stats (null when it does not answer)
  nlohmann::json services;  // the agent's GET /v1/services
  nlohmann::json health;    // Monitor::report()
  std::vector<DeploymentFact> deployments;
};

std::string render_node_metrics(const NodeMetricsInput& in);

}  // namespace mup::health
