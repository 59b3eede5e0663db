// The node test fixture shared by the CLI tests of the node side: a repository with app
// 1.0.0 and 2.0.0 (v1, v2, v3 trees in the scratch dir), served on 127.0.0.1, a node with
// the remote "origin" and some component state; helpers to run mup on a node and check
// the invariants a node must hold after any crash and restart.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "test_util.hpp"
#include "transfer/file_server.hpp"

namespace mup::test {

using nlohmann::json;

class NodeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(d_ / "v1/bin/app", random_bytes(400000, 1));
    write_file(d_ / "v1/etc/app.conf", text_bytes(20000, 2));
    write_file(d_ / "v1/share/model.bin", random_bytes(300000, 3));
    stdfs::create_symlink("../etc/app.conf", d_ / "v1/bin/conf");
    stdfs::copy(d_ / "v1", d_ / "v2",
                stdfs::copy_options::recursive | stdfs::copy_options::copy_symlinks);
    auto app = random_bytes(400000, 1);
    for (size_t i = 1000; i < 1100; ++i) app[i] ^= 0x33;
    write_file(d_ / "v2/bin/app", app);
    write_file(d_ / "v2/share/new.txt", text_bytes(30000, 4));
    stdfs::copy(d_ / "v2", d_ / "v3",
                stdfs::copy_options::recursive | stdfs::copy_options::copy_symlinks);
    write_file(d_ / "v3/etc/app.conf", text_bytes(20000, 5));
    ok({"repo", "init", s("repo"), "--keys", s("keys")});
    publish("v1", "1.0.0", {});
    publish("v2", "2.0.0", {"--delta-from", "1.0.0"});
    auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
    ASSERT_TRUE(server);
    server_ = std::move(*server);
    ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
        s("repo/metadata/1.root.json"), "--root", s("node")});
    // Some state for the snapshots.
    write_file(d_ / "node/state/app/db/data.db", random_bytes(50000, 9));
    write_file(d_ / "node/state/app/counter", "1\n");
  }
  void publish(const std::string& src, const std::string& v, std::vector<std::string> extra) {
    std::vector<std::string> args = {"publish", s("repo"),     s(src),       "--keys",
                                     s("keys"), "--component", "app",        "--version",
                                     v,         "--type",      "application"};
    args.insert(args.end(), extra.begin(), extra.end());
    ok(args);
  }
  std::string s(const std::string& rel) { return (d_ / rel).string(); }
  RunResult ok(const std::vector<std::string>& args, const std::string& env = "") {
    auto r = run_mup(args, env);
    EXPECT_EQ(r.exit_code, 0) << "mup " << (args.empty() ? "" : args[0]) << ": " << r.err << r.out;
    return r;
  }
  RunResult mup(std::vector<std::string> args, const std::string& node = "node",
                const std::string& env = "") {
    args.push_back("--root");
    args.push_back(s(node));
    return run_mup(args, env);
  }
  json mup_json(std::vector<std::string> args, const std::string& node = "node") {
    args.push_back("--json");
    auto r = mup(args, node);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }
  std::string active(const std::string& node = "node") {
    std::error_code ec;
    return stdfs::read_symlink(d_ / node / "components/app/current", ec).string();
  }
  bool active_is(const std::string& src, const std::string& node = "node") {
    std::string why;
    bool eq = trees_equal(d_ / node / "components/app/current", d_ / src, &why);
    if (!eq) ADD_FAILURE() << "active tree != " << src << ": " << why;
    return eq;
  }
  ScratchDir d_;
  std::unique_ptr<transfer::FileServer> server_;
};

// Asserts the invariants a node must hold after any crash and restart.
inline void expect_consistent(const stdfs::path& node, const std::string& where) {
  SCOPED_TRACE(where);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2((node / "state.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "ok");
  sqlite3_finalize(st);
  sqlite3_close(db);
  for (auto& e : stdfs::recursive_directory_iterator(node))
    EXPECT_EQ(e.path().filename().string().find(".mup-tmp."), std::string::npos) << e.path();
  // Snapshots on disk and their rows agree.
  auto snaps = run_mup({"snapshot", "list", "--json", "--root", node.string()});
  EXPECT_EQ(snaps.exit_code, 0) << snaps.err;
  std::set<std::string> on_disk, rows;
  for (const auto& sj : json::parse(snaps.out, nullptr, false)) on_disk.insert(sj.value("id", ""));
  ASSERT_EQ(sqlite3_open_v2((node / "state.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT id FROM snapshots", -1, &st, nullptr), SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW)
    rows.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(db);
  EXPECT_EQ(on_disk, rows) << "snapshot directories and rows differ";
  auto a = run_mup({"audit", "verify", "--root", node.string()});
  EXPECT_EQ(a.exit_code, 0) << a.out << a.err;
}

struct Kill {
  std::string point;
  int after;
};

// Copies a prepared node (no process uses it) to a fresh place.
inline void clone_node(const stdfs::path& from, const stdfs::path& to) {
  stdfs::remove_all(to);
  stdfs::copy(from, to, stdfs::copy_options::recursive | stdfs::copy_options::copy_symlinks);
}

}  // namespace mup::test
