// The client workflow (spec section 5), clause by clause, against an in-memory repository.
#include "tuf/updater.hpp"

#include <gtest/gtest.h>

#include "tuf/test_repo.hpp"

namespace mup::tuf {
namespace {

using testing::kDay;
using testing::kNow;
using testing::SimClient;
using testing::SimRepo;

std::vector<std::string> kBasicRequests = {"metadata/2.root.json", "metadata/timestamp.json",
                                           "metadata/1.snapshot.json", "metadata/1.targets.json"};

TEST(Updater, BasicRefreshRequestsAndTrustedFiles) {
  SimRepo repo;
  SimClient client(repo);
  ASSERT_TRUE(client.refresh()) << client.refresh().error().message();
  EXPECT_EQ(repo.requests, kBasicRequests);
  EXPECT_EQ(client.metadata_files(), (std::vector<std::string>{"root.json", "snapshot.json",
                                                               "targets.json", "timestamp.json"}));
  // Exactly the bytes received.
  EXPECT_EQ(client.local_bytes("timestamp"), repo.files["metadata/timestamp.json"]);
  EXPECT_EQ(client.local_bytes("snapshot"), repo.files["metadata/1.snapshot.json"]);
  EXPECT_EQ(client.local_bytes("targets"), repo.files["metadata/1.targets.json"]);

  // Nothing new: only root and timestamp are asked for.
  repo.requests.clear();
  ASSERT_TRUE(client.refresh());
  EXPECT_EQ(repo.requests,
            (std::vector<std::string>{"metadata/2.root.json", "metadata/timestamp.json"}));
}

TEST(Updater, InvalidTrustedRootMakesNoRequest) {
  SimRepo repo;
  SimClient client(repo);
  auto j = nlohmann::json::parse(client.local_bytes("root"));
  j["signatures"][0]["sig"] = std::string(128, '0');
  std::string s = j.dump();
  ASSERT_TRUE(fs::write_file_atomic(client.dir() / "metadata/root.json", testing::bytes_of(s)));
  EXPECT_FALSE(client.refresh());
  EXPECT_TRUE(repo.requests.empty());
}

TEST(Updater, BadSignatureOnEachTopLevelRoleIsRefused) {
  for (std::string role : {"root", "timestamp", "snapshot", "targets"}) {
    SCOPED_TRACE(role);
    SimRepo repo;
    SimClient client(repo);
    if (role == "root") {
      repo.signers["root"] = {testing::new_key()};  // not a root key
      repo.publish_root();
    } else {
      repo.signers[role] = {testing::new_key()};
      repo.publish({role == "targets" ? "targets" : "snapshot", "snapshot", "timestamp"});
    }
    auto s = client.refresh();
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message().find("threshold"), std::string::npos) << s.error().message();
    if (role == "root") {
      EXPECT_EQ(client.version("root"), 1u);
    } else if (role == "timestamp") {
      EXPECT_EQ(client.version("timestamp"), 0u);
    } else if (role == "snapshot") {
      EXPECT_EQ(client.version("snapshot"), 0u);
    } else {
      EXPECT_EQ(client.version("snapshot"), 2u);
      EXPECT_EQ(client.version("targets"), 0u);
    }
  }
}

TEST(Updater, MissingSignaturesAndBelowThreshold) {
  SimRepo repo;
  auto k2 = testing::new_key();
  repo.root.add_key("snapshot", Key::from_public(k2.public_key()));
  repo.root.roles["snapshot"].threshold = 2;
  repo.publish_root();
  repo.publish({"snapshot", "timestamp"});  // signed by one of two keys
  SimClient client(repo);
  EXPECT_FALSE(client.refresh());
  EXPECT_EQ(client.version("root"), 2u);
  EXPECT_EQ(client.version("snapshot"), 0u);

  repo.signers["snapshot"].push_back(k2);
  repo.publish({"snapshot", "timestamp"});
  EXPECT_TRUE(client.refresh());
  EXPECT_EQ(client.version("snapshot"), 3u);

  // No signatures at all.
  auto j = nlohmann::json::parse(repo.files["metadata/timestamp.json"]);
  j["signatures"] = nlohmann::json::array();
  repo.files["metadata/timestamp.json"] = testing::bytes_of(j.dump());
  SimClient client2(repo);
  EXPECT_FALSE(client2.refresh());
}

TEST(Updater, DuplicateSignatureKeyidsAreRefused) {
  SimRepo repo;
  auto j = nlohmann::json::parse(repo.files["metadata/1.snapshot.json"]);
  j["signatures"].push_back(j["signatures"][0]);
  repo.files["metadata/1.snapshot.json"] = testing::bytes_of(j.dump());
  SimClient client(repo);
  EXPECT_FALSE(client.refresh());
  EXPECT_EQ(client.version("snapshot"), 0u);
}

TEST(Updater, OneKeyListedManyTimesCannotFakeAThreshold) {
  SimRepo repo;
  // Root lists the snapshot key three times with threshold 3: refused at parse.
  auto id = repo.root.roles["snapshot"].keyids[0];
  repo.root.roles["snapshot"].keyids = {id, id, id};
  repo.root.roles["snapshot"].threshold = 3;
  repo.publish_root();
  SimClient client(repo);
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_EQ(client.version("root"), 1u);
}

TEST(Updater, WrongTypeIsRefused) {
  SimRepo repo;
  // The snapshot file served where the timestamp is expected (validly signed by the
  // snapshot key, which is also made a timestamp key).
  repo.root.roles["timestamp"] = repo.root.roles["snapshot"];
  repo.publish_root();
  repo.files["metadata/timestamp.json"] = repo.files["metadata/1.snapshot.json"];
  SimClient client(repo);
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("_type"), std::string::npos) << s.error().message();
}

