// The deployment table and the deployer, against a fake engine and a fake data plane (the
// seams of deployer.hpp); the real ones are driven end to end in tests/agent_test.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "deploy/deployer.hpp"
#include "deploy/plan.hpp"
#include "deploy/steps.hpp"
#include "state/state_db.hpp"
#include "test_util.hpp"

namespace mup::deploy {
namespace {

using namespace std::chrono_literals;
using test::ScratchDir;

// The engine: versions installed and which one is active (on trial or not).
class FakeNode : public Node {
 public:
  std::mutex mu;
  std::string active_v = "1.0.0", previous_v, trial_v;
  std::string offered = "2.0.0";
  std::vector<std::string> calls;

  Result<Installed> install(const std::string&, const std::string& version, const Cancel&,
                            bool) override {
    std::lock_guard lk(mu);
    std::string v = version.empty() ? offered : version;
    calls.push_back("install " + v);
    Installed r{active_v, v};
    if (v != active_v) {
      previous_v = active_v;
      active_v = v;
      trial_v = v;
    }
    return r;
  }
  Status commit(const std::string&) override {
    std::lock_guard lk(mu);
    calls.push_back("commit " + trial_v);
    if (trial_v.empty()) return fail(Errc::invalid_argument, "nothing on trial");
    trial_v.clear();
    return {};
  }
  Status rollback(const std::string&, const std::string& version, bool restore) override {
    std::lock_guard lk(mu);
    calls.push_back("rollback " + version + (restore ? " --restore-state" : ""));
    previous_v = active_v;
    active_v = version;
    trial_v.clear();
    return {};
  }
  std::optional<std::string> active(const std::string&) override {
    std::lock_guard lk(mu);
    return active_v.empty() ? std::nullopt : std::optional(active_v);
  }
  std::optional<std::string> previous(const std::string&) override {
    std::lock_guard lk(mu);
    return previous_v.empty() ? std::nullopt : std::optional(previous_v);
  }
};

// The supervisor and proxy: running versions and the traffic split.
class FakePlane : public DataPlane {
 public:
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::string> running{"1.0.0"};
  std::map<std::string, int> split{{"1.0.0", 100}};
  std::set<std::string> never_ready;               // versions whose readiness waits until cancelled
  std::set<std::string> crashing;                  // versions that fail readiness
  std::vector<std::map<std::string, int>> routes;  // every split set, in order
  std::map<std::string, bool> restart;

  Status start(const std::string&, const std::string& v) override {
    std::lock_guard lk(mu);
    running.insert(v);
    return {};
  }
  Status wait_ready(const std::string&, const std::string& v, const Cancel& cancel) override {
    if (crashing.count(v)) return fail(Errc::io, "instance web@" + v + "#0 exited with status 3");
    if (never_ready.count(v)) {
      while (!cancel) std::this_thread::sleep_for(1ms);
      return fail(Errc::io, "cancelled");
    }
    return {};
  }
  Status check_alive(const std::string&, const std::string&) override { return {}; }
  Status route(const std::string&, const std::map<std::string, int>& w) override {
    std::lock_guard lk(mu);
    split = w;
    routes.push_back(w);
    return {};
  }
  std::map<std::string, int> weights(const std::string&) override {
    std::lock_guard lk(mu);
    return split;
  }
  Status wait_drained(const std::string&, const std::string&, const Cancel&) override { return {}; }
  Status stop(const std::string&, const std::string& v) override {
    std::lock_guard lk(mu);
    running.erase(v);
    return {};
  }
  void set_restart(const std::string&, const std::string& v, bool on) override {
    std::lock_guard lk(mu);
    restart[v] = on;
  }

  // Rolling: four instances per version; every scale asked for, "version:count".
  std::vector<std::string> scales;
  std::function<void(const std::string& version, int n)> on_scale;  // before each
  Status scale(const std::string&, const std::string& v, int n) override {
    if (on_scale) on_scale(v, n);
    std::lock_guard lk(mu);
    scales.push_back(v + ":" + std::to_string(n));
    if (n > 0)
      running.insert(v);
    else
      running.erase(v);
    return {};
  }
  int instances(const std::string&, const std::string&) override { return 4; }

  // Synthetic checks: the results per version checked (none: no checks defined).
  std::map<std::string, std::vector<CheckResult>> check_results;
  Result<std::vector<CheckResult>> run_checks(const std::string&, const std::string&,
                                              const std::string& on, const Cancel&) override {
    std::lock_guard lk(mu);
    auto it = check_results.find(on);
    return it == check_results.end() ? std::vector<CheckResult>{} : it->second;
  }

  // Traffic, when `clock` is set: each read of the counts is 100 ms of 200 requests/s split by
  // the weights, failing at fail_rate[version] (1% by default), the clock moved on by 100 ms.
  FakeClock* clock = nullptr;
  std::map<std::string, double> fail_rate;
  std::set<std::string> unreachable;  // routed but served nothing
  std::map<std::string, rollback::Counts> served;
  std::mt19937_64 rng{42};
  std::chrono::milliseconds delay{0};  // real time per read, for tests that race a ticker
  Result<std::map<std::string, rollback::Counts>> counts(const std::string&) override {
    if (delay.count()) std::this_thread::sleep_for(delay);
    std::lock_guard lk(mu);
    if (!clock) return std::map<std::string, rollback::Counts>{};
    clock->advance(100ms);
    for (const auto& [v, w] : split) {
      if (unreachable.count(v)) continue;
      const auto n = static_cast<uint64_t>(20 * w / 100);
      auto it = fail_rate.find(v);
      auto& c = served[v];
      c.requests += n;
      c.failed +=
          std::binomial_distribution<uint64_t>(n, it == fail_rate.end() ? 0.01 : it->second)(rng);
    }
    return served;
  }
};

class DeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = Deployer::open(options(), node_, plane_);
    ASSERT_TRUE(d) << d.error().message();
    deployer_ = std::move(*d);
  }
  DeployerOptions options() {
    DeployerOptions o;
    o.connect = [this] { return state::StateDb::open(dir_ / "state.db", clock_); };
    o.clock = &clock_;
    o.analysis_poll = 0ms;
    return o;
  }
  state::DeploymentRow deploy(Strategy s, int64_t keep_old_ms = 60000) {
    DeployRequest r;
    r.component = "web";
    r.strategy = s;
    r.soak_ms = 0;
    r.keep_old_ms = keep_old_ms;
    r.actor = "tester";
    auto row = deployer_->start(r);
    EXPECT_TRUE(row) << row.error().message();
    auto done = deployer_->wait(row->id, 20s);
    EXPECT_TRUE(done) << done.error().message();
    return *done;
  }

