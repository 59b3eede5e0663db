// Metadata that scales with what changed, through the mup binary and a real HTTP server on
// 127.0.0.1: one delegated role per component (a publish rewrites that role only; a node
// asking about one component fetches that role only), and repo prune (keeps the newest N,
// verifies, and a node that is behind still installs the newest).
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "crypto/crypto.hpp"
#include "test_util.hpp"
#include "transfer/file_server.hpp"
#include "tuf/clock.hpp"
#include "tuf/repository.hpp"

namespace mup::test {
namespace {

using nlohmann::json;

std::string text_of(const stdfs::path& p) {
  auto b = read_file(p);
  return std::string(b.begin(), b.end());
}

class RepoScale : public ::testing::Test {
 protected:
  void SetUp() override { ok({"repo", "init", s("repo"), "--keys", s("keys")}); }
  std::string s(const std::string& rel) { return (d_ / rel).string(); }
  RunResult ok(const std::vector<std::string>& args) {
    auto r = run_mup(args);
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    return r;
  }
  // A small tree for component c at version v (each version changes one file).
  json publish(const std::string& c, const std::string& v, std::vector<std::string> extra = {}) {
    std::string src = "src-" + c + "-" + v;
    auto tool = random_bytes(60000, 7);  // a little of it changes with each version
    for (size_t i = 0; i < 64; ++i) tool[(std::hash<std::string>{}(c + v) + i * 811) % 60000] ^= 1;
    write_file(d_ / src / "bin/tool", tool);
    write_file(d_ / src / "etc/version", c + " " + v + "\n");
    std::vector<std::string> args = {"publish",   s("repo"), s(src),        "--keys",
                                     s("keys"),   "--json",  "--component", c,
                                     "--version", v,         "--type",      "application"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = ok(args);
    return json::parse(r.out, nullptr, false);
  }
  std::set<std::string> metadata_files() {
    std::set<std::string> out;
    for (auto& e : stdfs::directory_iterator(d_ / "repo/metadata"))
      out.insert(e.path().filename().string());
    return out;
  }
  size_t files_under(const std::string& rel) {
    size_t n = 0;
    if (!stdfs::exists(d_ / rel)) return 0;
    for (auto& e : stdfs::recursive_directory_iterator(d_ / rel)) n += e.is_regular_file();
    return n;
  }
  // The repository opened as a publisher with every key in KEYDIR (to write what the CLI
  // would not, e.g. an older layout).
  tuf::Repository open_with_keys(tuf::ExpiryPolicy expiry = {}) {
    auto repo = tuf::Repository::open(d_ / "repo", clock_, expiry);
    EXPECT_TRUE(repo) << repo.error().message();
    for (auto& e : stdfs::directory_iterator(d_ / "keys")) {
      if (e.path().extension() != ".pem") continue;
      auto pem = read_file(e.path());
      auto key =
          crypto::PrivateKey::from_pem({reinterpret_cast<const char*>(pem.data()), pem.size()});
      EXPECT_TRUE(key);
      std::string name = e.path().filename().string();
      repo->add_signer(name.substr(0, name.find('.')), std::move(*key));
    }
    return std::move(*repo);
  }
  // The metadata files a node trusts (those it fetched, and the root it was given).
  std::set<std::string> node_metadata(const std::string& rel = "node/tuf") {
    std::set<std::string> out;
    for (auto& e : stdfs::directory_iterator(d_ / rel))
      if (e.is_regular_file()) out.insert(e.path().filename().string());
    return out;
  }
  void serve() {
    auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
    ASSERT_TRUE(server);
    server_ = std::move(*server);
  }
  ScratchDir d_;
  tuf::SystemClock clock_;
  std::unique_ptr<transfer::FileServer> server_;
};

TEST_F(RepoScale, APublishOfOneComponentRewritesItsRoleOnly) {
  auto a = publish("a", "1.0.0");
  EXPECT_EQ(a["role"], "a");
  EXPECT_EQ(a["role_created"], true);
  auto b = publish("b", "1.0.0");
  EXPECT_EQ(b["role_created"], true);
  const auto a_role = read_file(d_ / "repo/metadata/1.a.json");
  const auto before = metadata_files();
  auto b2 = publish("b", "1.1.0", {"--delta-from", "1.0.0"});
  EXPECT_EQ(b2["role"], "b");
  EXPECT_EQ(b2["role_created"], false);
  EXPECT_EQ(b2["role_version"], 2);
  EXPECT_EQ(b2["targets_version"], b["targets_version"]);  // no new delegation: untouched
  auto after = metadata_files();
  std::set<std::string> added;
  for (const auto& f : after)
    if (!before.count(f)) added.insert(f);
  EXPECT_EQ(added,
            (std::set<std::string>{
                "2.b.json", std::to_string(b2["snapshot_version"].get<int>()) + ".snapshot.json"}));
  EXPECT_EQ(read_file(d_ / "repo/metadata/1.a.json"), a_role);
  // Dependencies are read from the other component's role.
  publish("c", "1.0.0", {"--depends", "a>=1.0"});
  auto unmet = run_mup({"publish", s("repo"), s("src-c-1.0.0"), "--keys", s("keys"), "--component",
                        "c", "--version", "1.1.0", "--type", "application", "--depends", "b>=2"});
  EXPECT_EQ(unmet.exit_code, 1);
  EXPECT_NE(unmet.err.find("dependency b>=2"), std::string::npos) << unmet.err;
  ok({"repo", "verify", s("repo")});
}

TEST_F(RepoScale, ACheckOfOneComponentFetchesItsBinAndItsRoleOnly) {
  publish("a", "1.0.0");
  publish("a", "1.1.0");
  auto b1 = publish("b", "1.0.0");
  publish("b", "2.0.0");
  serve();
  auto r = ok({"check", "--repo", server_->base_url(), "--trusted-root",
               s("repo/metadata/1.root.json"), "--root", s("node"), "--component", "b", "--json"});
  auto j = json::parse(r.out, nullptr, false);
  ASSERT_EQ(j["updates"].size(), 1u) << r.out;  // (the JSON has no components_offered)
  EXPECT_EQ(j["updates"][0]["component"], "b");
  EXPECT_EQ(j["updates"][0]["available"], "2.0.0");
  const std::string b_bin = b1["bin"];
  EXPECT_EQ(node_metadata(), (std::set<std::string>{"root.json", "timestamp.json", "snapshot.json",
                                                    "targets.json", b_bin + ".json", "b.json"}));
  // Without --component: every role, every component.
  r = ok({"check", "--repo", server_->base_url(), "--root", s("node"), "--json"});
  j = json::parse(r.out, nullptr, false);
  ASSERT_EQ(j["updates"].size(), 2u);
  EXPECT_EQ(j["updates"][0]["available"], "1.1.0");
  EXPECT_TRUE(stdfs::exists(d_ / "node/tuf/a.json"));
}

TEST_F(RepoScale, PruneKeepsTheNewestAndANodeBehindInstallsTheNewest) {
  const std::string app_bin = publish("app", "1.0.0")["bin"];
  for (int v = 1; v < 5; ++v)
    publish("app", "1." + std::to_string(v) + ".0",
            {"--delta-from", "1." + std::to_string(v - 1) + ".0"});
  publish("other", "1.0.0");
  serve();
  ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
      s("repo/metadata/1.root.json"), "--root", s("node")});
  ok({"install", "app", "--version", "1.0.0", "--root", s("node")});

