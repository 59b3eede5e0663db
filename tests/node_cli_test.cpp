// The node side through the mup binary, against a real repository served on 127.0.0.1:
// remote add, install (fewest bytes, resumable), versions, activate, rollback, pin, gc,
// status, history, audit verify, snapshots; bad input. The crash matrix is in
// node_crash_test.cpp, the regression tests of issue 8's defects in node_recovery_test.cpp.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "node_fixture.hpp"

namespace mup::test {
namespace {

using nlohmann::json;

// Flips a byte in the middle of every file under `dir` (a mirror serving other bytes).
void corrupt_files_under(const stdfs::path& dir) {
  for (auto& e : stdfs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    auto b = read_file(e.path());
    b[b.size() / 2] ^= 0xff;
    write_file(e.path(), b);
  }
}

TEST_F(NodeCli, InstallUpgradeRollbackHistoryAudit) {
  auto r1 = mup_json({"install", "app", "--version", "1.0.0"});
  EXPECT_EQ(active(), "1.0.0");
  EXPECT_TRUE(active_is("v1"));
  auto r2 = ok({"install", "app", "--root", s("node")});
  EXPECT_NE(r2.out.find("installed app 2.0.0 (was 1.0.0)"), std::string::npos) << r2.out;
  EXPECT_TRUE(active_is("v2"));
  auto st = mup_json({"status"});
  EXPECT_EQ(st["components"][0]["active"], "2.0.0");
  EXPECT_EQ(st["components"][0]["previous"], "1.0.0");

  // Offline: the server is gone, rollback still works.
  server_->stop();
  auto rb = mup_json({"rollback", "app"});
  EXPECT_EQ(rb["to"], "1.0.0");
  EXPECT_TRUE(active_is("v1"));
  EXPECT_EQ(mup_json({"rollback", "app"})["to"], "2.0.0");
  EXPECT_TRUE(active_is("v2"));
  EXPECT_EQ(mup_json({"activate", "app", "1.0.0"})["to"], "1.0.0");
  EXPECT_TRUE(active_is("v1"));

  auto h = mup_json({"history", "app"});
  ASSERT_GE(h.size(), 5u);
  EXPECT_EQ(h[0]["kind"], "activate");
  EXPECT_EQ(h.back()["kind"], "install");
  EXPECT_EQ(h.back()["to"], "1.0.0");
  EXPECT_EQ(h.back()["result"], "done");
  auto vs = mup_json({"versions", "app"});
  EXPECT_EQ(vs["versions"].size(), 2u);
  expect_consistent(d_ / "node", "after the walk");
  ok({"verify", "app", "2.0.0", "--root", s("node")});
}

TEST_F(NodeCli, UpgradeFetchesOnlyWhatChanged) {
  auto r1 = mup_json({"install", "app", "--version", "1.0.0"});
  // --json prints events, one per line, then the result line.
  auto last = [](const std::string& out) {
    auto pos = out.rfind("{\"event\":\"result\"");
    return json::parse(out.substr(pos))["install"];
  };
  auto r = mup({"install", "app", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = last(r.out);
  EXPECT_EQ(j["to"], "2.0.0");
  uint64_t fetched = j["bytes_fetched"], full = j["full_bytes"];
  EXPECT_GT(fetched, 0u);
  EXPECT_LT(fetched * 4, full) << "fetched " << fetched << " of " << full;
  EXPECT_GE(j["files_linked"].get<uint64_t>(), 2u);  // unchanged files hard-linked
  EXPECT_NE(r.out.find("\"event\":\"progress\""), std::string::npos);
}

TEST_F(NodeCli, InterruptedDownloadResumesWithoutRefetching) {
  // One connection: the pieces before the 4th are stored when the kill comes.
  auto k = mup({"install", "app", "--version", "1.0.0", "--connections", "1"}, "node",
               "MUP_FAULT_AT=install.piece MUP_FAULT_ACTION=kill MUP_FAULT_AFTER=3");
  EXPECT_EQ(k.exit_code, 137) << k.err;
  EXPECT_EQ(active(), "");
  auto r = mup({"install", "app", "--version", "1.0.0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = json::parse(r.out.substr(r.out.rfind("{\"event\":\"result\"")))["install"];
  // The pieces verified before the kill came from the cache, not the network.
  EXPECT_GT(j["bytes_cached"].get<uint64_t>(), 0u) << j.dump();
  EXPECT_LT(j["bytes_fetched"].get<uint64_t>(), j["full_bytes"].get<uint64_t>());
  std::string out = mup({"history"}).out;
  EXPECT_NE(out.find("undone"), std::string::npos) << out;
  EXPECT_TRUE(active_is("v1"));
}

TEST_F(NodeCli, FullDiskDuringStagingKeepsTheOldVersion) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  auto r = mup({"install", "app"}, "node", "MUP_FAULT_AT=unpack.file MUP_FAULT_AFTER=1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("space"), std::string::npos) << r.err;
  EXPECT_TRUE(active_is("v1"));
  EXPECT_FALSE(stdfs::exists(d_ / "node/components/app/2.0.0"));
  expect_consistent(d_ / "node", "after ENOSPC");
  auto h = mup_json({"history", "app"});
  EXPECT_EQ(h[0]["result"], "failed");
  ok({"install", "app", "--root", s("node")});  // and it works once there is space
  EXPECT_TRUE(active_is("v2"));
}

TEST_F(NodeCli, CorruptPieceOnTheServerChangesNothing) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  // Corrupt every delta the repository holds, alone and in the update bundle.
  corrupt_files_under(d_ / "repo/deltas");
  corrupt_files_under(d_ / "repo/bundles");
  auto r = mup({"install", "app"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not match"), std::string::npos) << r.err;
  EXPECT_TRUE(active_is("v1"));
  EXPECT_FALSE(stdfs::exists(d_ / "node/components/app/2.0.0"));
  expect_consistent(d_ / "node", "after a corrupt piece");
}

// Issue 12 item 3: cold packs. A tree of many compressible files, published as "docs" with
// a cold pack of several segments and as "docs-plain" without one; v2 changes two files.
class ColdPackCli : public NodeCli {
 protected:
  void SetUp() override {
    NodeCli::SetUp();
    for (int i = 0; i < 40; ++i)
      write_file(d_ / "t1/doc" / (std::to_string(i) + ".txt"),
                 text_bytes(30000, static_cast<uint64_t>(100 + i)));
    stdfs::copy(d_ / "t1", d_ / "t2", stdfs::copy_options::recursive);
    for (int i = 3; i < 13; ++i)
      write_file(d_ / "t2/doc" / (std::to_string(i) + ".txt"),
                 text_bytes(30000, static_cast<uint64_t>(7000 + i)));
    write_file(d_ / "t2/doc/new.txt", text_bytes(5000, 7004));
    publish_as("docs", "t1", "1.0.0", {"--cold-pack-segment", "300000"});
    publish_as("docs", "t2", "2.0.0", {"--cold-pack-segment", "300000", "--delta-from", "1.0.0"});
    publish_as("docs-plain", "t1", "1.0.0", {"--no-cold-pack"});
  }
  void publish_as(const std::string& c, const std::string& src, const std::string& v,
                  std::vector<std::string> extra) {
    std::vector<std::string> args = {"publish",     s("repo"), s(src),      "--keys", s("keys"),
                                     "--component", c,         "--version", v,        "--type",
                                     "application", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    ok(args);
  }
  json install(const std::string& c, const std::string& v, const std::string& env = "",
               const std::string& node = "node") {
    auto r = mup({"install", c, "--version", v, "--json"}, node, env);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto pos = r.out.rfind("{\"event\":\"result\"");
    if (pos == std::string::npos) return json();
    return json::parse(r.out.substr(pos))["install"];
  }
  json check_row(const std::string& c) {
    auto j = mup_json({"check", "--component", c});
    return j["updates"].empty() ? json() : j["updates"][0];
  }
};

TEST_F(ColdPackCli, AColdInstallFetchesTheColdPackAndAnUpdateOnlyWhatChanged) {
  auto row = check_row("docs");  // 2.0.0, for a node without docs
  EXPECT_GE(row["pack_segments"].get<size_t>(), 3u) << row.dump();
  EXPECT_EQ(row["pieces"].get<size_t>(), 0u) << "every chunk comes from the pack";
  // On a node of its own: the nodes' piece caches would share chunks.
  ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
      s("repo/metadata/1.root.json"), "--root", s("node2")});
  uint64_t before = server_->requests();
  auto plain = install("docs-plain", "1.0.0", "", "node2");
  const uint64_t plain_requests = server_->requests() - before;
  before = server_->requests();
  auto docs = install("docs", "1.0.0");
  const uint64_t pack_requests = server_->requests() - before;
  EXPECT_LT(docs["bytes_fetched"].get<uint64_t>() * 10, plain["bytes_fetched"].get<uint64_t>() * 9)
      << docs.dump() << " vs " << plain.dump();
  EXPECT_LT(pack_requests * 4, plain_requests) << pack_requests << " vs " << plain_requests;
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "node/components/docs/current", d_ / "t1", &why)) << why;

  // An update from the held version: what changed, in one update bundle.
  row = check_row("docs");
  EXPECT_EQ(row["bundle_segments"].get<size_t>(), 1u) << row.dump();
  EXPECT_EQ(row["pack_segments"].get<size_t>(), 0u) << row.dump();
  before = server_->requests();
  auto up = install("docs", "2.0.0");
  const uint64_t update_requests = server_->requests() - before;
  EXPECT_EQ(up["bytes_fetched"], row["download_bytes"]);
  EXPECT_LT(up["bytes_fetched"].get<uint64_t>() * 3, docs["bytes_fetched"].get<uint64_t>());
  // Metadata (root probe, timestamp, snapshot, targets), the index delta, the bundle.
  EXPECT_LE(update_requests, 6u);
  EXPECT_TRUE(trees_equal(d_ / "node/components/docs/current", d_ / "t2", &why)) << why;
  expect_consistent(d_ / "node", "after cold and incremental installs");
}

// A segment with other bytes (or none: a mirror that lacks it) is refused, and the pieces it
// would have brought come one by one, each verified.
TEST_F(ColdPackCli, ACorruptSegmentIsRefusedAndItsPiecesComeOneByOne) {
  corrupt_files_under(d_ / "repo/packs");
  corrupt_files_under(d_ / "repo/bundles");
  for (const char* v : {"1.0.0", "2.0.0"}) {
    auto r = mup({"install", "docs", "--version", v, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("\"event\":\"warning\""), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("does not match its signed size and SHA-256"), std::string::npos);
  }
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "node/components/docs/current", d_ / "t2", &why)) << why;
  expect_consistent(d_ / "node", "after corrupt segments");
  // A mirror without the bundles (404).
  stdfs::remove_all(d_ / "repo/bundles");
  ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
      s("repo/metadata/1.root.json"), "--root", s("node2")});
  ok({"install", "docs", "--version", "1.0.0", "--root", s("node2")});
  auto r = mup({"install", "docs", "--version", "2.0.0", "--json"}, "node2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"event\":\"warning\""), std::string::npos) << r.out;
  EXPECT_TRUE(trees_equal(d_ / "node2/components/docs/current", d_ / "t2", &why)) << why;
}