  ScratchDir dir_;
  FakeClock clock_;
  FakeNode node_;
  FakePlane plane_;
  std::unique_ptr<Deployer> deployer_;
};

TEST(DeploymentTable, EveryStateBeforeCommitCanBeLeftAndTheUndoPathAlwaysEnds) {
  for (int i = 0; i <= static_cast<int>(State::aborted); ++i) {
    const auto s = static_cast<State>(i);
    SCOPED_TRACE(std::string(state_name(s)));
    EXPECT_EQ(parse_state(state_name(s)), s) << "names round-trip";
    if (is_final(s)) {
      EXPECT_FALSE(next_state(s, Event::ok)) << "a final state has no way out";
      continue;
    }
    ASSERT_TRUE(next_state(s, Event::error)) << "every state answers an error";
    if (!is_undoing(s)) {
      EXPECT_TRUE(next_state(s, Event::abort));
      EXPECT_TRUE(next_state(s, Event::rollback));
    }
    // From here, ok or error, the walk ends within the table's size.
    for (Event e : {Event::ok, Event::error}) {
      State t = s;
      int n = 0;
      while (!is_final(t) && n++ < 32) {
        auto nx = next_state(t, e);
        if (!nx) nx = next_state(t, Event::skip);
        ASSERT_TRUE(nx) << "stuck at " << state_name(t);
        t = *nx;
      }
      EXPECT_TRUE(is_final(t));
    }
  }
  // Errors before the switch never touch traffic: they go straight to stop-new.
  for (State s : {State::start_new, State::wait_ready, State::soak})
    EXPECT_EQ(next_state(s, Event::error), State::stop_new);
  EXPECT_EQ(next_state(State::switch_new, Event::error), State::switch_back);
  EXPECT_EQ(parse_strategy("blue-green"), Strategy::blue_green);
  EXPECT_EQ(parse_strategy("canary"), Strategy::canary);
  EXPECT_EQ(parse_strategy("rolling"), Strategy::rolling);
  EXPECT_FALSE(parse_strategy("shadow")) << "unknown: refused, not guessed";
  EXPECT_EQ(rolling_batches(4, 4, 1).size(), 3u);
  EXPECT_EQ(rolling_batches(2, 2, 2).size(), 0u) << "one batch: all at once";
  EXPECT_EQ(rolling_batches(3, 1, 1)[1].k_old, 1) << "one old instance stays until the end";
  EXPECT_EQ(next_state(State::analyze, Event::rollback), State::switch_back)
      << "a rollback decision leaves the forward path before commit";
}

TEST_F(DeployTest, ImmediateSwitchesAllTrafficThenStopsTheOldAndCommits) {
  auto row = deploy(Strategy::immediate);
  EXPECT_EQ(row.state, "committed") << row.reason;
  EXPECT_EQ(row.from_version, "1.0.0");
  EXPECT_EQ(row.to_version, "2.0.0");
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"2.0.0", 100}}));
  EXPECT_EQ(plane_.running, (std::set<std::string>{"2.0.0"}));
  EXPECT_TRUE(plane_.restart["2.0.0"]) << "restarts back on once committed";
  EXPECT_EQ(row.detail["decision"]["verdict"], "pass") << "no traffic statistics: nothing to judge";
  EXPECT_TRUE(node_.trial_v.empty()) << "the engine committed it";
  auto steps = deployer_->steps(row.id);
  ASSERT_TRUE(steps);
  std::vector<std::string> names;
  for (auto& s : *steps) names.push_back(s.step);
  EXPECT_EQ(names,
            (std::vector<std::string>{"install", "start-new", "wait-ready", "soak", "switch",
                                      "analyze", "drain-old", "stop-old", "commit", "committed"}));
  auto db = state::StateDb::open(dir_ / "state.db", clock_);
  ASSERT_TRUE(db);
  auto audit = db->audit();
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 1u) << "written with the final state";
  EXPECT_EQ((*audit)[0].action, "deploy");
  EXPECT_EQ((*audit)[0].subject, "web 2.0.0");
  EXPECT_EQ((*audit)[0].detail["state"], "committed");
}

TEST_F(DeployTest, NotReadyFailsWithoutEverMovingTraffic) {
  plane_.crashing.insert("2.0.0");
  auto row = deploy(Strategy::immediate);
  EXPECT_EQ(row.state, "failed");
  EXPECT_NE(row.reason.find("exited with status 3"), std::string::npos) << row.reason;
  EXPECT_TRUE(plane_.routes.empty()) << "traffic never moved";
  EXPECT_EQ(plane_.running, (std::set<std::string>{"1.0.0"})) << "new stopped, old untouched";
  EXPECT_EQ(node_.active_v, "1.0.0") << "the engine rolled the trial back";
}

TEST_F(DeployTest, BlueGreenKeepsTheOldSetWarmUntilTheWindowCloses) {
  auto row = deploy(Strategy::blue_green, 60000);
  EXPECT_EQ(row.state, "committed") << row.reason;
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"2.0.0", 100}, {"1.0.0", 0}}));
  EXPECT_EQ(plane_.running.count("1.0.0"), 1u) << "warm";
  deployer_->tick();
  EXPECT_EQ(plane_.running.count("1.0.0"), 1u) << "the window is still open";
  clock_.advance(61s);
  deployer_->tick();
  EXPECT_EQ(plane_.running.count("1.0.0"), 0u) << "window closed: old set stopped";
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"2.0.0", 100}}));
  auto r = deployer_->get(row.id);
  ASSERT_TRUE(r && *r);
  EXPECT_FALSE((**r).detail["window"]["open"].get<bool>());
}

TEST_F(DeployTest, BlueGreenChecksFailingOnTheNewVersionRollBackBeforeAnyTraffic) {
  plane_.check_results["2.0.0"] = {{"GET /api", 20, 3, 0, "web@2.0.0#0: GET /api: status 500"}};
  plane_.check_results["1.0.0"] = {{"GET /api", 20, 0, 0, ""}};
  auto row = deploy(Strategy::blue_green);
  EXPECT_EQ(row.state, "rolled-back") << row.reason;
  EXPECT_NE(row.reason.find("GET /api: 3 of 20 attempts failed"), std::string::npos) << row.reason;
  for (const auto& w : plane_.routes)
    EXPECT_EQ(w.count("2.0.0") ? w.at("2.0.0") : 0, 0) << "2.0.0 never got traffic";
  EXPECT_EQ(plane_.running, (std::set<std::string>{"1.0.0"}));
  EXPECT_EQ(node_.active_v, "1.0.0");
  const auto& d = row.detail["decision"];
  EXPECT_EQ(d["algorithm"], "checks");
  EXPECT_EQ(d["verdict"], "rollback");
  EXPECT_EQ(d["new"]["errors"], 3);
  EXPECT_EQ(d["old"]["requests"], 20);
  EXPECT_EQ(row.detail["checks"][0]["old"]["failures"], 0);
  // Marked bad like a judge's rollback.
  DeployRequest again;
  again.component = "web";
  again.version = "2.0.0";
  again.strategy = Strategy::blue_green;
  EXPECT_FALSE(deployer_->start(again));
}

