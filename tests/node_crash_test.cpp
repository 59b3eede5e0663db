// The crash matrix: every operation is first run with MUP_FAULT_LIST, which lists every
// (fault point, hit) it passes; then, for each of them, a fresh copy of the node runs the
// operation again and is SIGKILLed exactly there (MUP_FAULT_AT + MUP_FAULT_AFTER). The next
// command (mup status) recovers, and the node must show:
//   - the active tree exactly the old or exactly the new version (byte compare);
//   - the state directory exactly the one that goes with the active version;
//   - PRAGMA integrity_check ok, no temp file anywhere, snapshot rows = snapshot dirs,
//     the audit log verifies, no operation left running;
//   - and the next operation succeeds.
// A new step or fault point is covered without editing this file.
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "node_fixture.hpp"

namespace mup::test {
namespace {

struct Hit {
  std::string point;
  int n;
  bool operator<(const Hit& o) const { return std::tie(point, n) < std::tie(o.point, o.n); }
};

std::vector<Hit> read_hits(const stdfs::path& list) {
  std::set<Hit> hits;
  std::ifstream f(list);
  std::string point;
  int n = 0;
  while (f >> point >> n) hits.insert({point, n});
  return {hits.begin(), hits.end()};
}

class CrashMatrix : public NodeCli {
 protected:
  // Runs `cmd` on a copy of `base` killed at every hit it passes; `check` judges the
  // recovered node ("crash"), `next` must then succeed on it.
  void run_matrix(const std::string& base, const std::vector<std::string>& cmd,
                  const std::function<void(const std::string& where)>& check,
                  const std::vector<std::string>& next, const std::string& action = "kill") {
    clone_node(d_ / base, d_ / "enum");
    // With the powercut action set (and no point to act at), the listing also passes the
    // state database's sync points (state.sync), which exist only in that mode.
    auto listed = mup(cmd, "enum",
                      "MUP_FAULT_LIST=" + s("hits.txt") +
                          (action == "powercut" ? " MUP_FAULT_ACTION=powercut" : ""));
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    auto hits = read_hits(d_ / "hits.txt");
    stdfs::remove(d_ / "hits.txt");
    ASSERT_GT(hits.size(), 3u) << "fault points are compiled in (MUP_FAULT_POINTS=ON)";
    int fired = 0;
    std::string unfired;
    for (const auto& h : hits) {
      std::string where = cmd[0] + (cmd.size() > 1 ? " " + cmd[1] : "") + " @ " + h.point + "#" +
                          std::to_string(h.n);
      SCOPED_TRACE(where);
      clone_node(d_ / base, d_ / "crash");
      auto r = mup(cmd, "crash",
                   "MUP_FAULT_AT=" + h.point + " MUP_FAULT_ACTION=" + action +
                       " MUP_FAULT_AFTER=" + std::to_string(h.n));
      if (r.exit_code == 137) {
        ++fired;
      } else {
        unfired += " " + h.point + "#" + std::to_string(h.n);
      }
      ASSERT_TRUE(r.exit_code == 137 || r.exit_code == 0) << r.err;
      auto st = mup({"status", "--json"}, "crash");
      ASSERT_EQ(st.exit_code, 0) << st.err;
      auto sj = json::parse(st.out, nullptr, false);
      EXPECT_TRUE(sj["running"].empty()) << sj["running"].dump();
      EXPECT_TRUE(sj["quarantined"].empty()) << sj["quarantined"].dump();
      check(where);
      expect_consistent(d_ / "crash", where);
      for (const auto& op : mup_json({"history"}, "crash"))
        EXPECT_NE(op["result"].get<std::string>(), "running") << op.dump();
      auto again = mup(next, "crash");
      EXPECT_EQ(again.exit_code, 0) << "the next operation: " << again.err;
      if (HasFatalFailure()) return;
    }
    std::printf("[ matrix   ] %s (%s): %zu (point, hit) pairs, %d fired\n", cmd[0].c_str(),
                action.c_str(), hits.size(), fired);
    // Hits of parallel work (pieces fetched by several connections) may come in another
    // order, so a few kills can land where the listing run went differently.
    EXPECT_GE(fired, static_cast<int>(hits.size()) * 9 / 10) << "not reached:" << unfired;
  }

