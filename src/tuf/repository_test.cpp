// The publisher side: a repository written to disk, checked offline by verify(), served by
// the project's HTTP file server and consumed by the Updater over real HTTP.
#include "tuf/repository.hpp"

#include <gtest/gtest.h>

#include <set>

#include "test_util.hpp"
#include "transfer/file_server.hpp"
#include "tuf/test_repo.hpp"

namespace mup::tuf {
namespace {

using testing::bytes_of;
using testing::kDay;
using testing::kNow;
using testing::new_key;

struct Fixture {
  test::ScratchDir scratch;
  FakeClock clock{kNow};
  std::vector<crypto::PrivateKey> root_keys{new_key(), new_key()};
  crypto::PrivateKey targets_key = new_key(), snapshot_key = new_key(), timestamp_key = new_key();
  std::filesystem::path repo_dir = scratch / "repo";
  std::filesystem::path client_dir = scratch / "client";
  std::unique_ptr<transfer::FileServer> server;
  transfer::HttpFetcher fetcher;

  Result<Repository> init() {
    InitOptions o;
    o.root = {root_keys, 2};
    o.targets = {{targets_key}, 1};
    o.snapshot = {{snapshot_key}, 1};
    o.timestamp = {{timestamp_key}, 1};
    return Repository::init(repo_dir, o, clock);
  }
  void start_client() {
    std::filesystem::create_directories(client_dir / "metadata");
    std::filesystem::create_directories(client_dir / "targets");
    std::filesystem::copy_file(repo_dir / "metadata/1.root.json",
                               client_dir / "metadata/root.json");
    auto s = transfer::FileServer::start(repo_dir, "127.0.0.1:0");
    ASSERT_TRUE(s) << s.error().message();
    server = std::move(*s);
  }
  // The repository opened from disk, as the CLI does, with the signing keys (root's too
  // with `with_root`).
  Result<Repository> reopen(bool with_root = false) {
    auto r = Repository::open(repo_dir, clock);
    if (!r) return r;
    if (with_root)
      for (const auto& k : root_keys) r->add_signer("root", k);
    r->add_signer("targets", targets_key);
    r->add_signer("snapshot", snapshot_key);
    r->add_signer("timestamp", timestamp_key);
    return r;
  }
  // A client of the repository's server, fetching through `via` (default: plain HTTP).
  Result<Updater> updater(transfer::Fetcher* via = nullptr) {
    UpdaterConfig c;
    c.metadata_dir = client_dir / "metadata";
    c.metadata_base_url = server->base_url() + "/metadata";
    c.target_base_url = server->base_url() + "/targets";
    return Updater::create(c, via ? *via : fetcher, clock);
  }
  Status download(const std::string& path) {
    auto u = updater();
    if (!u) return tl::unexpected(u.error());
    auto info = u->get_targetinfo(path);
    if (!info) return tl::unexpected(info.error());
    return u->download_target(*info, client_dir / "targets" / transfer::percent_encode(path));
  }
};

TEST(Repository, InitWritesTheLayoutAndVerifies) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo) << repo.error().message();
  for (const char* p : {"metadata/1.root.json", "metadata/1.targets.json",
                        "metadata/1.snapshot.json", "metadata/timestamp.json"})
    EXPECT_TRUE(std::filesystem::exists(f.repo_dir / p)) << p;
  EXPECT_EQ(repo->root().roles.at("root").threshold, 2u);
  auto rep = Repository::verify(f.repo_dir, f.clock);
  ASSERT_TRUE(rep);
  EXPECT_TRUE(rep->ok()) << rep->problems.front();
  EXPECT_FALSE(f.init());  // never over an existing repository

  InitOptions bad;
  bad.root = {{new_key()}, 2};
  EXPECT_FALSE(Repository::init(f.scratch / "other", bad, f.clock));
}

