// Per-version traffic statistics: what the health monitor and the rollback judge read.
//
// One VersionStats per (service, version), shared by every backend of that version. The
// hot path (on_start / on_finish / on_retry / connection gauges) is lock-free: relaxed
// atomic counters, a fixed latency histogram with log-spaced bounds (25 µs * 2^(i/2), 48
// bounds up to ~4.9 min, plus an overflow bucket), and a ring of the last 120 wall-clock
// seconds, each slot stamped with its second and reset by whichever thread first records
// into it in a new second. Readers take a snapshot without stopping writers, so a snapshot
// taken during traffic may be off by the requests finishing while it is taken, never more.
//
// What is counted (docs/agent.md, VersionStats):
//   requests   requests finished (answered, failed or broken) by a backend of this version
//   responses  by status class of what the client was sent, proxy-made 502/503 included
//   errors     proxy-made 502/503 and connections broken mid-request
//   failed     what users saw fail: a 5xx (the backend's or the proxy's) or a broken request
//              (the rollback judge's error count)
//   retries    attempts on a backend of this version that failed and were retried elsewhere
//   in_flight, connections (open upstream connections): gauges
// Requests answered 503 because no backend was routable have no version: they are counted
// under the version "-".
//
// StatsRegistry maps (service, version) to VersionStats; get() takes a mutex and is for the
// control plane (building a route table), never per request. All of it is thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "core/clock.hpp"

namespace mup::traffic {

inline constexpr size_t kLatencyBounds = 48;
inline constexpr size_t kPerSecondSlots = 120;
// The version under which unroutable requests are counted.
inline constexpr const char* kNoVersion = "-";

// Upper bounds of the latency buckets in µs (bucket i holds latencies <= bound i and
// > bound i-1; the last bucket, index kLatencyBounds, holds the rest).
const std::array<uint64_t, kLatencyBounds>& latency_bounds_us();
size_t latency_bucket(uint64_t us);
// The q-quantile (0..1) in µs from bucket counts (kLatencyBounds + 1 of them), linearly
// interpolated inside the bucket and capped at `max_us`; 0 when there are no samples.
double quantile_us(const uint64_t* counts, double q, uint64_t max_us);

class VersionStats {
 public:
  explicit VersionStats(const Clock& clock);

  void on_start() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void on_end() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }
  // A finished request: `status` is the HTTP status the client was sent (0: none was sent,
  // or a TCP connection); `error` marks proxy-made and broken ones; latency is recorded
  // into the histograms when `record_latency`.
  void on_finish(int status, bool error, std::chrono::nanoseconds latency,
                 bool record_latency = true);
  void on_retry() { retries_.fetch_add(1, std::memory_order_relaxed); }
  void add_connections(int64_t d) { connections_.fetch_add(d, std::memory_order_relaxed); }

  nlohmann::json to_json() const;

 private:
  struct Slot {
    std::atomic<int64_t> second{-1};
    std::atomic<uint32_t> requests{0}, c2xx{0}, c4xx{0}, c5xx{0}, errors{0}, failed{0};
    std::atomic<uint32_t> hist[kLatencyBounds + 1] = {};
    std::atomic<uint64_t> max_us{0};
  };
  Slot& slot_for(int64_t second);

  const Clock& clock_;
  std::atomic<uint64_t> requests_{0}, errors_{0}, failed_{0}, retries_{0};
  std::atomic<uint64_t> classes_[5] = {};  // 1xx..5xx
  std::atomic<int64_t> in_flight_{0}, connections_{0};
  std::atomic<uint64_t> hist_[kLatencyBounds + 1] = {};
  std::atomic<uint64_t> max_us_{0};
  std::atomic<uint64_t> sum_us_{0};  // of the latencies in hist_ (histogram.sum_us)
  std::unique_ptr<Slot[]> ring_;
};

class StatsRegistry {
 public:
  explicit StatsRegistry(const Clock& clock) : clock_(clock) {}
  // The stats of (service, version), created on first use.
  std::shared_ptr<VersionStats> get(const std::string& service, const std::string& version);
  // Forgets a service's stats (its route was removed).
  void drop(const std::string& service);
  // {"services":{name:{"versions":{version:VersionStats}}}}
  nlohmann::json to_json() const;

 private:
  const Clock& clock_;
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, std::shared_ptr<VersionStats>>> services_;
};

}  // namespace mup::traffic