TEST_F(ColdPackCli, AColdInstallKilledInThePackResumesFromTheChunksItCached) {
  auto k = mup({"install", "docs", "--version", "1.0.0", "--connections", "1"}, "node",
               "MUP_FAULT_AT=install.piece MUP_FAULT_ACTION=kill MUP_FAULT_AFTER=25");
  EXPECT_EQ(k.exit_code, 137) << k.err;
  auto j = install("docs", "1.0.0");
  EXPECT_GT(j["bytes_cached"].get<uint64_t>(), 0u) << j.dump();
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "node/components/docs/current", d_ / "t1", &why)) << why;
  expect_consistent(d_ / "node", "after a resumed cold install");
}

// An update's bundle segment is cached whole (one file, not a file per piece) and read in
// place by the stage step: an update killed while reading it resumes without fetching it
// again (check says so first), a cached segment with other bytes is fetched again, and the
// install removes it once the tree is staged.
TEST_F(ColdPackCli, AnUpdateKilledInTheBundleResumesFromTheSegmentItCached) {
  install("docs", "1.0.0");
  const auto files_under = [](const stdfs::path& dir) {
    size_t n = 0;
    std::error_code ec;
    for (auto it = stdfs::recursive_directory_iterator(dir, ec);
         !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec))
      n += it->is_regular_file() ? 1 : 0;
    return n;
  };
  const size_t deltas_before = files_under(d_ / "node/deltas");
  const auto fresh = check_row("docs");
  ASSERT_EQ(fresh["bundle_segments"].get<size_t>(), 1u) << fresh.dump();
  auto k = mup({"install", "docs", "--version", "2.0.0", "--connections", "1"}, "node",
               "MUP_FAULT_AT=install.piece MUP_FAULT_ACTION=kill MUP_FAULT_AFTER=2");
  EXPECT_EQ(k.exit_code, 137) << k.err;
  EXPECT_EQ(files_under(d_ / "node/bundles"), 1u) << "the segment, cached before it was read";
  EXPECT_EQ(files_under(d_ / "node/deltas"), deltas_before) << "no piece written on its own";
  const auto resumed = check_row("docs");
  EXPECT_GT(resumed["cached_bytes"].get<uint64_t>(), 0u) << resumed.dump();
  EXPECT_LT(resumed["download_bytes"].get<uint64_t>(), fresh["download_bytes"].get<uint64_t>());
  uint64_t before = server_->requests();
  auto up = install("docs", "2.0.0");
  EXPECT_EQ(up["bytes_fetched"], resumed["download_bytes"]) << up.dump();
  EXPECT_LE(server_->requests() - before, 5u) << "metadata and the index delta, no segment";
  EXPECT_EQ(files_under(d_ / "node/bundles"), 0u) << "removed once the tree was staged";
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "node/components/docs/current", d_ / "t2", &why)) << why;
  expect_consistent(d_ / "node", "after a resumed update");

  // A cached segment with other bytes under its name is fetched again.
  ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
      s("repo/metadata/1.root.json"), "--root", s("node2")});
  install("docs", "1.0.0", "", "node2");
  for (const auto& e : stdfs::recursive_directory_iterator(d_ / "repo/bundles")) {
    if (!e.is_regular_file()) continue;
    const stdfs::path to = d_ / "node2/bundles" / e.path().lexically_relative(d_ / "repo/bundles");
    stdfs::create_directories(to.parent_path());
    stdfs::copy_file(e.path(), to, stdfs::copy_options::overwrite_existing);
  }
  corrupt_files_under(d_ / "node2/bundles");
  auto again = install("docs", "2.0.0", "", "node2");
  EXPECT_EQ(again["bytes_fetched"], fresh["download_bytes"]) << again.dump();
  EXPECT_TRUE(trees_equal(d_ / "node2/components/docs/current", d_ / "t2", &why)) << why;
}

