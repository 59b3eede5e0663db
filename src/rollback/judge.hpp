// The rollback judge: decides, from the traffic a new version served, whether it is worse
// than the old one (roll back) or has shown enough to pass a step (docs/agent.md, "rollback").
//
// A Policy (the version's mup-service.toml [rollback] table, overridden per deployment) lists
// triggers: a metric (error rate, or a latency quantile p50/p95/p99) and an algorithm:
//   - sequential (default): an anytime-valid test (rollback/sequential.hpp). Error rate:
//     with the old version serving beside the new one (canary, blue-green's warm set) a
//     TwoSampleTest on the same traffic; else a BaselineTest against the old version's
//     counts recorded before the switch. Latency quantile q: the bound b is the reference's
//     (the baseline's, else the old side's) q-quantile plus latency_tolerance_ms, rounded up
//     to a histogram bound (up to 41% above: the buckets are 2^(1/2) apart); a new version
//     whose q-quantile is at most b has at most a fraction 1-q of requests slower than b, so
//     a BaselineTest of H0: p <= 1-q on the share of slower requests. The tolerance keeps
//     sub-millisecond noise from ever rolling back. A node slower than when the baseline
//     was recorded (a busy node, another tenant) also reads as "slower than b": so while
//     the old version serves beside the new one (a canary or rolling step), a second test
//     must agree, a TwoSampleTest on the shares of both sides' requests slower than b, on
//     the same traffic, which a load change moves alike. Each test latches once it crossed
//     its threshold; the rollback needs both (an intersection-union test: valid at alpha
//     when either null holds, since it can reject only if each test did). Alone (immediate,
//     blue-green), only the baseline test judges the latency, load changes included.
//     alpha is split across the critical sequential triggers (Bonferroni; an error-rate
//     trigger weighs 4, a latency one 1), and an error-rate baseline test spends a quarter
//     of its share on the baseline's confidence bound, so the probability of rolling back a
//     version no worse than the old (on the latency: by more than the tolerance) is <= alpha
//     per deployment, however long it is watched.
//   - threshold (Argo/Flagger-style): the metric over each window of window_ms (with at
//     least kMinWindowRequests requests) above `threshold` (a fraction for the error rate,
//     milliseconds for latency) rolls back. No false-alarm bound: as good as its threshold.
// A warning trigger is evaluated and recorded, never rolls back.
//
// No data never passes (Kayenta #377): enough_data() is false until the new version served
// min_requests (and, for threshold triggers, one full window); the deployer waits, then
// gives up with a "no-data" decision and rolls back.
//
// Plain value, not thread-safe; deterministic given its inputs. state_json()/restore()
// carry it across an agent restart (a resumed test continues from the saved statistic).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "rollback/sequential.hpp"

