#include "traffic/stats.hpp"

#include <algorithm>
#include <cmath>

namespace mup::traffic {

using nlohmann::json;

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

void atomic_max(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load(kRelaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, kRelaxed)) {
  }
}

double round3(double v) {
  return std::round(v * 1000.0) / 1000.0;
}

}  // namespace

const std::array<uint64_t, kLatencyBounds>& latency_bounds_us() {
  static const std::array<uint64_t, kLatencyBounds> bounds = [] {
    std::array<uint64_t, kLatencyBounds> b{};
    for (size_t i = 0; i < kLatencyBounds; ++i)
      b[i] = static_cast<uint64_t>(std::llround(25.0 * std::pow(2.0, static_cast<double>(i) / 2)));
    return b;
  }();
  return bounds;
}

size_t latency_bucket(uint64_t us) {
  const auto& b = latency_bounds_us();
  return static_cast<size_t>(std::lower_bound(b.begin(), b.end(), us) - b.begin());
}

double quantile_us(const uint64_t* counts, double q, uint64_t max_us) {
  uint64_t total = 0;
  for (size_t i = 0; i <= kLatencyBounds; ++i) total += counts[i];
  if (total == 0) return 0;
  // The rank of the sample wanted (1-based), then the bucket holding it.
  double rank = std::max(1.0, std::ceil(q * static_cast<double>(total)));
  const auto& b = latency_bounds_us();
  uint64_t seen = 0;
  for (size_t i = 0; i <= kLatencyBounds; ++i) {
    if (counts[i] == 0) continue;
    if (static_cast<double>(seen + counts[i]) >= rank) {
      double lo = i == 0 ? 0.0 : static_cast<double>(b[i - 1]);
      double hi = i == kLatencyBounds ? static_cast<double>(std::max<uint64_t>(max_us, b.back()))
                                      : static_cast<double>(b[i]);
      double frac = (rank - static_cast<double>(seen)) / static_cast<double>(counts[i]);
      return std::min(lo + (hi - lo) * frac, static_cast<double>(max_us));
    }
    seen += counts[i];
  }
  return static_cast<double>(max_us);
}

VersionStats::VersionStats(const Clock& clock)
    : clock_(clock), ring_(std::make_unique<Slot[]>(kPerSecondSlots)) {}

VersionStats::Slot& VersionStats::slot_for(int64_t second) {
  Slot& s =
      ring_[static_cast<size_t>(((second % kPerSecondSlots) + kPerSecondSlots) % kPerSecondSlots)];
  int64_t cur = s.second.load(std::memory_order_acquire);
  // The first recorder of a new second claims the slot (-2 while it resets it); the others
  // wait the few nanoseconds that takes. A slot is reused only 120 s later, so a recorder
  // never writes into a slot claimed for a later second.
  while (cur != second) {
    if (cur == -2 || cur > second) {
      if (cur > second) return s;  // a clock step back: count into the newer second
      cur = s.second.load(std::memory_order_acquire);
      continue;
    }
    if (s.second.compare_exchange_weak(cur, -2, std::memory_order_acq_rel)) {
      s.requests.store(0, kRelaxed);
      s.c2xx.store(0, kRelaxed);
      s.c4xx.store(0, kRelaxed);
      s.c5xx.store(0, kRelaxed);
      s.errors.store(0, kRelaxed);
      s.failed.store(0, kRelaxed);
      for (auto& h : s.hist) h.store(0, kRelaxed);
      s.max_us.store(0, kRelaxed);
      s.second.store(second, std::memory_order_release);
      break;
    }
  }
  return s;
}

void VersionStats::on_finish(int status, bool error, std::chrono::nanoseconds latency,
                             bool record_latency) {
  requests_.fetch_add(1, kRelaxed);
  int cls = status / 100;
  if (cls >= 1 && cls <= 5) classes_[cls - 1].fetch_add(1, kRelaxed);
  if (error) errors_.fetch_add(1, kRelaxed);
  const bool failed = cls == 5 || error;
  if (failed) failed_.fetch_add(1, kRelaxed);
  uint64_t us = static_cast<uint64_t>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(latency).count()));
  size_t bucket = latency_bucket(us);
  if (record_latency) {
    hist_[bucket].fetch_add(1, kRelaxed);
    sum_us_.fetch_add(us, kRelaxed);
    atomic_max(max_us_, us);
  }
  Slot& s = slot_for(clock_.wall_s());
  s.requests.fetch_add(1, kRelaxed);
  if (cls == 2) s.c2xx.fetch_add(1, kRelaxed);
  if (cls == 4) s.c4xx.fetch_add(1, kRelaxed);
  if (cls == 5) s.c5xx.fetch_add(1, kRelaxed);
  if (error) s.errors.fetch_add(1, kRelaxed);
  if (failed) s.failed.fetch_add(1, kRelaxed);
  if (record_latency) {
    s.hist[bucket].fetch_add(1, kRelaxed);
    atomic_max(s.max_us, us);
  }
}

