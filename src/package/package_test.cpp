#include <gtest/gtest.h>

#include "package/manifest.hpp"
#include "package/semver.hpp"

namespace mup::package {
namespace {

Version v(const char* s) {
  return *Version::parse(s);
}

TEST(Semver, ParsesAndOrdersPerSpec) {
  EXPECT_EQ(v("1.2.3").str(), "1.2.3");
  EXPECT_EQ(v("1.0.0-rc.1+build.5").str(), "1.0.0-rc.1+build.5");
  // semver.org §11 example chain.
  const char* chain[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                         "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
                         "1.0.0-rc.1",  "1.0.0",         "2.0.0",
                         "2.1.0",       "2.1.1"};
  for (size_t i = 0; i + 1 < std::size(chain); ++i)
    EXPECT_LT(v(chain[i]), v(chain[i + 1])) << chain[i];
  EXPECT_EQ(v("1.0.0+a"), v("1.0.0+b")) << "build metadata does not order";
  EXPECT_LT(v("1.9.0"), v("1.10.0"));
}

TEST(Semver, RejectsMalformed) {
  for (const char* bad : {"", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "1.2.3-", "1.2.3-01",
                          "1.2.3+", "a.b.c", "-1.2.3", "1.2.3-a..b"})
    EXPECT_FALSE(Version::parse(bad)) << bad;
  EXPECT_TRUE(Version::parse_loose("2"));
  EXPECT_EQ(Version::parse_loose("2.1")->str(), "2.1.0");
}

TEST(Constraint, Matches) {
  auto c = *Constraint::parse(">=2.0,<3");
  EXPECT_TRUE(c.matches(v("2.0.0")));
  EXPECT_TRUE(c.matches(v("2.9.9")));
  EXPECT_FALSE(c.matches(v("3.0.0")));
  EXPECT_FALSE(c.matches(v("1.9.9")));
  EXPECT_TRUE(c.matches(v("3.0.0-rc.1"))) << "semver order: 3.0.0-rc.1 < 3";
  EXPECT_TRUE(Constraint::parse("")->matches(v("0.0.1")));
  EXPECT_TRUE(Constraint::parse("!=1.2.3")->matches(v("1.2.4")));
  EXPECT_TRUE(Constraint::parse("=1.2.3")->matches(v("1.2.3")));
  EXPECT_FALSE(Constraint::parse(">=2.x"));
}

TEST(Dependency, Parses) {
  auto d = *Dependency::parse("db>=2.0,<3");
  EXPECT_EQ(d.name, "db");
  EXPECT_TRUE(d.constraint.matches(v("2.5.0")));
  EXPECT_EQ(d.str(), "db>=2.0,<3");
  EXPECT_TRUE(Dependency::parse("libfoo"));
  EXPECT_FALSE(Dependency::parse(">=2"));
}

Manifest sample() {
  Manifest m;
  m.component = "web";
  m.type = PackageType::service;
  m.version = v("2.1.0");
  m.depends = {*Dependency::parse("db>=2.0,<3"), *Dependency::parse("tls")};
  m.priority = Priority::high;
  m.size = 1234;
  m.index_sha256 = std::string(64, 'a');
  m.index_target = "web/2.1.0/tree.idx";
  m.strategy = "canary";
  m.rollback_policy = {{"max_error_rate", 0.05}};
  m.delta_from = {"2.0.0"};
  m.pack = {{12, 3456, sha256(std::vector<uint8_t>{1})}, {3, 789, sha256(std::vector<uint8_t>{2})}};
  m.bundles = {{"2.0.0", {{40, 5000, sha256(std::vector<uint8_t>{3})}}}};
  return m;
}

TEST(Manifest, JsonRoundTrip) {
  auto j = sample().to_json();
  EXPECT_EQ(j["id"], "web@2.1.0");
  EXPECT_EQ(j["type"], "service");
  auto back = Manifest::from_json(j);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->to_json(), j);
}

TEST(Manifest, RejectsBadFields) {
  auto base = sample().to_json();
  auto expect_bad = [&](const char* key, nlohmann::json value) {
    auto j = base;
    if (value.is_null())
      j.erase(key);
    else
      j[key] = value;
    EXPECT_FALSE(Manifest::from_json(j)) << key << "=" << value.dump();
  };
  expect_bad("type", "firmware");
  expect_bad("version", "2.1");
  expect_bad("priority", "urgent");
  expect_bad("strategy", "yolo");
  expect_bad("checksum", "md5:abc");
  expect_bad("component", "../etc");
  expect_bad("depends", nlohmann::json::array({">=2"}));
  expect_bad("size", -1);
  expect_bad("id", "other@1.0.0");
  expect_bad("index", nullptr);
  const std::string hex(64, 'c');
  expect_bad("pack", nlohmann::json::array());
  expect_bad("pack", nlohmann::json::object());
  expect_bad("pack", {{{"chunks", 0}, {"size", 1}, {"sha256", hex}}});
  expect_bad("pack", {{{"chunks", 1}, {"size", 0}, {"sha256", hex}}});
  expect_bad("pack", {{{"chunks", 1}, {"size", 1}, {"sha256", "cc"}}});
  expect_bad("pack", {{{"chunks", 1ull << 32}, {"size", 1}, {"sha256", hex}}});
  expect_bad("pack", {{{"chunks", -1}, {"size", 1}, {"sha256", hex}}});
  expect_bad("pack", {{{"chunks", 1}, {"size", 1}, {"sha256", hex}, {"more", 1}}});
  expect_bad("pack", {{{"chunks", 1}, {"size", 1}}});
  const nlohmann::json seg = {{"chunks", 1}, {"size", 1}, {"sha256", hex}};
  expect_bad("bundles", nlohmann::json::object());
  expect_bad("bundles", {{{"from", "2.0"}, {"segments", {seg}}}});
  expect_bad("bundles", {{{"from", "2.0.0"}, {"segments", nlohmann::json::array()}}});
  expect_bad("bundles", {{{"from", "2.0.0"}}});
  expect_bad("bundles", {{{"from", "2.0.0"}, {"segments", {seg}}, {"x", 1}}});
  expect_bad("bundles",
             {{{"from", "2.0.0"}, {"segments", {seg}}}, {{"from", "2.0.0"}, {"segments", {seg}}}});
  auto future = base;
  future["format"] = 2;
  auto f = Manifest::from_json(future);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), Errc::unsupported);
}

TEST(Manifest, DependenciesSatisfiedOrListed) {
  auto m = sample();
  EXPECT_TRUE(check_dependencies(m, {{"db", v("2.3.0")}, {"tls", v("1.0.0")}}));
  auto r = check_dependencies(m, {{"db", v("3.0.0")}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("db>=2.0,<3 (have 3.0.0)"), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("tls (not installed)"), std::string::npos)
      << r.error().message();
}

}  // namespace
}  // namespace mup::package