  // 1.0.0, 2.0.0 and 3.0.0 installed (3.0.0 active, 2.0.0 previous); "state-snap" is the
  // state snapshotted while 2.0.0 was active, "state-now" the state now.
  std::string three_versions() {
    ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
    ok({"install", "app", "--version", "2.0.0", "--root", s("node")});
    publish("v3", "3.0.0", {"--delta-from", "2.0.0"});
    ok({"install", "app", "--root", s("node")});
    auto snaps = mup_json({"snapshot", "list", "app"});
    std::string snap;
    for (const auto& sj : snaps)
      if (sj["version"] == "2.0.0") snap = sj["id"];
    stdfs::copy(d_ / "node/state/app", d_ / "state-snap", stdfs::copy_options::recursive);
    write_file(d_ / "node/state/app/counter", "changed\n");
    write_file(d_ / "node/state/app/added", "new file\n");
    stdfs::copy(d_ / "node/state/app", d_ / "state-now", stdfs::copy_options::recursive);
    return snap;
  }
  bool state_is(const std::string& tree) {
    std::string why;
    return trees_equal(d_ / "crash/state/app", d_ / tree, &why);
  }
  std::string tree_of(const std::string& version) {
    return version == "1.0.0" ? "v1" : version == "2.0.0" ? "v2" : "v3";
  }
};

TEST_F(CrashMatrix, Install) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  stdfs::copy(d_ / "node/state/app", d_ / "state-now", stdfs::copy_options::recursive);
  run_matrix("node", {"install", "app"},
             [&](const std::string&) {
               std::string act = active("crash");
               ASSERT_TRUE(act == "1.0.0" || act == "2.0.0") << act;
               EXPECT_TRUE(active_is(tree_of(act), "crash"));
               EXPECT_TRUE(state_is("state-now"));
               // The version a recovered install leaves is recorded like an uninterrupted one.
               if (act == "2.0.0") {
                 auto st = mup_json({"status"}, "crash");
                 EXPECT_EQ(st["components"][0]["remote"], "origin");
                 EXPECT_EQ(st["components"][0]["type"], "application");
               }
             },
             {"install", "app"});
}

TEST_F(CrashMatrix, SwitchesAndRestores) {
  std::string snap = three_versions();
  ASSERT_FALSE(snap.empty());
  auto switched = [&](const std::string& to, bool restores) {
    return [&, to, restores](const std::string&) {
      std::string act = active("crash");
      ASSERT_TRUE(act == "3.0.0" || act == to) << act;
      EXPECT_TRUE(active_is(tree_of(act), "crash"));
      // The state goes with the version: restored exactly when the switch stands.
      EXPECT_TRUE(state_is(restores && act == to ? "state-snap" : "state-now"));
    };
  };
  run_matrix("node", {"rollback", "app"}, switched("2.0.0", false), {"activate", "app", "3.0.0"});
  run_matrix("node", {"rollback", "app", "--restore-state"}, switched("2.0.0", true),
             {"activate", "app", "3.0.0"});
  run_matrix("node", {"activate", "app", "1.0.0"}, switched("1.0.0", false),
             {"activate", "app", "3.0.0"});
  run_matrix("node", {"snapshot", "restore", snap},
             [&](const std::string&) {
               EXPECT_EQ(active("crash"), "3.0.0");
               EXPECT_TRUE(state_is("state-snap") || state_is("state-now"));
             },
             {"snapshot", "list"});
  run_matrix("node", {"snapshot", "create", "app"},
             [&](const std::string&) {
               EXPECT_EQ(active("crash"), "3.0.0");
               EXPECT_TRUE(state_is("state-now"));
             },
             {"snapshot", "create", "app"});
  run_matrix("node", {"gc", "--keep", "1"},
             [&](const std::string&) {
               EXPECT_EQ(active("crash"), "3.0.0");
               EXPECT_TRUE(active_is("v3", "crash"));
               json listed = mup_json({"versions", "app"}, "crash");  // alive while iterated
               for (const auto& v : listed["versions"]) {
                 auto vr = mup({"verify", "app", v["version"].get<std::string>()}, "crash");
                 EXPECT_EQ(vr.exit_code, 0) << vr.err;
               }
             },
             {"gc", "--keep", "1"});
}

// install --with-deps is one group: killed anywhere, the node ends with both the dependency
// and the component new, or neither active in its new version.
TEST_F(CrashMatrix, InstallWithDepsIsAllOrNothing) {
  ok({"install", "app", "--version", "2.0.0", "--root", s("node")});
  write_file(d_ / "lib/lib.so", random_bytes(120000, 21));
  std::vector<std::string> lib = {"publish", s("repo"),     s("lib"), "--keys",
                                  s("keys"), "--component", "lib",    "--version",
                                  "1.0.0",   "--type",      "service"};
  ok(lib);
  publish("v3", "3.0.0", {"--delta-from", "2.0.0", "--depends", "lib>=1.0"});
  run_matrix("node", {"install", "app", "--with-deps"},
             [&](const std::string&) {
               std::string act = active("crash");
               ASSERT_TRUE(act == "2.0.0" || act == "3.0.0") << act;
               EXPECT_TRUE(active_is(tree_of(act), "crash"));
               std::error_code ec;
               std::string lib_active =
                   stdfs::read_symlink(d_ / "crash/components/lib/current", ec).string();
               EXPECT_EQ(lib_active, act == "3.0.0" ? "1.0.0" : "") << "a group is all or nothing";
               auto st = mup_json({"status"}, "crash");
               for (const auto& c : st["components"]) EXPECT_TRUE(c["trial"].is_null()) << c.dump();
             },
             {"install", "app", "--with-deps"});
}

// The same with a power cut instead of a kill: what was not fsynced is lost first (a
// pointer renamed in a directory not yet synced comes back as it was; see
// store/install_store.cpp), then the process dies.
TEST_F(CrashMatrix, PowerCuts) {
  std::string snap = three_versions();
  run_matrix(
      "node", {"rollback", "app", "--restore-state"},
      [&](const std::string&) {
        std::string act = active("crash");
        ASSERT_TRUE(act == "3.0.0" || act == "2.0.0") << act;
        EXPECT_TRUE(active_is(tree_of(act), "crash"));
        EXPECT_TRUE(state_is(act == "2.0.0" ? "state-snap" : "state-now"));
      },
      {"activate", "app", "3.0.0"}, "powercut");
  publish("v2", "4.0.0", {"--delta-from", "3.0.0"});
  run_matrix(
      "node", {"install", "app"},
      [&](const std::string&) {
        std::string act = active("crash");
        ASSERT_TRUE(act == "3.0.0" || act == "4.0.0") << act;
        EXPECT_TRUE(active_is(act == "3.0.0" ? "v3" : "v2", "crash"));
        EXPECT_TRUE(state_is("state-now"));
      },
      {"install", "app"}, "powercut");
}

}  // namespace
}  // namespace mup::test