json VersionStats::to_json() const {
  uint64_t counts[kLatencyBounds + 1];
  for (size_t i = 0; i <= kLatencyBounds; ++i) counts[i] = hist_[i].load(kRelaxed);
  uint64_t max_us = max_us_.load(kRelaxed);
  json j;
  j["requests"] = requests_.load(kRelaxed);
  j["responses"] = {{"1xx", classes_[0].load(kRelaxed)},
                    {"2xx", classes_[1].load(kRelaxed)},
                    {"3xx", classes_[2].load(kRelaxed)},
                    {"4xx", classes_[3].load(kRelaxed)},
                    {"5xx", classes_[4].load(kRelaxed)}};
  j["errors"] = errors_.load(kRelaxed);
  j["failed"] = failed_.load(kRelaxed);
  j["retries"] = retries_.load(kRelaxed);
  j["in_flight"] = in_flight_.load(kRelaxed);
  j["connections"] = connections_.load(kRelaxed);
  j["latency_ms"] = {{"p50", round3(quantile_us(counts, 0.50, max_us) / 1000)},
                     {"p90", round3(quantile_us(counts, 0.90, max_us) / 1000)},
                     {"p99", round3(quantile_us(counts, 0.99, max_us) / 1000)},
                     {"max", round3(static_cast<double>(max_us) / 1000)}};
  j["histogram"] = {{"bounds_us", latency_bounds_us()},
                    {"counts", std::vector<uint64_t>(counts, counts + kLatencyBounds + 1)},
                    {"sum_us", sum_us_.load(kRelaxed)}};
  json per_second = json::array();
  int64_t now = clock_.wall_s();
  for (int64_t t = now - static_cast<int64_t>(kPerSecondSlots) + 1; t <= now; ++t) {
    const Slot& s =
        ring_[static_cast<size_t>(((t % kPerSecondSlots) + kPerSecondSlots) % kPerSecondSlots)];
    json e = {{"t", t},      {"requests", 0}, {"2xx", 0},      {"4xx", 0},     {"5xx", 0},
              {"errors", 0}, {"failed", 0},   {"p50_ms", 0.0}, {"p99_ms", 0.0}};
    if (s.second.load(std::memory_order_acquire) == t) {
      uint64_t sc[kLatencyBounds + 1];
      for (size_t i = 0; i <= kLatencyBounds; ++i) sc[i] = s.hist[i].load(kRelaxed);
      uint64_t smax = s.max_us.load(kRelaxed);
      e["requests"] = s.requests.load(kRelaxed);
      e["2xx"] = s.c2xx.load(kRelaxed);
      e["4xx"] = s.c4xx.load(kRelaxed);
      e["5xx"] = s.c5xx.load(kRelaxed);
      e["errors"] = s.errors.load(kRelaxed);
      e["failed"] = s.failed.load(kRelaxed);
      e["p50_ms"] = round3(quantile_us(sc, 0.50, smax) / 1000);
      e["p99_ms"] = round3(quantile_us(sc, 0.99, smax) / 1000);
    }
    per_second.push_back(std::move(e));
  }
  j["per_second"] = std::move(per_second);
  return j;
}

std::shared_ptr<VersionStats> StatsRegistry::get(const std::string& service,
                                                 const std::string& version) {
  std::lock_guard lock(mu_);
  auto& slot = services_[service][version];
  if (!slot) slot = std::make_shared<VersionStats>(clock_);
  return slot;
}

void StatsRegistry::drop(const std::string& service) {
  std::lock_guard lock(mu_);
  services_.erase(service);
}

json StatsRegistry::to_json() const {
  std::map<std::string, std::map<std::string, std::shared_ptr<VersionStats>>> copy;
  {
    std::lock_guard lock(mu_);
    copy = services_;
  }
  json services = json::object();
  for (const auto& [name, versions] : copy) {
    json v = json::object();
    for (const auto& [version, stats] : versions) v[version] = stats->to_json();
    services[name] = {{"versions", std::move(v)}};
  }
  return {{"services", std::move(services)}};
}

}  // namespace mup::traffic
