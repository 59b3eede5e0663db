// Deployer: runs deployments (deploy/deployment.hpp) against a node and its data plane.
//
// Each deployment runs on its own thread; deployments of different components run at
// once, a second one of the same component is refused (Code::busy, the API's 409). The
// deployments row is written before each state's work starts (and the fault point
// "deploy.state.<state>" sits right after, for crash tests), so resume_all() on the next
// agent start picks every unfinished deployment up where it was and walks it on through
// the same table. abort() and rollback() set the deployment's request; its thread reads
// it between states and at every wait (a wait is cut short), and leaves the forward path.
//
// What a deployment acts on sits behind two seams, so the table can be tested with fakes
// and the agent wires the real ones:
//   - Node: the engine (install on trial, commit, rollback);
//   - DataPlane: the supervisor's instances and the proxy's routes.
// A final state is written with its audit record ("deploy", the reason) in one
// transaction. Blue-green: after commit the old set stays warm (weight 0) until keep_old_until;
// tick() closes expired windows (old set drained and stopped); a new deployment of the component
// closes an open window first; a rollback inside the window is a weight flip.
// Analysis (deploy/analysis.cpp): the judge reads the proxy's counts every 100 ms; its
// decision is the deployment's `decision`; a rollback decision is acted on at once (traffic
// back to the warm old set) and `rolled_back_at` records when all traffic was back.
//
// Thread-safe. The destructor asks running deployments to stop between states (their rows
// stay unfinished, as after a crash: the next resume_all() goes on) and joins them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "deploy/deployment.hpp"
#include "deploy/schedule.hpp"
#include "package/manifest.hpp"
#include "rollback/judge.hpp"
#include "state/state_db.hpp"