TEST(Updater, ExpiredMetadataIsRefusedAndNotPersisted) {
  for (std::string role : {"timestamp", "snapshot", "targets"}) {
    SCOPED_TRACE(role);
    SimRepo repo;
    SimClient client(repo);
    ASSERT_TRUE(client.refresh());
    if (role == "targets") repo.targets["targets"].expires = kNow - 1;
    if (role == "snapshot") repo.snapshot.expires = kNow - 1;
    if (role == "timestamp") repo.timestamp.expires = kNow - 1;
    repo.publish({"targets", "snapshot", "timestamp"});
    auto s = client.refresh();
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message().find("expired"), std::string::npos) << s.error().message();
    EXPECT_EQ(client.version(role), 1u);
  }
}

TEST(Updater, ExpiredRootIsFinalOnlyAtTheEnd) {
  SimRepo repo;
  SimClient client(repo);
  repo.root.expires = kNow - 10;
  repo.publish_root();  // v2 expired
  EXPECT_FALSE(client.refresh());
  EXPECT_EQ(client.version("root"), 2u);  // trusted (it was correctly signed), but stop
  EXPECT_EQ(client.version("timestamp"), 0u);
  repo.root.expires = kNow + kDay;
  repo.publish_root();  // v3 fine: an expired intermediate root is no obstacle
  EXPECT_TRUE(client.refresh());
  EXPECT_EQ(client.version("root"), 3u);
}

TEST(Updater, FreezeAttackWithExpiredTimestamp) {
  SimRepo repo;
  SimClient client(repo);
  ASSERT_TRUE(client.refresh());
  client.clock.advance(31 * kDay);  // everything the repo serves is now stale
  repo.root.expires = kNow + 365 * kDay;
  repo.publish_root();
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("expired"), std::string::npos);
}

TEST(Updater, ExpiredLocalTimestampStillGuardsAgainstRollback) {
  SimRepo repo;
  SimClient client(repo);
  for (int i = 0; i < 4; ++i) repo.publish({"timestamp"});
  ASSERT_TRUE(client.refresh());
  EXPECT_EQ(client.version("timestamp"), 5u);
  client.clock.advance(31 * kDay);
  repo.root.expires = repo.timestamp.expires = repo.snapshot.expires =
      repo.targets["targets"].expires = kNow + 60 * kDay;
  repo.publish_root();
  repo.publish({"targets", "snapshot", "timestamp"});
  EXPECT_TRUE(client.refresh());
  EXPECT_EQ(client.version("timestamp"), 6u);
}

