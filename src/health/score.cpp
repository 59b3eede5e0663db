#include "health/score.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "health/json_read.hpp"

namespace mup::health {

using nlohmann::json;

namespace {

constexpr double kErrorWeight = 40, kLatencyWeight = 25, kCpuWeight = 10, kMemoryWeight = 10,
                 kReadyWeight = 30, kProbeWeight = 15;
constexpr double kStableSlopePerMin = 5;
constexpr int kMinTrendSamples = 5;

double round1(double v) {
  return std::round(v * 10) / 10;
}

std::string fmt(const char* f, double a, double b) {
  char buf[160];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

// The alert of a "lower is better" metric against its threshold, if any.
void check(std::vector<Alert>& out, const std::string& metric, double v, double t,
           std::string message) {
  if (!(v > t)) return;
  out.push_back({metric, v >= 2 * t ? Level::critical : Level::warning, v, t, std::move(message)});
}

}  // namespace

std::string level_name(Level l) {
  switch (l) {
    case Level::ok: return "ok";
    case Level::warning: return "warning";
    case Level::critical: return "critical";
  }
  return "ok";
}

double severity(double value, double threshold) {
  if (!(value > threshold) || threshold <= 0) return 0;
  return std::min(1.0, 0.5 + 0.5 * (value - threshold) / threshold);
}

Assessment assess(const HealthMetrics& m, const Thresholds& t) {
  Assessment a;
  const bool traffic_known = m.requests >= t.min_requests;
  double penalty = 0;
  if (traffic_known) {
    penalty += kErrorWeight * severity(m.error_rate, t.error_rate);
    check(a.alerts, "error_rate", m.error_rate, t.error_rate,
          fmt("error rate %.1f%% over %.1f%%", m.error_rate * 100, t.error_rate * 100) + " (" +
              std::to_string(m.failed) + " of " + std::to_string(m.requests) + " requests)");
    if (m.has_latency) {
      penalty += kLatencyWeight * severity(m.response_time_ms.p99, t.p99_ms);
      check(a.alerts, "p99_ms", m.response_time_ms.p99, t.p99_ms,
            fmt("p99 response time %.1f ms over %.1f ms", m.response_time_ms.p99, t.p99_ms));
    }
  }
  if (m.instances > 0) {
    penalty += kCpuWeight * severity(m.cpu_percent, t.cpu_percent);
    check(a.alerts, "cpu_percent", m.cpu_percent, t.cpu_percent,
          fmt("CPU %.1f%% over %.1f%% (busiest instance)", m.cpu_percent, t.cpu_percent));
    const double mem = static_cast<double>(m.memory_bytes),
                 lim = static_cast<double>(t.memory_bytes);
    penalty += kMemoryWeight * severity(mem, lim);
    check(a.alerts, "memory_bytes", mem, lim,
          fmt("memory %.1f MiB over %.1f MiB (largest instance)", mem / 1048576, lim / 1048576));
  }
  if (m.instances > 0 || m.weight > 0) {
    const int total = std::max(m.instances, 1);
    const int not_ready = total - std::min(m.instances_ready, total);
    if (not_ready > 0) {
      penalty += kReadyWeight * not_ready / total;
      const bool none = m.instances_ready == 0;
      a.alerts.push_back({"ready", none ? Level::critical : Level::warning,
                          static_cast<double>(m.instances_ready), static_cast<double>(m.instances),
                          m.instances == 0 ? "no instance runs, but the version has traffic weight"
                                           : std::to_string(m.instances_ready) + " of " +
                                                 std::to_string(m.instances) + " instances ready"});
    }
  }
  if (m.probes > 0 && m.probes_failed > 0) {
    penalty += kProbeWeight * m.probes_failed / m.probes;
    a.alerts.push_back(
        {"probes", m.probes_failed >= m.probes ? Level::critical : Level::warning,
         static_cast<double>(m.probes_failed), static_cast<double>(m.probes),
         std::to_string(m.probes_failed) + " of " + std::to_string(m.probes) + " probes failed"});
  }
  for (const auto& al : a.alerts) a.level = std::max(a.level, al.level);
  if (traffic_known) a.score = round1(std::clamp(100 - penalty, 0.0, 100.0));
  a.status = a.level == Level::critical  ? "unhealthy"
             : a.level == Level::warning ? "degraded"
             : traffic_known             ? "healthy"
                                         : "unknown";
  return a;
}

Trend trend_of(const json& per_second, const Thresholds& t, int64_t now_s, int window_s) {
  Trend tr;
  tr.window_s = window_s;
  if (!per_second.is_array()) return tr;
  std::vector<std::pair<double, double>> pts;
  for (const auto& s : per_second) {
    if (!s.is_object()) continue;
    const int64_t at = int_of(s, "t");
    const double req = num_of(s, "requests");
    if (at >= now_s || at < now_s - window_s || req <= 0) continue;
    const double err = num_of(s, "failed") / req;
    const double score = 100 - kErrorWeight * severity(err, t.error_rate) -
                         kLatencyWeight * severity(num_of(s, "p99_ms"), t.p99_ms);
    pts.emplace_back(static_cast<double>(at - now_s), score);
  }
  tr.samples = static_cast<int>(pts.size());
  if (tr.samples < kMinTrendSamples) return tr;
  double mx = 0, my = 0;
  for (auto [x, y] : pts) mx += x, my += y;
  mx /= pts.size();
  my /= pts.size();
  double sxy = 0, sxx = 0;
  for (auto [x, y] : pts) sxy += (x - mx) * (y - my), sxx += (x - mx) * (x - mx);
  tr.slope_per_min = sxx > 0 ? round1(sxy / sxx * 60) : 0;
  tr.direction = std::abs(tr.slope_per_min) < kStableSlopePerMin ? "stable"
                 : tr.slope_per_min > 0                          ? "improving"
                                                                 : "degrading";
  return tr;
}

json to_json(const HealthMetrics& m) {
  json rt = nullptr;
  if (m.has_latency)
    rt = {{"mean", m.response_time_ms.mean},
          {"p50", m.response_time_ms.p50},
          {"p95", m.response_time_ms.p95},
          {"p99", m.response_time_ms.p99}};
  return {{"window_s", m.window_s},
          {"requests", m.requests},
          {"failed", m.failed},
          {"error_rate", m.error_rate},
          {"response_time_ms", rt},
          {"active_connections", m.active_connections},
          {"in_flight", m.in_flight},
          {"instances", m.instances},
          {"instances_ready", m.instances_ready},
          {"cpu_percent", m.cpu_percent},
          {"memory_bytes", m.memory_bytes},
          {"probes", m.probes},
          {"probes_failed", m.probes_failed}};
}

json to_json(const Assessment& a) {
  json alerts = json::array();
  for (const auto& al : a.alerts)
    alerts.push_back({{"metric", al.metric},
                      {"level", level_name(al.level)},
                      {"value", al.value},
                      {"threshold", al.threshold},
                      {"message", al.message}});
  return {{"score", a.score ? json(*a.score) : json(nullptr)},
          {"status", a.status},
          {"alert", level_name(a.level)},
          {"alerts", alerts}};
}

json to_json(const Trend& t) {
  return {{"direction", t.direction},
          {"slope_per_min", t.slope_per_min},
          {"samples", t.samples},
          {"window_s", t.window_s}};
}

}  // namespace mup::health