TEST_F(DeployTest, AChecksFailureTheOldVersionSharesIsAWarningNotARollback) {
  plane_.check_results["2.0.0"] = {{"GET /api", 20, 20, 0, "connect refused"},
                                   {"GET /healthz", 20, 0, 0, ""}};
  plane_.check_results["1.0.0"] = {{"GET /api", 20, 20, 0, "connect refused"},
                                   {"GET /healthz", 20, 0, 0, ""}};
  auto row = deploy(Strategy::blue_green);
  EXPECT_EQ(row.state, "committed") << row.reason;
  ASSERT_TRUE(row.detail["warnings"].is_array());
  EXPECT_NE(row.detail["warnings"][0]["reason"].get<std::string>().find("fails on 1.0.0 too"),
            std::string::npos);
  EXPECT_EQ(row.detail["checks"].size(), 2u);
}

TEST_F(DeployTest, ChecksWithAutomaticRollbackOffAreRecordedOnly) {
  plane_.check_results["2.0.0"] = {{"GET /api", 10, 10, 0, "status 503"}};
  DeployRequest r;
  r.component = "web";
  r.strategy = Strategy::blue_green;
  r.soak_ms = 0;
  r.policy = {{"automatic", false}};
  auto row = deployer_->start(r);
  ASSERT_TRUE(row) << row.error().message();
  auto done = deployer_->wait(row->id, 20s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "committed") << done->reason;
  EXPECT_NE(done->detail.dump().find("automatic rollback is off"), std::string::npos)
      << done->detail.dump();
}

TEST_F(DeployTest, RollbackInsideTheWindowIsAWeightFlipToTheWarmSet) {
  auto row = deploy(Strategy::blue_green, 60000);
  ASSERT_EQ(row.state, "committed");
  auto rb = deployer_->rollback("web", "tester");
  ASSERT_TRUE(rb) << rb.error().message();
  auto done = deployer_->wait(rb->id, 20s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "rolled-back") << done->reason;
  EXPECT_EQ(done->strategy, "rollback");
  EXPECT_EQ(done->to_version, "1.0.0");
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"1.0.0", 100}}));
  EXPECT_EQ(plane_.running, (std::set<std::string>{"1.0.0"}));
  EXPECT_EQ(node_.active_v, "1.0.0");
  auto orig = deployer_->get(row.id);
  EXPECT_EQ((**orig).detail["rolled_back_by"], rb->id);
}

TEST_F(DeployTest, AbortWhileWaitingForReadinessUndoes) {
  plane_.never_ready.insert("2.0.0");
  DeployRequest r;
  r.component = "web";
  r.soak_ms = 0;
  auto row = deployer_->start(r);
  ASSERT_TRUE(row);
  auto second = deployer_->start(r);
  ASSERT_FALSE(second) << "one deployment per component";
  EXPECT_TRUE(second.error().is(Code::busy));
  // Wait until it is in wait-ready, then abort.
  for (int i = 0; i < 2000; ++i) {
    auto cur = deployer_->get(row->id);
    if (cur && *cur && (**cur).state == "wait-ready") break;
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(deployer_->abort(row->id));
  auto done = deployer_->wait(row->id, 20s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "aborted") << done->reason;
  EXPECT_TRUE(plane_.routes.empty());
  EXPECT_EQ(node_.active_v, "1.0.0");
  EXPECT_FALSE(deployer_->abort(row->id)) << "nothing left to abort";
}

TEST_F(DeployTest, AnUnfinishedDeploymentIsResumedFromItsJournaledState) {
  // As an agent killed in drain-old leaves it: engine on 2.0.0 (trial), traffic moved.
  (void)node_.install("web", "2.0.0", Cancel{false}, false);
  plane_.running.insert("2.0.0");
  plane_.split = {{"2.0.0", 100}};
  {
    auto db = state::StateDb::open(dir_ / "state.db", clock_);
    ASSERT_TRUE(db);
    state::DeploymentRow r;
    r.component = "web";
    r.strategy = "immediate";
    r.state = "drain-old";
    r.from_version = "1.0.0";
    r.to_version = "2.0.0";
    r.detail = {{"installed", true}, {"soak_ms", 0}};
    ASSERT_TRUE(db->begin_deployment(r));
  }
  deployer_->resume_all();
  auto list = deployer_->list("web", 1);
  ASSERT_TRUE(list && !list->empty());
  auto done = deployer_->wait((*list)[0].id, 20s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "committed") << done->reason;
  EXPECT_EQ(plane_.running, (std::set<std::string>{"2.0.0"}));
  EXPECT_TRUE(node_.trial_v.empty());
}

TEST_F(DeployTest, AJournalRowThatCannotBeUnderstoodIsRolledBack) {
  (void)node_.install("web", "2.0.0", Cancel{false}, false);
  plane_.running.insert("2.0.0");
  plane_.split = {{"2.0.0", 100}};
  {
    auto db = state::StateDb::open(dir_ / "state.db", clock_);
    ASSERT_TRUE(db);
    state::DeploymentRow r;
    r.component = "web";
    r.strategy = "immediate";
    r.state = "teleport";  // written by nothing this build knows
    r.from_version = "1.0.0";
    r.to_version = "2.0.0";
    ASSERT_TRUE(db->begin_deployment(r));
  }
  deployer_->resume_all();
  auto list = deployer_->list("web", 1);
  auto done = deployer_->wait((*list)[0].id, 20s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "failed");
  EXPECT_NE(done->reason.find("unknown state"), std::string::npos);
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"1.0.0", 100}}));
  EXPECT_EQ(node_.active_v, "1.0.0");
}

