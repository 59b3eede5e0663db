#include "rollback/judge.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/clock.hpp"
#include "traffic/stats.hpp"

namespace mup::rollback {

using nlohmann::json;

namespace {

constexpr std::string_view kMetricNames[] = {"error_rate", "latency_p50", "latency_p95",
                                             "latency_p99"};
// A latency reference (baseline or old side) needs this many samples before its bound is set.
constexpr uint64_t kMinReference = 50;
// A baseline test spends 1/kBaselineShare of its alpha on the baseline's confidence bound.
constexpr double kBaselineShare = 4;

double quantile_of(Metric m) {
  switch (m) {
    case Metric::latency_p50: return 0.50;
    case Metric::latency_p95: return 0.95;
    case Metric::latency_p99: return 0.99;
    case Metric::error_rate: break;
  }
  return 0;
}

uint64_t sum(const std::vector<uint64_t>& v, size_t from = 0) {
  uint64_t s = 0;
  for (size_t i = from; i < v.size(); ++i) s += v[i];
  return s;
}

// The latency bound of a check: the smallest histogram bound at or above the reference's
// q-quantile plus the tolerance (nullopt: too few samples, or only the overflow bucket).
std::optional<size_t> bound_for(const std::vector<uint64_t>& hist, double q, double tolerance_ms) {
  if (sum(hist) < kMinReference || hist.size() != traffic::kLatencyBounds + 1) return std::nullopt;
  const auto& bounds = traffic::latency_bounds_us();
  const double at = traffic::quantile_us(hist.data(), q, bounds.back()) + tolerance_ms * 1000;
  for (size_t i = 0; i < traffic::kLatencyBounds; ++i)
    if (static_cast<double>(bounds[i]) >= at) return i;
  return std::nullopt;
}

// (n, bad) of a batch for a check: failed requests, or requests slower than the bound.
std::pair<uint64_t, uint64_t> bad_of(const Counts& c, Metric m, std::optional<size_t> bound) {
  if (m == Metric::error_rate) return {c.requests, std::min(c.failed, c.requests)};
  if (!bound || c.latency.size() != traffic::kLatencyBounds + 1) return {0, 0};
  return {sum(c.latency), sum(c.latency, *bound + 1)};
}

std::optional<Metric> parse_metric(std::string_view s) {
  for (size_t i = 0; i < std::size(kMetricNames); ++i)
    if (kMetricNames[i] == s) return static_cast<Metric>(i);
  return std::nullopt;
}

Status bad_field(const std::string& field, const std::string& what) {
  return fail(Errc::invalid_argument, "rollback policy: " + field + ": " + what);
}

Result<Trigger> trigger_from_json(const json& j, const std::string& at) {
  if (!j.is_object()) return tl::unexpected(bad_field(at, "must be a table").error());
  Trigger t;
  for (const auto& [k, v] : j.items()) {
    const std::string f = at + "." + k;
    if (k == "metric") {
      auto m = v.is_string() ? parse_metric(v.get<std::string>()) : std::nullopt;
      if (!m)
        return tl::unexpected(
            bad_field(f, "one of error_rate, latency_p50, latency_p95, latency_p99").error());
      t.metric = *m;
    } else if (k == "algorithm") {
      if (v == "sequential")
        t.algorithm = Algorithm::sequential;
      else if (v == "threshold")
        t.algorithm = Algorithm::threshold;
      else
        return tl::unexpected(bad_field(f, "\"sequential\" or \"threshold\"").error());
    } else if (k == "threshold") {
      if (!v.is_number() || v.get<double>() < 0)
        return tl::unexpected(bad_field(f, "a non-negative number").error());
      t.threshold = v.get<double>();
    } else if (k == "window_ms") {
      if (!v.is_number_integer() || v.get<int64_t>() < 100)
        return tl::unexpected(bad_field(f, "an integer >= 100").error());
      t.window_ms = v.get<int64_t>();
    } else if (k == "severity") {
      if (v == "critical")
        t.severity = Severity::critical;
      else if (v == "warning")
        t.severity = Severity::warning;
      else
        return tl::unexpected(bad_field(f, "\"critical\" or \"warning\"").error());
    } else {
      return tl::unexpected(bad_field(f, "unknown key").error());
    }
  }
  if (t.algorithm == Algorithm::threshold && !j.contains("threshold"))
    return tl::unexpected(bad_field(at + ".threshold", "required by algorithm threshold").error());
  return t;
}

}  // namespace

std::string_view metric_name(Metric m) {
  auto i = static_cast<size_t>(m);
  return i < std::size(kMetricNames) ? kMetricNames[i] : "unknown";
}

std::string_view algorithm_name(Algorithm a) {
  return a == Algorithm::threshold ? "threshold" : "sequential";
}

json Policy::to_json() const {
  json t = json::array();
  for (const auto& x : triggers) {
    json e = {{"metric", metric_name(x.metric)},
              {"algorithm", algorithm_name(x.algorithm)},
              {"severity", x.severity == Severity::warning ? "warning" : "critical"}};
    if (x.algorithm == Algorithm::threshold) {
      e["threshold"] = x.threshold;
      e["window_ms"] = x.window_ms;
    }
    t.push_back(std::move(e));
  }
  return {{"automatic", automatic},       {"alpha", alpha},
          {"min_requests", min_requests}, {"latency_tolerance_ms", latency_tolerance_ms},
          {"watch_ms", watch_ms},         {"restore_state", restore_state},
          {"triggers", std::move(t)}};
}

Result<Policy> policy_from_json(const json& j, const Policy& base) {
  if (j.is_null()) return base;
  if (!j.is_object()) return tl::unexpected(bad_field("rollback", "must be a table").error());
  Policy p = base;
  for (const auto& [k, v] : j.items()) {
    if (k == "automatic") {
      if (!v.is_boolean()) return tl::unexpected(bad_field(k, "true or false").error());
      p.automatic = v.get<bool>();
    } else if (k == "alpha") {
      // A number, or a string holding one: signed metadata (TUF canonical JSON) carries no
      // floating-point values, so a manifest's policy writes "0.001".
      double a = v.is_number() ? v.get<double>() : -1;
      if (v.is_string()) {
        const std::string t = v.get<std::string>();
        char* end = nullptr;
        a = std::strtod(t.c_str(), &end);
        if (t.empty() || end != t.c_str() + t.size()) a = -1;
      }
      if (!(a > 0 && a < 0.5))
        return tl::unexpected(
            bad_field(k, "a number between 0 and 0.5 (e.g. 0.001, or \"0.001\")").error());
      p.alpha = a;
    } else if (k == "min_requests") {
      if (!v.is_number_integer() || v.get<int64_t>() < 1)
        return tl::unexpected(bad_field(k, "an integer >= 1").error());
      p.min_requests = v.get<uint64_t>();
    } else if (k == "latency_tolerance_ms") {
      if (!v.is_number() || v.get<double>() < 0)
        return tl::unexpected(bad_field(k, "a non-negative number of milliseconds").error());
      p.latency_tolerance_ms = v.get<double>();
    } else if (k == "restore_state") {
      if (!v.is_boolean()) return tl::unexpected(bad_field(k, "true or false").error());
      p.restore_state = v.get<bool>();
    } else if (k == "watch_ms") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0)
        return tl::unexpected(bad_field(k, "a non-negative integer").error());
      p.watch_ms = v.get<int64_t>();
    } else if (k == "triggers") {
      if (!v.is_array() || v.empty())
        return tl::unexpected(bad_field(k, "a non-empty array of tables").error());
      p.triggers.clear();
      for (size_t i = 0; i < v.size(); ++i) {
        auto t = trigger_from_json(v[i], "triggers[" + std::to_string(i) + "]");
        if (!t) return tl::unexpected(t.error());
        p.triggers.push_back(*t);
      }
    } else {
      return tl::unexpected(bad_field(k, "unknown key").error());
    }
  }
  return p;
}