  // --dry-run lists everything and changes nothing.
  const auto meta_before = metadata_files();
  const size_t chunks_before = files_under("repo/chunks") + files_under("repo/deltas");
  // Cold pack segments (one per version) and update bundles (one per --delta-from).
  const size_t segments_before = files_under("repo/packs") + files_under("repo/bundles");
  ASSERT_GE(segments_before, 9u);
  auto dry =
      ok({"repo", "prune", s("repo"), "--keys", s("keys"), "--keep", "2", "--dry-run", "--json"});
  auto plan = json::parse(dry.out, nullptr, false);
  ASSERT_EQ(plan["versions"].size(), 3u) << dry.out;
  EXPECT_EQ(plan["versions"][0]["version"], "1.0.0");
  EXPECT_EQ(plan["versions"][2]["version"], "1.2.0");
  EXPECT_EQ(plan["indexes"].size(), 3u);
  EXPECT_FALSE(plan["metadata"].empty());
  EXPECT_FALSE(plan["pieces"].empty());
  EXPECT_EQ(metadata_files(), meta_before);
  EXPECT_EQ(files_under("repo/chunks") + files_under("repo/deltas"), chunks_before);

  // --older-than: every version is younger than a day, none goes.
  auto young = json::parse(ok({"repo", "prune", s("repo"), "--keys", s("keys"), "--keep", "1",
                               "--older-than", "1d", "--dry-run", "--json"})
                               .out,
                           nullptr, false);
  EXPECT_TRUE(young["versions"].empty());