TEST_F(DeployTest, AScheduledDeploymentWaitsForItsTimeAndCanBeCancelled) {
  DeployRequest r;
  r.component = "web";
  r.soak_ms = 0;
  r.scheduled_for_ms = clock_.wall_ms() + 30000;
  auto row = deployer_->start(r);
  ASSERT_TRUE(row) << row.error().message();
  EXPECT_EQ(row->state, "scheduled");
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(node_.calls.empty()) << "nothing done before its time";
  auto j = deployment_json(*row);
  EXPECT_EQ(j["scheduled_for_ms"], r.scheduled_for_ms);
  EXPECT_TRUE(j["started_at"].is_null());
  clock_.advance(30s);
  auto done = deployer_->wait(row->id, 20s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "committed") << done->reason;
  j = deployment_json(*done);
  EXPECT_GE(j["started_at_ms"].get<int64_t>(), r.scheduled_for_ms);

  r.version = "3.0.0";
  r.scheduled_for_ms = clock_.wall_ms() + 60000;
  auto later = deployer_->start(r);
  ASSERT_TRUE(later);
  ASSERT_TRUE(deployer_->abort(later->id));
  auto cancelled = deployer_->wait(later->id, 20s);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->state, "aborted");
  EXPECT_EQ(node_.active_v, "2.0.0") << "a cancelled schedule does nothing";
}

TEST_F(DeployTest, AScheduledDeploymentSurvivesARestartOfTheDeployer) {
  DeployRequest r;
  r.component = "web";
  r.soak_ms = 0;
  r.scheduled_for_ms = clock_.wall_ms() + 30000;
  auto row = deployer_->start(r);
  ASSERT_TRUE(row);
  deployer_.reset();  // the agent stops: the row stays scheduled
  auto d = Deployer::open(options(), node_, plane_);
  ASSERT_TRUE(d);
  deployer_ = std::move(*d);
  auto again = deployer_->get(row->id);
  ASSERT_TRUE(again && *again);
  EXPECT_EQ((**again).state, "scheduled");
  deployer_->resume_all();
  clock_.advance(30s);
  auto done = deployer_->wait(row->id, 20s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "committed") << done->reason;
}

// --- The judge in the deployment (analysis.cpp), on the fake plane's simulated traffic ------

class JudgedDeployTest : public DeployTest {
 protected:
  void SetUp() override {
    DeployTest::SetUp();
    plane_.clock = &clock_;
    // The old version's record: 60,000 requests, 1% failed.
    plane_.served["1.0.0"] = rollback::Counts{60000, 600, {}};
  }
  state::DeploymentRow judged(DeployRequest r) {
    r.component = "web";
    r.soak_ms = 0;
    if (!r.policy.contains("triggers")) r.policy["triggers"] = {{{"metric", "error_rate"}}};
    if (!r.policy.contains("alpha")) r.policy["alpha"] = 0.001;
    auto row = deployer_->start(r);
    EXPECT_TRUE(row) << row.error().message();
    auto done = deployer_->wait(row->id, 60s);
    EXPECT_TRUE(done) << done.error().message();
    return *done;
  }
};

TEST_F(JudgedDeployTest, ABadVersionIsRolledBackByTheJudgeWithItsDecisionRecorded) {
  plane_.fail_rate["2.0.0"] = 0.2;
  DeployRequest r;
  r.analysis_ms = 30000;
  r.policy = {{"restore_state", true}};
  auto row = judged(r);
  EXPECT_EQ(node_.calls.back(), "rollback 1.0.0 --restore-state")
      << "the policy says 2.0.0 migrates its state";
  EXPECT_TRUE(row.detail.value("state_restored", false));
  EXPECT_EQ(row.state, "rolled-back") << row.reason;
  EXPECT_NE(row.reason.find("rollback judge"), std::string::npos) << row.reason;
  const auto j = deployment_json(row);
  ASSERT_TRUE(j.contains("decision"));
  EXPECT_EQ(j["decision"]["verdict"], "rollback");
  EXPECT_EQ(j["decision"]["algorithm"], "sequential");
  EXPECT_EQ(j["decision"]["metric"], "error_rate");
  EXPECT_EQ(j["decision"]["against"], "baseline");
  EXPECT_EQ(j["decision"]["old"]["requests"], 60000);
  EXPECT_GT(j["decision"]["new"]["errors"].get<int>(), 0);
  EXPECT_GE(j["decision"]["statistic"].get<double>(), j["decision"]["threshold"].get<double>());
  ASSERT_TRUE(j.contains("rolled_back_at"));
  {
    auto db = state::StateDb::open(dir_ / "state.db", clock_);
    ASSERT_TRUE(db);
    auto audit = db->audit();
    ASSERT_TRUE(audit && !audit->empty());
    EXPECT_EQ(audit->back().detail["decision"]["verdict"], "rollback") << "the decision on record";
  }
  EXPECT_GE(j["rolled_back_at_ms"].get<int64_t>(), j["decision"]["decided_at_ms"].get<int64_t>());
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"1.0.0", 100}}));
  EXPECT_EQ(node_.active_v, "1.0.0");
  // 2.0.0 is marked bad: named again, it is refused unless forced.
  DeployRequest again;
  again.component = "web";
  again.version = "2.0.0";
  auto refused = deployer_->start(again);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("marked bad"), std::string::npos)
      << refused.error().message();
  again.force = true;
  again.analysis_ms = 0;
  auto forced = deployer_->start(again);
  ASSERT_TRUE(forced) << forced.error().message();
  ASSERT_TRUE(deployer_->wait(forced->id, 20s));
  // It decided long before the analysis would have ended (30 s of simulated traffic).
  EXPECT_LT(j["decision"]["decided_at_ms"].get<int64_t>() - row.started_at_ms, 5000);
}

TEST_F(JudgedDeployTest, AnEqualVersionPassesTheAnalysisAndCommits) {
  DeployRequest r;
  r.analysis_ms = 5000;
  auto row = judged(r);
  EXPECT_EQ(row.state, "committed") << row.reason;
  EXPECT_EQ(row.detail["decision"]["verdict"], "pass");
  EXPECT_GE(row.detail["decision"]["new"]["requests"].get<int>(), 200);
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"2.0.0", 100}}));
}

TEST_F(JudgedDeployTest, AutoRollbackOffRecordsTheDecisionAndGoesOn) {
  plane_.fail_rate["2.0.0"] = 0.2;
  DeployRequest r;
  r.analysis_ms = 3000;
  r.policy = {{"automatic", false}};
  auto row = judged(r);
  EXPECT_EQ(row.state, "committed") << row.reason;
  EXPECT_EQ(row.detail["decision"]["verdict"], "rollback-suppressed");
}

TEST_F(JudgedDeployTest, NoTrafficForTheNewVersionNeverPasses) {
  plane_.unreachable.insert("2.0.0");
  DeployRequest r;
  r.analysis_ms = 1000;
  auto row = judged(r);
  EXPECT_EQ(row.state, "rolled-back") << row.reason;
  EXPECT_EQ(row.detail["decision"]["verdict"], "no-data");
  EXPECT_NE(row.reason.find("no data"), std::string::npos) << row.reason;
}