Counts Counts::since(const Counts& earlier) const {
  Counts d;
  const bool reset = requests < earlier.requests || failed < earlier.failed;
  d.requests = reset ? requests : requests - earlier.requests;
  d.failed = reset ? failed : failed - earlier.failed;
  d.latency = latency;
  if (!reset && earlier.latency.size() == latency.size())
    for (size_t i = 0; i < latency.size(); ++i)
      d.latency[i] = latency[i] >= earlier.latency[i] ? latency[i] - earlier.latency[i] : 0;
  return d;
}

json Counts::to_json() const {
  return {{"requests", requests}, {"failed", failed}, {"latency", latency}};
}

Counts counts_from_stats(const json& s) try {
  Counts c;
  if (!s.is_object()) return c;
  c.requests = s.value("requests", uint64_t{0});
  if (s.contains("failed"))
    c.failed = s.value("failed", uint64_t{0});
  else if (s.contains("responses") && s["responses"].is_object())
    c.failed = s["responses"].value("5xx", uint64_t{0});
  if (s.contains("histogram") && s["histogram"].is_object() && s["histogram"].contains("counts") &&
      s["histogram"]["counts"].is_array())
    for (const auto& v : s["histogram"]["counts"])
      c.latency.push_back(v.is_number_unsigned() ? v.get<uint64_t>() : 0);
  return c;
} catch (const json::exception&) {
  return Counts{};  // statistics of another shape: nothing counted
}