TEST(Repository, PublishAndDownloadOverHttp) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  ASSERT_TRUE(repo->add_target("apps/web.tar", bytes_of("web 1.0"), {{"version", "1.0"}}));
  ASSERT_TRUE(repo->publish());
  auto h = repo->targets()->targets.at("apps/web.tar").hashes.at("sha256");
  EXPECT_TRUE(std::filesystem::exists(f.repo_dir / "targets/apps" / (h + ".web.tar")));
  EXPECT_TRUE(std::filesystem::exists(f.repo_dir / "metadata/2.targets.json"));
  EXPECT_EQ(repo->timestamp().version, 2u);

  f.start_client();
  ASSERT_TRUE(f.download("apps/web.tar")) << f.download("apps/web.tar").error().message();
  EXPECT_EQ(test::read_file(f.client_dir / "targets" / "apps%2Fweb.tar"), bytes_of("web 1.0"));

  // Reopen from disk (as the CLI does), change, publish again.
  auto again = f.reopen();
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->targets()->targets.at("apps/web.tar").custom["version"], "1.0");
  ASSERT_TRUE(again->remove_target("apps/web.tar"));
  ASSERT_TRUE(again->add_target("apps/web.tar", bytes_of("web 2.0")));
  ASSERT_TRUE(again->publish());
  ASSERT_TRUE(f.download("apps/web.tar"));
  EXPECT_EQ(test::read_file(f.client_dir / "targets" / "apps%2Fweb.tar"), bytes_of("web 2.0"));
  EXPECT_FALSE(again->add_target("../escape", bytes_of("x")));
  EXPECT_FALSE(again->add_target("/abs", bytes_of("x")));
  EXPECT_FALSE(again->remove_target("nope"));

  // Without signers for a role, nothing is written.
  auto unsigned_repo = Repository::open(f.repo_dir, f.clock);
  ASSERT_TRUE(unsigned_repo->add_target("x", bytes_of("x")));
  auto s = unsigned_repo->publish();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("threshold"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(f.repo_dir / "metadata/4.targets.json"));
}

TEST(Repository, RootRotationAndFastForwardRecoveryReachClients) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  f.start_client();
  ASSERT_TRUE(f.updater()->refresh());

  // Root keys: two old ones (threshold 2) -> one new key.
  auto new_root = new_key();
  auto s = repo->rotate_keys("root", {new_root.public_key()}, 1);
  ASSERT_FALSE(s);  // the new key cannot sign yet
  repo->add_signer("root", new_root);
  ASSERT_TRUE(repo->rotate_keys("root", {new_root.public_key()}, 1));
  EXPECT_EQ(repo->root().version, 2u);

  // Timestamp keys rotated: clients drop their timestamp and accept the new chain.
  // The new key must be able to sign: without it nothing is written.
  auto new_ts = new_key();
  auto unsigned_rotation = repo->rotate_keys("timestamp", {new_ts.public_key()}, 1);
  ASSERT_FALSE(unsigned_rotation);
  EXPECT_NE(unsigned_rotation.error().message().find("nothing written"), std::string::npos);
  EXPECT_EQ(repo->root().version, 2u);
  repo->add_signer("timestamp", new_ts);
  ASSERT_TRUE(repo->rotate_keys("timestamp", {new_ts.public_key()}, 1));
  // No publish needed: the current timestamp was re-signed with the new key.
  auto u = f.updater();
  ASSERT_TRUE(u);
  ASSERT_TRUE(u->refresh()) << u->refresh().error().message();
  EXPECT_EQ(u->root().version, 3u);
  auto rep = Repository::verify(f.repo_dir, f.clock);
  ASSERT_TRUE(rep);
  EXPECT_TRUE(rep->ok()) << rep->problems.front();
  EXPECT_EQ(rep->root_version, 3u);
}

TEST(Repository, ExpiryRefreshAndOfflineVerifyFindsProblems) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  ASSERT_TRUE(repo->add_target("a", bytes_of("aaa")));
  ASSERT_TRUE(repo->publish());
  f.clock.advance(2 * kDay);  // timestamp (1 day) expired
  auto rep = Repository::verify(f.repo_dir, f.clock);
  ASSERT_TRUE(rep);
  ASSERT_FALSE(rep->ok());
  EXPECT_NE(rep->problems[0].find("timestamp.json expired"), std::string::npos);
  ASSERT_TRUE(repo->refresh_expiry("timestamp"));
  EXPECT_TRUE(Repository::verify(f.repo_dir, f.clock)->ok());
  ASSERT_TRUE(repo->refresh_expiry("targets"));
  ASSERT_TRUE(repo->refresh_expiry("root"));
  EXPECT_TRUE(Repository::verify(f.repo_dir, f.clock)->ok());

  // A tampered target file.
  auto h = repo->targets()->targets.at("a").hashes.at("sha256");
  test::write_file(f.repo_dir / "targets" / (h + ".a"), std::string("aab"));
  rep = Repository::verify(f.repo_dir, f.clock);
  ASSERT_FALSE(rep->ok());
  EXPECT_NE(rep->problems[0].find("target a"), std::string::npos) << rep->problems[0];
}

