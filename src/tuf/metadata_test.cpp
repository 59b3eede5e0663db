// Canonical JSON, strict parsing of metadata, signing and threshold verification, path
// patterns.
#include "tuf/metadata.hpp"

#include <gtest/gtest.h>

#include "tuf/canonical_json.hpp"
#include "tuf/test_repo.hpp"

namespace mup::tuf {
namespace {

using nlohmann::json;
using testing::bytes_of;

TEST(CanonicalJson, SortedCompactOnlyQuoteAndBackslashEscaped) {
  json j = json::parse(R"({"b": [1, -2, true, null], "a": {"z": "x\"y\\z\n\u00e9", "c": 0}})");
  auto c = canonical_json(j);
  ASSERT_TRUE(c);
  EXPECT_EQ(*c, "{\"a\":{\"c\":0,\"z\":\"x\\\"y\\\\z\n\xc3\xa9\"},\"b\":[1,-2,true,null]}");
}

TEST(CanonicalJson, RejectsFloats) {
  EXPECT_FALSE(canonical_json(json::parse(R"({"a": [1.5]})")));
  EXPECT_FALSE(canonical_json(json(1e300)));
}

TEST(Time, ParseAndFormat) {
  auto t = parse_utc_time("2030-01-02T03:04:05Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_utc_time(*t), "2030-01-02T03:04:05Z");
  EXPECT_EQ(*parse_utc_time("1970-01-01T00:00:00Z"), 0);
  for (const char* bad : {"2030-01-02T03:04:05", "2030-01-02 03:04:05Z", "2030-13-01T00:00:00Z",
                          "2030-02-30T00:00:00Z", "2030-01-02T03:04:05.5Z", "2030-1-02T03:04:05Z",
                          "2030-01-02T03:04:05+00:00"})
    EXPECT_FALSE(parse_utc_time(bad)) << bad;
}

struct Signed {
  crypto::PrivateKey key = testing::new_key();
  Root root;
  Signed() {
    for (const char* r : {"root", "timestamp", "snapshot", "targets"})
      root.add_key(r, Key::from_public(key.public_key()));
    root.expires = testing::kNow + 100;
  }
  json envelope() {
    auto md = Metadata<Root>::from_body(root);
    EXPECT_TRUE(md->sign(key));
    return json::parse(md->to_bytes());
  }
};

Result<Metadata<Root>> parse_root(const json& j) {
  return Metadata<Root>::parse(bytes_of(j.dump()));
}

TEST(Metadata, RoundTripAndSignatureOverCanonicalSigned) {
  Signed s;
  auto md = Metadata<Root>::from_body(s.root);
  ASSERT_TRUE(md);
  ASSERT_TRUE(md->sign(s.key));
  auto again = Metadata<Root>::parse(md->to_bytes());
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->to_bytes(), md->to_bytes());
  // The envelope is the canonical JSON of the whole document (written around the signed
  // bytes, not re-serialised: the same bytes).
  json sigs = json::array();
  for (const auto& sig : md->signatures()) sigs.push_back({{"keyid", sig.keyid}, {"sig", sig.sig}});
  auto whole = canonical_json_bytes(json{{"signed", md->signed_json()}, {"signatures", sigs}});
  ASSERT_TRUE(whole);
  EXPECT_EQ(md->to_bytes(), *whole);
  EXPECT_EQ(again->body().keys, s.root.keys);
  EXPECT_EQ(again->body().roles, s.root.roles);
  const Root& r = again->body();
  EXPECT_TRUE(again->verify_role(r.keys, r.roles.at("root"), "root"));
  // Pretty-printed with other key order: same canonical form, signature still valid.
  auto pretty = json::parse(md->to_bytes()).dump(2);
  auto p = Metadata<Root>::parse(bytes_of(pretty));
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->verify_role(r.keys, r.roles.at("root"), "root"));
}

