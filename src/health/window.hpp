// A version's traffic over the health window, from the proxy's VersionStats JSON
// (traffic/stats.hpp). Pure functions.
//
// - Requests, failures and the error rate come from the proxy's per-second ring: the
//   seconds in (now_s - window_s, now_s], so the window is exact from the first look, also
//   right after the agent started.
// - Response times (mean, p50, p95, p99) come from the cumulative latency histogram,
//   differenced between two snapshots the Monitor took `window_s` apart (or fewer seconds
//   while it has not run that long; with a single snapshot, everything since the proxy
//   started). A histogram that went down (the proxy restarted) counts from zero. The mean
//   uses histogram.sum_us; a proxy too old to report it gets the bucket midpoints' estimate.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "health/score.hpp"

namespace mup::health {

struct LatencySnapshot {
  int64_t at_ms = 0;             // monotonic
  std::vector<uint64_t> counts;  // traffic::kLatencyBounds + 1 buckets
  uint64_t sum_us = 0;
  bool has_sum = false;
  uint64_t max_us = 0;
};

LatencySnapshot latency_snapshot(const nlohmann::json& version_stats, int64_t at_ms);
// Fills requests, failed, error_rate, window_s, active_connections, in_flight of `m`.
void traffic_window(const nlohmann::json& version_stats, int64_t now_s, int window_s,
                    HealthMetrics& m);
// Fills has_latency and response_time_ms of `m` from the samples between `older` (may be
// null) and `now`.
void latency_window(const LatencySnapshot* older, const LatencySnapshot& now, HealthMetrics& m);
// The sum of latencies the buckets hold, estimated by their midpoints (the overflow bucket at
// its lower bound), in µs.
double approx_sum_us(const std::vector<uint64_t>& counts);

}  // namespace mup::health