TEST_F(JudgedDeployTest, CanaryWalksItsStepsWithExactWeightsAndComparesOnTheSameTraffic) {
  DeployRequest r;
  r.strategy = Strategy::canary;
  r.steps = {10, 50, 100};
  r.step_ms = 5000;
  auto row = judged(r);
  EXPECT_EQ(row.state, "committed") << row.reason;
  using W = std::map<std::string, int>;
  std::vector<W> want = {W{{"2.0.0", 10}, {"1.0.0", 90}}, W{{"2.0.0", 50}, {"1.0.0", 50}},
                         W{{"2.0.0", 100}}};
  std::vector<W> seen;
  for (const auto& w : plane_.routes)
    if (seen.empty() || seen.back() != w) seen.push_back(w);
  EXPECT_EQ(seen, want);
  EXPECT_EQ(row.detail["decision"]["against"], "old");
  EXPECT_EQ(deployment_json(row)["canary"]["step"], 2);
}

TEST_F(JudgedDeployTest, ACanaryPausesAtAMarkedStepUntilPromoted) {
  DeployRequest r;
  r.component = "web";
  r.soak_ms = 0;
  r.strategy = Strategy::canary;
  r.steps = {10, 50, 100};
  r.pauses = {10};
  r.step_ms = 12000;  // 10% of 200 req/s: 200 requests (min_requests) take 10 s
  r.policy = {{"triggers", {{{"metric", "error_rate"}}}}};
  auto row = deployer_->start(r);
  ASSERT_TRUE(row) << row.error().message();
  bool paused = false;
  for (int i = 0; i < 2000 && !paused; ++i) {
    auto now = deployer_->get(row->id);
    paused = now && *now && (**now).detail.value("paused", false);
    if (!paused) std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(paused) << "it waits at 10%";
  EXPECT_EQ(deployment_json(**deployer_->get(row->id))["canary"]["paused"], true);
  {
    std::lock_guard lk(plane_.mu);
    EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"2.0.0", 10}, {"1.0.0", 90}}));
  }
  ASSERT_TRUE(deployer_->promote(row->id));
  auto done = deployer_->wait(row->id, 30s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "committed") << done->reason;
  bool saw_50 = false;
  for (const auto& w : plane_.routes)
    saw_50 = saw_50 || w == std::map<std::string, int>{{"2.0.0", 50}, {"1.0.0", 50}};
  EXPECT_TRUE(saw_50) << "the promote went on to the next step, not straight to 100%";
}

TEST_F(JudgedDeployTest, ABadCanaryIsRolledBackBeforeItGetsMostOfTheTraffic) {
  plane_.fail_rate["2.0.0"] = 0.3;
  DeployRequest r;
  r.strategy = Strategy::canary;
  r.steps = {20, 50, 100};
  r.step_ms = 10000;
  auto row = judged(r);
  EXPECT_EQ(row.state, "rolled-back") << row.reason;
  EXPECT_EQ(row.detail["decision"]["against"], "old");
  EXPECT_EQ(deployment_json(row)["canary"]["step"], 0) << "caught at the first step";
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"1.0.0", 100}}));
}

TEST_F(JudgedDeployTest, ARegressionAfterCommitIsCaughtByTheWatchAndRolledBack) {
  DeployRequest r;
  r.analysis_ms = 2000;
  r.policy = {{"watch_ms", 600000}};
  auto row = judged(r);
  ASSERT_EQ(row.state, "committed") << row.reason;
  ASSERT_TRUE(row.detail.contains("watch"));
  EXPECT_TRUE(row.detail["watch"]["open"].get<bool>());
  // Healthy for a while: the watch stays open.
  for (int i = 0; i < 50; ++i) deployer_->tick();
  auto again = deployer_->get(row.id);
  ASSERT_TRUE(again && *again);
  EXPECT_TRUE((**again).detail["watch"]["open"].get<bool>());
  // Then 2.0.0 starts failing 10% of requests.
  {
    std::lock_guard lk(plane_.mu);
    plane_.fail_rate["2.0.0"] = 0.1;
  }
  int ticks = 0;
  for (; ticks < 600; ++ticks) {
    deployer_->tick();
    auto r2 = deployer_->get(row.id);
    if (r2 && *r2 && !(**r2).detail["watch"]["open"].get<bool>()) break;
  }
  auto watched = deployer_->get(row.id);
  ASSERT_TRUE(watched && *watched);
  const auto j = deployment_json(**watched);
  EXPECT_EQ(j["watch"]["result"], "rolled-back") << j.dump();
  EXPECT_EQ(j["watch"]["decision"]["algorithm"], "cusum");
  EXPECT_LT(ticks, 60) << "caught within seconds of traffic";
  const int64_t rb = (**watched).detail["watch"]["rollback"];
  auto done = deployer_->wait(rb, 20s);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "rolled-back") << done->reason;
  EXPECT_NE(done->reason.find("watch after commit"), std::string::npos) << done->reason;
  EXPECT_EQ(node_.active_v, "1.0.0");
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"1.0.0", 100}}));
}

TEST_F(JudgedDeployTest, AHealthyVersionPassesItsWatch) {
  DeployRequest r;
  r.analysis_ms = 2000;
  r.policy = {{"watch_ms", 3000}};
  auto row = judged(r);
  ASSERT_EQ(row.state, "committed") << row.reason;
  for (int i = 0; i < 40; ++i) deployer_->tick();  // each tick is 100 ms of traffic
  auto after = deployer_->get(row.id);
  ASSERT_TRUE(after && *after);
  EXPECT_EQ(deployment_json(**after)["watch"]["result"], "passed");
  EXPECT_EQ(node_.active_v, "2.0.0");
}