namespace mup::deploy {

struct PlanRequest;  // deploy/plan.hpp

// Error codes a caller (the API) branches on; category "deploy".
enum class Code : int {
  busy = 1,       // a deployment of the component is running (409)
  not_found,      // no such deployment or service (404)
  bad_request,    // a field is wrong (400)
  not_running,    // abort/promote of a finished deployment (409)
  not_a_service,  // the version carries no mup-service.toml
};
const ErrorCategory& deploy_category();
// Found by ADL: Code works with fail(), make_error() and Error::is().
inline const ErrorCategory& error_category(Code) {
  return deploy_category();
}
constexpr Errc errc_for(Code c) {
  switch (c) {
    case Code::busy:
    case Code::not_running: return Errc::busy;
    case Code::not_found:
    case Code::not_a_service: return Errc::not_found;
    case Code::bad_request: return Errc::invalid_argument;
  }
  return Errc::internal;
}

// Cancellation of a wait: set when the deployment is asked to abort, roll back or stop.
using Cancel = std::atomic<bool>;

// The engine, as a deployment sees it.
class Node {
 public:
  virtual ~Node() = default;
  struct Installed {
    std::string from_version, to_version;  // from: the active version before (may be empty)
  };
  // Installs and activates `version` (newest when empty) on trial. A version already active
  // answers {active, active} without doing anything. `force`: also a version marked bad
  // (rolled back from its trial before).
  [[nodiscard]] virtual Result<Installed> install(const std::string& component,
                                                  const std::string& version, const Cancel& cancel,
                                                  bool force) = 0;
  [[nodiscard]] virtual Status commit(const std::string& component) = 0;
  // Makes `version` the active one again (the engine's rollback --to); an empty version
  // leaves none active (undo of a first install). `restore_state`: the state snapshot taken
  // before the install is restored too (the version's policy says it migrates its state).
  // Idempotent.
  [[nodiscard]] virtual Status rollback(const std::string& component, const std::string& version,
                                        bool restore_state = false) = 0;
  virtual std::optional<std::string> active(const std::string& component) = 0;
  virtual std::optional<std::string> previous(const std::string& component) = 0;
  // The signed manifest the remote offers for component@version (the newest when empty):
  // plans read dependencies from it.
  [[nodiscard]] virtual Result<package::Manifest> offer(const std::string& component,
                                                        const std::string& version) {
    (void)version;
    return fail(Errc::not_found, "this node reads no offers (for " + component + ")");
  }
  // offer() for several (component, version) at once, answers in order (a plan's validation:
  // the engine refreshes each remote's metadata once for all of them).
  [[nodiscard]] virtual std::vector<Result<package::Manifest>> offers(
      const std::vector<std::pair<std::string, std::string>>& wanted) {
    std::vector<Result<package::Manifest>> out;
    for (const auto& [c, v] : wanted) out.push_back(offer(c, v));
    return out;
  }
  // The active version of every component.
  virtual std::map<std::string, package::Version> active_versions() { return {}; }
  // Whether component@version is installed already (a plan needs no space for it).
  virtual bool installed(const std::string& component, const std::string& version) {
    (void)component, (void)version;
    return false;
  }
  // Space for new versions on the node's filesystem: what is free, and the reserve a plan
  // must leave free (no disk to check: everything free).
  struct Space {
    uint64_t free = UINT64_MAX;
    uint64_t reserve = 0;
  };
  [[nodiscard]] virtual Result<Space> space() { return Space{}; }
};

// The supervisor and the proxy, as a deployment sees them. Every call is idempotent.
class DataPlane {
 public:
  virtual ~DataPlane() = default;
  // Starts the instances the version's service definition asks for (instances already
  // running for that version are kept); restart of crashed ones is off until commit.
  [[nodiscard]] virtual Status start(const std::string& component, const std::string& version) = 0;
  [[nodiscard]] virtual Status wait_ready(const std::string& component, const std::string& version,
                                          const Cancel& cancel) = 0;
  // Error when an instance of the version has exited (soak).
  [[nodiscard]] virtual Status check_alive(const std::string& component,
                                           const std::string& version) = 0;
  // The traffic split: weight per version (versions absent drain; weight 0: warm, no
  // traffic). Atomic in the proxy.
  [[nodiscard]] virtual Status route(const std::string& component,
                                     const std::map<std::string, int>& weights) = 0;
  virtual std::map<std::string, int> weights(const std::string& component) = 0;
  // Until no instance of the version has a request in flight (or drain_ms passed: error).
  [[nodiscard]] virtual Status wait_drained(const std::string& component,
                                            const std::string& version, const Cancel& cancel) = 0;
  [[nodiscard]] virtual Status stop(const std::string& component, const std::string& version) = 0;
  virtual void set_restart(const std::string& component, const std::string& version, bool on) = 0;
  // Rolling: runs instances 0..count-1 of the version and stops the others (restart off for
  // the new ones, as start()).
  [[nodiscard]] virtual Status scale(const std::string& component, const std::string& version,
                                     int count) {
    return count > 0 ? start(component, version) : stop(component, version);
  }
  // How many instances the version's service definition asks for.
  virtual int instances(const std::string& component, const std::string& version) {
    (void)component, (void)version;
    return 1;
  }
  // Cumulative traffic counts per version of the component (the proxy's statistics); an
  // empty map when the proxy keeps none for it (the judge then has nothing to judge by).
  [[nodiscard]] virtual Result<std::map<std::string, rollback::Counts>> counts(
      const std::string& component) {
    (void)component;
    return std::map<std::string, rollback::Counts>{};
  }
  // Synthetic checks (blue-green, before the switch): the [[service.check]]s of `defined_by`'s
  // service definition, each tried its count of times on every instance of `on` (the new
  // version, and the old one for reference). Empty: the definition has none.
  struct CheckResult {
    std::string name;  // "GET /api/x"
    uint64_t attempts = 0, failures = 0;
    uint64_t max_failures = 0;  // tolerated
    std::string last_error;     // of the last failed attempt
  };
  [[nodiscard]] virtual Result<std::vector<CheckResult>> run_checks(const std::string& component,
                                                                    const std::string& defined_by,
                                                                    const std::string& on,
                                                                    const Cancel& cancel) {
    (void)component, (void)defined_by, (void)on, (void)cancel;
    return std::vector<CheckResult>{};
  }
  // The version's rollback policy (its mup-service.toml [rollback] table; null: none).
  virtual nlohmann::json rollback_policy(const std::string& component, const std::string& version) {
    (void)component, (void)version;
    return nullptr;
  }
};

// Canary steps when a deployment names none: the seed's canary_percentage (5) first.
inline const std::vector<int> kDefaultCanarySteps = {5, 25, 50, 100};

struct DeployRequest {
  std::string component;
  std::string version;  // empty: the newest the remote offers
  Strategy strategy = Strategy::immediate;
  int64_t keep_old_ms = 10 * 60 * 1000;  // blue-green: the rollback window
  int64_t soak_ms = 2000;                // blue-green: ready and alive this long first
  std::string actor;
  int64_t rollback_of = 0;  // strategy rollback: the deployment it undoes (0: none)
  std::string reason;       // why it was started, when not by request (the watch's rollback)
  // A version the judge (or the watch) rolled back is marked bad: deploying it again by name
  // is refused unless forced.
  bool force = false;
  // The judge (immediate, blue-green: after the switch, before commit; 0: no analysis).
  int64_t analysis_ms = 10000;
  std::vector<int> steps;   // canary: the new version's weights, ascending, ending at 100
  int64_t step_ms = 10000;  // canary: each step's analysis; rolling: each batch's
  std::vector<int> pauses;  // canary: steps (weights) after which it waits for mup promote
  int batch_size = 1;       // rolling: instances replaced per batch
  // Unix ms to start at (0: now). Later than now: the deployment is `scheduled` until then.
  int64_t scheduled_for_ms = 0;
  // A maintenance window instead (deploy/schedule.hpp): cron expression, time zone, length,
  // and what happens if it closes mid-deployment: "finish" (default) or "rollback".
  std::string window, window_tz = "UTC", window_close = "finish";
  int64_t window_ms = 3600000;
  // Overrides of the version's rollback policy (rollback::policy_from_json keys).
  nlohmann::json policy = nlohmann::json::object();
};

struct DeployerOptions {
  // A new connection to the node's state database (one per deployment thread), with the
  // audit key set: the agent passes the engine's connect_state().
  std::function<Result<state::StateDb>()> connect;
  const Clock* clock = nullptr;  // default: the system clock
  // "deployment" events: {"event":"deployment","id","component","state",...}.
  std::function<void(const nlohmann::json&)> on_event;
  // How often the analysis reads the proxy's counts (tests with a fake plane: 0).
  std::chrono::milliseconds analysis_poll{100};
};

// The JSON the API and `mup deployments --json` show (docs/agent.md).
nlohmann::json deployment_json(const state::DeploymentRow& row,
                               const std::vector<state::StepRecord>& steps = {});

class Deployer {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Deployer>> open(DeployerOptions opts, Node& node,
                                                              DataPlane& plane);
  ~Deployer();

