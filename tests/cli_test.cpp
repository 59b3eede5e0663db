// The mup binary as users and scripts call it: flags, --json shapes, exit codes, and what a
// failure (a full disk, a killed process) leaves on disk.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace mup::test {
namespace {

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(d_ / "v1/bin/tool", random_bytes(400000, 1));
    write_file(d_ / "v1/etc/conf", text_bytes(50000, 2));
    stdfs::create_symlink("bin/tool", d_ / "v1/tool");
    stdfs::copy(d_ / "v1", d_ / "v2",
                stdfs::copy_options::recursive | stdfs::copy_options::copy_symlinks);
    auto tool = random_bytes(400000, 1);
    for (size_t i = 100000; i < 101000; ++i) tool[i] ^= 0x5a;
    write_file(d_ / "v2/bin/tool", tool);
    write_file(d_ / "v2/etc/new", text_bytes(20000, 3));
    ASSERT_EQ(
        run({"pack", s(d_ / "v1"), "--store", s(d_ / "st"), "--index", s(d_ / "v1.idx"), "-q"})
            .exit_code,
        0);
    auto r = run({"pack", s(d_ / "v2"), "--store", s(d_ / "st"), "--index", s(d_ / "v2.idx"),
                  "--base", s(d_ / "v1.idx"), "--base-tree", s(d_ / "v1"), "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_GE(j["deltas"].get<int>(), 1);
  }
  static std::string s(const stdfs::path& p) { return p.string(); }
  RunResult run(const std::vector<std::string>& args, const std::string& env = "") {
    return run_mup(args, env);
  }
  std::vector<std::string> unpack_args(const std::string& out) {
    return {"unpack",     s(d_ / "v2.idx"), "--store",   s(d_ / "st"), "--seed",
            s(d_ / "v1"), "--out",          s(d_ / out), "-q"};
  }
  void expect_clean(const std::string& out) {
    EXPECT_FALSE(stdfs::exists(d_ / out));
    for (auto& e : stdfs::directory_iterator(d_.path()))
      EXPECT_EQ(e.path().filename().string().find("mup-tmp"), std::string::npos) << e.path();
  }
  ScratchDir d_;
};

TEST_F(Cli, HelpAndUsageErrors) {
  auto h = run({"--help"});
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.out.find("unpack"), std::string::npos);
  auto bad = run({"pack"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("SRC"), std::string::npos) << bad.err;
  auto v = run({"--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("mup "), std::string::npos);
}

TEST_F(Cli, PlanJsonHasTheStableFields) {
  auto r = run({"plan", s(d_ / "v2.idx"), "--store", s(d_ / "st"), "--seed", s(d_ / "v1"),
                "--seed-index", s(d_ / "v1.idx"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"bytes_to_fetch", "chunks", "deltas", "full_bytes"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_LT(j["bytes_to_fetch"].get<uint64_t>(), j["full_bytes"].get<uint64_t>() / 4);
  EXPECT_LT(j["index_bytes"].get<uint64_t>(), stdfs::file_size(d_ / "v2.idx"))
      << "a node holding v1's index fetches v2's as a delta";
  auto cold =
      nlohmann::json::parse(run({"plan", s(d_ / "v2.idx"), "--store", s(d_ / "st"), "--json"}).out);
  EXPECT_EQ(cold["bytes_to_fetch"], cold["full_bytes"]);
}

TEST_F(Cli, IndexShowJson) {
  auto r = run({"index", "show", s(d_ / "v2.idx"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format_version"], 1);
  bool saw_link = false;
  for (auto& e : j["entries"])
    saw_link |= (e["path"] == "tool" && e["type"] == "symlink" && e["target"] == "bin/tool");
  EXPECT_TRUE(saw_link);
  auto human = run({"index", "show", s(d_ / "v2.idx")});
  EXPECT_NE(human.out.find("bin/tool"), std::string::npos);
}

TEST_F(Cli, UnpackRebuildsExactly) {
  auto r = run(unpack_args("out"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "v2", d_ / "out", &why)) << why;
}

TEST_F(Cli, FullDiskLeavesNothingAndSaysWhat) {
  auto r = run(unpack_args("out"), "MUP_FAULT_AT=write MUP_FAULT_AFTER=1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no space"), std::string::npos) << r.err;
  expect_clean("out");
}

TEST_F(Cli, KilledUnpackIsSweptByTheNextOne) {
  auto r =
      run(unpack_args("out"), "MUP_FAULT_AT=unpack.file MUP_FAULT_ACTION=kill MUP_FAULT_AFTER=1");
  EXPECT_EQ(r.exit_code, 128 + 9) << "the fault point kills the process";
  EXPECT_FALSE(stdfs::exists(d_ / "out")) << "no half-built destination";
  auto again = run(unpack_args("out"));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "v2", d_ / "out", &why)) << why;
  for (auto& e : stdfs::directory_iterator(d_.path()))
    EXPECT_EQ(e.path().filename().string().find("mup-tmp"), std::string::npos)
        << "stale temp swept: " << e.path();
}

TEST_F(Cli, KilledBeforeRenameLeavesNoDestination) {
  auto r = run(unpack_args("out"), "MUP_FAULT_AT=unpack.before_rename MUP_FAULT_ACTION=kill");
  EXPECT_EQ(r.exit_code, 128 + 9);
  EXPECT_FALSE(stdfs::exists(d_ / "out"));
}

TEST_F(Cli, MissingPieceIsNamedBeforeAnyWork) {
  for (auto& e : stdfs::recursive_directory_iterator(d_ / "st/deltas"))
    if (e.is_regular_file()) stdfs::remove(e.path());
  auto r = run(unpack_args("out"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("lacks"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("delta"), std::string::npos) << r.err;
  expect_clean("out");
}

TEST_F(Cli, UnsafeIndexIsRefused) {
  write_file(d_ / "evil.idx", std::string("MUPI\x01\x00garbage", 13));
  auto r = run({"index", "show", s(d_ / "evil.idx")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("evil.idx"), std::string::npos) << r.err;
  auto u = run({"unpack", s(d_ / "evil.idx"), "--store", s(d_ / "st"), "--out", s(d_ / "out")});
  EXPECT_EQ(u.exit_code, 1);
  expect_clean("out");
}

TEST_F(Cli, MismatchedBaseFlagsAreRefused) {
  auto r = run({"pack", s(d_ / "v2"), "--store", s(d_ / "st"), "--index", s(d_ / "x.idx"), "--base",
                s(d_ / "v1.idx")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--base-tree"), std::string::npos) << r.err;
  EXPECT_FALSE(stdfs::exists(d_ / "x.idx"));
}

}  // namespace
}  // namespace mup::test