  const auto ts_before = json::parse(text_of(d_ / "repo/metadata/timestamp.json"));
  const uint64_t bin_before =
      tuf::Repository::open(d_ / "repo", clock_)->snapshot().meta.at(app_bin + ".json").version;
  auto real = json::parse(
      ok({"repo", "prune", s("repo"), "--keys", s("keys"), "--keep", "2", "--json"}).out, nullptr,
      false);
  EXPECT_EQ(real["versions"], plan["versions"]);
  EXPECT_EQ(real["pieces"], plan["pieces"]);
  for (const auto& f : plan["metadata"])
    EXPECT_FALSE(stdfs::exists(d_ / "repo" / f["path"].get<std::string>())) << f;
  EXPECT_LT(files_under("repo/chunks") + files_under("repo/deltas"), chunks_before);
  // app 1.3.0 and 1.4.0 (a pack each; their bundles from 1.2.0 and 1.3.0) and other 1.0.0.
  EXPECT_EQ(files_under("repo/packs") + files_under("repo/bundles"), 5u);
  ok({"repo", "verify", s("repo")});
  // The bins hold no targets: the prune leaves them as they were.
  EXPECT_EQ(
      tuf::Repository::open(d_ / "repo", clock_)->snapshot().meta.at(app_bin + ".json").version,
      bin_before);
  // A node that read timestamp.json just before the prune finds the snapshot it names and
  // every role that snapshot names; so does one that read it before the last publish (it
  // was replaced within the grace).
  const int current = ts_before["signed"]["meta"]["snapshot.json"]["version"];
  for (int v : {current, current - 1}) {
    auto snap = json::parse(text_of(d_ / "repo/metadata" / (std::to_string(v) + ".snapshot.json")));
    for (auto& [name, meta] : snap["signed"]["meta"].items())
      EXPECT_TRUE(stdfs::exists(d_ / "repo/metadata" /
                                (std::to_string(meta["version"].get<int>()) + "." + name)))
          << name;
  }
  EXPECT_FALSE(
      stdfs::exists(d_ / "repo/metadata" / (std::to_string(current - 2) + ".snapshot.json")));

  // The node on 1.0.0 (pruned) sees 1.3.0 and 1.4.0 and installs the newest over HTTP.
  auto check = json::parse(ok({"check", "--root", s("node"), "--json"}).out, nullptr, false);
  ASSERT_FALSE(check["updates"].empty()) << check.dump();
  EXPECT_EQ(check["updates"][0]["available"], "1.4.0");
  ok({"install", "app", "--root", s("node")});
  EXPECT_EQ(stdfs::read_symlink(d_ / "node/components/app/current").string(), "1.4.0");
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "node/components/app/1.4.0", d_ / "src-app-1.4.0", &why)) << why;
  auto gone = run_mup({"install", "app", "--version", "1.1.0", "--root", s("node")});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.err.find("it has 1.3.0, 1.4.0"), std::string::npos) << gone.err;

  // A later prune (past the grace) has no version to drop and leaves the live metadata only.
  auto again = json::parse(ok({"repo", "prune", s("repo"), "--keys", s("keys"), "--keep", "2",
                               "--grace", "0s", "--json"})
                               .out,
                           nullptr, false);
  EXPECT_TRUE(again["versions"].empty());
  EXPECT_FALSE(again["metadata"].empty());
  size_t snapshots = 0;
  for (const auto& f : metadata_files()) snapshots += f.find(".snapshot.json") != f.npos;
  EXPECT_EQ(snapshots, 1u);
  ok({"repo", "verify", s("repo")});
  auto last = json::parse(ok({"check", "--root", s("node"), "--json"}).out);
  ASSERT_EQ(last["updates"].size(), 1u);  // app is up to date
  EXPECT_EQ(last["updates"][0]["component"], "other");
  auto bad = run_mup({"repo", "prune", s("repo"), "--keys", s("keys"), "--keep", "0"});
  EXPECT_EQ(bad.exit_code, 1);
}