Result<Counts> counts_from_json(const json& j) try {
  if (!j.is_object() || !j.contains("requests") || !j["requests"].is_number_unsigned())
    return fail(Errc::invalid_argument, "counts: not {requests, failed, latency}");
  Counts c;
  c.requests = j["requests"].get<uint64_t>();
  c.failed = j.value("failed", uint64_t{0});
  if (j.contains("latency") && j["latency"].is_array())
    for (const auto& v : j["latency"])
      c.latency.push_back(v.is_number_unsigned() ? v.get<uint64_t>() : 0);
  return c;
} catch (const json::exception& e) {
  return fail(Errc::invalid_argument, std::string("counts: ") + e.what());
}

json Decision::to_json() const {
  json j = {{"verdict", verdict},
            {"algorithm", algorithm_name(algorithm)},
            {"metric", metric_name(metric)},
            {"against", against_baseline ? "baseline" : "old"},
            {"statistic", std::isfinite(statistic) ? statistic : -1e300},
            {"threshold", threshold},
            {"new", {{"requests", new_requests}, {"errors", new_errors}}},
            {"old", {{"requests", old_requests}, {"errors", old_errors}}},
            {"decided_at", iso_utc(decided_at_ms)},
            {"decided_at_ms", decided_at_ms},
            {"reason", reason}};
  if (algorithm == Algorithm::sequential) j["alpha"] = alpha;
  if (metric != Metric::error_rate) {
    j["bound_ms"] = bound_ms;
    j["new"]["slow"] = new_bad;
    if (beside_statistic) {
      j["old"]["slow"] = old_bad;
      j["statistic_beside"] = std::isfinite(*beside_statistic) ? *beside_statistic : -1e300;
    }
  }
  return j;
}

Judge::Judge(Policy policy, std::optional<Counts> baseline)
    : policy_(std::move(policy)), baseline_(std::move(baseline)) {
  // Shares of alpha: an error-rate trigger weighs 4, a latency one 1 (a latency regression
  // that matters moves the median or tail a lot, and is found with a smaller share).
  auto weight = [](const Trigger& t) { return t.metric == Metric::error_rate ? 4.0 : 1.0; };
  double total = 0;
  for (const auto& t : policy_.triggers)
    if (t.algorithm == Algorithm::sequential && t.severity == Severity::critical)
      total += weight(t);
  for (const auto& t : policy_.triggers) {
    Check c;
    c.trigger = t;
    c.alpha = total > 0 ? policy_.alpha * weight(t) / total : policy_.alpha;
    checks_.push_back(std::move(c));
  }
  if (baseline_ && baseline_->requests == 0) baseline_.reset();
}