TEST(Metadata, UnknownFieldsAreKeptAndSigned) {
  Signed s;
  json env = s.envelope();
  env["signed"]["x-custom"] = {{"a", 1}};
  auto md = parse_root(env);
  ASSERT_TRUE(md);
  // The signature no longer matches (the field is covered by it) ...
  EXPECT_FALSE(md->verify_role(md->body().keys, md->body().roles.at("root"), "root"));
  // ... and once signed again, it round-trips with the field.
  auto m2 = *md;
  ASSERT_TRUE(m2.sign(s.key));
  auto back = Metadata<Root>::parse(m2.to_bytes());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->signed_json()["x-custom"]["a"], 1);
  EXPECT_TRUE(back->verify_role(back->body().keys, back->body().roles.at("root"), "root"));
}

TEST(Metadata, StrictParsing) {
  Signed s;
  auto check_bad = [&](auto&& mutate, const char* expect) {
    json env = s.envelope();
    mutate(env);
    auto md = parse_root(env);
    ASSERT_FALSE(md) << expect;
    EXPECT_NE(md.error().message().find(expect), std::string::npos) << md.error().message();
  };
  check_bad([](json& e) { e["signed"]["_type"] = "targets"; }, "_type");
  check_bad([](json& e) { e["signed"].erase("version"); }, "version");
  check_bad([](json& e) { e["signed"]["version"] = "2"; }, "version");
  check_bad([](json& e) { e["signed"]["version"] = -1; }, "version");
  check_bad([](json& e) { e["signed"]["version"] = 0; }, "version");
  check_bad([](json& e) { e["signed"]["version"] = 1.0; }, "version");
  check_bad([](json& e) { e["signed"]["expires"] = "tomorrow"; }, "expires");
  check_bad([](json& e) { e["signed"]["spec_version"] = "1.x"; }, "spec_version");
  check_bad([](json& e) { e["signed"]["roles"].erase("snapshot"); }, "snapshot");
  check_bad([](json& e) { e["signed"]["roles"]["extra"] = e["signed"]["roles"]["root"]; }, "roles");
  check_bad([](json& e) { e["signed"]["roles"]["root"]["threshold"] = 0; }, "threshold");
  check_bad([](json& e) { e["signed"]["roles"]["root"]["threshold"] = true; }, "threshold");
  check_bad([](json& e) { e["signed"]["keys"] = json::array(); }, "keys");
  check_bad([](json& e) { e["signed"]["consistent_snapshot"] = "yes"; }, "consistent_snapshot");
  check_bad(
      [](json& e) {
        auto id = e["signed"]["roles"]["root"]["keyids"][0];
        e["signed"]["roles"]["root"]["keyids"].push_back(id);
      },
      "twice");
  check_bad([](json& e) { e["signatures"].push_back(e["signatures"][0]); }, "signed twice");
  check_bad([](json& e) { e["signatures"] = json::object(); }, "signatures");
  check_bad([](json& e) { e.erase("signed"); }, "signed");
  check_bad([](json& e) { e["signed"]["x"] = 0.5; }, "floating");
  {
    json env = s.envelope();
    env["signed"]["spec_version"] = "2.0.0";
    auto md = parse_root(env);
    ASSERT_FALSE(md);
    EXPECT_EQ(md.error().code(), Errc::unsupported);
  }
  EXPECT_FALSE(Metadata<Root>::parse(bytes_of("{\"signed\": ")));
  EXPECT_FALSE(Metadata<Root>::parse(bytes_of("[]")));
  {
    json env = s.envelope();
    env["signed"]["spec_version"] = "1.0";
    EXPECT_TRUE(parse_root(env));
  }
}

