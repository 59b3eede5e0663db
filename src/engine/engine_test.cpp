// The engine on its own: the transition table, typed intent parsing, and operations run
// in-process against a real repository served on 127.0.0.1, with the seams injected (a
// recording activator, a fake clock and boot id, a counting fetcher): events off the
// download path, cancellation, trial and its restart policy, groups, concurrent writers,
// and journal rows nobody can read.
#include "engine/engine.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "crypto/crypto.hpp"
#include "engine/events.hpp"
#include "engine/operation.hpp"
#include "snapshot/snapshot_store.hpp"
#include "state/schema.hpp"
#include "state/state_db.hpp"
#include "test_util.hpp"
#include "transfer/fetcher.hpp"
#include "transfer/file_server.hpp"
#include "tuf/clock.hpp"
#include "tuf/repository.hpp"

namespace mup::engine {
namespace {

namespace stdfs = std::filesystem;
using nlohmann::json;
using test::random_bytes;
using test::ScratchDir;
using test::text_bytes;
using test::write_file;

TEST(TransitionTable, EveryStateHasItsRowsAndNoRowIsAmbiguous) {
  auto table = transition_table();
  for (State s :
       {State::resolve, State::fetch, State::snapshot, State::stage, State::activate,
        State::restore, State::commit, State::undo_activate, State::cleanup, State::collect}) {
    EXPECT_TRUE(next_state(s, Event::ok)) << state_name(s);
    EXPECT_TRUE(next_state(s, Event::error)) << state_name(s) << " has no way out on error";
  }
  // A step that may not apply must have a row for skip.
  for (State s : {State::fetch, State::snapshot, State::stage, State::activate, State::restore,
                  State::undo_activate, State::cleanup}) {
    EXPECT_TRUE(next_state(s, Event::skip)) << state_name(s) << " has no row for skip";
  }
  for (size_t i = 0; i < table.size(); ++i)
    for (size_t j = i + 1; j < table.size(); ++j)
      EXPECT_FALSE(table[i].from == table[j].from && table[i].on == table[j].on)
          << state_name(table[i].from) << " on " << event_name(table[i].on);
  // Before the switch an error never reaches undo-activate; after it, always.
  EXPECT_EQ(*next_state(State::stage, Event::error), State::cleanup);
  EXPECT_EQ(*next_state(State::commit, Event::error), State::undo_activate);
  EXPECT_FALSE(next_state(State::fetch, Event::already));
  for (const auto& t : table) {
    EXPECT_EQ(parse_state(state_name(t.from)), t.from);
    EXPECT_EQ(parse_state(state_name(t.to)), t.to);
  }
}

TEST(Intent, ParsesWithoutThrowingWhateverTheJournalHolds) {
  Intent in;
  in.remote = "origin";
  in.old_previous = "1.0.0";
  in.trial = true;
  in.group = 7;
  auto back = Intent::from_json(in.to_json());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->remote, "origin");
  EXPECT_EQ(back->old_previous, "1.0.0");
  EXPECT_TRUE(back->trial);
  EXPECT_EQ(back->group, 7);
  // Null fields are absent fields; wrong types are an error, never an exception.
  EXPECT_TRUE(Intent::from_json(json::parse(R"({"old_previous": null, "fresh": null})")));
  EXPECT_FALSE(Intent::from_json(json::parse(R"({"old_previous": 3})")));
  EXPECT_FALSE(Intent::from_json(json::parse(R"({"fresh": "yes"})")));
  EXPECT_FALSE(Intent::from_json(json::parse(R"([1, 2])")));
  EXPECT_FALSE(Intent::from_json(json()));
}

// Records every switch, and can fail the n-th one.
class RecordingActivator : public Activator {
 public:
  explicit RecordingActivator(store::InstallStore& s) : real_(s) {}
  std::optional<std::string> active(const std::string& c) const override { return real_.active(c); }
  std::optional<std::string> previous(const std::string& c) const override {
    return real_.previous(c);
  }
  Status switch_to(const std::string& c, const std::string& v) override {
    log.push_back("switch " + c + " " + v);
    if (fail_at >= 0 && static_cast<int>(log.size()) - 1 == fail_at)
      return mup::fail(Errc::io, "the activator refused (test)");
    return real_.switch_to(c, v);
  }
  Status set_previous(const std::string& c, const std::optional<std::string>& v) override {
    return real_.set_previous(c, v);
  }
  Status deactivate(const std::string& c) override {
    log.push_back("deactivate " + c);
    return real_.deactivate(c);
  }
  static inline std::vector<std::string> log;
  static inline int fail_at = -1;