TEST(Updater, TimestampVersionRollback) {
  SimRepo repo;
  SimClient client(repo);
  repo.publish({"timestamp"});
  auto v2 = repo.files["metadata/timestamp.json"];
  repo.publish({"timestamp"});
  ASSERT_TRUE(client.refresh());
  EXPECT_EQ(client.version("timestamp"), 3u);
  repo.files["metadata/timestamp.json"] = v2;
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("rollback"), std::string::npos);
  EXPECT_EQ(client.version("timestamp"), 3u);
}

TEST(Updater, SameTimestampVersionWithOtherContentKeepsTheTrustedOne) {
  SimRepo repo;
  SimClient client(repo);
  ASSERT_TRUE(client.refresh());
  auto before = client.local_bytes("timestamp");
  repo.timestamp.expires += 100;
  repo.timestamp.version -= 1;
  repo.publish({"timestamp"});  // same version 1, different bytes
  ASSERT_TRUE(client.refresh());
  EXPECT_EQ(client.local_bytes("timestamp"), before);
}

TEST(Updater, SnapshotVersionInTimestampRollback) {
  SimRepo repo;
  SimClient client(repo);
  repo.publish({"snapshot", "timestamp"});
  ASSERT_TRUE(client.refresh());
  repo.timestamp.snapshot_meta.version = 1;
  repo.snapshot.version = 0;
  repo.publish({"snapshot", "timestamp"});  // timestamp v3 names snapshot v1 again
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("rollback"), std::string::npos) << s.error().message();
  EXPECT_EQ(client.version("timestamp"), 2u);
}

TEST(Updater, SnapshotRollbackOfTargetsVersionAndRoleRemoval) {
  SimRepo repo;
  repo.delegate("targets", [] {
    DelegatedRole r;
    r.name = "delegated";
    r.paths = std::vector<std::string>{"d/*"};
    return r;
  }());
  repo.publish({"delegated", "targets", "targets", "snapshot", "timestamp"});
  SimClient client(repo);
  ASSERT_TRUE(client.refresh());
  EXPECT_EQ(client.version("targets"), 3u);

  // Targets version goes back in the new snapshot.
  repo.targets["targets"].version = 1;
  repo.publish({"targets", "snapshot", "timestamp"});
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("older than trusted"), std::string::npos);
  EXPECT_EQ(client.version("snapshot"), 2u);

  // A role disappears from the new snapshot.
  repo.targets["targets"].version = 3;
  repo.publish({"targets"});
  repo.snapshot.meta.erase("delegated.json");
  repo.snapshot.meta["targets.json"].version = 4;
  repo.rebuild_snapshot_meta = false;
  repo.publish({"snapshot", "timestamp"});
  s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("drops delegated.json"), std::string::npos)
      << s.error().message();
}

TEST(Updater, MixAndMatchTargetsVersion) {
  SimRepo repo;
  SimClient client(repo);
  repo.publish({"targets", "snapshot", "timestamp"});
  // The file named 2.targets.json holds version 1 (an attacker mixing old and new).
  repo.files["metadata/2.targets.json"] = repo.files["metadata/1.targets.json"];
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("mix-and-match"), std::string::npos) << s.error().message();
  EXPECT_EQ(client.version("targets"), 0u);
}

TEST(Updater, MixAndMatchSnapshotVersion) {
  SimRepo repo;
  SimClient client(repo);
  repo.publish({"snapshot", "timestamp"});
  repo.files["metadata/2.snapshot.json"] = repo.files["metadata/1.snapshot.json"];
  EXPECT_FALSE(client.refresh());
  EXPECT_EQ(client.version("snapshot"), 0u);
}

TEST(Updater, SnapshotHashAndLengthFromTimestamp) {
  SimRepo repo;
  repo.timestamp_hashes = true;
  repo.publish({"snapshot", "timestamp"});
  SimClient client(repo);
  auto& snap = repo.files["metadata/2.snapshot.json"];
  snap.back() = snap.back() == ' ' ? '\n' : ' ';  // same length, other bytes
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("sha256"), std::string::npos) << s.error().message();
  snap.push_back(' ');  // longer than stated: the fetch limit stops it
  EXPECT_FALSE(client.refresh());
  EXPECT_EQ(client.version("snapshot"), 0u);
}