// Encrypted versions: the prune finds their sealed pieces with the component's data key in
// KEYDIR/data; without the key it keeps them all and says so. A recipient installs the newest.
TEST_F(RepoScale, PruneOfEncryptedVersionsRemovesTheirSealedPiecesWithTheDataKey) {
  ok({"keygen", "--device", "dev-a", "--out", s("dev")});
  std::vector<std::string> enc = {"--encrypt-to", s("dev/dev-a.pub")};
  publish("app", "1.0.0", enc);
  for (const char* v : {"1.1.0", "1.2.0"}) {
    auto extra = enc;
    extra.insert(extra.end(), {"--delta-from", std::string(v) == "1.1.0" ? "1.0.0" : "1.1.0"});
    publish("app", v, extra);
  }
  const size_t sealed_before = files_under("repo/sealed");
  ASSERT_GT(sealed_before, 0u);

  // Without the data keys: nothing sealed is listed, and the note says why.
  stdfs::create_directories(d_ / "nodata");
  for (auto& e : stdfs::directory_iterator(d_ / "keys"))
    if (e.path().extension() == ".pem")
      stdfs::copy_file(e.path(), d_ / "nodata" / e.path().filename());
  auto blind = json::parse(
      ok({"repo", "prune", s("repo"), "--keys", s("nodata"), "--keep", "1", "--dry-run", "--json"})
          .out);
  EXPECT_EQ(blind["versions"].size(), 2u);
  for (const auto& p : blind["pieces"])
    EXPECT_NE(p["path"].get<std::string>().rfind("sealed/", 0), 0u) << p;
  ASSERT_FALSE(blind["notes"].empty());
  EXPECT_NE(blind["notes"][0].get<std::string>().find("every sealed piece of app is kept"),
            std::string::npos);

  auto real = json::parse(
      ok({"repo", "prune", s("repo"), "--keys", s("keys"), "--keep", "1", "--json"}).out);
  EXPECT_TRUE(real["notes"].empty());
  size_t sealed_listed = 0;
  for (const auto& p : real["pieces"])
    sealed_listed += p["path"].get<std::string>().rfind("sealed/app/", 0) == 0;
  EXPECT_GT(sealed_listed, 0u);
  EXPECT_EQ(files_under("repo/sealed"), sealed_before - sealed_listed);
  ok({"repo", "verify", s("repo")});

  serve();
  ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
      s("repo/metadata/1.root.json"), "--root", s("node")});
  ok({"install", "app", "--root", s("node"), "--device-key", s("dev/dev-a.key")});
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "node/components/app/1.2.0", d_ / "src-app-1.2.0", &why)) << why;
}

// A repository written before component roles (app's versions in top-level targets): nodes
// read it, and the next publish of app moves them into app's new role, once.
TEST_F(RepoScale, TargetsInTopLevelTargetsAreReadAndMoveToTheComponentRoleOnItsNextPublish) {
  // app 1.0.0 as an older publisher wrote it: the same target entry, in top-level targets.
  ScratchDir other;
  ok({"repo", "init", (other / "repo").string(), "--keys", (other / "keys").string()});
  write_file(other / "src/bin/tool", random_bytes(30000, 3));
  ok({"publish", (other / "repo").string(), (other / "src").string(), "--keys",
      (other / "keys").string(), "--component", "app", "--version", "1.0.0", "--type",
      "application"});
  tuf::SystemClock clock;
  auto donor = tuf::Repository::open(other / "repo", clock);
  ASSERT_TRUE(donor);
  auto app_role = donor->load_targets("app");
  ASSERT_TRUE(app_role);
  const tuf::TargetFile tf = (*app_role)->targets.at("app/1.0.0/tree.idx");
  auto index = read_file(other / "repo/targets/app/1.0.0" / (tf.hashes.at("sha256") + ".tree.idx"));
  auto legacy = tuf::Repository::open(d_ / "repo", clock);
  ASSERT_TRUE(legacy);
  for (auto& e : stdfs::directory_iterator(d_ / "keys")) {
    if (e.path().extension() != ".pem") continue;
    auto pem = read_file(e.path());
    auto key =
        crypto::PrivateKey::from_pem({reinterpret_cast<const char*>(pem.data()), pem.size()});
    ASSERT_TRUE(key);
    std::string name = e.path().filename().string();
    legacy->add_signer(name.substr(0, name.find('.')), std::move(*key));
  }
  ASSERT_TRUE(legacy->add_target("app/1.0.0/tree.idx", index, tf.custom));
  ASSERT_TRUE(legacy->publish());
  serve();
  auto c = json::parse(
      ok({"check", "--repo", server_->base_url(), "--trusted-root", s("repo/metadata/1.root.json"),
          "--root", s("node"), "--component", "app", "--json"})
          .out);
  ASSERT_EQ(c["updates"].size(), 1u);
  EXPECT_EQ(c["updates"][0]["available"], "1.0.0");

  auto p = publish("app", "1.1.0");
  EXPECT_EQ(p["role_created"], true);
  auto moved = tuf::Repository::open(d_ / "repo", clock);
  ASSERT_TRUE(moved);
  EXPECT_TRUE(moved->targets()->targets.empty());
  auto role = moved->load_targets("app");
  ASSERT_TRUE(role);
  EXPECT_EQ((*role)->targets.size(), 2u);
  EXPECT_EQ((*role)->targets.at("app/1.0.0/tree.idx"), tf);  // the entry as it was
  ok({"repo", "verify", s("repo")});
  c = json::parse(ok({"check", "--root", s("node"), "--repo", server_->base_url(), "--json"}).out);
  ASSERT_EQ(c["updates"].size(), 1u);
  EXPECT_EQ(c["updates"][0]["available"], "1.1.0");
  auto again = run_mup({"publish", s("repo"), s("src-app-1.1.0"), "--keys", s("keys"),
                        "--component", "app", "--version", "1.0.0", "--type", "application"});
  EXPECT_EQ(again.exit_code, 1);  // still known as published, from its new role
  EXPECT_NE(again.err.find("already published"), std::string::npos) << again.err;
}