 private:
  SymlinkActivator real_;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RecordingActivator::log.clear();
    RecordingActivator::fail_at = -1;
    write_file(d_ / "v1/bin/app", random_bytes(300000, 1));
    write_file(d_ / "v1/etc/app.conf", text_bytes(20000, 2));
    stdfs::copy(d_ / "v1", d_ / "v2", stdfs::copy_options::recursive);
    auto app = random_bytes(300000, 1);
    for (size_t i = 1000; i < 1100; ++i) app[i] ^= 0x33;
    write_file(d_ / "v2/bin/app", app);
    write_file(d_ / "lib1/lib.so", random_bytes(100000, 5));
    ok({"repo", "init", s("repo"), "--keys", s("keys")});
    publish("v1", "app", "1.0.0", {});
    publish("v2", "app", "2.0.0", {"--delta-from", "1.0.0"});
    auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
    ASSERT_TRUE(server);
    server_ = std::move(*server);
    auto e = open();
    ASSERT_TRUE(e->add_remote("origin", server_->base_url(), d_ / "repo/metadata/1.root.json"));
  }
  void publish(const std::string& src, const std::string& c, const std::string& v,
               std::vector<std::string> extra) {
    std::vector<std::string> args = {"publish",     s("repo"), s(src),      "--keys", s("keys"),
                                     "--component", c,         "--version", v,        "--type",
                                     "application"};
    args.insert(args.end(), extra.begin(), extra.end());
    ok(args);
  }
  void ok(const std::vector<std::string>& args) {
    auto r = test::run_mup(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string s(const std::string& rel) { return (d_ / rel).string(); }
  std::unique_ptr<Engine> open(std::function<void(const json&)> on_event = {}) {
    EngineOptions o;
    o.actor = "test";
    o.on_event = std::move(on_event);
    o.make_activator = [](store::InstallStore& st) {
      return std::make_unique<RecordingActivator>(st);
    };
    o.clock = &clock_;
    o.boot_id = [this] { return boot_; };
    o.free_bytes = free_bytes_;
    auto e = Engine::open(d_ / "node", std::move(o));
    EXPECT_TRUE(e) << e.error().message();
    return std::move(*e);
  }
  std::string active(const std::string& c = "app") {
    std::error_code ec;
    return stdfs::read_symlink(d_ / "node/components" / c / "current", ec).string();
  }
  std::vector<state::OperationRecord> history() {
    auto e = open();
    auto h = e->history("", 0);
    EXPECT_TRUE(h);
    return *h;
  }

  ScratchDir d_;
  std::unique_ptr<transfer::FileServer> server_;
  FakeClock clock_{system_clock().wall_ms()};  // TUF expiry is checked against it
  std::string boot_ = "boot-1";
  std::function<Result<uint64_t>()> free_bytes_;  // empty: the real free space
};

TEST_F(EngineTest, InstallGoesThroughTheActivatorAndRecordsOneOperation) {
  auto e = open();
  InstallOptions o;
  o.version = "1.0.0";
  auto r = e->install("app", o);
  ASSERT_TRUE(r) << r.error().message();
  auto r2 = e->install("app", {});
  ASSERT_TRUE(r2) << r2.error().message();
  EXPECT_EQ(active(), "2.0.0");
  EXPECT_EQ(RecordingActivator::log,
            (std::vector<std::string>{"switch app 1.0.0", "switch app 2.0.0"}));
  auto h = history();
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].state, "done");
  EXPECT_EQ(h[0].step, "commit");
  EXPECT_EQ(h[0].started_at_ms, clock_.wall_ms());  // the injected clock
  clock_.advance(std::chrono::hours(1));
  ASSERT_TRUE(e->rollback("app", std::nullopt, false));
  auto later = history();
  EXPECT_EQ(later[0].started_at_ms, h[0].started_at_ms + 3'600'000);
  auto v = e->versions("app");
  ASSERT_TRUE(v);
  EXPECT_EQ((*v)["versions"][1]["status"], "committed");
}