TEST(Updater, TargetsHashFromSnapshot) {
  SimRepo repo;
  repo.publish({"targets"});
  const auto& tb = repo.files["metadata/2.targets.json"];
  repo.snapshot.meta["targets.json"] = MetaFile{2, tb.size(), {{"sha256", std::string(64, 'a')}}};
  repo.snapshot.version += 1;
  repo.timestamp.snapshot_meta.version = repo.snapshot.version;
  repo.files["metadata/" + std::to_string(repo.snapshot.version) + ".snapshot.json"] =
      repo.sign(repo.snapshot, repo.signers["snapshot"]);
  repo.timestamp.version += 1;
  repo.files["metadata/timestamp.json"] = repo.sign(repo.timestamp, repo.signers["timestamp"]);
  SimClient client(repo);
  EXPECT_FALSE(client.refresh());
  EXPECT_EQ(client.version("targets"), 0u);
}

TEST(Updater, RootRotationChainWithThresholdChangeAndKeyRemoval) {
  SimRepo repo;
  SimClient client(repo);
  // v2: root key rotated (signed by old and new).
  repo.rotate("root");
  repo.publish_root();
  // v3: two root keys, threshold 2.
  auto k2 = testing::new_key();
  repo.extra_root_signers.clear();
  repo.root.add_key("root", Key::from_public(k2.public_key()));
  repo.root.roles["root"].threshold = 2;
  repo.signers["root"].push_back(k2);
  repo.publish_root();
  // v4: the first key removed, threshold 1.
  auto first = repo.signers["root"][0];
  repo.root.remove_key("root", Key::from_public(first.public_key()).keyid());
  repo.root.roles["root"].threshold = 1;
  repo.signers["root"] = {k2};
  repo.extra_root_signers = {first};
  repo.publish_root();
  repo.extra_root_signers.clear();
  ASSERT_TRUE(client.refresh()) << client.refresh().error().message();
  EXPECT_EQ(client.version("root"), 4u);
  EXPECT_EQ(repo.count_requests("metadata/5.root.json"), 1u);
}

TEST(Updater, NewRootMustBeSignedByOldAndNewRootKeys) {
  {
    SimRepo repo;
    SimClient client(repo);
    repo.rotate("root");
    repo.extra_root_signers.clear();  // only the new key signs
    repo.publish_root();
    EXPECT_FALSE(client.refresh());
    EXPECT_EQ(client.version("root"), 1u);
  }
  {
    SimRepo repo;
    SimClient client(repo);
    auto old = repo.signers["root"];
    repo.rotate("root");
    repo.signers["root"] = old;  // only the old key signs
    repo.extra_root_signers.clear();
    repo.publish_root();
    EXPECT_FALSE(client.refresh());
    EXPECT_EQ(client.version("root"), 1u);
  }
}

TEST(Updater, RootVersionMustBeExactlyNext) {
  SimRepo repo;
  SimClient client(repo);
  repo.root.version = 2;
  repo.publish_root();                                                      // v3
  repo.files["metadata/2.root.json"] = repo.files["metadata/3.root.json"];  // says 3
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_EQ(client.version("root"), 1u);
}

TEST(Updater, MaxRootRotations) {
  SimRepo repo;
  SimClient client(repo);
  for (int i = 0; i < 5; ++i) repo.publish_root();  // up to v6
  auto cfg = client.config();
  cfg.max_root_rotations = 3;
  auto u = Updater::create(cfg, repo, client.clock);
  ASSERT_TRUE(u);
  ASSERT_TRUE(u->refresh());
  EXPECT_EQ(client.version("root"), 4u);
  EXPECT_TRUE(client.refresh());
  EXPECT_EQ(client.version("root"), 6u);
}

TEST(Updater, FastForwardRecoveryOfTimestamp) {
  SimRepo repo;
  SimClient client(repo);
  for (int i = 0; i < 99; ++i) repo.publish({"timestamp"});
  ASSERT_TRUE(client.refresh());
  EXPECT_EQ(client.version("timestamp"), 100u);
  repo.rotate("timestamp");
  repo.publish_root();
  repo.timestamp.version = 0;  // the next publish makes it 1
  repo.publish({"timestamp"});
  ASSERT_TRUE(client.refresh()) << client.refresh().error().message();
  EXPECT_EQ(client.version("timestamp"), 1u);
}