// Two-level delegation: top-level targets delegates to at most 16 bins, each bin to the
// roles of the components that fall in it. 17 components: at least two share a bin.
TEST_F(RepoScale, BinsAreCreatedOnceAndReusedAndANodeFetchesTargetsTheBinAndTheRoleOnly) {
  std::map<std::string, std::vector<std::string>> bins;  // bin -> its components, in order
  std::string shared;                                    // a component second in its bin
  for (int i = 0; i < 17; ++i) {
    const std::string c = "c" + std::to_string(i);
    const uint64_t targets_before = tuf::Repository::open(d_ / "repo", clock_)->targets()->version;
    auto p = publish(c, "1.0.0");
    ASSERT_TRUE(p["bin"].is_string()) << p.dump();
    const std::string bin = p["bin"];
    ASSERT_EQ(bin.size(), 6u);
    EXPECT_EQ(bin.rfind("_bin-", 0), 0u);
    EXPECT_EQ(p["role"], c);
    EXPECT_EQ(p["role_created"], true);
    EXPECT_EQ(p["role_version"], 1);
    const bool new_bin = !bins.count(bin);
    bins[bin].push_back(c);
    // The bin is written once more for each component it takes (1 on creation); top-level
    // targets once per component too (its pattern in the bin's delegation).
    EXPECT_TRUE(stdfs::exists(d_ / "repo/metadata" /
                              (std::to_string(bins[bin].size()) + "." + bin + ".json")))
        << c << " in " << bin;
    EXPECT_EQ(p["targets_version"], targets_before + 1);
    if (!new_bin && shared.empty()) shared = c;
  }
  ASSERT_FALSE(shared.empty());
  auto repo = tuf::Repository::open(d_ / "repo", clock_);
  ASSERT_TRUE(repo);
  const tuf::Targets& top = *repo->targets();
  EXPECT_TRUE(top.targets.empty());
  ASSERT_TRUE(top.delegations);
  ASSERT_EQ(top.delegations->roles.size(), bins.size());
  for (const auto& d : top.delegations->roles) {
    SCOPED_TRACE(d.name);
    ASSERT_TRUE(bins.count(d.name));
    EXPECT_TRUE(d.terminating);
    std::vector<std::string> patterns;
    for (const auto& c : bins[d.name]) patterns.push_back(c + "/*/*");
    ASSERT_TRUE(d.paths);
    EXPECT_EQ(*d.paths, patterns);
    auto bin = repo->load_targets(d.name);
    ASSERT_TRUE(bin);
    EXPECT_TRUE((*bin)->targets.empty());  // bins hold no targets
    EXPECT_EQ(repo->delegated_roles(d.name), bins[d.name]);
  }
  // A later publish of a binned component rewrites its role only (not the bin, not targets).
  const auto before = metadata_files();
  auto again = publish(shared, "1.1.0");
  EXPECT_EQ(again["role_created"], false);
  EXPECT_EQ(again["role_version"], 2);
  EXPECT_EQ(again["targets_version"], repo->targets()->version);
  std::set<std::string> added;
  for (const auto& f : metadata_files())
    if (!before.count(f)) added.insert(f);
  EXPECT_EQ(added, (std::set<std::string>{
                       "2." + shared + ".json",
                       std::to_string(again["snapshot_version"].get<int>()) + ".snapshot.json"}));
  ok({"repo", "verify", s("repo")});

  // A node asking about that component fetches targets, its bin and its role, nothing else.
  serve();
  auto c = json::parse(
      ok({"check", "--repo", server_->base_url(), "--trusted-root", s("repo/metadata/1.root.json"),
          "--root", s("node"), "--component", shared, "--json"})
          .out);
  ASSERT_EQ(c["updates"].size(), 1u) << c.dump();
  EXPECT_EQ(c["updates"][0]["available"], "1.1.0");
  const std::set<std::string> expected = {"root.json",
                                          "timestamp.json",
                                          "snapshot.json",
                                          "targets.json",
                                          again["bin"].get<std::string>() + ".json",
                                          shared + ".json"};
  EXPECT_EQ(node_metadata(), expected);
  ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
      s("repo/metadata/1.root.json"), "--root", s("node2")});
  ok({"install", shared, "--root", s("node2")});
  EXPECT_EQ(stdfs::read_symlink(d_ / "node2/components" / shared / "current").string(), "1.1.0");
  EXPECT_EQ(node_metadata("node2/tuf/origin"), expected);
}

