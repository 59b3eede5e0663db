// Recovery, degraded mode, trial and the defects issue 8 found from outside, one test each
// (each failed before the operations engine): through the mup binary on a real node.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>

#include "node_fixture.hpp"

namespace mup::test {
namespace {

class NodeRecovery : public NodeCli {
 protected:
  std::string sql_one(const std::string& node, const std::string& q) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open((d_ / node / "state.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    std::string out;
    EXPECT_EQ(sqlite3_prepare_v2(db, q.c_str(), -1, &st, nullptr), SQLITE_OK) << q;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }
  void sql_exec(const std::string& node, const std::string& q) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((d_ / node / "state.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, q.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << q;
    sqlite3_close(db);
  }
  std::string state_file(const std::string& node = "node") {
    auto b = read_file(d_ / node / "state/app/counter");
    return {b.begin(), b.end()};
  }
};

// Defect 1: the restore is part of the intent, so a rollback killed just after the switch
// restores the state on recovery instead of recording "done" without it.
TEST_F(NodeRecovery, RollbackWithRestoreKilledAfterTheSwitchRestoresTheState) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  write_file(d_ / "node/state/app/counter", "state of 1.0.0\n");
  ok({"install", "app", "--root", s("node")});  // snapshots 1.0.0's state first
  write_file(d_ / "node/state/app/counter", "state of 2.0.0\n");
  auto r = mup({"rollback", "app", "--restore-state"}, "node",
               "MUP_FAULT_AT=store.activate.after_switch MUP_FAULT_ACTION=kill");
  ASSERT_EQ(r.exit_code, 137) << r.err;
  EXPECT_EQ(active(), "1.0.0");
  ok({"status", "--root", s("node")});
  EXPECT_EQ(active(), "1.0.0");
  EXPECT_EQ(state_file(), "state of 1.0.0\n");
  auto h = mup_json({"history", "app", "--limit", "1"});
  EXPECT_EQ(h[0]["kind"], "rollback");
  EXPECT_EQ(h[0]["result"], "done");
  expect_consistent(d_ / "node", "after the recovered rollback");
}

// Defect 2: a recovery that keeps failing does not wedge the node: the node runs degraded,
// the operation is quarantined after 3 attempts, reads, gc and audit work, writers of the
// component are refused with a code, and `mup recover` finishes it once the cause is gone.
TEST_F(NodeRecovery, AFailingRecoveryIsQuarantinedAndTheNodeStaysUsable) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  ok({"install", "app", "--root", s("node")});
  auto r = mup({"rollback", "app", "--restore-state"}, "node",
               "MUP_FAULT_AT=snapshot.restore.before_swap MUP_FAULT_ACTION=kill");
  ASSERT_EQ(r.exit_code, 137) << r.err;
  const std::string failing = "MUP_FAULT_AT=engine.recover MUP_FAULT_ACTION=enospc";
  for (int i = 0; i < 3; ++i) {
    auto st = mup({"status", "--json"}, "node", failing);
    ASSERT_EQ(st.exit_code, 0) << "status works while recovery fails: " << st.err;
  }
  auto sj = json::parse(mup({"status", "--json"}, "node", failing).out);
  ASSERT_EQ(sj["quarantined"].size(), 1u) << sj.dump();
  EXPECT_EQ(sj["quarantined"][0]["kind"], "rollback");
  EXPECT_EQ(sj["quarantined"][0]["recovery_attempts"], 3);
  EXPECT_TRUE(sj["degraded"].get<bool>());
  // Without the fault, a quarantined operation is still left alone until asked.
  EXPECT_EQ(mup({"history"}).exit_code, 0);
  EXPECT_EQ(mup({"gc"}).exit_code, 0);
  EXPECT_EQ(mup({"audit", "verify"}).exit_code, 0);
  auto refused = mup({"activate", "app", "2.0.0", "--json"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.out.find("engine.quarantined"), std::string::npos) << refused.out;
  auto rec = mup({"recover", "--json"});
  ASSERT_EQ(rec.exit_code, 0) << rec.err << rec.out;
  sj = mup_json({"status"});
  EXPECT_TRUE(sj["quarantined"].empty());
  EXPECT_FALSE(sj["degraded"].get<bool>());
  EXPECT_EQ(active(), "1.0.0");
  expect_consistent(d_ / "node", "after mup recover");
}

// Defect 2, second half: a journal row with a null (or mistyped) field is "unknown", and
// unknown means roll back; no command dies in std::terminate.
TEST_F(NodeRecovery, AJournalRowWithNullFieldsIsRolledBackNotFatal) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  ok({"install", "app", "--root", s("node")});
  sql_exec("node",
           "INSERT INTO operations(kind, component, from_version, to_version, actor, state, "
           "step, detail, started_at) VALUES ('rollback', 'app', '2.0.0', '1.0.0', 'x', "
           "'running', 'activate', '{\"old_previous\": null, \"restore_snapshot\": 5}', 1)");
  auto st = mup({"status", "--json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  EXPECT_EQ(active(), "2.0.0");
  EXPECT_EQ(sql_one("node", "SELECT state FROM operations WHERE actor = 'x'"), "undone");
  expect_consistent(d_ / "node", "after an unreadable row");
}

// Defect 3: ENOSPC at the final commit of an install leaves the old version active and
// the history saying failed (never "done" later).
TEST_F(NodeRecovery, NoSpaceAtTheFinalCommitLeavesTheOldVersion) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  clone_node(d_ / "node", d_ / "enum");
  ok({"install", "app", "--root", s("enum")}, "MUP_FAULT_LIST=" + s("hits.txt"));
  int last = -1;
  std::ifstream f(d_ / "hits.txt");
  std::string point;
  int n;
  while (f >> point >> n)
    if (point == "state.commit") last = std::max(last, n);
  ASSERT_GE(last, 0);
  auto r = mup({"install", "app"}, "node",
               "MUP_FAULT_AT=state.commit MUP_FAULT_AFTER=" + std::to_string(last));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no space"), std::string::npos) << r.err;
  EXPECT_EQ(active(), "1.0.0");
  EXPECT_TRUE(active_is("v1"));
  ok({"status", "--root", s("node")});
  auto h = mup_json({"history", "app", "--limit", "1"});
  EXPECT_EQ(h[0]["to"], "2.0.0");
  EXPECT_NE(h[0]["result"], "done");
  EXPECT_NE(h[0]["result"], "running");
  expect_consistent(d_ / "node", "after ENOSPC at the commit");
}

// Defect 4: a recovered install records what a normal one does (remote, type, manifest,
// size), so the next `mup install NAME` knows its remote even with several remotes.
TEST_F(NodeRecovery, ARecoveredInstallLeavesTheRecordsOfANormalOne) {
  ok({"remote", "add", "mirror", server_->base_url(), "--trusted-root",
      s("repo/metadata/1.root.json"), "--root", s("node")});
  ok({"install", "app", "--version", "1.0.0", "--remote", "origin", "--root", s("node")});
  clone_node(d_ / "node", d_ / "normal");
  ok({"install", "app", "--root", s("normal")});
  auto r = mup({"install", "app"}, "node",
               "MUP_FAULT_AT=store.activate.after_switch MUP_FAULT_ACTION=kill");
  ASSERT_EQ(r.exit_code, 137);
  ok({"status", "--root", s("node")});
  for (const char* q : {"SELECT remote || '/' || type FROM components WHERE name = 'app'",
                        "SELECT manifest FROM versions WHERE version = '2.0.0'",
                        "SELECT size || '/' || status FROM versions WHERE version = '2.0.0'"})
    EXPECT_EQ(sql_one("node", q), sql_one("normal", q)) << q;
  EXPECT_NE(sql_one("node", "SELECT manifest FROM versions WHERE version = '2.0.0'"), "{}");
  publish("v3", "3.0.0", {"--delta-from", "2.0.0"});
  auto next = mup({"install", "app"});
  EXPECT_EQ(next.exit_code, 0) << next.err;
}

// Defect 5: a refused first install leaves no empty components/<name>/.
TEST_F(NodeRecovery, ARefusedFirstInstallLeavesNoComponentDirectory) {
  auto r = mup({"install", "app"}, "node", "MUP_FAULT_AT=unpack.file MUP_FAULT_ACTION=enospc");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(stdfs::exists(d_ / "node/components/app"));
  auto st = mup_json({"status"});
  EXPECT_TRUE(st["components"].empty()) << st.dump();
}

// Defect 6: temp files of metadata writes in tuf/<remote>/ are swept by recovery.
TEST_F(NodeRecovery, StaleMetadataTempFilesAreSwept) {
  ok({"install", "app", "--root", s("node")});
  stdfs::path tmp = d_ / "node/tuf/origin/.timestamp.json.mup-tmp.4242.0";
  write_file(tmp, "half a timestamp");
  ok({"status", "--root", s("node")});
  EXPECT_FALSE(stdfs::exists(tmp));
}

// Defect 7: a kill between taking the install's snapshot and recording it leaves no
// snapshot without its row (the crash matrix checks this at every point; here, the one).
TEST_F(NodeRecovery, AKilledInstallLeavesNoSnapshotWithoutItsRow) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  auto r = mup({"install", "app"}, "node", "MUP_FAULT_AT=engine.step.stage MUP_FAULT_ACTION=kill");
  ASSERT_EQ(r.exit_code, 137);
  ok({"status", "--root", s("node")});
  expect_consistent(d_ / "node", "after a kill right after the snapshot");
}

// Defect 8: readers never wait for a writer; a writer's running operation is shown as
// running and left alone while its process lives, and recovered once it is dead.
TEST_F(NodeRecovery, ReadersAnswerWhileAWriterRunsAndALiveOperationIsLeftAlone) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  auto r = mup({"install", "app"}, "node", "MUP_FAULT_AT=install.fetched MUP_FAULT_ACTION=kill");
  ASSERT_EQ(r.exit_code, 137);
  // Stand for a live writer: hold the component's lock as the install would.
  stdfs::create_directories(d_ / "node/locks/c");
  int node_fd = ::open((d_ / "node/locks/node.lock").c_str(), O_RDWR | O_CREAT, 0644);
  int fd = ::open((d_ / "node/locks/c/app.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_EQ(::flock(node_fd, LOCK_SH), 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  auto st = mup({"status", "--json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  auto sj = json::parse(st.out);
  ASSERT_EQ(sj["running"].size(), 1u) << sj.dump();
  EXPECT_EQ(sj["running"][0]["kind"], "install");
  EXPECT_EQ(mup({"history"}).exit_code, 0);
  EXPECT_EQ(mup({"versions", "app"}).exit_code, 0);
  auto busy = mup({"activate", "app", "1.0.0", "--json"});
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_NE(busy.out.find("engine.busy"), std::string::npos) << busy.out;
  ::close(fd);
  ::close(node_fd);
  sj = mup_json({"status"});
  EXPECT_TRUE(sj["running"].empty()) << "the dead writer's install is recovered";
  EXPECT_EQ(active(), "1.0.0");
  expect_consistent(d_ / "node", "after the writer died");
}

// Defect 9: global options go before or after the subcommand.
TEST_F(NodeRecovery, GlobalOptionsGoBeforeOrAfterTheSubcommand) {
  ok({"install", "app", "--root", s("node")});
  auto before = run_mup({"--root", s("node"), "--json", "status"});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  EXPECT_EQ(json::parse(before.out)["components"][0]["active"], "2.0.0");
  auto mixed = run_mup({"--root", s("node"), "history", "--json"});
  ASSERT_EQ(mixed.exit_code, 0) << mixed.err;
  EXPECT_TRUE(json::parse(mixed.out).is_array());
}

// Defect 10: check and install answer from one resolver: what check says install fetches,
// with an index delta and pieces already cached by an interrupted install.
TEST_F(NodeRecovery, CheckDownloadBytesAreWhatInstallFetches) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  auto cut = mup({"install", "app", "--connections", "1"}, "node",
                 "MUP_FAULT_AT=install.piece MUP_FAULT_AFTER=1 MUP_FAULT_ACTION=kill");
  ASSERT_EQ(cut.exit_code, 137);
  auto c = mup_json({"check"});
  ASSERT_EQ(c["updates"].size(), 1u) << c.dump();
  uint64_t said = c["updates"][0]["download_bytes"];
  EXPECT_GT(c["updates"][0]["cached_bytes"].get<uint64_t>(), 0u);
  auto r = mup({"install", "app", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto res = json::parse(r.out.substr(r.out.rfind("{\"event\":\"result\"")))["install"];
  EXPECT_EQ(res["bytes_fetched"].get<uint64_t>(), said);
}

// Trial through the CLI: --trial, status shows it, commit keeps it; a restart (another
// boot id) with a version on trial rolls it back by default.
TEST_F(NodeRecovery, TrialVersionsAreCommittedOrRolledBackOnRestart) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  ok({"install", "app", "--trial", "--root", s("node")}, "MUP_BOOT_ID=boot-a");
  auto st = json::parse(mup({"status", "--json"}, "node", "MUP_BOOT_ID=boot-a").out);
  EXPECT_EQ(st["components"][0]["trial"]["version"], "2.0.0");
  ok({"status", "--root", s("node")}, "MUP_BOOT_ID=boot-b");  // the node restarted
  EXPECT_EQ(active(), "1.0.0");
  auto vs = mup_json({"versions", "app"});
  EXPECT_EQ(vs["versions"][1]["status"], "bad");
  EXPECT_EQ(mup({"install", "app"}).exit_code, 1);
  ok({"install", "app", "--force", "--trial", "--root", s("node")}, "MUP_BOOT_ID=boot-b");
  ok({"commit", "app", "--root", s("node")}, "MUP_BOOT_ID=boot-b");
  ok({"status", "--root", s("node")}, "MUP_BOOT_ID=boot-c");
  EXPECT_EQ(active(), "2.0.0");
  expect_consistent(d_ / "node", "after trials");
}

}  // namespace
}  // namespace mup::test