namespace mup::rollback {

enum class Metric : uint8_t { error_rate, latency_p50, latency_p95, latency_p99 };
enum class Algorithm : uint8_t { sequential, threshold };
enum class Severity : uint8_t { critical, warning };
std::string_view metric_name(Metric m);
std::string_view algorithm_name(Algorithm a);

inline constexpr uint64_t kMinWindowRequests = 10;

struct Trigger {
  Metric metric = Metric::error_rate;
  Algorithm algorithm = Algorithm::sequential;
  double threshold = 0;       // threshold algorithm: fraction (error rate) or ms (latency)
  int64_t window_ms = 10000;  // threshold algorithm: the evaluation window
  Severity severity = Severity::critical;
};

struct Policy {
  bool automatic = true;            // false: decisions are recorded, the deployment goes on
  double alpha = 0.001;             // false rollbacks per deployment, all sequential triggers
  uint64_t min_requests = 200;      // the new version's requests before a step may pass
  double latency_tolerance_ms = 1;  // latency triggers: differences below this never count
  int64_t watch_ms = 600000;        // after commit: the change detector's window
  bool restore_state = false;       // the version migrates its state: a rollback restores it
  std::vector<Trigger> triggers = {{Metric::error_rate}, {Metric::latency_p50}};
  nlohmann::json to_json() const;
};
// `j` over `base`: keys automatic, alpha (0 < a < 0.5), min_requests, latency_tolerance_ms,
// watch_ms, restore_state, triggers
// ([{metric, algorithm, threshold, window_ms, severity}], replacing the base's). Strict: an
// unknown key or a wrong value is Errc::invalid_argument naming the field.
[[nodiscard]] Result<Policy> policy_from_json(const nlohmann::json& j, const Policy& base = {});

// Cumulative counts of one version, as the proxy reports them (traffic::VersionStats).
struct Counts {
  uint64_t requests = 0, failed = 0;
  std::vector<uint64_t> latency;  // bucket counts over traffic::latency_bounds_us() (+ overflow)
  // What was added since `earlier` (a counter that went back, a restarted proxy, is taken
  // as starting again from 0).
  Counts since(const Counts& earlier) const;
  nlohmann::json to_json() const;
};
// From VersionStats JSON: "requests", "failed" (else "responses"."5xx"), "histogram"."counts".
Counts counts_from_stats(const nlohmann::json& version_stats);
[[nodiscard]] Result<Counts> counts_from_json(const nlohmann::json& j);

struct Decision {
  std::string verdict;  // "rollback", "pass", "no-data", "warning"
  Algorithm algorithm = Algorithm::sequential;
  Metric metric = Metric::error_rate;
  bool against_baseline = false;
  double statistic = 0;                    // sequential: ln e-value; threshold: the window's value
  double threshold = 0;                    // sequential: ln(1/alpha share); threshold: the limit
  double alpha = 0;                        // the trigger's share (sequential)
  double bound_ms = 0;                     // latency: the bound "slow" is measured against
  std::optional<double> beside_statistic;  // latency beside the old version: its test
  uint64_t new_requests = 0, new_errors = 0, new_bad = 0;
  uint64_t old_requests = 0, old_errors = 0, old_bad = 0;
  int64_t decided_at_ms = 0;
  std::string reason;
  nlohmann::json to_json() const;
};

class Judge {
 public:
  // `baseline`: the old version's counts before the new one served (nullopt: none).
  Judge(Policy policy, std::optional<Counts> baseline);

  // One batch: what the new version served since the last batch, and the old one when it
  // serves beside it (nullptr: it does not).
  void observe(int64_t now_ms, const Counts& neu, const Counts* old);

  // The first critical trigger that fired (the judge stops changing once one did).
  const std::optional<Decision>& rollback() const { return rollback_; }
  // Warnings recorded so far.
  const std::vector<Decision>& warnings() const { return warnings_; }
  bool enough_data() const;
  // What the step or analysis passed on: the trigger closest to firing.
  Decision summary(int64_t now_ms, std::string verdict) const;
  uint64_t new_requests() const { return new_total_.requests; }
  const Policy& policy() const { return policy_; }

  nlohmann::json state_json() const;
  // A judge with the statistics saved by state_json() (same policy and baseline). Falls back
  // to a fresh judge when the state does not parse (a fresh test only costs detection time).
  static Judge restore(Policy policy, std::optional<Counts> baseline, const nlohmann::json& state);

 private:
  struct Check {
    Trigger trigger;
    double alpha = 0;       // the trigger's share
    double test_alpha = 0;  // what its test may spend (a baseline test: 3/4 of the share)
    bool two_sample = false;
    std::optional<TwoSampleTest> two;
    std::optional<BaselineTest> one;
    // Latency beside the old version: the same bound on both sides, on the same traffic.
    std::optional<TwoSampleTest> beside;
    bool one_crossed = false, beside_crossed = false;
    std::optional<size_t> bound;  // latency: histogram bucket index; bad = slower than its bound
    Counts window;                // threshold: counts of the current window
    int64_t window_start_ms = -1;
    bool window_seen = false;  // threshold: one conclusive window
    bool fired = false;        // decided once: not evaluated again
    double last_value = 0;
  };
  void setup(Check& c, const Counts* old_reference) const;
  void observe_check(Check& c, int64_t now_ms, const Counts& neu, const Counts* old);
  void fire(Check& c, Decision d);
  Decision decision_of(const Check& c, int64_t now_ms, std::string verdict) const;

  Policy policy_;
  std::optional<Counts> baseline_;
  std::vector<Check> checks_;
  Counts new_total_, old_total_;
  std::optional<Decision> rollback_;
  std::vector<Decision> warnings_;
};

}  // namespace mup::rollback
