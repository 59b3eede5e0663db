// What a version's health is: its metrics (the seed's health_metrics_t), a score 0-100, an
// alert level and a trend, from thresholds (thresholds.hpp). Pure functions: no clock, no
// I/O, so they are tested on synthetic inputs; the Monitor (monitor.hpp) feeds them.
//
// The score (docs/agent.md, "Health"): start at 100 and subtract weighted penalties, each
// weight x severity, where for a value v against its threshold T
//     severity(v, T) = 0                             when v <= T
//                    = min(1, 0.5 + 0.5 (v - T) / T) when v > T  (half at T, all at 2T)
//   error rate (failed / requests in the window) vs error_rate  weight 40
//   p99 response time in the window vs p99_ms                   weight 25
//   CPU % of the busiest instance vs cpu_percent                weight 10
//   RSS of the largest instance vs memory_bytes                 weight 10
//   instances not ready: 30 x (not ready / instances); a version with traffic weight > 0
//     and no instance at all counts as none ready               weight 30
//   failed probes: 15 x (failed / probed)                       weight 15
// clamped to [0, 100], rounded to 0.1. The traffic penalties need at least min_requests
// requests in the window; with fewer, the score is null (JSON null) and the status is
// "unknown": a version nobody uses is never reported healthy as if it were.
//
// Alerts, per metric: warning when v > T, critical when v >= 2T (error rate, p99, CPU,
// memory); readiness: warning when some instance is not ready, critical when none is;
// probes: warning when one failed, critical when all failed. The version's level is the
// worst of its alerts; its status: critical -> "unhealthy", warning -> "degraded", ok ->
// "healthy" when the traffic is known, else "unknown".
//
// The trend: the least-squares slope of the per-second score (the error-rate and p99
// penalties of each second with traffic, from the proxy's per_second ring) over the last
// `window_s` seconds before the current one, in points per minute. Fewer than 5 such seconds:
// direction "unknown"; |slope| < 5 points/min: "stable"; else "improving" or "degrading".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "health/thresholds.hpp"

namespace mup::health {

struct ResponseTimeMs {
  double mean = 0, p50 = 0, p95 = 0, p99 = 0;
};

// One version of one component over the monitor's window.
struct HealthMetrics {
  std::string component, version;
  int weight = 0;         // its traffic weight at the proxy
  double window_s = 0;    // how many seconds the traffic numbers cover
  uint64_t requests = 0;  // finished in the window
  uint64_t failed = 0;    // of them, what users saw fail (a 5xx or a broken request)
  double error_rate = 0;  // failed / requests (0 when no requests)
  bool has_latency = false;
  ResponseTimeMs response_time_ms;
  int64_t active_connections = 0, in_flight = 0;  // now
  int instances = 0, instances_ready = 0;
  double cpu_percent = 0;             // the busiest instance, of one CPU
  uint64_t memory_bytes = 0;          // the largest instance's RSS
  int probes = 0, probes_failed = 0;  // the last probe of each ready instance
};

enum class Level { ok, warning, critical };
std::string level_name(Level l);  // "ok" | "warning" | "critical"

struct Alert {
  std::string metric;  // "error_rate", "p99_ms", "cpu_percent", "memory_bytes", "ready", "probes"
  Level level = Level::ok;
  double value = 0, threshold = 0;
  std::string message;  // "error rate 12.0% over 5.0% (120 of 1000 requests in 60 s)"
};

struct Assessment {
  std::optional<double> score;  // nullopt: unknown (too little traffic)
  Level level = Level::ok;
  std::string status;  // "healthy" | "degraded" | "unhealthy" | "unknown"
  std::vector<Alert> alerts;
};

double severity(double value, double threshold);
Assessment assess(const HealthMetrics& m, const Thresholds& t);

struct Trend {
  std::string direction = "unknown";  // "improving" | "stable" | "degrading" | "unknown"
  double slope_per_min = 0;           // score points per minute
  int samples = 0;                    // seconds with traffic used
  int window_s = 60;
};
// `per_second` is VersionStats' ring ([{"t","requests","failed","p99_ms",...}]); `now_s` the
// current second (excluded: it is still filling).
Trend trend_of(const nlohmann::json& per_second, const Thresholds& t, int64_t now_s,
               int window_s = 60);

nlohmann::json to_json(const HealthMetrics& m);
nlohmann::json to_json(const Assessment& a);
nlohmann::json to_json(const Trend& t);

}  // namespace mup::health