// Issue 11 item 1: index deltas are not TUF targets. One whose header and zstd frame claim
// 2 GiB made the node allocate 2 GiB, and under a 1 GiB address-space limit it aborted with
// std::bad_alloc (exit 134). Its stated size must now be the manifest's signed index_body_size, so
// it is refused before decompression and the node fetches the full (signed) index instead.
TEST_F(NodeCli, AHostileIndexDeltaClaiming2GiBIsRefusedUnderAMemoryLimit) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  const uint64_t claim = uint64_t{1} << 31;
  std::vector<uint8_t> hostile = {'M', 'U', 'P', 'X', 0};
  for (uint64_t v = claim;; v >>= 7) {  // varint
    if (v < 0x80) {
      hostile.push_back(static_cast<uint8_t>(v));
      break;
    }
    hostile.push_back(static_cast<uint8_t>(v | 0x80));
  }
  // A zstd frame whose header states 2 GiB (single segment, 8-byte content size), then one
  // RLE block of 1,000 zeros: 17 bytes that a decoder sizing its output by the header
  // allocates 2 GiB for.
  const uint8_t frame_header[] = {0x28, 0xb5, 0x2f, 0xfd, 0xe0};
  hostile.insert(hostile.end(), std::begin(frame_header), std::end(frame_header));
  for (int i = 0; i < 8; ++i) hostile.push_back(static_cast<uint8_t>(claim >> (8 * i)));
  const uint32_t block = 1u | (1u << 1) | (1000u << 3);  // last, RLE, 1,000 bytes
  for (int i = 0; i < 3; ++i) hostile.push_back(static_cast<uint8_t>(block >> (8 * i)));
  hostile.push_back(0);
  int replaced = 0;
  for (auto& e : stdfs::recursive_directory_iterator(d_ / "repo/indexes"))
    if (e.is_regular_file()) {
      write_file(e.path(), hostile);
      ++replaced;
    }
  ASSERT_EQ(replaced, 1);