TEST(Metadata, ThresholdCountsDistinctValidKeysOnly) {
  auto k1 = testing::new_key(), k2 = testing::new_key(), k3 = testing::new_key();
  Root root;
  root.expires = testing::kNow;
  for (auto* k : {&k1, &k2}) root.add_key("snapshot", Key::from_public(k->public_key()));
  for (const char* r : {"root", "timestamp", "targets"})
    root.add_key(r, Key::from_public(k3.public_key()));
  root.roles["snapshot"].threshold = 2;
  Snapshot snap;
  snap.expires = testing::kNow;
  auto md = Metadata<Snapshot>::from_body(snap);
  ASSERT_TRUE(md);
  ASSERT_TRUE(md->sign(k1));
  ASSERT_TRUE(md->sign(k3));  // not a snapshot key: ignored
  auto s = md->verify_role(root.keys, root.roles["snapshot"], "snapshot");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("threshold 2, valid 1"), std::string::npos);
  ASSERT_TRUE(md->sign(k1));  // re-signing replaces, never duplicates
  EXPECT_EQ(md->signatures().size(), 2u);
  ASSERT_TRUE(md->sign(k2));
  EXPECT_TRUE(md->verify_role(root.keys, root.roles["snapshot"], "snapshot"));
  // A corrupted signature does not count.
  auto j = json::parse(md->to_bytes());
  for (auto& sig : j["signatures"])
    if (sig["keyid"] == Key::from_public(k1.public_key()).keyid())
      sig["sig"] = std::string(128, 'f');
  auto bad = Metadata<Snapshot>::parse(bytes_of(j.dump()));
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->verify_role(root.keys, root.roles["snapshot"], "snapshot"));
}

TEST(Metadata, AKeyIdMustBeItsKeysHashAndOneKeyNeverCountsTwice) {
  auto k1 = testing::new_key(), k2 = testing::new_key();
  Root root;
  root.expires = testing::kNow;
  for (const char* r : {"root", "snapshot", "timestamp", "targets"})
    root.add_key(r, Key::from_public(k2.public_key()));
  json j = to_json(root);
  // k1 under an ID that is not its hash: refused when read.
  const Key plain = Key::from_public(k1.public_key());
  json forged = j;
  forged["keys"][std::string(64, 'a')] = plain.to_json();
  forged["roles"]["snapshot"]["keyids"].push_back(std::string(64, 'a'));
  auto refused = root_from_json(forged);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("is not the SHA-256 of its key"), std::string::npos)
      << refused.error().message();
  // k1 with an extra field has two hashes (with and without it), both valid IDs; listed under
  // both with threshold 2, one key's signature still counts once.
  Key extra = plain;
  extra.unrecognized = {{"keyid_hash_algorithms", {"sha256", "sha512"}}};
  const std::string full_id = extra.keyid(), core_id = plain.keyid();
  ASSERT_NE(full_id, core_id);
  json twice = j;
  twice["keys"][full_id] = extra.to_json();
  twice["keys"][core_id] = plain.to_json();
  twice["roles"]["snapshot"]["keyids"] = {full_id, core_id};
  twice["roles"]["snapshot"]["threshold"] = 2;
  auto r = root_from_json(twice);
  ASSERT_TRUE(r) << r.error().message();
  Snapshot snap;
  snap.expires = testing::kNow;
  auto md = Metadata<Snapshot>::from_body(snap);
  ASSERT_TRUE(md);
  ASSERT_TRUE(md->sign(k1));
  json signed_twice = json::parse(md->to_bytes());
  signed_twice["signatures"].push_back(
      {{"keyid", full_id}, {"sig", signed_twice["signatures"][0]["sig"]}});
  auto both = Metadata<Snapshot>::parse(bytes_of(signed_twice.dump()));
  ASSERT_TRUE(both) << both.error().message();
  auto s = both->verify_role(r->keys, r->roles["snapshot"], "snapshot");
  ASSERT_FALSE(s) << "one key, one vote";
  EXPECT_NE(s.error().message().find("threshold 2, valid 1"), std::string::npos)
      << s.error().message();
}