TEST(Updater, FastForwardRecoveryOfSnapshotAndTargets) {
  SimRepo repo;
  SimClient client(repo);
  for (int i = 0; i < 9; ++i) repo.publish({"targets", "snapshot"});
  repo.publish({"timestamp"});
  ASSERT_TRUE(client.refresh());
  EXPECT_EQ(client.version("snapshot"), 10u);
  EXPECT_EQ(client.version("targets"), 10u);
  repo.rotate("snapshot");
  repo.publish_root();
  repo.targets["targets"].version = 1;
  repo.files["metadata/1.targets.json"] =
      repo.sign(repo.targets["targets"], repo.signers["targets"]);
  repo.snapshot.version = 1;
  repo.snapshot.meta["targets.json"].version = 1;
  repo.files["metadata/1.snapshot.json"] = repo.sign(repo.snapshot, repo.signers["snapshot"]);
  repo.timestamp.snapshot_meta.version = 1;
  repo.timestamp.version += 1;
  repo.files["metadata/timestamp.json"] = repo.sign(repo.timestamp, repo.signers["timestamp"]);
  ASSERT_TRUE(client.refresh()) << client.refresh().error().message();
  EXPECT_EQ(client.version("snapshot"), 1u);
  EXPECT_EQ(client.version("targets"), 1u);
}

TEST(Updater, DownloadVerifiedTarget) {
  SimRepo repo;
  repo.add_target("targets", "dir/file.txt", "hello world");
  repo.publish({"targets", "snapshot", "timestamp"});
  SimClient client(repo);
  ASSERT_TRUE(client.download("dir/file.txt"));
  auto got = fs::read_file(client.target_file("dir/file.txt"));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, testing::bytes_of("hello world"));
  auto h = repo.targets["targets"].targets["dir/file.txt"].hashes["sha256"];
  EXPECT_EQ(repo.count_requests("targets/dir/" + h + ".file.txt"), 1u);
  // Cached: the caller can skip a second download.
  auto u = Updater::create(client.config(), repo, client.clock);
  ASSERT_TRUE(u);
  auto info = u->get_targetinfo("dir/file.txt");
  ASSERT_TRUE(info);
  EXPECT_TRUE(u->is_cached(*info, client.target_file("dir/file.txt")));
  EXPECT_FALSE(client.download("missing.txt"));
}

TEST(Updater, TargetLongerThanItsLengthOrWithOtherHashIsNeverWritten) {
  SimRepo repo;
  repo.add_target("targets", "a.bin", "0123456789");
  repo.publish({"targets", "snapshot", "timestamp"});
  auto h = repo.targets["targets"].targets["a.bin"].hashes["sha256"];
  auto& served = repo.files["targets/" + h + ".a.bin"];
  SimClient client(repo);

  served = testing::bytes_of("0123456789 and then endless data");
  auto s = client.download("a.bin");
  ASSERT_FALSE(s);
  EXPECT_FALSE(std::filesystem::exists(client.target_file("a.bin")));

  served = testing::bytes_of("0123456788");  // same length, other bytes
  s = client.download("a.bin");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("sha256"), std::string::npos) << s.error().message();
  EXPECT_FALSE(std::filesystem::exists(client.target_file("a.bin")));

  served = testing::bytes_of("01234");  // shorter
  EXPECT_FALSE(client.download("a.bin"));
  EXPECT_FALSE(std::filesystem::exists(client.target_file("a.bin")));
  // Nothing but the final file name is ever created in the target dir.
  EXPECT_TRUE(std::filesystem::is_empty(client.dir() / "targets"));
}

TEST(Updater, UnknownHashAlgorithmIsRefused) {
  SimRepo repo;
  repo.add_target("targets", "a.bin", "data");
  auto& f = repo.targets["targets"].targets["a.bin"];
  f.hashes["made-up"] = f.hashes["sha256"];
  repo.publish({"targets", "snapshot", "timestamp"});
  SimClient client(repo);
  EXPECT_FALSE(client.download("a.bin"));
  EXPECT_FALSE(std::filesystem::exists(client.target_file("a.bin")));
}

DelegatedRole role(std::string name, std::vector<std::string> paths, bool terminating = false) {
  DelegatedRole r;
  r.name = std::move(name);
  r.paths = std::move(paths);
  r.terminating = terminating;
  return r;
}

