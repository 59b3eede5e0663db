// Blue-green's synthetic checks before the switch (deploy/steps.hpp, do_checks).
#include <algorithm>

#include "deploy/steps.hpp"

namespace mup::deploy {

using nlohmann::json;

namespace {

json side_json(const DataPlane::CheckResult* r) {
  if (!r) return nullptr;
  json j = {{"attempts", r->attempts}, {"failures", r->failures}};
  if (!r->last_error.empty()) j["last_error"] = r->last_error;
  return j;
}

}  // namespace

Event do_checks(StepContext& c) {
  json& detail = c.row.detail;
  if (detail.contains("checks")) return Event::ok;  // ran before a restart, and passed
  const std::string& comp = c.row.component;
  const std::string& neu = c.row.to_version;
  const std::string& old = c.row.from_version;
  auto on_new = c.plane.run_checks(comp, neu, neu, c.cancel);
  if (!on_new) return event_from(c, tl::unexpected(on_new.error()));
  if (on_new->empty()) return Event::ok;
  // The same checks on the old version, for reference: what it fails too is not the new
  // version's doing (a check that is wrong, a dependency that is down).
  std::vector<DataPlane::CheckResult> on_old;
  std::string old_unchecked;
  if (!old.empty()) {
    if (auto o = c.plane.run_checks(comp, neu, old, c.cancel))
      on_old = std::move(*o);
    else
      old_unchecked = o.error().message();
  }
  json list = json::array(), warnings = json::array();
  uint64_t new_req = 0, new_err = 0, old_req = 0, old_err = 0, worst = 0, worst_max = 0;
  std::string failed;
  for (size_t i = 0; i < on_new->size(); ++i) {
    const auto& n = (*on_new)[i];
    const DataPlane::CheckResult* o = i < on_old.size() ? &on_old[i] : nullptr;
    new_req += n.attempts;
    new_err += n.failures;
    if (o) old_req += o->attempts, old_err += o->failures;
    const bool bad_new = n.failures > n.max_failures;
    const bool bad_old = o && o->failures > o->max_failures;
    list.push_back({{"check", n.name},
                    {"max_failures", n.max_failures},
                    {"new", side_json(&n)},
                    {"old", side_json(o)}});
    if (n.failures >= worst) worst = n.failures, worst_max = n.max_failures;
    if (bad_new && bad_old) {
      warnings.push_back(
          {{"verdict", "warning"},
           {"algorithm", "checks"},
           {"metric", "synthetic"},
           {"reason", n.name + " fails on " + old + " too (" + std::to_string(o->failures) +
                          " of " + std::to_string(o->attempts) + "): not held against " + neu}});
    } else if (bad_new && failed.empty()) {
      failed = n.name + ": " + std::to_string(n.failures) + " of " + std::to_string(n.attempts) +
               " attempts failed (" + std::to_string(n.max_failures) +
               " tolerated; last: " + n.last_error + ")";
    }
  }
  if (!old_unchecked.empty())
    warnings.push_back({{"verdict", "warning"},
                        {"algorithm", "checks"},
                        {"metric", "synthetic"},
                        {"reason", "the checks could not run on " + old + ": " + old_unchecked}});
  detail["checks"] = list;
  if (!warnings.empty()) detail["warnings"] = warnings;
  if (failed.empty()) return Event::ok;
  const int64_t now = c.clock.wall_ms();
  detail["decision"] = {{"verdict", "rollback"},
                        {"algorithm", "checks"},
                        {"metric", "synthetic"},
                        {"against", "old"},
                        {"statistic", worst},
                        {"threshold", worst_max},
                        {"new", {{"requests", new_req}, {"errors", new_err}}},
                        {"old", {{"requests", old_req}, {"errors", old_err}}},
                        {"decided_at", iso_utc(now)},
                        {"decided_at_ms", now},
                        {"reason", "before the switch: " + failed}};
  auto policy = resolve_policy(c);
  if (policy && !policy->automatic) {
    // Kept among the warnings too: the analysis after the switch records its own decision.
    detail["decision"]["verdict"] = "rollback-suppressed";
    detail["decision"]["reason"] = "before the switch: " + failed + " (automatic rollback is off)";
    warnings.push_back(detail["decision"]);
    detail["warnings"] = warnings;
    return Event::ok;
  }
  c.row.reason = "checks before the switch: " + failed;
  detail["outcome"] = "rolled-back";
  return Event::rollback;
}

}  // namespace mup::deploy