TEST(Repository, DelegationsAndMultiPartySigning) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  auto dev = new_key();
  DelegatedRole r;
  r.name = "team/dev";
  EXPECT_FALSE(repo->add_delegation("targets", r, {dev.public_key()}));  // not a file name
  r.name = "team-dev";
  r.paths = std::vector<std::string>{"dev/*"};
  ASSERT_TRUE(repo->add_delegation("targets", r, {dev.public_key()}));
  repo->add_signer("team-dev", dev);
  ASSERT_TRUE(repo->add_target("dev/tool", bytes_of("tool"), nullptr, "team-dev"));
  ASSERT_TRUE(repo->publish());
  EXPECT_TRUE(std::filesystem::exists(f.repo_dir / "metadata/1.team-dev.json"));
  f.start_client();
  ASSERT_TRUE(f.download("dev/tool")) << f.download("dev/tool").error().message();

  // sign_existing: the second root key signs root again (no-op for validity).
  auto signed_again = repo->sign_existing("root", f.root_keys[1]);
  EXPECT_TRUE(signed_again) << signed_again.error().message();
  EXPECT_FALSE(repo->sign_existing("targets", dev));  // not a targets key
  EXPECT_TRUE(Repository::verify(f.repo_dir, f.clock)->ok());
}

// Counts what a client downloads, by URL, through the real HTTP fetcher.
class CountingFetcher : public transfer::Fetcher {
 public:
  Result<std::vector<uint8_t>> fetch(const std::string& url, uint64_t max_bytes) override {
    auto r = real_.fetch(url, max_bytes);
    std::string name = url.substr(url.rfind('/') + 1);
    if (r) {
      fetched.push_back(name);
      bytes += r->size();
    }
    return r;
  }
  std::vector<std::string> fetched;
  uint64_t bytes = 0;

 private:
  transfer::HttpFetcher real_;
};

// One role per component, delegated by targets for "<c>/*/*", signed by the targets key.
Status add_component(Repository& repo, const crypto::PrivateKey& targets_key,
                     const std::string& c) {
  DelegatedRole r;
  r.name = c;
  r.terminating = true;
  r.paths = std::vector<std::string>{c + "/*/*"};
  return repo.add_delegation("targets", r, {targets_key.public_key()});
}

TEST(Repository, APublishToOneComponentRoleLeavesTheOthersUntouched) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  for (const char* c : {"a", "b"}) ASSERT_TRUE(add_component(*repo, f.targets_key, c));
  ASSERT_TRUE(repo->add_target("a/1.0.0/tree.idx", bytes_of("a1"), {{"v", 1}}, "a"));
  ASSERT_TRUE(repo->add_target("b/1.0.0/tree.idx", bytes_of("b1"), {{"v", 1}}, "b"));
  ASSERT_TRUE(repo->publish());  // delegated roles signed by the targets signer
  auto a_file = test::read_file(f.repo_dir / "metadata/1.a.json");

  // As the CLI does: reopen, add to b only. Role a is never read, nor rewritten.
  auto again = f.reopen();
  ASSERT_TRUE(again) << again.error().message();
  ASSERT_TRUE(again->add_target("b/1.1.0/tree.idx", bytes_of("b2"), {{"v", 2}}, "b"));
  ASSERT_TRUE(again->publish());
  EXPECT_EQ(again->targets("a"), nullptr);   // not loaded
  EXPECT_EQ(again->targets()->version, 2u);  // top-level targets not rewritten
  EXPECT_TRUE(std::filesystem::exists(f.repo_dir / "metadata/2.b.json"));
  EXPECT_FALSE(std::filesystem::exists(f.repo_dir / "metadata/2.a.json"));
  EXPECT_FALSE(std::filesystem::exists(f.repo_dir / "metadata/3.targets.json"));
  EXPECT_EQ(test::read_file(f.repo_dir / "metadata/1.a.json"), a_file);
  EXPECT_EQ(again->snapshot().meta.at("a.json").version, 1u);
  EXPECT_EQ(again->snapshot().meta.at("b.json").version, 2u);
  auto rep = Repository::verify(f.repo_dir, f.clock);
  ASSERT_TRUE(rep);
  EXPECT_TRUE(rep->ok()) << rep->problems.front();
  EXPECT_EQ(rep->target_count, 3u);

  // Metadata no snapshot from the current one on needs: the older snapshots, the first
  // targets and b v1; never a root nor the current files.
  auto old = again->unneeded_metadata(1);
  ASSERT_TRUE(old);
  std::set<std::string> names;
  for (const auto& p : *old) names.insert(p.filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"1.snapshot.json", "2.snapshot.json", "1.targets.json",
                                          "1.b.json"}));
  auto keep2 = again->unneeded_metadata(2);
  ASSERT_TRUE(keep2);
  EXPECT_EQ(keep2->size(), 2u);  // 1.snapshot.json, 1.targets.json
}

