// The analyze state: the rollback judge watches the new version before commit.
//
// Every poll (100 ms) the proxy's cumulative counts are read and their deltas fed to the judge:
// the new version's, and the old one's while it takes traffic beside it (a canary step) so
// the test compares the two on the same traffic; otherwise the old version's counts
// recorded when the analysis began are the baseline. The baseline, the step index and the
// judge's statistics are in the row's detail, journaled at each step, so a resumed
// deployment goes on at the step it was in with the statistic it had (what it served in
// between is not counted: a test restarted from a saved value stays valid).
//
// A step passes once its time is up and the judge has enough data; without enough data it
// waits up to kDataWaitFactor steps more, then gives up: "no-data", rolled back (a version
// that got no traffic when there was traffic to judge it by is not passed). A service with
// too little traffic (the old version served fewer than min_requests) has nothing to judge:
// it passes with that reason recorded, unless a threshold trigger asks for data.
#include <chrono>
#include <thread>

#include "deploy/steps.hpp"

namespace mup::deploy {

using nlohmann::json;
using state::json_int;

namespace {

constexpr int64_t kDataWaitFactor = 3;

bool has_threshold_trigger(const rollback::Policy& p) {
  for (const auto& t : p.triggers)
    if (t.algorithm == rollback::Algorithm::threshold) return true;
  return false;
}

}  // namespace

std::vector<Batch> rolling_batches(int n_new, int n_old, int batch_size) {
  std::vector<Batch> out;
  batch_size = std::max(batch_size, 1);
  for (int k = batch_size; k < n_new; k += batch_size) {
    const int old_left = std::max(1, n_old - (n_old * k + n_new - 1) / n_new);
    out.push_back({k, old_left, (100 * k + n_new / 2) / n_new});
  }
  return out;
}

std::vector<Batch> rolling_batches_of(StepContext& c) {
  if (c.strategy != Strategy::rolling || c.row.from_version.empty()) return {};
  return rolling_batches(c.plane.instances(c.row.component, c.row.to_version),
                         c.plane.instances(c.row.component, c.row.from_version),
                         static_cast<int>(json_int(c.row.detail, "batch_size", 1)));
}

Result<rollback::Policy> resolve_policy(StepContext& c) {
  // Resolved once (it may read the signed manifest from the remote), then kept in the row.
  if (auto r = c.row.detail.find("policy_resolved"); r != c.row.detail.end())
    if (auto p = rollback::policy_from_json(*r)) return p;
  auto base = rollback::policy_from_json(c.plane.rollback_policy(c.row.component, c.row.to_version),
                                         rollback::Policy{});
  if (!base)
    return tl::unexpected(base.error().context("in " + c.row.component + " " + c.row.to_version +
                                               "'s mup-service.toml [rollback]"));
  auto p = rollback::policy_from_json(c.row.detail.value("policy", json::object()), *base);
  if (p) c.row.detail["policy_resolved"] = p->to_json();
  return p;
}

rollback::Counts counts_of(const std::map<std::string, rollback::Counts>& all,
                           const std::string& version) {
  auto it = all.find(version);
  return it == all.end() ? rollback::Counts{} : it->second;
}

namespace {

void record(StepContext& c, const rollback::Decision& d) {
  c.row.detail["decision"] = d.to_json();
}

}  // namespace

Event do_analyze(StepContext& c) {
  json& detail = c.row.detail;
  const std::string& comp = c.row.component;
  const std::string& neu = c.row.to_version;
  const std::string& old = c.row.from_version;
  // Canary and rolling walk steps (each with its weights, then the judge for step_ms).
  const bool stepped = c.strategy == Strategy::canary || c.strategy == Strategy::rolling;
  const std::vector<Batch> batches = rolling_batches_of(c);
  if (c.strategy == Strategy::rollback) return Event::ok;
  const int64_t step_ms =
      stepped ? json_int(detail, "step_ms", 10000) : json_int(detail, "analysis_ms", 10000);
  if (old.empty()) {
    detail["decision"] = {{"verdict", "pass"},
                          {"reason", "first deployment: nothing to compare with or go back to"}};
    return Event::ok;
  }
  if (!stepped && step_ms == 0) return Event::ok;

  // The counts first: what the new version serves while the policy is resolved (it may read
  // the signed manifest from the remote) is judged too.
  auto first = c.plane.counts(comp);
  if (!first) return event_from(c, tl::unexpected(first.error()));
  auto policy = resolve_policy(c);
  if (!policy) {
    c.why = policy.error().message();
    return Event::error;
  }
  // The baseline: what the old version had served when the analysis began (kept for a resume).
  std::optional<rollback::Counts> baseline;
  if (auto b = detail.find("baseline"); b != detail.end()) {
    if (auto parsed = rollback::counts_from_json(*b)) baseline = *parsed;
  } else {
    baseline = counts_of(*first, old);
    detail["baseline"] = baseline->to_json();
  }
  // Too little traffic to judge by: the old version served fewer requests than the judge
  // needs of the new one.
  const uint64_t old_served = baseline ? baseline->requests : 0;
  const bool little_traffic = first->empty() || old_served < policy->min_requests;
  if (little_traffic && !stepped && !has_threshold_trigger(*policy)) {
    detail["decision"] = {
        {"verdict", "pass"},
        {"reason", "too little traffic to judge by: " + old + " served " +
                       std::to_string(old_served) + " requests through the proxy (" +
                       std::to_string(policy->min_requests) + " needed)"}};
    return Event::ok;
  }
  rollback::Judge judge = detail.contains("judge")
                              ? rollback::Judge::restore(*policy, baseline, detail["judge"])
                              : rollback::Judge(*policy, baseline);
  std::map<std::string, rollback::Counts> prev = *first;

  std::vector<int> steps = {100};
  if (c.strategy == Strategy::canary) {
    steps.clear();
    for (const auto& s : detail.value("steps", json::array()))
      if (s.is_number_integer()) steps.push_back(s.get<int>());
    while (!steps.empty() && steps.back() >= 100) steps.pop_back();  // 100: after analysis
  } else if (c.strategy == Strategy::rolling) {
    steps.clear();
    for (const auto& b : batches) steps.push_back(b.weight);
  }
  for (auto i = static_cast<size_t>(json_int(detail, "step", 0)); i < steps.size(); ++i) {
    const int w_new = steps[i];
    if (stepped) {
      // Journaled before the step changes anything: an agent killed in the middle of it
      // resumes this step (every change below is idempotent), never the one before, which
      // would stop a new instance just started and restart an old one.
      detail["step"] = i;
      detail["judge"] = judge.state_json();
      c.journal();
      if (!batches.empty()) {  // rolling: this batch's new instances ready before traffic
        if (auto s = c.plane.scale(comp, neu, batches[i].k_new); !s) return event_from(c, s);
        if (auto s = c.plane.wait_ready(comp, neu, c.cancel); !s) return event_from(c, s);
      }
      std::map<std::string, int> w{{neu, w_new}, {old, 100 - w_new}};
      if (auto s = c.plane.route(comp, w); !s) return event_from(c, s);
      if (!batches.empty())
        if (auto s = c.plane.scale(comp, old, batches[i].k_old); !s) return event_from(c, s);
      detail["traffic"] = w;
      c.journal();
    }
    if (step_ms == 0) {  // no analysis asked for: the next step at once
      detail["step"] = i + 1;
      continue;
    }
    const auto start = c.clock.monotonic();
    const auto step_end = start + std::chrono::milliseconds(step_ms);
    const auto give_up = start + std::chrono::milliseconds(step_ms * (1 + kDataWaitFactor));
    uint64_t served_new = 0, served_old = 0;
    // A manual pause after this step: it waits for mup promote (the judge watching on).
    bool pause = false;
    for (const auto& p : detail.value("pauses", json::array()))
      if (p.is_number_integer() && p.get<int>() == w_new) pause = true;
    bool paused = false;
    for (;;) {
      const auto req = static_cast<Deployer::Request>(c.request.load());
      if (req == Deployer::Request::promote && paused) {
        c.request = 0;  // consumed: the canary goes on to its next step
        detail.erase("paused");
        break;
      }
      if (req == Deployer::Request::promote) {
        detail["decision"] = judge.summary(c.clock.wall_ms(), "pass").to_json();
        detail["decision"]["reason"] = "promoted by request";
        return Event::ok;
      }
      if (c.cancel) return event_from(c, fail(Errc::io, "cancelled"));
      if (auto alive = c.plane.check_alive(comp, neu); !alive) return event_from(c, alive);
      auto now_counts = c.plane.counts(comp);
      if (now_counts) {
        const rollback::Counts dn = counts_of(*now_counts, neu).since(counts_of(prev, neu));
        const rollback::Counts d_old = counts_of(*now_counts, old).since(counts_of(prev, old));
        served_new += dn.requests;
        served_old += d_old.requests;
        judge.observe(c.clock.wall_ms(), dn, w_new < 100 ? &d_old : nullptr);
        prev = std::move(*now_counts);
      }
      if (const auto& d = judge.rollback()) {
        record(c, *d);
        detail["judge"] = judge.state_json();
        if (!judge.policy().automatic) {
          detail["decision"]["verdict"] = "rollback-suppressed";
          detail["decision"]["reason"] = d->reason + " (automatic rollback is off)";
          c.journal();
        } else {
          c.row.reason = "rollback judge: " + d->reason;
          detail["outcome"] = "rolled-back";
          return Event::rollback;
        }
      }
      const auto now = c.clock.monotonic();
      if (now >= step_end && paused) {
        std::this_thread::sleep_for(c.poll);
        continue;
      }
      if (now >= step_end) {
        if (pause && (judge.enough_data() || judge.rollback())) {
          paused = true;
          detail["paused"] = true;
          detail["judge"] = judge.state_json();
          c.journal();
          continue;
        }
        if (judge.enough_data() || judge.rollback()) break;
        const bool nothing_to_judge = little_traffic &&
                                      served_new + served_old < policy->min_requests &&
                                      !has_threshold_trigger(*policy);
        if (nothing_to_judge) break;
        if (now >= give_up) {
          rollback::Decision d = judge.summary(c.clock.wall_ms(), "no-data");
          record(c, d);
          if (judge.policy().automatic) {
            c.row.reason = "rollback judge: no data: " + d.reason;
            detail["outcome"] = "rolled-back";
            return Event::rollback;
          }
          break;
        }
      }
      std::this_thread::sleep_for(c.poll);
    }
    detail["judge"] = judge.state_json();
    detail["step"] = i + 1;
  }
  if (c.strategy == Strategy::rolling) {  // the last batch: every new instance, ready
    if (auto s = c.plane.scale(comp, neu, c.plane.instances(comp, neu)); !s)
      return event_from(c, s);
    if (auto s = c.plane.wait_ready(comp, neu, c.cancel); !s) return event_from(c, s);
  }
  if (!judge.warnings().empty()) {
    // After the checks' warnings, if any (blue-green), and the judge's of an earlier run of
    // this state (a resume) replaced.
    json w = json::array();
    for (const auto& x : detail.value("warnings", json::array()))
      if (x.value("algorithm", "") == "checks") w.push_back(x);
    for (const auto& d : judge.warnings()) w.push_back(d.to_json());
    detail["warnings"] = std::move(w);
  }
  // The watch after commit: a CUSUM on the new version's failure rate against the old
  // version's (its upper bound), for watch_ms.
  if (baseline && baseline->requests >= judge.policy().min_requests && judge.policy().watch_ms > 0)
    detail["watch_plan"] = {{"watch_ms", judge.policy().watch_ms},
                            {"alpha", judge.policy().alpha},
                            {"automatic", judge.policy().automatic},
                            {"p0u", rollback::rate_upper_bound(baseline->failed, baseline->requests,
                                                               judge.policy().alpha / 4)}};
  if (!detail.contains("decision") ||
      detail["decision"].value("verdict", "") != "rollback-suppressed")
    record(c, judge.summary(c.clock.wall_ms(), "pass"));
  return Event::ok;
}

}  // namespace mup::deploy