// The fetcher seam: a fetcher that counts requests and fails every piece after the first
// two stands for a network that drops; the retry asks only for what is missing.
class FlakyFetcher : public transfer::Fetcher {
 public:
  Result<std::vector<uint8_t>> fetch(const std::string& url, uint64_t max) override {
    bool piece =
        url.find("/chunks/") != std::string::npos || url.find("/deltas/") != std::string::npos;
    if (piece) {
      int n = pieces.fetch_add(1);
      if (fail_after >= 0 && n >= fail_after) return mup::fail(Errc::io, "network down (test)");
    }
    return real_.fetch(url, max);
  }
  static inline std::atomic<int> pieces{0};
  static inline int fail_after = -1;

 private:
  transfer::HttpFetcher real_;
};

// Every install snapshots the state first; gc keeps, per component, the newest snapshot of
// each version it keeps (what a rollback to it restores), then the newest snapshots_keep
// others, never one a user took; a dry run lists the same ids and removes none.
TEST_F(EngineTest, GcKeepsTheSnapshotsARollbackNeedsAndRemovesTheRest) {
  stdfs::copy(d_ / "v2", d_ / "v3", stdfs::copy_options::recursive);
  write_file(d_ / "v3/etc/app.conf", text_bytes(20000, 3));
  stdfs::copy(d_ / "v3", d_ / "v4", stdfs::copy_options::recursive);
  write_file(d_ / "v4/etc/app.conf", text_bytes(20000, 4));
  publish("v3", "app", "3.0.0", {});
  publish("v4", "app", "4.0.0", {});
  auto e = open();
  write_file(e->state_dir("app") / "db", text_bytes(5000, 6));
  for (const char* v : {"1.0.0", "2.0.0", "3.0.0", "4.0.0"}) {
    InstallOptions o;
    o.version = v;
    ASSERT_TRUE(e->install("app", o));
    clock_.advance(std::chrono::seconds(2));
  }
  ASSERT_TRUE(e->snapshot_create("app", "mine"));
  auto ids = [&] {
    std::map<std::string, std::string> out;  // label -> id
    auto list = e->snapshots().list("app");
    EXPECT_TRUE(list);
    if (list)
      for (const auto& s : *list) out[s.label] = s.id;
    return out;
  };
  const auto all = ids();
  ASSERT_EQ(all.size(), 5u);
  store::GcOptions o;
  o.keep = 2;  // 4.0.0 (active) and 3.0.0 (previous)
  o.snapshots_keep = 0;
  o.dry_run = true;
  auto dry = e->gc(o);
  ASSERT_TRUE(dry) << dry.error().message();
  EXPECT_EQ(ids(), all) << "a dry run removes nothing";
  const std::set<std::string> expect = {all.at("before install of 1.0.0"),
                                        all.at("before install of 2.0.0"),
                                        all.at("before install of 3.0.0")};
  EXPECT_EQ(std::set<std::string>(dry->snapshots_removed.begin(), dry->snapshots_removed.end()),
            expect);
  o.dry_run = false;
  auto r = e->gc(o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(std::set<std::string>(r->snapshots_removed.begin(), r->snapshots_removed.end()),
            expect);
  auto left = ids();
  EXPECT_EQ(left.size(), 2u);
  EXPECT_TRUE(left.count("mine")) << "a user's snapshot stays";
  EXPECT_TRUE(left.count("before install of 4.0.0")) << "3.0.0's state, for a rollback to it";
  // The state database agrees with the disk, and the rollback restores that snapshot.
  auto v = e->versions("app");
  ASSERT_TRUE(v);
  ASSERT_TRUE(e->rollback("app", std::nullopt, true)) << "rollback to 3.0.0 with its state";
  EXPECT_EQ(active(), "3.0.0");
}

TEST_F(EngineTest, ADroppedDownloadResumesWithOnlyTheMissingPiecesThroughTheFetcherSeam) {
  // Piece by piece: without a cold pack (its segments resume as a whole, tests/node_cli_test).
  publish("v1", "piecewise", "1.0.0", {"--no-cold-pack"});
  FlakyFetcher::pieces = 0;
  FlakyFetcher::fail_after = 2;
  EngineOptions o;
  o.actor = "test";
  o.download_connections = 1;
  o.make_fetcher = [] { return std::make_unique<FlakyFetcher>(); };
  auto e = Engine::open(d_ / "node", o);
  ASSERT_TRUE(e);
  InstallOptions io;
  io.version = "1.0.0";
  auto r = (*e)->install("piecewise", io);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("network down"), std::string::npos) << r.error().message();
  EXPECT_EQ(active("piecewise"), "");
  FlakyFetcher::pieces = 0;
  FlakyFetcher::fail_after = -1;
  auto again = (*e)->install("piecewise", io);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_GT(again->bytes_cached, 0u) << "the two verified pieces came from the cache";
  int resumed = FlakyFetcher::pieces.load();
  // A node that holds nothing asks for every piece: two more.
  FlakyFetcher::pieces = 0;
  auto fresh = Engine::open(d_ / "node2", o);
  ASSERT_TRUE(fresh);
  ASSERT_TRUE(
      (*fresh)->add_remote("origin", server_->base_url(), d_ / "repo/metadata/1.root.json"));
  ASSERT_TRUE((*fresh)->install("piecewise", io));
  EXPECT_EQ(resumed + 2, FlakyFetcher::pieces.load());
}