// A repository written before bins: top-level targets delegates a component's role
// directly. The component stays there (its role found, published to, read by nodes); a
// component new to the repository goes to a bin.
TEST_F(RepoScale, AComponentDelegatedDirectlyByAnOlderPublisherStaysWhereItIs) {
  {
    auto legacy = open_with_keys();
    const tuf::Root& root = legacy.root();
    std::vector<crypto::PublicKey> keys;
    for (const auto& id : root.roles.at("targets").keyids)
      keys.push_back(*root.keys.at(id).public_key());
    tuf::DelegatedRole d;
    d.name = "old";
    d.terminating = true;
    d.threshold = root.roles.at("targets").threshold;
    d.paths = std::vector<std::string>{"old/*/*"};
    ASSERT_TRUE(legacy.add_delegation("targets", d, keys));
    ASSERT_TRUE(legacy.publish());
  }
  auto p1 = publish("old", "1.0.0");
  EXPECT_EQ(p1["role"], "old");
  EXPECT_EQ(p1["role_created"], false);
  EXPECT_TRUE(p1["bin"].is_null()) << p1.dump();
  EXPECT_EQ(p1["role_version"], 2);
  auto fresh = publish("fresh", "1.0.0");
  EXPECT_EQ(fresh["role_created"], true);
  ASSERT_TRUE(fresh["bin"].is_string());
  auto p2 = publish("old", "1.1.0", {"--delta-from", "1.0.0"});
  EXPECT_EQ(p2["role_version"], 3);
  EXPECT_TRUE(p2["bin"].is_null());
  EXPECT_EQ(p2["targets_version"], fresh["targets_version"]);  // targets untouched
  auto repo = tuf::Repository::open(d_ / "repo", clock_);
  ASSERT_TRUE(repo);
  EXPECT_EQ(repo->delegated_roles(),
            (std::vector<std::string>{"old", fresh["bin"].get<std::string>()}));
  auto old_role = repo->load_targets("old");
  ASSERT_TRUE(old_role);
  EXPECT_EQ((*old_role)->targets.size(), 2u);
  // Dependencies are read from it, and a repeated version is refused from it.
  publish("app", "1.0.0", {"--depends", "old>=1.1"});
  auto again = run_mup({"publish", s("repo"), s("src-old-1.1.0"), "--keys", s("keys"),
                        "--component", "old", "--version", "1.1.0", "--type", "application"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already published"), std::string::npos) << again.err;
  ok({"repo", "verify", s("repo")});

  serve();
  ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
      s("repo/metadata/1.root.json"), "--root", s("node")});
  ok({"install", "old", "--root", s("node")});
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "node/components/old/1.1.0", d_ / "src-old-1.1.0", &why)) << why;
  EXPECT_EQ(node_metadata("node/tuf/origin"),
            (std::set<std::string>{"root.json", "timestamp.json", "snapshot.json", "targets.json",
                                   "old.json"}));
}

