// Publisher to node through the mup binary: repo init, publish (with deltas), repo verify,
// a real HTTP server on 127.0.0.1, and check; plus what tampering does to each.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>

#include "test_util.hpp"
#include "transfer/file_server.hpp"

namespace mup::test {
namespace {

class RepoCli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(d_ / "v1/bin/app", random_bytes(300000, 1));
    write_file(d_ / "v1/etc/app.conf", text_bytes(20000, 2));
    stdfs::copy(d_ / "v1", d_ / "v2", stdfs::copy_options::recursive);
    auto app = random_bytes(300000, 1);
    for (size_t i = 1000; i < 1100; ++i) app[i] ^= 0x33;
    write_file(d_ / "v2/bin/app", app);
    ok({"repo", "init", s("repo"), "--keys", s("keys")});
    ok({"publish", s("repo"), s("v1"), "--keys", s("keys"), "--component", "app", "--version",
        "1.0.0", "--type", "service"});
    ok({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "app", "--version",
        "1.1.0", "--type", "service", "--delta-from", "1.0.0", "--priority", "critical"});
  }
  std::string s(const std::string& rel) { return (d_ / rel).string(); }
  RunResult ok(const std::vector<std::string>& args) {
    auto r = run_mup(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r;
  }
  // Installs v1 on a node the way the install store will lay it out.
  void install_v1_on_node() {
    stdfs::path idx;
    for (auto& e : stdfs::directory_iterator(d_ / "repo/targets/app/1.0.0")) idx = e.path();
    stdfs::create_directories(d_ / "node/components/app");
    ok({"unpack", idx.string(), "--store", s("repo"), "--out", s("node/components/app/1.0.0"),
        "-q"});
    stdfs::copy_file(idx, d_ / "node/components/app/1.0.0.idx");
    stdfs::create_symlink("1.0.0", d_ / "node/components/app/current");
  }
  ScratchDir d_;
};

TEST_F(RepoCli, KeysArePrivateAndOutsideTheRepository) {
  for (auto& e : stdfs::directory_iterator(d_ / "keys"))
    EXPECT_EQ(stdfs::status(e.path()).permissions() & stdfs::perms::all,
              stdfs::perms::owner_read | stdfs::perms::owner_write);
  for (auto& e : stdfs::recursive_directory_iterator(d_ / "repo"))
    EXPECT_NE(e.path().extension(), ".pem") << e.path();
  auto inside = run_mup({"repo", "init", s("repo2"), "--keys", s("repo2/keys")});
  EXPECT_EQ(inside.exit_code, 1);
  EXPECT_FALSE(stdfs::exists(d_ / "repo2/metadata"));
}

TEST_F(RepoCli, VerifyPassesAndCatchesTampering) {
  auto r = ok({"repo", "verify", s("repo"), "--json"});
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["ok"]);
  EXPECT_EQ(j["targets"], 2);
  // Flip a byte of a published tree index: its hash no longer matches the signed targets.
  stdfs::path idx;
  for (auto& e : stdfs::directory_iterator(d_ / "repo/targets/app/1.1.0")) idx = e.path();
  auto bytes = read_file(idx);
  bytes[bytes.size() / 2] ^= 1;
  write_file(idx, bytes);
  auto bad = run_mup({"repo", "verify", s("repo")});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("PROBLEM"), std::string::npos) << bad.out;
}

TEST_F(RepoCli, RepublishingAVersionIsRefused) {
  auto r = run_mup({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "app",
                    "--version", "1.1.0", "--type", "service"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("immutable"), std::string::npos) << r.err;
}

// A publish killed before its pieces were synced, then a power cut: pieces torn under their
// final names. The next publish of that content is told the earlier one did not finish,
// reads back what it reuses, stores the torn pieces again, and a node rebuilds the tree.
TEST_F(RepoCli, APublishAfterOneThatDidNotFinishStoresTornPiecesAgain) {
  write_file(d_ / "v3/bin/tool", random_bytes(400000, 7));
  write_file(d_ / "v3/etc/tool.conf", text_bytes(30000, 8));
  std::set<stdfs::path> before;
  for (auto& e : stdfs::recursive_directory_iterator(d_ / "repo/chunks"))
    if (e.is_regular_file()) before.insert(e.path());
  const std::vector<std::string> publish = {"publish", s("repo"),     s("v3"),      "--keys",
                                            s("keys"), "--component", "tool",       "--version",
                                            "1.0.0",   "--type",      "application"};
  auto killed = run_mup(publish, "MUP_FAULT_AT=pack.before_sync MUP_FAULT_ACTION=kill");
  ASSERT_NE(killed.exit_code, 0) << killed.err;
  // What the power cut leaves: the new pieces empty or cut short.
  int torn = 0;
  for (auto& e : stdfs::recursive_directory_iterator(d_ / "repo/chunks")) {
    if (!e.is_regular_file() || before.count(e.path())) continue;
    const auto bytes = read_file(e.path());
    const size_t keep = torn % 2 == 0 ? 0 : bytes.size() / 2;
    write_file(e.path(), std::vector<uint8_t>(bytes.begin(), bytes.begin() + keep));
    ++torn;
  }
  ASSERT_GE(torn, 2);
  auto again = run_mup(publish);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("did not finish"), std::string::npos) << again.err;
  EXPECT_FALSE(stdfs::exists(d_ / "repo/.mup-batch-incomplete"));
  stdfs::path idx;
  for (auto& e : stdfs::directory_iterator(d_ / "repo/targets/tool/1.0.0")) idx = e.path();
  ASSERT_FALSE(idx.empty());
  ok({"unpack", idx.string(), "--store", s("repo"), "--out", s("out3"), "-q"});
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "v3", d_ / "out3", &why)) << why;
  // A publish that finished leaves nothing to check: the next one is not told.
  write_file(d_ / "v4/bin/tool", random_bytes(400000, 9));
  auto next = run_mup({"publish", s("repo"), s("v4"), "--keys", s("keys"), "--component", "tool",
                       "--version", "1.1.0", "--type", "application"});
  ASSERT_EQ(next.exit_code, 0) << next.err;
  EXPECT_EQ(next.err.find("did not finish"), std::string::npos) << next.err;
}