std::vector<std::string> delegated_requests(const SimRepo& repo) {
  std::vector<std::string> out;
  for (const auto& r : repo.requests)
    if (r.find("targets.json") == std::string::npos && r.find("metadata/") == 0 &&
        r.find("root") == std::string::npos && r.find("snapshot") == std::string::npos &&
        r.find("timestamp") == std::string::npos)
      out.push_back(r.substr(9));
  return out;
}

TEST(Updater, DelegationsArePreOrderDepthFirst) {
  SimRepo repo;
  repo.delegate("targets", role("A", {"*"}));
  repo.delegate("targets", role("B", {"*"}));
  repo.delegate("A", role("A1", {"*"}));
  repo.delegate("A", role("A2", {"*"}));
  repo.add_target("B", "x", "from B");
  repo.publish({"A1", "A2", "A", "B", "targets", "snapshot", "timestamp"});
  SimClient client(repo);
  ASSERT_TRUE(client.refresh());
  repo.requests.clear();
  auto u = Updater::create(client.config(), repo, client.clock);
  ASSERT_TRUE(u);
  auto info = u->get_targetinfo("x");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->role, "B");
  EXPECT_EQ(delegated_requests(repo),
            (std::vector<std::string>{"1.A.json", "1.A1.json", "1.A2.json", "1.B.json"}));
  EXPECT_EQ(client.metadata_files().size(), 8u);  // 4 top-level + A, A1, A2, B
}

TEST(Updater, TerminatingDelegationStopsTheSearch) {
  SimRepo repo;
  repo.delegate("targets", role("A", {"*"}, /*terminating=*/true));
  repo.delegate("targets", role("B", {"*"}));
  repo.add_target("B", "x", "from B");
  repo.publish({"A", "B", "targets", "snapshot", "timestamp"});
  SimClient client(repo);
  auto s = client.download("x");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::not_found);
  EXPECT_EQ(delegated_requests(repo), (std::vector<std::string>{"1.A.json"}));
}

TEST(Updater, TerminatingChildStopsSearchAboveIt) {
  SimRepo repo;
  repo.delegate("targets", role("A", {"*"}));
  repo.delegate("targets", role("B", {"*"}));
  repo.delegate("A", role("A1", {"*"}, /*terminating=*/true));
  repo.delegate("A", role("A2", {"*"}));
  repo.add_target("B", "x", "from B");
  repo.publish({"A1", "A2", "A", "B", "targets", "snapshot", "timestamp"});
  SimClient client(repo);
  EXPECT_FALSE(client.download("x"));
  EXPECT_EQ(delegated_requests(repo), (std::vector<std::string>{"1.A.json", "1.A1.json"}));
}

TEST(Updater, DelegationPathsAndHashPrefixes) {
  SimRepo repo;
  repo.delegate("targets", role("docs", {"docs/*.txt"}));
  DelegatedRole bins;
  bins.name = "bins";
  std::string path = "bin/tool";
  auto h = sha256(testing::bytes_of(path)).hex();
  bins.path_hash_prefixes = std::vector<std::string>{h.substr(0, 2)};
  repo.delegate("targets", bins);
  repo.add_target("docs", "docs/a.txt", "doc");
  repo.add_target("docs", "docs/sub/b.txt", "not delegated: '*' does not cross '/'");
  repo.add_target("bins", path, "tool");
  repo.publish({"docs", "bins", "targets", "snapshot", "timestamp"});
  SimClient client(repo);
  EXPECT_TRUE(client.download("docs/a.txt"));
  EXPECT_FALSE(client.download("docs/sub/b.txt"));
  repo.requests.clear();
  EXPECT_TRUE(client.download(path));
  EXPECT_EQ(delegated_requests(repo), (std::vector<std::string>{"1.bins.json"}));
}

TEST(Updater, DelegatedRoleNotInSnapshotIsNotUsed) {
  SimRepo repo;
  repo.delegate("targets", role("A", {"*"}));
  repo.add_target("A", "x", "x");
  repo.publish({"A", "targets", "snapshot", "timestamp"});
  repo.snapshot.meta.erase("A.json");
  repo.snapshot.version += 1;
  repo.files["metadata/" + std::to_string(repo.snapshot.version) + ".snapshot.json"] =
      repo.sign(repo.snapshot, repo.signers["snapshot"]);
  repo.timestamp.snapshot_meta.version = repo.snapshot.version;
  repo.timestamp.version += 1;
  repo.files["metadata/timestamp.json"] = repo.sign(repo.timestamp, repo.signers["timestamp"]);
  SimClient client(repo);
  EXPECT_FALSE(client.download("x"));
  EXPECT_EQ(delegated_requests(repo), std::vector<std::string>{});
}