// The test of a sequential check, once what it compares with is known.
//   error rate: TwoSampleTest with the old side, else a BaselineTest against the baseline's
//     upper bound;
//   latency quantile q: the bound b is the reference's q-quantile plus the tolerance (rounded
//     up to a histogram bound); if the new version's q-quantile is no higher than b, at most a
//     fraction 1-q of its requests are slower than b, so a BaselineTest of H0: p <= 1-q on the
//     new version's requests slower than b (the reference: the baseline, else the old side).
void Judge::setup(Check& c, const Counts* old_reference) const {
  if (c.two || c.one) return;
  const Metric m = c.trigger.metric;
  c.two_sample = old_reference != nullptr;
  if (m != Metric::error_rate) {
    const Counts* ref = baseline_ ? &*baseline_ : old_reference;
    if (!ref) return;
    c.bound = bound_for(ref->latency, quantile_of(m), policy_.latency_tolerance_ms);
    if (!c.bound) return;
    c.test_alpha = c.alpha;
    c.one.emplace(1 - quantile_of(m));
    if (old_reference) c.beside.emplace();
    return;
  }
  if (old_reference) {
    c.test_alpha = c.alpha;
    c.two.emplace();
    return;
  }
  if (!baseline_) return;
  if (baseline_->requests == 0) return;
  c.test_alpha = c.alpha * (1 - 1 / kBaselineShare);
  c.one.emplace(rate_upper_bound(baseline_->failed, baseline_->requests, c.alpha / kBaselineShare));
}

void Judge::observe_check(Check& c, int64_t now_ms, const Counts& neu, const Counts* old) {
  const Trigger& t = c.trigger;
  if (t.algorithm == Algorithm::threshold) {
    if (c.window_start_ms < 0) c.window_start_ms = now_ms;
    c.window.requests += neu.requests;
    c.window.failed += neu.failed;
    if (c.window.latency.size() != neu.latency.size())
      c.window.latency.assign(neu.latency.size(), 0);
    for (size_t i = 0; i < neu.latency.size(); ++i) c.window.latency[i] += neu.latency[i];
    if (now_ms - c.window_start_ms < t.window_ms) return;
    if (c.window.requests >= kMinWindowRequests) {
      c.window_seen = true;
      if (t.metric == Metric::error_rate) {
        c.last_value =
            static_cast<double>(c.window.failed) / static_cast<double>(c.window.requests);
      } else if (c.window.latency.size() == traffic::kLatencyBounds + 1) {
        c.last_value = traffic::quantile_us(c.window.latency.data(), quantile_of(t.metric),
                                            traffic::latency_bounds_us().back() * 2) /
                       1000;
      }
      if (c.last_value > t.threshold) {
        Decision d = decision_of(c, now_ms, "rollback");
        d.reason = std::string(metric_name(t.metric)) + " " + std::to_string(c.last_value) +
                   " over " + std::to_string(t.window_ms) + " ms is above " +
                   std::to_string(t.threshold);
        fire(c, std::move(d));
      }
    }
    c.window = Counts{};
    c.window_start_ms = now_ms;
    return;
  }
  // The old side's reference is what it served before this batch (the bound is fixed from
  // data the batch cannot influence).
  setup(c, old ? &old_total_ : nullptr);
  auto [n1, x1] = bad_of(neu, t.metric, c.bound);
  if (c.two) {
    auto [n0, x0] = old ? bad_of(*old, t.metric, c.bound) : std::pair<uint64_t, uint64_t>{0, 0};
    c.two->observe(n1, x1, n0, x0);
  } else if (c.one) {
    c.one->observe(n1, x1);
    if (c.beside && old) {
      auto [n0, x0] = bad_of(*old, t.metric, c.bound);
      c.beside->observe(n1, x1, n0, x0);
    }
  } else {
    return;
  }
  const double limit = std::log(1 / c.test_alpha);
  bool crossed = false;
  if (c.two) {
    crossed = c.two->log_e_value() >= limit;
  } else {
    // Latched: "ever crossed" is what Ville's inequality bounds.
    c.one_crossed = c.one_crossed || c.one->log_e_value() >= limit;
    c.beside_crossed = c.beside_crossed || (c.beside && c.beside->log_e_value() >= limit);
    crossed = c.one_crossed && (c.beside_crossed || !c.beside || !old);
  }
  if (crossed) {
    Decision d = decision_of(c, now_ms, "rollback");
    const std::string against =
        c.two              ? "the old one on the same traffic"
        : c.beside_crossed ? "the old one's baseline and than the old one on the same traffic"
                           : "the old one's baseline";
    d.reason = "the new version is worse than " + against + " on " +
               std::string(metric_name(t.metric)) + " (sequential test, alpha " +
               std::to_string(c.test_alpha) + ")";
    fire(c, std::move(d));
  }
}