TEST(Metadata, TargetsAndDelegationsParse) {
  json t = {
      {"_type", "targets"},
      {"spec_version", "1.0.31"},
      {"version", 3},
      {"expires", "2030-01-01T00:00:00Z"},
      {"targets",
       {{"a/b.txt",
         {{"length", 3}, {"hashes", {{"sha256", std::string(64, '0')}}}, {"custom", {{"x", 1}}}}}}},
      {"delegations",
       {{"keys", json::object()},
        {"roles",
         {{{"name", "r"},
           {"keyids", json::array()},
           {"threshold", 1},
           {"terminating", true},
           {"paths", {"a/*"}}}}}}}};
  auto ok = targets_from_json(t);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->targets.at("a/b.txt").custom["x"], 1);
  EXPECT_TRUE(ok->delegations->roles[0].terminating);
  EXPECT_EQ(to_json(*ok), t);

  auto bad = t;
  bad["delegations"]["roles"][0]["path_hash_prefixes"] = {"ab"};
  EXPECT_FALSE(targets_from_json(bad));
  bad = t;
  bad["delegations"]["roles"][0].erase("paths");
  EXPECT_FALSE(targets_from_json(bad));
  bad = t;
  bad["delegations"]["roles"].push_back(bad["delegations"]["roles"][0]);
  EXPECT_FALSE(targets_from_json(bad));
  bad = t;
  bad["delegations"]["roles"][0]["name"] = "targets";
  EXPECT_FALSE(targets_from_json(bad));
  bad = t;
  bad["targets"]["a/b.txt"]["hashes"] = json::object();
  EXPECT_FALSE(targets_from_json(bad));
  bad = t;
  bad["targets"]["a/b.txt"].erase("length");
  EXPECT_FALSE(targets_from_json(bad));
}

TEST(Metadata, PathPatterns) {
  DelegatedRole r;
  r.paths = std::vector<std::string>{"*.txt", "dir/*", "a/?/c", "x/[ab]*.bin"};
  EXPECT_TRUE(r.is_delegated_path("f.txt"));
  EXPECT_FALSE(r.is_delegated_path("sub/f.txt"));  // '*' never crosses '/'
  EXPECT_TRUE(r.is_delegated_path("dir/file"));
  EXPECT_FALSE(r.is_delegated_path("dir/sub/file"));
  EXPECT_TRUE(r.is_delegated_path("a/b/c"));
  EXPECT_FALSE(r.is_delegated_path("a/bb/c"));
  EXPECT_TRUE(r.is_delegated_path("x/b1.bin"));
  EXPECT_FALSE(r.is_delegated_path("x/c1.bin"));
  DelegatedRole all;
  all.paths = std::vector<std::string>{"*"};
  EXPECT_TRUE(all.is_delegated_path("anything"));
  EXPECT_FALSE(all.is_delegated_path("a/b"));
  DelegatedRole h;
  std::string hex = sha256(bytes_of("some/path")).hex();
  h.path_hash_prefixes = std::vector<std::string>{"zz", hex.substr(0, 3)};
  EXPECT_TRUE(h.is_delegated_path("some/path"));
  h.path_hash_prefixes = std::vector<std::string>{hex.substr(1, 3)};
  EXPECT_FALSE(h.is_delegated_path("some/path"));
}

TEST(Metadata, HashesAndLengthOfFiles) {
  auto data = bytes_of("abc");
  TargetFile f = TargetFile::for_data(data);
  EXPECT_TRUE(f.verify(data, "x"));
  f.hashes["sha512"] = *hash_hex("sha512", data);
  EXPECT_TRUE(f.verify(data, "x"));
  f.hashes["sha512"][0] ^= 1;
  EXPECT_FALSE(f.verify(data, "x"));
  EXPECT_FALSE(TargetFile::for_data(data).verify(bytes_of("abcd"), "x"));
  EXPECT_FALSE(hash_hex("md5", data));
  EXPECT_EQ(Key::from_public(testing::new_key().public_key()).keyid().size(), 64u);
}

}  // namespace
}  // namespace mup::tuf
