#include "health/window.hpp"

#include <algorithm>
#include <cmath>

#include "health/json_read.hpp"
#include "traffic/stats.hpp"

namespace mup::health {

using nlohmann::json;

namespace {
double round3(double v) {
  return std::round(v * 1000) / 1000;
}
}  // namespace

LatencySnapshot latency_snapshot(const json& vs, int64_t at_ms) {
  LatencySnapshot s;
  s.at_ms = at_ms;
  s.counts.assign(traffic::kLatencyBounds + 1, 0);
  if (!vs.is_object()) return s;
  const json h = field(vs, "histogram");
  if (h.contains("counts") && h["counts"].is_array())
    for (size_t i = 0; i < s.counts.size() && i < h["counts"].size(); ++i)
      if (h["counts"][i].is_number_unsigned()) s.counts[i] = h["counts"][i].get<uint64_t>();
  if (h.contains("sum_us") && h["sum_us"].is_number_unsigned()) {
    s.sum_us = h["sum_us"].get<uint64_t>();
    s.has_sum = true;
  }
  const json l = field(vs, "latency_ms");
  if (l.contains("max") && l["max"].is_number())
    s.max_us = static_cast<uint64_t>(std::max(0.0, l["max"].get<double>() * 1000));
  return s;
}

void traffic_window(const json& vs, int64_t now_s, int window_s, HealthMetrics& m) {
  m.window_s = window_s;
  m.requests = m.failed = 0;
  if (!vs.is_object()) return;
  m.active_connections = int_of(vs, "connections");
  m.in_flight = int_of(vs, "in_flight");
  const json ps = field(vs, "per_second");
  for (const auto& s : ps) {
    if (!s.is_object()) continue;
    const int64_t t = int_of(s, "t");
    if (t > now_s || t <= now_s - window_s) continue;
    m.requests += uint_of(s, "requests");
    m.failed += uint_of(s, "failed");
  }
  m.error_rate = 0;
  if (m.requests) m.error_rate = static_cast<double>(m.failed) / static_cast<double>(m.requests);
}

double approx_sum_us(const std::vector<uint64_t>& counts) {
  const auto& b = traffic::latency_bounds_us();
  double sum = 0;
  for (size_t i = 0; i < counts.size() && i <= traffic::kLatencyBounds; ++i) {
    double lo = i == 0 ? 0 : static_cast<double>(b[i - 1]);
    double hi = i < traffic::kLatencyBounds ? static_cast<double>(b[i]) : lo;
    sum += static_cast<double>(counts[i]) * (lo + hi) / 2;
  }
  return sum;
}

void latency_window(const LatencySnapshot* older, const LatencySnapshot& now, HealthMetrics& m) {
  std::vector<uint64_t> d = now.counts;
  bool reset = false;
  if (older && older->counts.size() == d.size())
    for (size_t i = 0; i < d.size(); ++i) reset = reset || older->counts[i] > d[i];
  const bool diff = older && !reset && older->counts.size() == d.size();
  if (diff)
    for (size_t i = 0; i < d.size(); ++i) d[i] -= older->counts[i];
  uint64_t total = 0;
  size_t top = 0;
  for (size_t i = 0; i < d.size(); ++i)
    if (d[i]) total += d[i], top = i;
  m.has_latency = total > 0;
  m.response_time_ms = {};
  if (!total) return;
  const auto& b = traffic::latency_bounds_us();
  // The highest non-empty bucket bounds every quantile (the overflow one: the max seen).
  const uint64_t cap = top < traffic::kLatencyBounds ? b[top] : std::max(now.max_us, b.back());
  auto q = [&](double p) { return round3(traffic::quantile_us(d.data(), p, cap) / 1000); };
  m.response_time_ms.p50 = q(0.50);
  m.response_time_ms.p95 = q(0.95);
  m.response_time_ms.p99 = q(0.99);
  double sum = 0;
  if (now.has_sum && (!diff || older->has_sum))
    sum = static_cast<double>(now.sum_us - (diff ? older->sum_us : 0));
  else
    sum = approx_sum_us(d);
  m.response_time_ms.mean = round3(sum / static_cast<double>(total) / 1000);
}

}  // namespace mup::health