// Rotating the targets keys re-delegates every bin and every role a bin delegates to the new
// keys and re-signs them: the repository verifies, a node installs, publishing goes on.
TEST_F(RepoScale, RotatingTheTargetsKeysKeepsBinsAndRolesValid) {
  publish("a", "1.0.0");
  auto b = publish("b", "1.0.0");
  serve();
  ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
      s("repo/metadata/1.root.json"), "--root", s("node")});
  ok({"install", "b", "--root", s("node")});
  const std::string b_bin = b["bin"];
  const auto versions = [&] {
    auto repo = tuf::Repository::open(d_ / "repo", clock_);
    std::map<std::string, uint64_t> out;
    for (const auto& [file, meta] : repo->snapshot().meta) out[file] = meta.version;
    return out;
  };
  const auto before = versions();
  ok({"repo", "rotate-key", s("repo"), "--keys", s("keys"), "--role", "targets"});
  auto v = json::parse(ok({"repo", "verify", s("repo"), "--json"}).out);
  EXPECT_TRUE(v["ok"]) << v.dump();
  auto repo = tuf::Repository::open(d_ / "repo", clock_);
  ASSERT_TRUE(repo);
  const auto& fresh = repo->root().roles.at("targets").keyids;
  for (const auto& bin : repo->delegated_roles()) {
    ASSERT_TRUE(repo->load_targets(bin));
    for (const auto* t : {repo->targets(), repo->targets(bin)})
      for (const auto& d : t->delegations->roles) EXPECT_EQ(d.keyids, fresh) << d.name;
  }
  const auto after = versions();
  for (const std::string& role :
       {std::string("targets"), std::string("a"), std::string("b"), b_bin})
    EXPECT_GT(after.at(role + ".json"), before.at(role + ".json")) << role;
  ok({"install", "a", "--root", s("node")});
  EXPECT_EQ(stdfs::read_symlink(d_ / "node/components/a/current").string(), "1.0.0");
  publish("b", "1.1.0", {"--delta-from", "1.0.0"});
  ok({"install", "b", "--root", s("node")});
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "node/components/b/1.1.0", d_ / "src-b-1.1.0", &why)) << why;
}

// Top-level targets and a bin are rewritten only when a component joins them: a publish
// under them renews them when they expire within 45 days, so a component still published
// never sits under an expired bin.
TEST_F(RepoScale, APublishRenewsItsBinAndTopLevelTargetsWhenTheyExpireSoon) {
  const std::string bin = publish("a", "1.0.0")["bin"];
  auto expiry_of = [&](const std::string& role) {
    auto repo = tuf::Repository::open(d_ / "repo", clock_);
    return std::make_pair((*repo->load_targets(role))->version,
                          (*repo->load_targets(role))->expires - clock_.now());
  };
  const auto [bin_version, bin_left] = expiry_of(bin);
  EXPECT_GT(bin_left, 89 * 86400);
  publish("a", "1.1.0");  // fresh: neither is rewritten
  EXPECT_EQ(expiry_of(bin).first, bin_version);
  {
    tuf::ExpiryPolicy soon;
    soon.targets_s = 44 * 86400;
    auto repo = open_with_keys(soon);
    ASSERT_TRUE(repo.renew(bin));
    ASSERT_TRUE(repo.renew("targets"));
    ASSERT_TRUE(repo.publish());
  }
  const auto [targets_version, targets_left] = expiry_of("targets");
  EXPECT_LT(targets_left, 45 * 86400);
  EXPECT_EQ(expiry_of(bin).first, bin_version + 1);
  auto p = publish("a", "1.2.0");
  EXPECT_EQ(p["targets_version"], targets_version + 1);
  EXPECT_EQ(expiry_of(bin).first, bin_version + 2);
  EXPECT_GT(expiry_of(bin).second, 89 * 86400);
  EXPECT_GT(expiry_of("targets").second, 89 * 86400);
  ok({"repo", "verify", s("repo")});
}

}  // namespace
}  // namespace mup::test
