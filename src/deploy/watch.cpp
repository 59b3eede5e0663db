// The watch after commit: a regression in the minutes after a deployment committed rolls it
// back too (Argo Rollouts #1978, Flagger #616/#1800 ask for this). A CUSUM (Page) on the
// committed version's failure rate, per tick, against the old version's rate bound recorded
// by the analysis; alarm threshold ln(batches / alpha), so P(a false alarm over the whole
// watch) <= alpha (rollback/sequential.hpp).
#include "deploy/deployer.hpp"
#include "deploy/steps.hpp"

namespace mup::deploy {

using nlohmann::json;
using state::json_int;

void Deployer::watch(state::DeploymentRow& row, int64_t now_ms) {
  json& w = row.detail["watch"];
  auto write = [&] {
    auto db = connect();
    if (db) (void)db->update_deployment(row);
    notify(row);
  };
  if (now_ms >= json_int(w, "until", 0)) {
    w["open"] = false;
    w["result"] = "passed";
    watches_.erase(row.id);
    write();
    return;
  }
  auto all = plane_.counts(row.component);
  if (!all) return;
  const rollback::Counts now = counts_of(*all, row.to_version);
  Watch& st = watches_[row.id];
  if (!st.primed) {
    const int64_t batches =
        std::max<int64_t>(1, (json_int(w, "until", 0) - json_int(w, "from", now_ms)) / 1000);
    st.cusum.emplace(w.value("p0u", 1.0), batches, w.value("alpha", 0.001));
    st.last = now;
    st.primed = true;
    return;
  }
  const rollback::Counts d = now.since(st.last);
  st.last = now;
  st.since_commit.requests += d.requests;
  st.since_commit.failed += d.failed;
  if (!st.cusum->observe(d.requests, d.failed)) return;
  json decision = {
      {"verdict", "rollback"},
      {"algorithm", "cusum"},
      {"metric", "error_rate"},
      {"against", "baseline"},
      {"statistic", st.cusum->statistic()},
      {"threshold", st.cusum->threshold()},
      {"alpha", w.value("alpha", 0.001)},
      {"new", {{"requests", st.since_commit.requests}, {"errors", st.since_commit.failed}}},
      {"decided_at", iso_utc(now_ms)},
      {"decided_at_ms", now_ms}};
  const bool automatic = w.value("automatic", true);
  decision["reason"] = "the failure rate of " + row.to_version + " rose after commit above " +
                       row.from_version + "'s (CUSUM, alpha " +
                       std::to_string(w.value("alpha", 0.001)) + ")";
  if (!automatic) decision["verdict"] = "rollback-suppressed";
  w["open"] = false;
  w["result"] = automatic ? "rolled-back" : "regressed";
  w["decision"] = decision;
  watches_.erase(row.id);
  write();
  if (!automatic) return;
  auto rb = rollback(row.component, "agent",
                     "watch after commit: " + decision["reason"].get<std::string>());
  if (!rb) {
    // Recorded where the operator looks (mup deployments ID): the rollback did not start.
    w["result"] = "regressed";
    w["error"] = "the rollback could not start: " + rb.error().message();
    write();
    return;
  }
  w["rollback"] = rb->id;
  write();
}

}  // namespace mup::deploy