void Judge::fire(Check& c, Decision d) {
  c.fired = true;
  if (c.trigger.severity == Severity::critical) {
    rollback_ = std::move(d);
    return;
  }
  d.verdict = "warning";
  warnings_.push_back(std::move(d));
}

void Judge::observe(int64_t now_ms, const Counts& neu, const Counts* old) {
  new_total_.requests += neu.requests;
  new_total_.failed += neu.failed;
  if (old) {
    old_total_.requests += old->requests;
    old_total_.failed += old->failed;
  }
  if (rollback_) return;  // decided: the counts go on, the statistics stop
  for (auto& c : checks_) {
    if (c.fired) continue;
    observe_check(c, now_ms, neu, old);
    if (rollback_) break;
  }
  if (old) {
    if (old_total_.latency.size() != old->latency.size())
      old_total_.latency.assign(old->latency.size(), 0);
    for (size_t i = 0; i < old->latency.size(); ++i) old_total_.latency[i] += old->latency[i];
  }
}

bool Judge::enough_data() const {
  if (new_total_.requests < policy_.min_requests) return false;
  for (const auto& c : checks_)
    if (c.trigger.algorithm == Algorithm::threshold && c.trigger.severity == Severity::critical &&
        !c.window_seen)
      return false;
  return true;
}

Decision Judge::decision_of(const Check& c, int64_t now_ms, std::string verdict) const {
  Decision d;
  d.verdict = std::move(verdict);
  d.algorithm = c.trigger.algorithm;
  d.metric = c.trigger.metric;
  d.decided_at_ms = now_ms;
  d.new_requests = new_total_.requests;
  d.new_errors = new_total_.failed;
  if (c.bound) d.bound_ms = static_cast<double>(traffic::latency_bounds_us()[*c.bound]) / 1000;
  if (c.trigger.algorithm == Algorithm::threshold) {
    d.statistic = c.last_value;
    d.threshold = c.trigger.threshold;
    d.old_requests = old_total_.requests;
    d.old_errors = old_total_.failed;
    return d;
  }
  d.alpha = c.test_alpha;
  d.threshold = std::log(1 / c.test_alpha);
  d.against_baseline = !c.two_sample;
  if (c.two) {
    d.statistic = c.two->log_e_value();
    d.old_requests = old_total_.requests;
    d.old_errors = old_total_.failed;
    d.new_bad = c.two->x_new();
    d.old_bad = c.two->x_old();
  } else if (c.one) {
    d.statistic = c.one->log_e_value();
    if (c.two_sample) {
      d.old_requests = old_total_.requests;
      d.old_errors = old_total_.failed;
    } else if (baseline_) {
      d.old_requests = baseline_->requests;
      d.old_errors = baseline_->failed;
    }
    d.new_bad = c.one->x();
    if (c.beside) {
      d.beside_statistic = c.beside->log_e_value();
      d.old_bad = c.beside->x_old();
    }
  } else {
    d.statistic = 0;
  }
  return d;
}

Decision Judge::summary(int64_t now_ms, std::string verdict) const {
  if (rollback_) return *rollback_;
  // The check closest to firing, as a fraction of its threshold.
  const Check* best = nullptr;
  double best_ratio = -std::numeric_limits<double>::infinity();
  for (const auto& c : checks_) {
    if (c.trigger.severity != Severity::critical) continue;
    double ratio = 0;
    if (c.trigger.algorithm == Algorithm::threshold)
      ratio = c.trigger.threshold > 0 ? c.last_value / c.trigger.threshold : 0;
    else if (c.two || c.one)
      ratio = (c.two ? c.two->log_e_value()
                     : std::min(c.one->log_e_value(),
                                c.beside ? c.beside->log_e_value() : c.one->log_e_value())) /
              std::log(1 / c.test_alpha);
    else
      continue;
    if (ratio > best_ratio) best_ratio = ratio, best = &c;
  }
  if (!best && !checks_.empty()) best = &checks_.front();
  Decision d = best ? decision_of(*best, now_ms, std::move(verdict)) : Decision{};
  if (!best) d.verdict = "pass", d.decided_at_ms = now_ms;
  if (d.verdict == "no-data")
    d.reason = "the new version served " + std::to_string(new_total_.requests) + " requests (" +
               std::to_string(policy_.min_requests) + " needed to judge it)";
  else if (!best || (!best->two && !best->one && best->trigger.algorithm == Algorithm::sequential))
    d.reason = "no baseline to compare with: only threshold triggers could fire";
  return d;
}