TEST_F(JudgedDeployTest, AMaintenanceWindowStartsTheDeploymentAndItsCloseRollsBack) {
  // The fake clock reads 2023-11-14T22:13:20Z: a window opening at 22:13 for a minute is open.
  DeployRequest r;
  r.analysis_ms = 120000;  // longer than the window
  r.window = "13 22 * * *";
  r.window_ms = 60000;
  r.window_close = "rollback";
  r.component = "web";
  plane_.delay = 1ms;  // 100 ms of fake traffic per real ms: the ticker sees the window close
  r.soak_ms = 0;
  r.policy = {{"triggers", {{{"metric", "error_rate"}}}}};
  auto row = deployer_->start(r);
  ASSERT_TRUE(row) << row.error().message();
  EXPECT_NE(row->state, "scheduled") << "inside its window: it starts at once";
  std::atomic<bool> stop{false};
  std::thread ticker([&] {
    while (!stop) {
      deployer_->tick();
      std::this_thread::sleep_for(2ms);
    }
  });
  auto done = deployer_->wait(row->id, 60s);
  stop = true;
  ticker.join();
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "rolled-back") << done->reason;
  EXPECT_NE(done->reason.find("maintenance window closed"), std::string::npos) << done->reason;
  EXPECT_EQ(deployment_json(*done)["window"]["close"], "rollback");

  // A window later today: scheduled for its opening.
  DeployRequest later;
  later.component = "web";
  later.window = "0 23 * * *";
  later.window_tz = "+01:00";  // 23:00 at +01:00 is 22:00 UTC: passed today, so tomorrow
  later.window_ms = 60000;
  auto sched = deployer_->start(later);
  ASSERT_TRUE(sched) << sched.error().message();
  EXPECT_EQ(sched->state, "scheduled");
  EXPECT_EQ(deployment_json(*sched)["scheduled_for"], "2023-11-15T22:00:00Z");
  ASSERT_TRUE(deployer_->abort(sched->id));
  later.window = "61 * * * *";
  auto bad = deployer_->start(later);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("minute"), std::string::npos);
}

TEST_F(JudgedDeployTest, RollingReplacesInstancesInBatchesWithTheirShareOfTraffic) {
  DeployRequest r;
  r.strategy = Strategy::rolling;
  r.batch_size = 1;
  r.step_ms = 3000;
  // What the journal says when each batch stops old instances (a kill there resumes it).
  std::vector<int64_t> journaled_step;
  plane_.on_scale = [&](const std::string& v, int) {
    if (v != "1.0.0") return;
    auto db = state::StateDb::open(dir_ / "state.db", clock_);
    auto rows = db ? db->unfinished_deployments() : decltype(db->unfinished_deployments()){};
    if (rows && !rows->empty()) journaled_step.push_back(rows->front().detail.value("step", -1));
  };
  auto row = judged(r);
  EXPECT_EQ(row.state, "committed") << row.reason;
  EXPECT_EQ(journaled_step, (std::vector<int64_t>{0, 1, 2}))
      << "each batch is journaled before it changes instances";
  using W = std::map<std::string, int>;
  std::vector<W> seen;
  for (const auto& w : plane_.routes)
    if (seen.empty() || seen.back() != w) seen.push_back(w);
  EXPECT_EQ(seen, (std::vector<W>{W{{"2.0.0", 25}, {"1.0.0", 75}}, W{{"2.0.0", 50}, {"1.0.0", 50}},
                                  W{{"2.0.0", 75}, {"1.0.0", 25}}, W{{"2.0.0", 100}}}));
  EXPECT_EQ(plane_.scales, (std::vector<std::string>{"2.0.0:1", "2.0.0:1", "1.0.0:3", "2.0.0:2",
                                                     "1.0.0:2", "2.0.0:3", "1.0.0:1", "2.0.0:4"}));
  EXPECT_EQ(row.detail["decision"]["against"], "old");
  EXPECT_EQ(deployment_json(row)["rolling"]["batch_size"], 1);
  EXPECT_EQ(plane_.running, (std::set<std::string>{"2.0.0"}));
}

TEST_F(JudgedDeployTest, ABadRollingBatchIsRolledBackWithTheOldSetWhole) {
  plane_.fail_rate["2.0.0"] = 0.3;
  DeployRequest r;
  r.strategy = Strategy::rolling;
  r.batch_size = 2;
  r.step_ms = 10000;
  auto row = judged(r);
  EXPECT_EQ(row.state, "rolled-back") << row.reason;
  EXPECT_EQ(plane_.split, (std::map<std::string, int>{{"1.0.0", 100}}));
  EXPECT_EQ(plane_.running, (std::set<std::string>{"1.0.0"})) << "the old set started again whole";
}

TEST_F(JudgedDeployTest, ABadPolicyIsRefusedBeforeAnythingStarts) {
  DeployRequest r;
  r.component = "web";
  r.policy = {{"alpha", 2}};
  auto row = deployer_->start(r);
  ASSERT_FALSE(row);
  EXPECT_NE(row.error().message().find("alpha"), std::string::npos);
  r.policy = nlohmann::json::object();
  r.steps = {50, 10};
  r.strategy = Strategy::canary;
  EXPECT_FALSE(deployer_->start(r));
}

// --- Plans (plan.hpp, plan_run.cpp): a node of several components --------------------------

// Several components, each with its active version and what the remote offers.
class PlanNode : public Node {
 public:
  std::mutex mu;
  std::map<std::string, std::string> active_v, previous_v;
  std::map<std::string, std::vector<package::Manifest>> offers;
  std::vector<std::string> installs;  // "component version", in order

  void offer_version(const std::string& c, const std::string& v,
                     std::vector<std::string> deps = {}) {
    package::Manifest m;
    m.component = c;
    m.version = *package::Version::parse(v);
    for (const auto& d : deps) m.depends.push_back(*package::Dependency::parse(d));
    offers[c].push_back(m);
  }
  Result<Installed> install(const std::string& c, const std::string& v, const Cancel&,
                            bool) override {
    std::lock_guard lk(mu);
    installs.push_back(c + " " + v);
    Installed r{active_v[c], v};
    previous_v[c] = active_v[c];
    active_v[c] = v;
    return r;
  }
  Status commit(const std::string&) override { return {}; }
  Status rollback(const std::string& c, const std::string& v, bool) override {
    std::lock_guard lk(mu);
    active_v[c] = v;
    return {};
  }
  std::optional<std::string> active(const std::string& c) override {
    std::lock_guard lk(mu);
    auto it = active_v.find(c);
    return it == active_v.end() || it->second.empty() ? std::nullopt : std::optional(it->second);
  }
  std::optional<std::string> previous(const std::string& c) override {
    std::lock_guard lk(mu);
    auto it = previous_v.find(c);
    return it == previous_v.end() || it->second.empty() ? std::nullopt : std::optional(it->second);
  }
  Result<package::Manifest> offer(const std::string& c, const std::string& v) override {
    std::lock_guard lk(mu);
    auto it = offers.find(c);
    if (it == offers.end() || it->second.empty())
      return fail(Errc::not_found, c + " is not offered");
    for (const auto& m : it->second)
      if (m.version.str() == v) return m;
    if (!v.empty()) return fail(Errc::not_found, c + " " + v + " is not offered");
    return it->second.back();
  }
  std::map<std::string, package::Version> active_versions() override {
    std::lock_guard lk(mu);
    std::map<std::string, package::Version> out;
    for (const auto& [c, v] : active_v)
      if (auto pv = package::Version::parse(v)) out[c] = *pv;
    return out;
  }
  std::set<std::string> installed_ids;  // "c@v" installed already
  Space disk;                           // everything free by default
  bool installed(const std::string& c, const std::string& v) override {
    return installed_ids.count(c + "@" + v) > 0;
  }
  Result<Space> space() override { return disk; }
};