  // Starts a deployment on its own thread; the row as begun.
  [[nodiscard]] Result<state::DeploymentRow> start(const DeployRequest& req);
  // mup rollback: during a deployment, undoes it (outcome rolled-back); after one, starts
  // a deployment of strategy rollback to the previous version.
  [[nodiscard]] Result<state::DeploymentRow> rollback(const std::string& component,
                                                      const std::string& actor,
                                                      const std::string& reason = {});
  [[nodiscard]] Result<state::DeploymentRow> abort(int64_t id);
  // Blue-green: ends the soak now, or (committed) closes the window now.
  [[nodiscard]] Result<state::DeploymentRow> promote(int64_t id);
  // Every unfinished deployment resumed from its journaled state (agent start), then every
  // unfinished plan (its runner goes on from its journal: the plans table).
  void resume_all();
  // Closes blue-green windows that expired, and runs the watch after commit: once a second
  // (the agent's loop), the newest committed deployment of each component whose watch is
  // open feeds what its version served since the last tick to a CUSUM (rollback/
  // sequential.hpp) against the old version's failure rate; an alarm closes the watch with
  // its decision and starts a rollback deployment (reason: the watch's). The watch closes
  // "passed" when watch_ms ends. A restarted agent watches on (its CUSUM starts again at 0).
  void tick();
  // Blocks until the deployment is final (or `timeout`); its row.
  [[nodiscard]] Result<state::DeploymentRow> wait(int64_t id, std::chrono::milliseconds timeout);

  [[nodiscard]] Result<std::optional<state::DeploymentRow>> get(int64_t id);
  [[nodiscard]] Result<std::vector<state::DeploymentRow>> list(const std::string& component,
                                                               size_t limit);
  [[nodiscard]] Result<std::vector<state::StepRecord>> steps(int64_t id);
  bool running(const std::string& component) const;

  // Plans of many deployments (deploy/plan.hpp): validated, then run on their own thread.
  // The plan's JSON: {"id","atomic","state" (running, committed, failed, rolled-back),
  // "items":[{"component","version","after","state","deployment"?,"reason"?}]}.
  [[nodiscard]] Result<nlohmann::json> start_plan(const PlanRequest& req);
  [[nodiscard]] Result<nlohmann::json> plan(int64_t id);  // running, or from the journal

  // What a running deployment was asked to do by someone else (read between states).
  enum class Request : int { none = 0, abort, rollback, promote };

 private:
  struct Job {
    int64_t id = 0;
    std::string component;
    std::atomic<int> request{0};  // a Request
    Cancel cancel{false};         // cuts the current wait short
    std::atomic<bool> done{false};
    std::string why;  // the reason of a request not made by a person (set before `request`)
  };
  Deployer(DeployerOptions opts, Node& node, DataPlane& plane);
  [[nodiscard]] Result<state::StateDb> connect() const;
  void launch(int64_t id, const std::string& component);
  void run(const std::shared_ptr<Job>& job);
  [[nodiscard]] Status close_window(state::StateDb& db, state::DeploymentRow& row,
                                    const Cancel& cancel);
  [[nodiscard]] static Result<std::string> marked_bad(state::StateDb& db,
                                                      const std::string& component,
                                                      const std::string& version);
  // One tick of the watch of a committed deployment (deploy/watch.cpp).
  void watch(state::DeploymentRow& row, int64_t now_ms);
  struct Watch {
    std::optional<rollback::Cusum> cusum;
    rollback::Counts last, since_commit;
    bool primed = false;
  };
  std::map<int64_t, Watch> watches_;  // by deployment id; touched by tick() only
  struct PlanRun;
  void run_plan(const std::shared_ptr<PlanRun>& p);
  void resume_plans();
  std::map<int64_t, std::shared_ptr<PlanRun>> plans_;  // guarded by mu_
  std::vector<std::thread> plan_threads_;              // guarded by mu_; joined at the end
  void notify(const state::DeploymentRow& row);
  template <typename F>
  auto with_reader(F&& read) -> decltype(read(std::declval<state::StateDb&>()));

  DeployerOptions opts_;
  Node& node_;
  DataPlane& plane_;
  const Clock& clock_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;  // by component
  std::map<std::string, std::thread> threads_;        // by component: the latest deployment's
  std::atomic<bool> stopping_{false};
  std::mutex read_mu_;
  std::unique_ptr<state::StateDb> reader_;  // for get/list/steps (the API's reads)
};

}  // namespace mup::deploy