#if defined(__SANITIZE_ADDRESS__)
  const std::string limit;  // ASan reserves terabytes of shadow: no address-space limit
#else
  const std::string limit = "ulimit -v 1048576;";
#endif
  auto r = mup({"install", "app", "--json"}, "node", limit);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(active_is("v2"));
  expect_consistent(d_ / "node", "after a hostile index delta");
}

TEST_F(NodeCli, DependenciesAreCheckedAndInstalledInOrder) {
  write_file(d_ / "db/bin/db", random_bytes(1000, 7));
  ok({"publish", s("repo"), s("db"), "--keys", s("keys"), "--component", "db", "--version", "2.1.0",
      "--type", "service"});
  write_file(d_ / "web/index.html", "hello");
  ok({"publish", s("repo"), s("web"), "--keys", s("keys"), "--component", "web", "--version",
      "1.0.0", "--type", "application", "--depends", "db>=2.0,<3"});
  auto r = mup({"install", "web"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("db"), std::string::npos) << r.err;
  EXPECT_FALSE(stdfs::exists(d_ / "node/components/web/1.0.0"));
  auto j = mup({"install", "web", "--with-deps"});
  EXPECT_EQ(j.exit_code, 0) << j.err;
  EXPECT_TRUE(stdfs::exists(d_ / "node/components/db/current/bin/db"));
  EXPECT_TRUE(stdfs::exists(d_ / "node/components/web/current/index.html"));
  auto h = mup_json({"history"});
  // newest first: web after db
  EXPECT_EQ(h[0]["component"], "web");
  EXPECT_EQ(h[1]["component"], "db");
}

TEST_F(NodeCli, PinHoldsAVersionAndGcKeepsIt) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  ok({"pin", "app", "1.0.0", "--root", s("node")});
  auto r = mup({"install", "app"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("pinned"), std::string::npos) << r.err;
  ok({"pin", "app", "--clear", "--root", s("node")});
  ok({"install", "app", "--root", s("node")});
  publish("v3", "3.0.0", {"--delta-from", "2.0.0"});
  ok({"install", "app", "--root", s("node")});
  ok({"pin", "app", "1.0.0", "--root", s("node")});
  auto g = mup_json({"gc", "--keep", "1"});
  EXPECT_TRUE(g["removed"].empty()) << g.dump();  // 3 active, 2 previous, 1 pinned
  ok({"pin", "app", "--clear", "--root", s("node")});
  g = mup_json({"gc", "--keep", "1"});
  ASSERT_EQ(g["removed"].size(), 1u);
  EXPECT_EQ(g["removed"][0], "app@1.0.0");
  EXPECT_TRUE(active_is("v3"));
  ok({"verify", "app", "2.0.0", "--root", s("node")});
  expect_consistent(d_ / "node", "after gc");
}

TEST_F(NodeCli, GcTrimsTheHistoryAndTheAuditLogStillVerifies) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  for (int i = 0; i < 3; ++i) {
    ok({"install", "app", "--root", s("node")});
    ok({"rollback", "app", "--root", s("node")});
  }
  const size_t ops = mup_json({"history"}).size();
  ASSERT_GE(ops, 7u);
  auto dry = mup_json(
      {"gc", "--history-keep", "3", "--steps-keep", "1", "--audit-keep", "2", "--dry-run"});
  EXPECT_EQ(dry["operations_removed"], ops - 3) << dry.dump();
  EXPECT_GE(dry["audit_records_removed"].get<uint64_t>(), 5u) << dry.dump();
  EXPECT_EQ(mup_json({"history"}).size(), ops) << "a dry run changes nothing";
  auto g = mup_json({"gc", "--history-keep", "3", "--steps-keep", "1", "--audit-keep", "2"});
  EXPECT_EQ(g["operations_removed"], ops - 3) << g.dump();
  EXPECT_GT(g["steps_removed"].get<uint64_t>(), 0u) << g.dump();
  EXPECT_EQ(g["audit_records_removed"], dry["audit_records_removed"]);
  EXPECT_TRUE(g["audit_problem"].get<std::string>().empty());
  // The gc's own operation is the newest now: 3 kept + it.
  EXPECT_EQ(mup_json({"history"}).size(), 4u);
  EXPECT_EQ(mup_json({"audit", "show"}).size(), 3u) << "2 kept + the gc's own record";
  auto v = mup_json({"audit", "verify"});
  EXPECT_TRUE(v["ok"].get<bool>()) << v.dump();
  EXPECT_EQ(v["trimmed_through"], g["audit_trimmed_through"]);
  EXPECT_GT(v["trimmed_through"].get<int64_t>(), 0);
  EXPECT_TRUE(active_is("v1"));
  expect_consistent(d_ / "node", "after trimming the history");
}