TEST_F(EngineTest, SignedMetadataExpiresOnTheEnginesClock) {
  clock_.advance(std::chrono::hours(24 * 30));
  auto e = open();
  auto r = e->install("app", {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("expired"), std::string::npos) << r.error().message();
  EXPECT_EQ(active(), "");
}

TEST_F(EngineTest, AFailedSwitchIsUndoneAndLeavesNothing) {
  auto e = open();
  InstallOptions o;
  o.version = "1.0.0";
  ASSERT_TRUE(e->install("app", o));
  RecordingActivator::fail_at = 1;  // the switch to 2.0.0
  auto r = e->install("app", {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("activator refused"), std::string::npos);
  EXPECT_EQ(active(), "1.0.0");
  EXPECT_FALSE(stdfs::exists(d_ / "node/components/app/2.0.0"));
  auto h = history();
  EXPECT_EQ(h[0].state, "failed");
  EXPECT_EQ(h[0].to_version, "2.0.0");
  auto snaps = e->snapshots().list("app");
  ASSERT_TRUE(snaps);
  EXPECT_EQ(snaps->size(), 1u) << "the failed install's snapshot is removed with it";
}

TEST_F(EngineTest, ASlowObserverNeverStallsTheDownloadAndSeesEveryStep) {
  std::vector<std::string> steps;
  std::mutex mu;
  auto e = open([&](const json& ev) {
    std::lock_guard<std::mutex> g(mu);
    if (ev.value("event", "") == "step") steps.push_back(ev.value("step", ""));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  });
  InstallOptions o;
  o.version = "1.0.0";
  ASSERT_TRUE(e->install("app", o));
  e.reset();  // flushes
  EXPECT_EQ(steps, (std::vector<std::string>{"check", "fetch", "snapshot", "stage", "activate"}));
}

TEST(EventBus, CoalescesProgressWhileTheObserverIsBusy) {
  std::atomic<int> seen{0};
  std::vector<json> got;
  {
    EventBus bus([&](const json& e) {
      got.push_back(e);
      ++seen;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    });
    bus.emit({{"event", "step"}, {"step", "fetch"}});
    for (int i = 0; i < 1000; ++i)
      bus.emit({{"event", "progress"}, {"phase", "fetch"}, {"done", i}});
    bus.emit({{"event", "done"}});
    bus.flush();
    EXPECT_GT(bus.coalesced(), 900u);
  }
  ASSERT_GE(got.size(), 3u);
  EXPECT_EQ(got.front()["event"], "step");
  EXPECT_EQ(got.back()["event"], "done");
  EXPECT_EQ(got[got.size() - 2]["done"], 999) << "the newest progress survives";
}

TEST_F(EngineTest, CancelledInstallUndoesItselfAndKeepsVerifiedPieces) {
  std::atomic<bool> cancel{false};
  auto e = open([&](const json& ev) {
    if (ev.value("event", "") == "progress") cancel = true;
  });
  InstallOptions o;
  o.version = "1.0.0";
  o.cancel = &cancel;
  auto r = e->install("app", o);
  ASSERT_FALSE(r);
  EXPECT_TRUE(is(r.error(), Code::cancelled)) << r.error().code_string() << r.error().message();
  EXPECT_EQ(r.error().code_string(), "engine.cancelled");
  EXPECT_EQ(active(), "");
  EXPECT_FALSE(stdfs::exists(d_ / "node/components/app")) << "no empty component directory";
  e.reset();
  auto h = history();
  EXPECT_EQ(h[0].state, "failed");
  // The next install succeeds.
  cancel = false;
  auto again = open()->install("app", o);
  ASSERT_TRUE(again) << again.error().message();
}

TEST_F(EngineTest, TrialIsCommittedOrRolledBackAndARestartFollowsThePolicy) {
  auto e = open();
  InstallOptions o;
  o.version = "1.0.0";
  ASSERT_TRUE(e->install("app", o));
  InstallOptions t;
  t.trial = true;
  auto r = e->install("app", t);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->trial);
  auto st = e->status();
  ASSERT_TRUE(st);
  EXPECT_EQ((*st)["components"][0]["trial"]["version"], "2.0.0");
  // Same boot: nothing happens on open.
  EXPECT_EQ(active(), "2.0.0");
  e = open();
  EXPECT_EQ(active(), "2.0.0");
  // A restart (new boot id): the default policy rolls back, and marks the version bad.
  boot_ = "boot-2";
  e = open();
  EXPECT_EQ(active(), "1.0.0");
  ASSERT_FALSE(e->recovery().actions.empty());
  auto v = e->versions("app");
  EXPECT_EQ((*v)["versions"][1]["status"], "bad");
  auto again = e->install("app", {});
  ASSERT_FALSE(again);
  EXPECT_TRUE(is(again.error(), Code::bad_version)) << again.error().message();
  // --force tries it again; "keep" survives the restart and commits.
  InstallOptions f;
  f.force = true;
  f.trial = true;
  f.trial_policy = "keep";
  ASSERT_TRUE(e->install("app", f));
  boot_ = "boot-3";
  e = open();
  EXPECT_EQ(active(), "2.0.0");
  v = e->versions("app");
  EXPECT_EQ((*v)["versions"][1]["status"], "committed");
  auto c = e->commit("app");
  ASSERT_FALSE(c);
  EXPECT_TRUE(is(c.error(), Code::not_on_trial));
}

// A signed tree with a setuid file or a world-writable directory: refused at install, naming
// them, unless the node allows such modes for the package's type (here: kernel).
TEST_F(EngineTest, SetuidAndWorldWritableEntriesNeedTheNodesConsent) {
  write_file(d_ / "s1/bin/tool", random_bytes(1000, 9));
  stdfs::permissions(d_ / "s1/bin/tool", static_cast<stdfs::perms>(04755));
  stdfs::create_directories(d_ / "s1/spool");
  stdfs::permissions(d_ / "s1/spool", static_cast<stdfs::perms>(0777));
  for (const char* type : {"application", "kernel"})
    ok({"publish", s("repo"), s("s1"), "--keys", s("keys"), "--component",
        std::string(type) == "kernel" ? "kern" : "suid", "--version", "1.0.0", "--type", type});
  ::unsetenv("MUP_ALLOW_SPECIAL_MODES");
  auto e = open();
  auto r = e->install("suid", {});
  ASSERT_FALSE(r);
  EXPECT_TRUE(is(r.error(), Code::policy)) << r.error().message();
  EXPECT_NE(r.error().message().find("bin/tool (setuid 4755)"), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("spool (world-writable 0777)"), std::string::npos);
  EXPECT_EQ(active("suid"), "");
  EXPECT_FALSE(stdfs::exists(d_ / "node/components/suid/1.0.0")) << "nothing staged";
  EXPECT_FALSE(e->install("kern", {})) << "not allowed for kernels either by default";

  ::setenv("MUP_ALLOW_SPECIAL_MODES", "kernel", 1);
  auto k = e->install("kern", {});
  ASSERT_TRUE(k) << k.error().message();
  struct stat st {};
  ASSERT_EQ(::stat((d_ / "node/components/kern/1.0.0/bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u) << "the allowed type keeps its modes";
  EXPECT_FALSE(e->install("suid", {})) << "an application still may not";
  ::unsetenv("MUP_ALLOW_SPECIAL_MODES");
}

// The space staging needs is checked before anything is written: "needs X, Y free".
TEST_F(EngineTest, AnInstallTheDiskCannotHoldIsRefusedBeforeWritingAnything) {
  free_bytes_ = [] { return Result<uint64_t>(100'000); };
  auto e = open();
  auto r = e->install("app", {});
  ASSERT_FALSE(r);
  EXPECT_TRUE(is(r.error(), Code::no_space)) << r.error().message();
  const std::string& m = r.error().message();
  EXPECT_NE(m.find("needs 623.6 kB (320.0 kB of files to write"), std::string::npos) << m;
  EXPECT_NE(m.find("100.0 kB is free"), std::string::npos) << m;
  EXPECT_NE(m.find("nothing was written"), std::string::npos) << m;
  EXPECT_EQ(active(), "");
  EXPECT_FALSE(stdfs::exists(d_ / "node/components/app/2.0.0"));
  free_bytes_ = [] { return Result<uint64_t>(uint64_t{10} << 30); };
  auto roomy = open();
  auto ok2 = roomy->install("app", {});
  EXPECT_TRUE(ok2) << ok2.error().message();
}

// Issue 11 item 11: a version whose signed manifest the node refuses used to be reported
// as "not in remote origin (it has 1.0.0, 2.0.0)". It is named, with why it is refused.
TEST_F(EngineTest, AVersionWithARefusedManifestIsNamedWithTheReason) {
  tuf::SystemClock clock;
  auto repo = tuf::Repository::open(d_ / "repo", clock);
  ASSERT_TRUE(repo) << repo.error().message();
  for (const auto& e : stdfs::directory_iterator(d_ / "keys")) {
    if (e.path().extension() != ".pem") continue;
    auto pem = test::read_file(e.path());
    auto key =
        crypto::PrivateKey::from_pem({reinterpret_cast<const char*>(pem.data()), pem.size()});
    ASSERT_TRUE(key);
    std::string name = e.path().filename().string();
    repo->add_signer(name.substr(0, name.find('.')), std::move(*key));
  }
  auto t = repo->load_targets("app");  // the component's delegated role
  ASSERT_TRUE(t) << t.error().message();
  json bad = (*t)->targets.at("app/2.0.0/tree.idx").custom;
  bad["version"] = "3.0.0";
  bad["id"] = "app@3.0.0";
  bad["strategy"] = "sideways";  // not a strategy this node knows
  const std::string junk = "not an index";
  ASSERT_TRUE(repo->add_target("app/3.0.0/tree.idx",
                               {reinterpret_cast<const uint8_t*>(junk.data()), junk.size()}, bad,
                               "app"));
  ASSERT_TRUE(repo->publish());

  auto e = open();
  InstallOptions o;
  o.version = "3.0.0";
  auto r = e->install("app", o);
  ASSERT_FALSE(r);
  const std::string msg = r.error().message();
  EXPECT_NE(msg.find("app 3.0.0 is in remote origin but its manifest is refused"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("sideways"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("not in remote"), std::string::npos) << msg;
  EXPECT_EQ(active(), "");
  // The versions whose manifests are valid still install.
  o.version = "";
  auto latest = e->install("app", o);
  ASSERT_TRUE(latest) << latest.error().message();
  EXPECT_EQ(active(), "2.0.0");
}

TEST_F(EngineTest, WithDepsIsOneGroupThatFailsWhole) {
  publish("lib1", "lib", "1.0.0", {});
  write_file(d_ / "v3/bin/app", random_bytes(300000, 8));
  publish("v3", "app", "3.0.0",
          {"--depends", "lib>=1.0", "--depends", "absent>=1.0", "--allow-unmet-deps"});
  auto e = open();
  InstallOptions o;
  o.version = "3.0.0";
  o.with_deps = true;
  auto r = e->install("app", o);
  ASSERT_FALSE(r);
  EXPECT_TRUE(is(r.error(), Code::unmet_dependencies)) << r.error().message();
  EXPECT_EQ(active("lib"), "") << "nothing of the group is installed";
  // A cycle is named before anything is installed.
  write_file(d_ / "c1/x", "cycle a");
  write_file(d_ / "c2/x", "cycle b");
  publish("c1", "ca", "1.0.0", {"--depends", "cb>=1.0", "--allow-unmet-deps"});
  publish("c2", "cb", "1.0.0", {"--depends", "ca>=1.0", "--allow-unmet-deps"});
  e = open();
  InstallOptions wd;
  wd.with_deps = true;
  auto cyc = e->install("ca", wd);
  ASSERT_FALSE(cyc);
  EXPECT_TRUE(is(cyc.error(), Code::dependency_cycle)) << cyc.error().message();
  EXPECT_NE(cyc.error().message().find("ca@1.0.0 -> cb@1.0.0 -> ca@1.0.0"), std::string::npos)
      << cyc.error().message();
  // A group that succeeds: lib then app, both committed.
  write_file(d_ / "v4/bin/app", random_bytes(300000, 9));
  publish("v4", "app", "4.0.0", {"--depends", "lib>=1.0"});
  e = open();
  InstallOptions g;
  g.version = "4.0.0";
  g.with_deps = true;
  auto ok = e->install("app", g);
  ASSERT_TRUE(ok) << ok.error().message();
  ASSERT_EQ(ok->deps.size(), 1u);
  EXPECT_EQ(active("lib"), "1.0.0");
  EXPECT_EQ(active("app"), "4.0.0");
  auto st = e->status();
  for (const auto& c : (*st)["components"]) EXPECT_TRUE(c["trial"].is_null()) << c.dump();
}

TEST_F(EngineTest, WritersOfDifferentComponentsRunAtOnceAndOfOneComponentExcludeEachOther) {
  publish("lib1", "lib", "1.0.0", {});
  auto e = open();
  Result<InstallReport> a = mup::fail(Errc::internal, "not run"), b = a;
  std::thread t1([&] { a = e->install("app", {}); });
  std::thread t2([&] { b = e->install("lib", {}); });
  t1.join();
  t2.join();
  ASSERT_TRUE(a) << a.error().message();
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(active("app"), "2.0.0");
  EXPECT_EQ(active("lib"), "1.0.0");
  // One component: the second writer is refused while the first holds the lock.
  NodeLocks locks(d_ / "node");
  auto held = locks.writer("app");
  ASSERT_TRUE(held);
  auto r = e->activate("app", "2.0.0");
  ASSERT_FALSE(r);
  EXPECT_TRUE(is(r.error(), Code::busy)) << r.error().message();
  // Readers do not wait.
  EXPECT_TRUE(e->status());
  EXPECT_TRUE(e->history("app", 0));
}

TEST_F(EngineTest, AGroupWhoseOwnerLivesIsLeftAloneAndUndoneOnceItDies) {
  auto e = open();
  e.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((d_ / "node/state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "INSERT INTO operations(id, kind, component, from_version, to_version, "
                         "actor, state, step, detail, started_at) VALUES (77, 'group', 'app', '', "
                         "'2.0.0', 't', 'running', '', '{}', 1)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  {
    NodeLocks locks(d_ / "node");
    auto owner = locks.group(77);  // the owner, alive
    ASSERT_TRUE(owner);
    e = open();
    auto st = e->status();
    ASSERT_TRUE(st);
    ASSERT_EQ((*st)["running"].size(), 1u) << st->dump();
    EXPECT_EQ((*st)["running"][0]["kind"], "group");
  }
  e = open();  // the owner is gone
  auto st = e->status();
  EXPECT_TRUE((*st)["running"].empty()) << st->dump();
  EXPECT_EQ(history()[0].state, "undone");
}

TEST_F(EngineTest, ANodeWhoseMupWasRolledBackAuditsTheSchemaDowngrade) {
  open().reset();
  // A newer mup added a migration (with its down SQL) and wrote to it.
  std::vector<state::detail::Migration> newer(state::detail::migrations().begin(),
                                              state::detail::migrations().end());
  const int latest = state::StateDb::latest_schema_version();
  newer.push_back(
      {latest + 1, "newer", "CREATE TABLE newer_things(x TEXT);", "DROP TABLE newer_things;"});
  {
    auto db = state::StateDb::open_with_migrations_for_testing(d_ / "node/state.db", {}, newer);
    ASSERT_TRUE(db) << db.error().message();
  }
  auto e = open();  // this build: the newer schema is undone, and that is on record
  auto audit = e->audit(1);
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "schema-downgrade");
  EXPECT_EQ((*audit)[0].detail["undone_versions"], json::array({latest + 1}));
  auto v = e->verify_audit();
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok) << v->problem;
}

TEST_F(EngineTest, AJournalRowNobodyCanReadIsRolledBack) {
  auto e = open();
  InstallOptions o;
  o.version = "1.0.0";
  ASSERT_TRUE(e->install("app", o));
  ASSERT_TRUE(e->install("app", {}));
  e.reset();
  // A row of a killed activate of 1.0.0 whose detail is damaged.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((d_ / "node/state.db").c_str(), &db), SQLITE_OK);
  const char* sql =
      "INSERT INTO operations(kind, component, from_version, to_version, actor, state, step, "
      "detail, started_at) VALUES ('activate', 'app', '2.0.0', '1.0.0', 't', 'running', "
      "'activate', '{\"old_previous\": 12, \"old_current\": null}', 1);"
      "INSERT INTO operations(kind, component, from_version, to_version, actor, state, step, "
      "detail, started_at) VALUES ('frobnicate', 'app', '', '', 't', 'running', 'x', 'not json', "
      "1);";
  ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  {  // as if the switch had happened (the install store alone: no recovery runs)
    auto st = store::InstallStore::open(d_ / "node");
    ASSERT_TRUE(st);
    ASSERT_TRUE(st->activate("app", "1.0.0"));
  }
  e = open();
  EXPECT_EQ(active(), "2.0.0") << "unknown means roll back to the row's from-version";
  auto h = history();
  for (const auto& op : h) EXPECT_NE(op.state, "running") << op.kind;
  auto audit = e->verify_audit();
  ASSERT_TRUE(audit);
  EXPECT_TRUE(audit->ok) << audit->problem;
}

}  // namespace
}  // namespace mup::engine
