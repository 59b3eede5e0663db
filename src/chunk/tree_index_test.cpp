#include "chunk/tree_index.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "chunk/tree_scan.hpp"
#include "test_util.hpp"

namespace mup::chunk {
namespace {

Entry dir(std::string p) {
  Entry e;
  e.path = std::move(p);
  e.type = EntryType::dir;
  e.mode = 0755;
  return e;
}
Entry file(std::string p, std::string_view content) {
  Entry e;
  e.path = std::move(p);
  e.size = content.size();
  std::span<const uint8_t> b(reinterpret_cast<const uint8_t*>(content.data()), content.size());
  e.digest = sha256(b);
  if (!content.empty()) e.chunks.push_back({e.digest, static_cast<uint32_t>(content.size()), 10});
  return e;
}
Entry link(std::string p, std::string target) {
  Entry e;
  e.path = std::move(p);
  e.type = EntryType::symlink;
  e.mode = 0777;
  e.link_target = std::move(target);
  return e;
}

TreeIndex sample() {
  TreeIndex idx;
  idx.entries = {dir("a"), file("a/f", "hello"), link("a/l", "/etc/passwd"), dir("b"),
                 file("b/empty", "")};
  Entry big = file("c", "");
  big.size = 3;
  big.digest = sha256(std::vector<uint8_t>{1, 2, 3});
  big.chunks = {{sha256(std::vector<uint8_t>{1}), 1, 5},
                {sha256(std::vector<uint8_t>{2, 3}), 2, 6}};
  big.deltas = {{sha256(std::vector<uint8_t>{9}), 1, 42, sha256(std::vector<uint8_t>{7})}};
  idx.entries.push_back(big);
  return idx;
}

TEST(TreeIndex, RoundTripIsExactAndDeterministic) {
  TreeIndex idx = sample();
  ASSERT_TRUE(idx.validate());
  auto bytes = idx.serialize();
  EXPECT_EQ(bytes, sample().serialize());
  auto back = TreeIndex::parse(bytes);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->entries, idx.entries);
  EXPECT_EQ(back->params, idx.params);
  EXPECT_FALSE(back->single_file);
}

// `on_wire`: the fault survives serialisation, so parse() must refuse it too (a size that
// disagrees with a whole-file chunk, or a directory's size, cannot even be written).
void expect_rejected(TreeIndex idx, const std::string& needle, bool on_wire = true) {
  auto v = idx.validate();
  ASSERT_FALSE(v) << "validate accepted: " << needle;
  EXPECT_NE(v.error().message().find(needle), std::string::npos) << v.error().message();
  if (!on_wire) return;
  auto p = TreeIndex::parse(idx.serialize());
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), Errc::corrupt);
}

TEST(TreeIndex, RejectsUnsafePaths) {
  TreeIndex idx;
  idx.entries = {file("../etc/passwd", "x")};
  expect_rejected(idx, "'..'");
  idx.entries = {dir("a"), file("a/../../x", "x")};
  expect_rejected(idx, "'..'");
  idx.entries = {file("/etc/passwd", "x")};
  expect_rejected(idx, "absolute");
  idx.entries = {file("a//b", "x")};
  expect_rejected(idx, "empty component");
  idx.entries = {file("./x", "x")};
  expect_rejected(idx, "'.'");
  idx.entries = {file(std::string("a\0b", 3), "x")};
  expect_rejected(idx, "NUL");
  idx.entries = {file("", "x")};
  expect_rejected(idx, "empty");
}

TEST(TreeIndex, RejectsDuplicatesOrderAndBadParents) {
  TreeIndex idx;
  idx.entries = {file("x", "1"), file("x", "2")};
  expect_rejected(idx, "duplicate");
  idx.entries = {file("y", "1"), file("x", "2")};
  expect_rejected(idx, "out of order");
  idx.entries = {file("nodir/x", "1")};
  expect_rejected(idx, "parent");
  // A symlink can never be a parent: writing a/x would go through the link.
  idx.entries = {link("a", "/etc"), file("a/passwd", "1")};
  expect_rejected(idx, "parent");
}

TEST(TreeIndex, RejectsInconsistentContent) {
  TreeIndex idx;
  Entry f = file("x", "abc");
  f.size = 4;
  idx.entries = {f};
  expect_rejected(idx, "add up", false);
  Entry d = dir("d");
  d.size = 3;
  idx.entries = {d};
  expect_rejected(idx, "has content", false);
  Entry two = file("y", "abc");
  two.chunks = {{sha256(std::vector<uint8_t>{1}), 1, 1}, {sha256(std::vector<uint8_t>{2}), 1, 1}};
  idx.entries = {two};
  expect_rejected(idx, "add up");
  Entry l = link("l", "");
  idx.entries = {l};
  expect_rejected(idx, "symlink");
}

TEST(TreeIndex, ParseRejectsGarbageTruncationAndVersions) {
  auto bytes = sample().serialize();
  EXPECT_FALSE(TreeIndex::parse({}));
  EXPECT_FALSE(TreeIndex::parse(std::span(bytes).first(bytes.size() - 3)));
  auto bad_magic = bytes;
  bad_magic[0] = 'X';
  EXPECT_EQ(TreeIndex::parse(bad_magic).error().code(), Errc::corrupt);
  auto future = bytes;
  future[4] = 99;
  auto f = TreeIndex::parse(future);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), Errc::unsupported);
  // Every single-byte corruption is either rejected or parses to a valid index: never a crash.
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto m = bytes;
    m[i] ^= 0x5a;
    auto r = TreeIndex::parse(m);
    if (r) {
      EXPECT_TRUE(r->validate());
    }
  }
}

TEST(TreeScan, ListsTreeSortedWithModesAndLinks) {
  test::ScratchDir d;
  test::write_file(d / "t/b.txt", "b");
  test::write_file(d / "t/a/x", "x");
  test::write_file(d / "t/a-b", "ab");
  std::filesystem::create_symlink("../b.txt", d / "t/a/link");
  std::filesystem::permissions(d / "t/b.txt", std::filesystem::perms(0600));
  auto t = scan_tree(d / "t");
  ASSERT_TRUE(t) << t.error().message();
  std::vector<std::string> paths;
  for (auto& e : t->entries) paths.push_back(e.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"a", "a-b", "a/link", "a/x", "b.txt"}));
  EXPECT_EQ(t->entries[2].type, EntryType::symlink);
  EXPECT_EQ(t->entries[2].link_target, "../b.txt");
  EXPECT_EQ(t->entries[4].mode, 0600u);
  EXPECT_EQ(t->entries[1].size, 2u);

  auto single = scan_tree(d / "t/b.txt");
  ASSERT_TRUE(single);
  EXPECT_TRUE(single->single_file);
  ASSERT_EQ(single->entries.size(), 1u);
}

TEST(TreeScan, RefusesSpecialFiles) {
  test::ScratchDir d;
  std::filesystem::create_directories(d / "t");
  ASSERT_EQ(::mkfifo((d / "t/fifo").c_str(), 0600), 0);
  auto t = scan_tree(d / "t");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), Errc::unsupported);
}

}  // namespace
}  // namespace mup::chunk