// Readiness takes a moment, and records how many deployments waited for it at once.
class SlowPlane : public FakePlane {
 public:
  std::atomic<int> now{0}, most{0};
  Status wait_ready(const std::string& c, const std::string& v, const Cancel& cancel) override {
    const int n = ++now;
    int m = most.load();
    while (n > m && !most.compare_exchange_weak(m, n)) {
    }
    std::this_thread::sleep_for(100ms);
    --now;
    return FakePlane::wait_ready(c, v, cancel);
  }
};

// Component a's old version drains only once `open` (it stays in drain-old, on all traffic,
// meanwhile).
class GatePlane : public SlowPlane {
 public:
  std::atomic<bool> open{true};
  Status wait_drained(const std::string& c, const std::string& v, const Cancel& cancel) override {
    if (c != "a") return SlowPlane::wait_drained(c, v, cancel);
    while (!open && !cancel) std::this_thread::sleep_for(1ms);
    return cancel ? fail(Errc::io, "cancelled") : Status{};
  }
};

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* c : {"a", "b", "c"}) node_.active_v[c] = "1.0.0";
    open_deployer();
  }
  // A deployer on the test's state database (again: as an agent restarted).
  void open_deployer() {
    DeployerOptions o;
    o.connect = [this] { return state::StateDb::open(dir_ / "state.db", clock_); };
    o.clock = &clock_;
    o.analysis_poll = 0ms;
    auto d = Deployer::open(o, node_, plane_);
    ASSERT_TRUE(d) << d.error().message();
    deployer_ = std::move(*d);
  }
  // A test that failed with a's drain gated must still end.
  void TearDown() override {
    plane_.open = true;
    deployer_.reset();
  }
  PlanRequest plan_of(std::vector<std::string> components, bool atomic = false) {
    PlanRequest p;
    p.atomic = atomic;
    for (const auto& c : components) {
      DeployRequest r;
      r.component = c;
      r.soak_ms = 0;
      p.items.push_back(r);
    }
    return p;
  }
  nlohmann::json run(const PlanRequest& p) {
    auto started = deployer_->start_plan(p);
    EXPECT_TRUE(started) << started.error().message();
    if (!started) return {};
    for (int i = 0; i < 2000; ++i) {
      auto j = deployer_->plan((*started)["id"]);
      if (j && (*j)["state"] != "running") return *j;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "the plan did not end";
    return {};
  }
  std::string state_of(const nlohmann::json& plan, const std::string& c) {
    for (const auto& i : plan["items"])
      if (i["component"] == c) return i["state"];
    return "";
  }

  ScratchDir dir_;
  FakeClock clock_;
  // Waits (up to 5 s) until b was installed.
  bool b_installed() {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lk(node_.mu);
        for (const auto& x : node_.installs)
          if (x.rfind("b ", 0) == 0) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  PlanNode node_;
  GatePlane plane_;
  std::unique_ptr<Deployer> deployer_;
};

TEST_F(PlanTest, ValidationNamesCyclesUnmetDependenciesAndDuplicates) {
  node_.offer_version("a", "2.0.0", {"b>=2"});
  node_.offer_version("b", "2.0.0", {"a>=2"});
  auto cycle = validate_plan(node_, plan_of({"a", "b"}));
  ASSERT_FALSE(cycle);
  EXPECT_NE(cycle.error().message().find("cycle a -> b -> a"), std::string::npos)
      << cycle.error().message();
  node_.offers.clear();
  node_.offer_version("a", "2.0.0", {"b>=3"});
  node_.offer_version("b", "2.0.0");
  auto unmet = validate_plan(node_, plan_of({"a", "b"}));
  ASSERT_FALSE(unmet);
  EXPECT_NE(unmet.error().message().find("a@2.0.0"), std::string::npos) << unmet.error().message();
  auto twice = validate_plan(node_, plan_of({"b", "b"}));
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message().find("b is in the plan twice"), std::string::npos);
  auto missing = validate_plan(node_, plan_of({"zz"}));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("zz"), std::string::npos);
}

TEST_F(PlanTest, AChainDeploysInDependencyOrder) {
  node_.offer_version("a", "2.0.0");
  node_.offer_version("b", "2.0.0", {"a>=2"});
  node_.offer_version("c", "2.0.0", {"b>=2"});
  auto plan = run(plan_of({"c", "b", "a"}));
  EXPECT_EQ(plan["state"], "committed") << plan.dump();
  EXPECT_EQ(node_.installs, (std::vector<std::string>{"a 2.0.0", "b 2.0.0", "c 2.0.0"}));
  EXPECT_EQ(plan["items"][1]["after"], nlohmann::json::array({"a"}));
}

TEST_F(PlanTest, IndependentDeploymentsRunAtOnce) {
  node_.offer_version("a", "2.0.0");
  node_.offer_version("b", "2.1.0");
  node_.offer_version("c", "2.2.0");
  auto plan = run(plan_of({"a", "b", "c"}));
  EXPECT_EQ(plan["state"], "committed") << plan.dump();
  EXPECT_GE(plane_.most.load(), 2) << "independent deployments waited for readiness together";
}

TEST_F(PlanTest, AFailureStopsItsDependentsAndAtomicRollsBackTheRest) {
  node_.offer_version("a", "2.0.0");
  node_.offer_version("b", "2.5.0", {"a>=2"});
  node_.offer_version("c", "2.0.0", {"b>=2"});
  plane_.crashing.insert("2.5.0");  // b never becomes ready
  auto plan = run(plan_of({"a", "b", "c"}));
  EXPECT_EQ(plan["state"], "failed") << plan.dump();
  EXPECT_EQ(state_of(plan, "a"), "committed");
  EXPECT_EQ(state_of(plan, "b"), "failed");
  EXPECT_EQ(state_of(plan, "c"), "skipped");
  EXPECT_EQ(node_.active_v["a"], "2.0.0") << "not atomic: a stays";

  node_.offers["a"].clear();
  node_.offer_version("a", "3.0.0");
  auto atomic = run(plan_of({"a", "b", "c"}, true));
  EXPECT_EQ(atomic["state"], "rolled-back") << atomic.dump();
  EXPECT_EQ(state_of(atomic, "a"), "rolled-back");
  EXPECT_EQ(state_of(atomic, "c"), "skipped");
  EXPECT_EQ(node_.active_v["a"], "2.0.0") << "atomic: a went back";
}