// Two publishers of one repository would sign competing metadata versions: the second is
// refused while the first holds the repository, and nothing changes.
TEST_F(RepoCli, ASecondPublishWhileOneRunsIsRefused) {
  write_file(d_ / "v3/bin/tool", random_bytes(200000, 7));
  // This process holds the repository the way a running publish does.
  const int fd =
      ::open((d_ / "repo/.mup-publish.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  const auto targets_before = read_file(d_ / "repo/metadata/timestamp.json");
  auto r = run_mup({"publish", s("repo"), s("v3"), "--keys", s("keys"), "--component", "tool",
                    "--version", "1.0.0", "--type", "application"});
  ::close(fd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("a publish"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(d_ / "repo/metadata/timestamp.json"), targets_before);
  EXPECT_FALSE(stdfs::exists(d_ / "repo/targets/tool"));
  // Released: it goes through.
  ok({"publish", s("repo"), s("v3"), "--keys", s("keys"), "--component", "tool", "--version",
      "1.0.0", "--type", "application"});
}

TEST_F(RepoCli, ARollbackPolicyTheJudgeCannotReadIsRefusedAtPublish) {
  write_file(d_ / "bad-policy.json", std::string(R"({"alpha": 0.9})"));
  auto r = run_mup({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "web",
                    "--version", "1.0.0", "--type", "service", "--rollback-policy",
                    s("bad-policy.json")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("alpha"), std::string::npos) << r.err;
  write_file(d_ / "policy.json",
             std::string(R"({"alpha": "0.01", "triggers": [{"metric": "error_rate"}]})"));
  auto good =
      run_mup({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "web",
               "--version", "1.0.0", "--type", "service", "--rollback-policy", s("policy.json")});
  EXPECT_EQ(good.exit_code, 0) << good.err;
}

TEST_F(RepoCli, UnsatisfiableDependencyIsRefused) {
  auto r = run_mup({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "web",
                    "--version", "1.0.0", "--type", "service", "--depends", "app>=2.0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("app>=2.0"), std::string::npos) << r.err;
  ok({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "web", "--version",
      "1.0.0", "--type", "service", "--depends", "app>=1.1,<2"});
}

TEST_F(RepoCli, BadInputsToPublishAreRefused) {
  std::vector<std::vector<std::string>> bad = {{"--type", "firmware"},
                                               {"--version", "1.2"},
                                               {"--priority", "urgent"},
                                               {"--strategy", "yolo"}};
  for (const auto& extra : bad) {
    std::vector<std::string> args = {"publish", s("repo"),     s("v2"), "--keys",
                                     s("keys"), "--component", "x",     "--version",
                                     "9.0.0",   "--type",      "config"};
    for (size_t i = 0; i < args.size(); ++i)
      if (args[i] == extra[0]) args[i + 1] = extra[1];
    if (std::find(args.begin(), args.end(), extra[0]) == args.end())
      args.insert(args.end(), extra.begin(), extra.end());
    auto r = run_mup(args);
    EXPECT_NE(r.exit_code, 0) << extra[0] << " " << extra[1];
  }
}

TEST_F(RepoCli, CheckListsTheUpdateWithItsDeltaSize) {
  install_v1_on_node();
  auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
  ASSERT_TRUE(server);
  auto r = ok({"check", "--repo", (*server)->base_url(), "--trusted-root",
               s("repo/metadata/1.root.json"), "--root", s("node"), "--json"});
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["updates"].size(), 1u) << r.out;
  auto u = j["updates"][0];
  EXPECT_EQ(u["installed"], "1.0.0");
  EXPECT_EQ(u["available"], "1.1.0");
  EXPECT_EQ(u["priority"], "critical");
  EXPECT_LT(u["download_bytes"].get<uint64_t>() * 10, u["full_bytes"].get<uint64_t>());
  // The trusted metadata is now on the node; a second check needs no --trusted-root.
  ok({"check", "--repo", (*server)->base_url(), "--root", s("node")});
}

TEST_F(RepoCli, KeyRotationAndExpiryKeepTheChainVerifiable) {
  install_v1_on_node();
  auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
  ASSERT_TRUE(server);
  // The node first trusts root v1.
  ok({"check", "--repo", (*server)->base_url(), "--trusted-root", s("repo/metadata/1.root.json"),
      "--root", s("node")});
  ok({"repo", "rotate-key", s("repo"), "--keys", s("keys"), "--role", "root"});
  ok({"repo", "rotate-key", s("repo"), "--keys", s("keys"), "--role", "timestamp"});
  ok({"repo", "expire", s("repo"), "--keys", s("keys"), "--role", "targets"});
  auto v = nlohmann::json::parse(ok({"repo", "verify", s("repo"), "--json"}).out);
  EXPECT_TRUE(v["ok"]) << v.dump();
  EXPECT_EQ(v["root_version"], 3);
  EXPECT_TRUE(stdfs::exists(d_ / "repo/metadata/3.root.json"));
  bool retired = false;
  for (auto& e : stdfs::directory_iterator(d_ / "keys"))
    retired |= e.path().filename().string().rfind("retired-root.", 0) == 0;
  EXPECT_TRUE(retired) << "old root keys are kept aside, not deleted";
  // The node follows root v1 -> v2 -> v3 and the new timestamp key.
  auto r = ok({"check", "--repo", (*server)->base_url(), "--root", s("node"), "--json"});
  EXPECT_EQ(nlohmann::json::parse(r.out)["updates"].size(), 1u) << r.out;
  // Publishing goes on with the new keys.
  ok({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "app", "--version",
      "1.2.0", "--type", "service", "--delta-from", "1.1.0"});
  auto after = nlohmann::json::parse(
      ok({"check", "--repo", (*server)->base_url(), "--root", s("node"), "--json"}).out);
  EXPECT_EQ(after["updates"][0]["available"], "1.2.0");
}

// Rotating a role's keys re-signs that role's current metadata at once: nodes go on without
// a publish or an expire in between (the repository was unusable until one, before).
TEST_F(RepoCli, ARotatedRoleIsReSignedAtOnceAndTheRepositoryVerifies) {
  install_v1_on_node();
  auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
  ASSERT_TRUE(server);
  ok({"check", "--repo", (*server)->base_url(), "--trusted-root", s("repo/metadata/1.root.json"),
      "--root", s("node")});
  for (const char* role : {"timestamp", "snapshot", "targets"}) {
    SCOPED_TRACE(role);
    auto r = ok({"repo", "rotate-key", s("repo"), "--keys", s("keys"), "--role", role});
    EXPECT_NE(r.out.find("re-signed by the new keys"), std::string::npos) << r.out;
    auto v = nlohmann::json::parse(ok({"repo", "verify", s("repo"), "--json"}).out);
    EXPECT_TRUE(v["ok"]) << v.dump();
    auto c = ok({"check", "--repo", (*server)->base_url(), "--root", s("node"), "--json"});
    EXPECT_EQ(nlohmann::json::parse(c.out)["updates"].size(), 1u) << c.out;
  }
}

TEST_F(RepoCli, CheckWithoutATrustedRootRefuses) {
  auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
  auto r = run_mup({"check", "--repo", (*server)->base_url(), "--root", s("node")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--trusted-root"), std::string::npos) << r.err;
}

TEST_F(RepoCli, CheckRefusesAForeignRoot) {
  ok({"repo", "init", s("other"), "--keys", s("otherkeys")});
  auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
  auto r = run_mup({"check", "--repo", (*server)->base_url(), "--trusted-root",
                    s("other/metadata/1.root.json"), "--root", s("node")});
  EXPECT_EQ(r.exit_code, 1) << r.out;
}

TEST_F(RepoCli, CheckRefusesATamperedIndex) {
  install_v1_on_node();
  stdfs::path idx;
  for (auto& e : stdfs::directory_iterator(d_ / "repo/targets/app/1.1.0")) idx = e.path();
  auto bytes = read_file(idx);
  bytes[bytes.size() / 2] ^= 1;
  write_file(idx, bytes);
  // Without the index delta (which the node would rebuild from its own index), the node
  // must download the tampered target.
  stdfs::remove_all(d_ / "repo/indexes");
  auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
  auto r = run_mup({"check", "--repo", (*server)->base_url(), "--trusted-root",
                    s("repo/metadata/1.root.json"), "--root", s("node")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("app@1.1.0"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace mup::test