TEST(Updater, DelegatedRoleWithBadSignatureFailsTheLookup) {
  SimRepo repo;
  repo.delegate("targets", role("A", {"*"}));
  repo.add_target("A", "x", "x");
  repo.signers["A"] = {testing::new_key()};
  repo.publish({"A", "targets", "snapshot", "timestamp"});
  SimClient client(repo);
  EXPECT_FALSE(client.download("x"));
  EXPECT_EQ(client.version("A"), 0u);
}

TEST(Updater, RoleReachedTwiceIsCheckedAgainstEachDelegator) {
  SimRepo repo;
  repo.delegate("targets", role("parent-a", {"team-a/*"}));
  repo.delegate("targets", role("parent-b", {"team-b/*"}));
  repo.delegate("parent-a", role("release", {"team-a/*"}));
  repo.delegate("parent-b", role("release", {"team-b/*"}));
  repo.signers["release"].resize(1);  // only parent-a's key signs "release"
  repo.add_target("release", "team-a/f", "trusted A");
  repo.add_target("release", "team-b/f", "malicious B");
  repo.publish({"release", "parent-a", "parent-b", "targets", "snapshot", "timestamp"});
  SimClient client(repo);
  auto u = Updater::create(client.config(), repo, client.clock);
  ASSERT_TRUE(u);
  auto a = u->get_targetinfo("team-a/f");
  ASSERT_TRUE(a) << a.error().message();
  auto b = u->get_targetinfo("team-b/f");
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message().find("parent-b"), std::string::npos) << b.error().message();
}

TEST(Updater, MaxDelegations) {
  SimRepo repo;
  std::vector<std::string> roles;
  for (int i = 0; i < 5; ++i) {
    repo.delegate("targets", role("r" + std::to_string(i), {"*"}));
    roles.push_back("r" + std::to_string(i));
  }
  repo.add_target("r4", "x", "x");
  roles.insert(roles.end(), {"targets", "snapshot", "timestamp"});
  repo.publish(roles);
  SimClient client(repo);
  auto cfg = client.config();
  cfg.max_delegations = 3;  // targets, r0, r1
  auto u = Updater::create(cfg, repo, client.clock);
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->get_targetinfo("x"));
  EXPECT_EQ(delegated_requests(repo), (std::vector<std::string>{"1.r0.json", "1.r1.json"}));
  EXPECT_TRUE(client.download("x"));
}

TEST(Updater, UnusualRoleNamesArePercentEncoded) {
  SimRepo repo;
  repo.delegate("targets", role("../evil/?#", {"*"}));
  repo.publish({"../evil/?#", "targets", "snapshot", "timestamp"});
  SimClient client(repo);
  EXPECT_FALSE(client.download("nothing"));
  EXPECT_EQ(repo.count_requests("metadata/1..." + std::string("%2Fevil%2F%3F%23.json")), 1u);
  EXPECT_EQ(client.metadata_files().size(), 5u);
}

TEST(Updater, WithoutConsistentSnapshotsUrlsAreUnprefixed) {
  SimRepo repo;
  repo.root.consistent_snapshot = false;
  repo.publish_root();
  repo.files["metadata/snapshot.json"] = repo.files["metadata/1.snapshot.json"];
  repo.files["metadata/targets.json"] = repo.files["metadata/1.targets.json"];
  SimClient client(repo);
  ASSERT_TRUE(client.refresh()) << client.refresh().error().message();
  EXPECT_EQ(repo.count_requests("metadata/snapshot.json"), 1u);
  EXPECT_EQ(repo.count_requests("metadata/targets.json"), 1u);
}

TEST(Updater, EndlessTimestampIsCutAtTheLimit) {
  SimRepo repo;
  repo.files["metadata/timestamp.json"].resize(100'000, ' ');
  SimClient client(repo);
  auto s = client.refresh();
  ASSERT_FALSE(s);
  EXPECT_EQ(client.version("timestamp"), 0u);
}

}  // namespace
}  // namespace mup::tuf
