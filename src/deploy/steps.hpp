// What a state's work sees (deploy/run.cpp, deploy/analysis.cpp): internal to the module.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "deploy/deployer.hpp"

namespace mup::deploy {

struct StepContext {
  Node& node;
  DataPlane& plane;
  const Clock& clock;
  state::DeploymentRow& row;
  Strategy strategy;
  const Cancel& cancel;
  std::atomic<int>& request;            // analysis consumes a promote that ends a manual pause
  std::string why;                      // the error of a failed step
  std::function<void()> journal;        // writes the row (and tells listeners) mid-state
  std::chrono::milliseconds poll{100};  // analysis: between reads of the counts
};

// The event a state's outcome is: ok; a wait cut short by abort/rollback is that request;
// else error (c.why set).
Event event_from(StepContext& c, const Status& s);

// Blue-green, before the switch: the new version's [[service.check]]s on its instances and on
// the old version's (for reference). A check the new version fails beyond its max_failures
// while the old one passes it is a rollback decision (Event::rollback, detail "decision" with
// algorithm "checks"); one both fail is a warning. detail "checks" keeps the results (a
// resumed deployment does not run them again). No checks defined: Event::ok.
Event do_checks(StepContext& c);

// The version's rollback policy: its mup-service.toml [rollback] with the deployment's
// overrides (detail "policy").
[[nodiscard]] Result<rollback::Policy> resolve_policy(StepContext& c);

// Rolling: the batches before the last (which runs every new instance and no old one): the
// new version's instances k_new, the old one's k_old (at least 1, for the comparison), the
// new version's weight (its share of instances, in percent).
struct Batch {
  int k_new, k_old, weight;
};
std::vector<Batch> rolling_batches(int n_new, int n_old, int batch_size);
// The batches of a rolling deployment from its row (instances from the data plane).
std::vector<Batch> rolling_batches_of(StepContext& c);

// A version's counts in the data plane's map (zero when it has none).
rollback::Counts counts_of(const std::map<std::string, rollback::Counts>& all,
                           const std::string& version);

// The analysis state: the judge on the proxy's counts; canary steps. ok, error, abort,
// rollback (the judge's decision, or a request).
Event do_analyze(StepContext& c);

}  // namespace mup::deploy