TEST_F(PlanTest, APlanGoesOnFromItsJournalAfterTheDeployerRestarts) {
  node_.offer_version("a", "2.0.0");
  node_.offer_version("b", "2.0.0", {"a>=2"});
  plane_.open = false;  // a stays in drain-old
  auto started = deployer_->start_plan(plan_of({"a", "b"}));
  ASSERT_TRUE(started) << started.error().message();
  const int64_t id = (*started)["id"];
  std::this_thread::sleep_for(200ms);
  // The agent stops (as a crash would leave it: rows unfinished; a drain is not cut short,
  // so it is let through), and a new one starts.
  plane_.open = true;
  deployer_.reset();
  {
    std::lock_guard lk(node_.mu);
    EXPECT_EQ(node_.installs, std::vector<std::string>{"a 2.0.0"}) << "b had not started";
  }
  open_deployer();
  deployer_->resume_all();
  nlohmann::json end;
  for (int i = 0; i < 1000; ++i) {
    auto j = deployer_->plan(id);
    ASSERT_TRUE(j) << j.error().message();
    end = *j;
    if (end["state"] != "running") break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(end["state"], "committed") << end.dump();
  EXPECT_EQ(node_.installs, (std::vector<std::string>{"a 2.0.0", "b 2.0.0"}))
      << "b started by the resumed plan, a installed once";
  EXPECT_EQ(node_.active_v["b"], "2.0.0");
  // A finished plan is read from the journal by a deployer that did not run it.
  deployer_.reset();
  open_deployer();
  auto read = deployer_->plan(id);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ((*read)["state"], "committed");
  EXPECT_EQ((*read)["items"][1]["component"], "b");
  EXPECT_FALSE(deployer_->plan(id + 1)) << "no such plan";
}

TEST_F(PlanTest, ValidationRefusesAPlanTheDiskCannotHold) {
  node_.offer_version("a", "2.0.0");
  node_.offers["a"].back().size = 300 << 20;
  node_.offer_version("b", "2.0.0");
  node_.offers["b"].back().size = 200 << 20;
  node_.disk = {400u << 20, 50u << 20};  // 400 MiB free, 50 MiB reserve
  auto full = validate_plan(node_, plan_of({"a", "b"}));
  ASSERT_FALSE(full);
  const std::string& m = full.error().message();
  EXPECT_NE(m.find("need 524.3 MB"), std::string::npos) << m;
  EXPECT_NE(m.find("a@2.0.0 314.6 MB"), std::string::npos) << m;
  EXPECT_NE(m.find("419.4 MB is free"), std::string::npos) << m;
  EXPECT_TRUE(node_.installs.empty()) << "refused before anything was installed";
  // A version installed already needs no space: b is, and a fits beside the reserve.
  node_.installed_ids.insert("b@2.0.0");
  EXPECT_TRUE(validate_plan(node_, plan_of({"a", "b"})));
  // The reserve counts: 360 MiB needed of 400 free with 50 kept is refused.
  node_.offers["a"].back().size = 360 << 20;
  EXPECT_FALSE(validate_plan(node_, plan_of({"a", "b"})));
}

TEST_F(PlanTest, StartWhenHealthyStartsADependentBeforeItsDependencyCommits) {
  node_.offer_version("a", "2.0.0");
  node_.offer_version("b", "2.0.0", {"a>=2"});
  plane_.open = false;  // a stays in drain-old, its new version on all traffic
  auto committed = plan_of({"a", "b"});
  auto started = deployer_->start_plan(committed);
  ASSERT_TRUE(started) << started.error().message();
  std::this_thread::sleep_for(300ms);
  {
    std::lock_guard lk(node_.mu);
    EXPECT_EQ(node_.installs, std::vector<std::string>{"a 2.0.0"})
        << "start_when committed: b waits for a's commit";
  }
  plane_.open = true;
  EXPECT_TRUE(b_installed());
  for (int i = 0; i < 500 && (*deployer_->plan((*started)["id"]))["state"] == "running"; ++i)
    std::this_thread::sleep_for(10ms);

  node_.offers["a"].clear();
  node_.offers["b"].clear();
  node_.installs.clear();
  node_.offer_version("a", "3.0.0");
  node_.offer_version("b", "3.0.0", {"a>=3"});
  plane_.open = false;
  auto healthy = plan_of({"a", "b"});
  healthy.start_when = "healthy";
  auto p = deployer_->start_plan(healthy);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_TRUE(b_installed()) << "b started while a was still draining";
  auto mid = deployer_->plan((*p)["id"]);
  ASSERT_TRUE(mid);
  EXPECT_EQ((*mid)["items"][0]["state"], "running") << "a had not committed yet";
  EXPECT_EQ((*mid)["items"][1]["start_when"], "healthy");
  plane_.open = true;
  for (int i = 0; i < 500 && (*deployer_->plan((*p)["id"]))["state"] == "running"; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ((*deployer_->plan((*p)["id"]))["state"], "committed");
}

TEST_F(PlanTest, ADependentStartedOnAHealthyDependencyIsAbortedWhenTheDependencyFails) {
  node_.offer_version("a", "2.0.0");
  node_.offer_version("b", "2.1.0", {"a>=2"});
  plane_.never_ready.insert("2.1.0");  // b stays in wait-ready until cancelled
  plane_.open = false;
  auto req = plan_of({"a", "b"});
  req.start_when_of["b"] = "healthy";
  auto p = deployer_->start_plan(req);
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_TRUE(b_installed());
  // a, serving all its traffic but not committed yet, is aborted by its operator.
  auto mid = deployer_->plan((*p)["id"]);
  ASSERT_TRUE(mid);
  ASSERT_TRUE(deployer_->abort((*mid)["items"][0]["deployment"].get<int64_t>()));
  plane_.open = true;  // the drain ends (drains are not cancelled); then the abort is seen
  nlohmann::json end;
  for (int i = 0; i < 1000; ++i) {
    end = *deployer_->plan((*p)["id"]);
    if (end["state"] != "running") break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(end["state"], "failed") << end.dump();
  EXPECT_NE(state_of(end, "a"), "committed");
  EXPECT_NE(state_of(end, "b"), "committed");
  EXPECT_NE(end["items"][1].value("reason", "").find("its dependency a ended"), std::string::npos)
      << end.dump();
  EXPECT_EQ(node_.active_v["b"], "1.0.0") << "b's undo restored its old version";
}

}  // namespace
}  // namespace mup::deploy