TEST(Repository, AClientAskingAboutOneComponentFetchesItsRoleOnly) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  for (const char* c : {"a", "b", "c"}) {
    ASSERT_TRUE(add_component(*repo, f.targets_key, c));
    for (int v = 0; v < 3; ++v)
      ASSERT_TRUE(repo->add_target(std::string(c) + "/1." + std::to_string(v) + ".0/tree.idx",
                                   bytes_of(std::string(c) + std::to_string(v)), {{"v", v}}, c));
  }
  ASSERT_TRUE(repo->add_target("legacy/1.0.0/tree.idx", bytes_of("l"), {{"v", 0}}));
  ASSERT_TRUE(repo->publish());
  f.start_client();
  CountingFetcher counting;
  auto u = f.updater(&counting);
  ASSERT_TRUE(u);
  auto b = u->targets_with_prefix("b/");
  ASSERT_TRUE(b) << b.error().message();
  ASSERT_EQ(b->size(), 3u);
  EXPECT_EQ((*b)[0].path, "b/1.0.0/tree.idx");
  EXPECT_EQ((*b)[0].role, "b");
  // The root probe (2.root.json) is a 404 and not counted.
  EXPECT_EQ(counting.fetched, (std::vector<std::string>{"timestamp.json", "2.snapshot.json",
                                                        "2.targets.json", "1.b.json"}));
  // Targets kept in top-level targets (an older layout) are listed too.
  auto legacy = u->targets_with_prefix("legacy/");
  ASSERT_TRUE(legacy);
  ASSERT_EQ(legacy->size(), 1u);
  EXPECT_EQ(legacy->front().role, "targets");
  EXPECT_EQ(counting.fetched.size(), 4u);
  // Everything: every role, once.
  auto all = u->targets_with_prefix("");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 10u);
  EXPECT_EQ(counting.fetched.size(), 6u);
}

TEST(Repository, ATamperedOrForeignSignedComponentRoleIsRefused) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  for (const char* c : {"a", "b"}) ASSERT_TRUE(add_component(*repo, f.targets_key, c));
  ASSERT_TRUE(repo->add_target("a/1.0.0/tree.idx", bytes_of("a1"), {{"v", 1}}, "a"));
  ASSERT_TRUE(repo->add_target("b/1.0.0/tree.idx", bytes_of("b1"), {{"v", 1}}, "b"));
  ASSERT_TRUE(repo->publish());
  f.start_client();
  // One byte of b's role changed (its target's length): the signature no longer holds.
  auto path = f.repo_dir / "metadata/1.b.json";
  auto bytes = test::read_file(path);
  std::string text(bytes.begin(), bytes.end());
  auto at = text.find("\"length\":2");
  ASSERT_NE(at, std::string::npos) << text;
  text[at + 9] = '3';
  test::write_file(path, text);
  auto u = f.updater();
  ASSERT_TRUE(u);
  auto b = u->targets_with_prefix("b/");
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message().find("1.b.json"), std::string::npos) << b.error().message();
  EXPECT_FALSE(std::filesystem::exists(f.client_dir / "metadata/b.json"));  // not trusted
  EXPECT_TRUE(u->targets_with_prefix("a/"));  // the other component is unaffected
  EXPECT_FALSE(Repository::verify(f.repo_dir, f.clock)->ok());

  // Signed by a key the delegation does not list (e.g. another component's publisher).
  auto stranger = new_key();
  auto body = Metadata<Targets>::parse(bytes);
  ASSERT_TRUE(body);
  auto forged = Metadata<Targets>::from_body(body->body());
  ASSERT_TRUE(forged);
  ASSERT_TRUE(forged->sign(stranger));
  test::write_file(path, forged->to_bytes());
  auto u2 = f.updater();
  ASSERT_TRUE(u2);
  EXPECT_FALSE(u2->targets_with_prefix("b/"));
}