namespace {

// A test's state in the saved judge: {"lr": [...], "n": [n_new, x_new, n_old, x_old]} (the
// keys sit in the check's own object for its main test, in "beside" for the latency one).
void put_test_state(json& e, const TestState& s) {
  e["lr"] = s.log_lr;
  e["n"] = {s.n_new, s.x_new, s.n_old, s.x_old};
}

TestState test_state_of(const json& e) {  // throws json::exception (restore() catches it)
  const json& n = e.at("n");
  return {e.at("lr").get<std::vector<double>>(), n.at(0).get<uint64_t>(), n.at(1).get<uint64_t>(),
          n.at(2).get<uint64_t>(), n.at(3).get<uint64_t>()};
}

}  // namespace

json Judge::state_json() const {
  json checks = json::array();
  for (const auto& c : checks_) {
    json e = {{"two_sample", c.two_sample}, {"window_seen", c.window_seen}, {"fired", c.fired}};
    if (c.bound) e["bound"] = *c.bound;
    std::optional<TestState> s;
    if (c.two) s = c.two->state();
    if (c.one) s = c.one->state();
    if (s) {
      put_test_state(e, *s);
      if (c.one) e["p0u"] = c.one->p0u();
    }
    if (c.beside) {
      put_test_state(e["beside"], c.beside->state());
      e["crossed"] = {c.one_crossed, c.beside_crossed};
    }
    checks.push_back(std::move(e));
  }
  return {{"checks", std::move(checks)},
          {"new", {new_total_.requests, new_total_.failed}},
          {"old", {old_total_.requests, old_total_.failed}}};
}

Judge Judge::restore(Policy policy, std::optional<Counts> baseline, const json& state) {
  Judge j(std::move(policy), std::move(baseline));
  Judge fresh = j;
  try {
    const json& checks = state.at("checks");
    if (!checks.is_array() || checks.size() != j.checks_.size()) return fresh;
    for (size_t i = 0; i < checks.size(); ++i) {
      Check& c = j.checks_[i];
      const json& e = checks[i];
      c.window_seen = e.value("window_seen", false);
      c.fired = e.value("fired", false);
      c.two_sample = e.value("two_sample", false);
      if (e.contains("bound")) {
        c.bound = e.at("bound").get<size_t>();
        if (*c.bound >= traffic::kLatencyBounds) return fresh;
      }
      if (!e.contains("lr")) continue;
      const TestState s = test_state_of(e);
      if (!e.contains("p0u")) {
        c.test_alpha = c.alpha;
        c.two.emplace();
        if (!c.two->restore(s)) return fresh;
      } else {
        const bool latency = c.trigger.metric != Metric::error_rate;
        c.test_alpha = latency ? c.alpha : c.alpha * (1 - 1 / kBaselineShare);
        c.one.emplace(e.at("p0u").get<double>());
        if (!c.one->restore(s)) return fresh;
        if (latency && e.contains("beside")) {
          c.beside.emplace();
          if (!c.beside->restore(test_state_of(e.at("beside")))) return fresh;
          c.one_crossed = e.at("crossed").at(0).get<bool>();
          c.beside_crossed = e.at("crossed").at(1).get<bool>();
        }
      }
    }
    j.new_total_.requests = state.at("new").at(0).get<uint64_t>();
    j.new_total_.failed = state.at("new").at(1).get<uint64_t>();
    j.old_total_.requests = state.at("old").at(0).get<uint64_t>();
    j.old_total_.failed = state.at("old").at(1).get<uint64_t>();
  } catch (const json::exception&) {
    return fresh;
  }
  return j;
}

}  // namespace mup::rollback