TEST_F(NodeCli, SnapshotsRestoreState) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  ok({"install", "app", "--root", s("node")});  // snapshot taken while 1.0.0 was active
  write_file(d_ / "node/state/app/counter", "2 (migrated by 2.0.0)\n");
  auto snaps = mup_json({"snapshot", "list", "app"});
  ASSERT_GE(snaps.size(), 2u);
  auto rb = mup_json({"rollback", "app", "--restore-state"});
  EXPECT_EQ(rb["to"], "1.0.0");
  EXPECT_EQ(read_file(d_ / "node/state/app/counter"), std::vector<uint8_t>({'1', '\n'}));
  auto id = snaps.back()["id"].get<std::string>();
  ok({"snapshot", "verify", id, "--root", s("node")});
  auto sys = mup_json({"snapshot", "create", "--system"});
  EXPECT_EQ(sys["members"].size(), 1u);
  ok({"snapshot", "delete", id, "--root", s("node")});
  expect_consistent(d_ / "node", "after snapshots");
}

TEST_F(NodeCli, AuditVerifyFindsAnEditedRecord) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  ok({"install", "app", "--root", s("node")});
  ok({"audit", "verify", "--root", s("node")});
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((d_ / "node/state.db").c_str(), &db), SQLITE_OK);
  // An attacker with the file drops the append-only trigger first.
  EXPECT_NE(sqlite3_exec(db, "UPDATE audit SET actor = 'mallory' WHERE seq = 2", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TRIGGER audit_no_update; "
                         "UPDATE audit SET actor = 'mallory' WHERE seq = 2",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto r = mup({"audit", "verify"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("record 2"), std::string::npos) << r.out;
}

TEST_F(NodeCli, SignedAuditLogNeedsTheNodeKey) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  ok({"audit", "keygen", "--root", s("node")});
  EXPECT_EQ(stdfs::status(d_ / "node/audit-key.pem").permissions() & stdfs::perms::all,
            stdfs::perms::owner_read | stdfs::perms::owner_write);
  ok({"install", "app", "--root", s("node")});
  ok({"audit", "verify", "--root", s("node")});
  // Rewriting the newest record and its hash (and the head) is caught by the signature.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((d_ / "node/state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TRIGGER audit_no_update; UPDATE audit SET signature = '' "
                         "WHERE seq = (SELECT MAX(seq) FROM audit)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto r = mup({"audit", "verify"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("not signed"), std::string::npos) << r.out;
}

TEST_F(NodeCli, RemoteNeedsATrustedRootThatSignsItself) {
  write_file(d_ / "bogus.json", "{\"signed\":{}}");
  auto r = mup({"remote", "add", "other", server_->base_url(), "--trusted-root", s("bogus.json")});
  EXPECT_EQ(r.exit_code, 1);
  auto again = mup({"remote", "add", "origin", server_->base_url(), "--trusted-root",
                    s("repo/metadata/1.root.json")});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("exists"), std::string::npos);
}