TEST(Repository, RotatingTheTargetsKeysReSignsTheComponentRoles) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  ASSERT_TRUE(add_component(*repo, f.targets_key, "a"));
  ASSERT_TRUE(repo->add_target("a/1.0.0/tree.idx", bytes_of("a1"), {{"v", 1}}, "a"));
  ASSERT_TRUE(repo->publish());
  auto again = f.reopen(/*with_root=*/true);
  ASSERT_TRUE(again) << again.error().message();
  auto fresh = new_key();
  again->add_signer("targets", fresh);
  ASSERT_TRUE(again->rotate_keys("targets", {fresh.public_key()}, 1));
  const Delegations& d = *again->targets()->delegations;
  std::string fresh_id = Key::from_public(fresh.public_key()).keyid();
  EXPECT_EQ(d.roles.at(0).keyids, std::vector<std::string>{fresh_id});
  EXPECT_EQ(d.keys.size(), 1u);  // the retired key is gone
  EXPECT_TRUE(std::filesystem::exists(f.repo_dir / "metadata/2.a.json"));
  auto rep = Repository::verify(f.repo_dir, f.clock);
  ASSERT_TRUE(rep);
  EXPECT_TRUE(rep->ok()) << rep->problems.front();
  f.start_client();
  auto u = f.updater();
  ASSERT_TRUE(u);
  auto a = u->targets_with_prefix("a/");
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->size(), 1u);
}

// Two levels, as mup lays components out: targets -> a bin for "<c>/*/*" of each component
// in it -> the component's role. A component joins a bin by one more pattern.
Status add_binned(Repository& repo, const crypto::PrivateKey& targets_key, const std::string& bin,
                  const std::string& c) {
  const std::string pattern = c + "/*/*";
  if (repo.targets(bin) == nullptr && !repo.load_targets(bin)) {
    DelegatedRole b;
    b.name = bin;
    b.terminating = true;
    b.paths = std::vector<std::string>{pattern};
    MUP_TRY(repo.add_delegation("targets", b, {targets_key.public_key()}));
  } else {
    MUP_TRY(repo.add_delegated_paths("targets", bin, {pattern}));
  }
  DelegatedRole r;
  r.name = c;
  r.terminating = true;
  r.paths = std::vector<std::string>{pattern};
  return repo.add_delegation(bin, r, {targets_key.public_key()});
}

TEST(Repository, AddDelegatedPathsOpensABinToOneMoreComponent) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  ASSERT_TRUE(add_binned(*repo, f.targets_key, "_bin-0", "a"));
  ASSERT_TRUE(repo->add_target("a/1.0.0/tree.idx", bytes_of("a1"), {{"v", 1}}, "a"));
  ASSERT_TRUE(repo->publish());
  auto nobody = repo->add_delegated_paths("targets", "nobody", {"x/*/*"});
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().code(), Errc::not_found);
  // A pattern already there changes nothing: no new version of targets.
  ASSERT_TRUE(repo->add_delegated_paths("targets", "_bin-0", {"a/*/*"}));
  ASSERT_TRUE(repo->publish());
  EXPECT_EQ(repo->targets()->version, 2u);

  // b delegated by the bin without the bin's pattern for it: a client never looks there.
  auto again = f.reopen();
  ASSERT_TRUE(again) << again.error().message();
  DelegatedRole b;
  b.name = "b";
  b.terminating = true;
  b.paths = std::vector<std::string>{"b/*/*"};
  ASSERT_TRUE(again->add_delegation("_bin-0", b, {f.targets_key.public_key()}));
  ASSERT_TRUE(again->add_target("b/1.0.0/tree.idx", bytes_of("b1"), {{"v", 1}}, "b"));
  ASSERT_TRUE(again->publish());
  f.start_client();
  auto hidden = f.download("b/1.0.0/tree.idx");
  ASSERT_FALSE(hidden);
  EXPECT_EQ(hidden.error().code(), Errc::not_found) << hidden.error().message();
  // With it, b is found through the bin, and only targets, the bin and b are fetched.
  ASSERT_TRUE(again->add_delegated_paths("targets", "_bin-0", {"b/*/*"}));
  ASSERT_TRUE(again->publish());
  EXPECT_EQ(*again->targets()->delegations->roles.at(0).paths,
            (std::vector<std::string>{"a/*/*", "b/*/*"}));
  auto rep = Repository::verify(f.repo_dir, f.clock);
  ASSERT_TRUE(rep);
  EXPECT_TRUE(rep->ok()) << rep->problems.front();
  EXPECT_TRUE(f.download("b/1.0.0/tree.idx"));
  std::filesystem::remove_all(f.client_dir / "metadata");
  std::filesystem::create_directories(f.client_dir / "metadata");
  std::filesystem::copy_file(f.repo_dir / "metadata/1.root.json",
                             f.client_dir / "metadata/root.json");
  CountingFetcher counting;
  auto u = f.updater(&counting);
  ASSERT_TRUE(u);
  auto found = u->targets_with_prefix("b/");
  ASSERT_TRUE(found) << found.error().message();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(found->front().role, "b");
  EXPECT_EQ(counting.fetched,
            (std::vector<std::string>{"timestamp.json", "5.snapshot.json", "3.targets.json",
                                      "2._bin-0.json", "1.b.json"}));
}

TEST(Repository, RotatingTheTargetsKeysReSignsBinsAndTheRolesTheyDelegate) {
  Fixture f;
  auto repo = f.init();
  ASSERT_TRUE(repo);
  for (const char* c : {"a", "b"}) {
    ASSERT_TRUE(add_binned(*repo, f.targets_key, "_bin-0", c));
    ASSERT_TRUE(repo->add_target(std::string(c) + "/1.0.0/tree.idx", bytes_of(c), {{"v", 1}}, c));
  }
  ASSERT_TRUE(repo->publish());
  auto again = f.reopen(/*with_root=*/true);
  ASSERT_TRUE(again) << again.error().message();
  auto fresh = new_key();
  again->add_signer("targets", fresh);
  ASSERT_TRUE(again->rotate_keys("targets", {fresh.public_key()}, 1));
  const std::string fresh_id = Key::from_public(fresh.public_key()).keyid();
  for (const char* role : {"targets", "_bin-0"}) {
    SCOPED_TRACE(role);
    const Delegations& d = *again->targets(role)->delegations;
    for (const auto& r : d.roles) EXPECT_EQ(r.keyids, std::vector<std::string>{fresh_id});
    EXPECT_EQ(d.keys.size(), 1u);  // the retired key is gone
  }
  for (const char* file : {"metadata/2._bin-0.json", "metadata/2.a.json", "metadata/2.b.json"})
    EXPECT_TRUE(std::filesystem::exists(f.repo_dir / file)) << file;
  auto rep = Repository::verify(f.repo_dir, f.clock);
  ASSERT_TRUE(rep);
  EXPECT_TRUE(rep->ok()) << rep->problems.front();
  f.start_client();
  EXPECT_TRUE(f.download("b/1.0.0/tree.idx"));
  // Publishing goes on with the new key only.
  auto later = Repository::open(f.repo_dir, f.clock);
  ASSERT_TRUE(later);
  later->add_signer("targets", fresh);
  later->add_signer("snapshot", f.snapshot_key);
  later->add_signer("timestamp", f.timestamp_key);
  ASSERT_TRUE(later->add_target("a/1.1.0/tree.idx", bytes_of("a2"), {{"v", 2}}, "a"));
  auto published = later->publish();
  ASSERT_TRUE(published) << published.error().message();
  EXPECT_TRUE(f.download("a/1.1.0/tree.idx"));
}

}  // namespace
}  // namespace mup::tuf