TEST_F(NodeCli, CheckAsksTheNodesRemote) {
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});
  auto j = mup_json({"check"});
  ASSERT_EQ(j["updates"].size(), 1u) << j.dump();
  EXPECT_EQ(j["updates"][0]["installed"], "1.0.0");
  EXPECT_EQ(j["updates"][0]["available"], "2.0.0");
  EXPECT_LT(j["updates"][0]["download_bytes"].get<uint64_t>() * 4,
            j["updates"][0]["full_bytes"].get<uint64_t>());
  auto both = mup({"check", "--remote", "origin", "--repo", server_->base_url()});
  EXPECT_EQ(both.exit_code, 1);
}

TEST_F(NodeCli, EncryptedPackageInstallsOnlyWithItsDeviceKey) {
  ok({"keygen", "--device", "dev-a", "--out", s("devkeys")});
  ok({"keygen", "--device", "dev-b", "--out", s("devkeys")});
  write_file(d_ / "s1/etc/secret.conf", "TOPSECRET-1\n");
  write_file(d_ / "s1/bin/tool", random_bytes(200000, 11));
  stdfs::copy(d_ / "s1", d_ / "s2", stdfs::copy_options::recursive);
  write_file(d_ / "s2/etc/secret.conf", "TOPSECRET-2\n");
  for (auto [src, v] : {std::pair{"s1", "1.0.0"}, std::pair{"s2", "1.1.0"}}) {
    std::vector<std::string> args = {
        "publish",   s("repo"), s(src),   "--keys", s("keys"),      "--component",         "vault",
        "--version", v,         "--type", "config", "--encrypt-to", s("devkeys/dev-a.pub")};
    if (std::string(v) == "1.1.0") {
      args.push_back("--delta-from");
      args.push_back("1.0.0");
    }
    ok(args);
  }
  // No key: a clear refusal, nothing installed.
  auto none = mup({"install", "vault"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("encrypted"), std::string::npos) << none.err;
  EXPECT_FALSE(stdfs::exists(d_ / "node/components/vault/1.1.0"));
  // Another device's key: refused, naming the recipients.
  auto other = mup({"install", "vault", "--device-key", s("devkeys/dev-b.key")});
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.err.find("recipient"), std::string::npos) << other.err;
  // The recipient installs 1.0.0, then 1.1.0 from sealed deltas.
  ok({"install", "vault", "--version", "1.0.0", "--device-key", s("devkeys/dev-a.key"), "--root",
      s("node")});
  auto r = mup({"install", "vault", "--device-key", s("devkeys/dev-a.key"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "node/components/vault/current", d_ / "s2", &why)) << why;
  auto res = json::parse(r.out.substr(r.out.rfind("{\"event\":\"result\"")))["install"];
  EXPECT_LT(res["bytes_fetched"].get<uint64_t>() * 4, res["full_bytes"].get<uint64_t>());
  expect_consistent(d_ / "node", "after encrypted installs");
}

}  // namespace
}  // namespace mup::test
