#include "store/install_store.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>

#include "core/fs.hpp"
#include "delta/packer.hpp"
#include "test_util.hpp"

namespace mup::store {
namespace {

using test::ScratchDir;
namespace stdfs = std::filesystem;

// Makes a sample tree: version `v` changes one file and adds one.
void make_tree(const stdfs::path& dir, int v) {
  test::write_file(dir / "bin/app", test::random_bytes(300'000, 1));
  test::write_file(dir / "share/data.txt", test::text_bytes(200'000, 2));
  test::write_file(dir / "etc/config", "version=" + std::to_string(v) + "\n");
  if (v >= 2) test::write_file(dir / "share/new.txt", test::text_bytes(5000, 3));
  std::filesystem::create_symlink("../share/data.txt", dir / "bin/data");
}

// Installs tree version `v` (packed into the node's own piece cache) into `st`.
void install(InstallStore& st, const stdfs::path& src, const std::string& v,
             const std::vector<stdfs::path>& seeds, delta::UnpackStats* stats = nullptr) {
  delta::PackOptions po;
  po.threads = 2;
  auto idx = delta::pack(src, st.pieces(), po, nullptr);
  ASSERT_TRUE(idx) << idx.error().message();
  auto bytes = idx->serialize();
  ASSERT_TRUE(st.put_index("app", v, bytes));
  auto plan = delta::plan(*idx, bytes.size(), seeds, 2);
  ASSERT_TRUE(plan) << plan.error().message();
  auto s = st.stage("app", v, *idx, *plan, {});
  ASSERT_TRUE(s) << s.error().message();
  if (stats) *stats = *s;
}

class InstallStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    make_tree(dir_ / "src1", 1);
    make_tree(dir_ / "src2", 2);
    make_tree(dir_ / "src3", 3);
    auto st = InstallStore::open(dir_ / "node");
    ASSERT_TRUE(st);
    st_.emplace(std::move(*st));
  }
  ScratchDir dir_;
  std::optional<InstallStore> st_;
};

TEST_F(InstallStoreTest, StagesSideBySideAndSwitchesAtomically) {
  install(*st_, dir_ / "src1", "1.0.0", {});
  EXPECT_FALSE(st_->active("app"));
  ASSERT_TRUE(st_->activate("app", "1.0.0"));
  EXPECT_EQ(st_->active("app"), "1.0.0");
  EXPECT_FALSE(st_->previous("app"));

  delta::UnpackStats stats;
  install(*st_, dir_ / "src2", "2.0.0", {st_->version_dir("app", "1.0.0")}, &stats);
  // Staging costs what changed: the unchanged files are hard links into 1.0.0.
  EXPECT_EQ(stats.files_linked, 2u);
  struct stat a {
  }, b{};
  ASSERT_EQ(::stat((st_->version_dir("app", "1.0.0") / "bin/app").c_str(), &a), 0);
  ASSERT_EQ(::stat((st_->version_dir("app", "2.0.0") / "bin/app").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(st_->active("app"), "1.0.0");  // staging does not activate

  ASSERT_TRUE(st_->activate("app", "2.0.0"));
  EXPECT_EQ(st_->active("app"), "2.0.0");
  EXPECT_EQ(st_->previous("app"), "1.0.0");
  std::string why;
  EXPECT_TRUE(test::trees_equal(st_->component_dir("app") / "current", dir_ / "src2", &why)) << why;
  EXPECT_EQ(*st_->versions("app"), (std::vector<std::string>{"1.0.0", "2.0.0"}));
  EXPECT_TRUE(st_->verify("app", "1.0.0"));
  EXPECT_TRUE(st_->verify("app", "2.0.0"));
}

TEST_F(InstallStoreTest, ActivatingWhatIsNotInstalledIsRefused) {
  auto s = st_->activate("app", "9.9.9");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::not_found);
  EXPECT_FALSE(st_->active("app"));
}

TEST_F(InstallStoreTest, VerifyNamesTheChangedFile) {
  install(*st_, dir_ / "src1", "1.0.0", {});
  stdfs::path f = st_->version_dir("app", "1.0.0") / "etc/config";
  test::write_file(f, "version=X\n");
  auto s = st_->verify("app", "1.0.0");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("etc/config"), std::string::npos) << s.error().message();
  test::write_file(f, "version=1\n");
  EXPECT_TRUE(st_->verify("app", "1.0.0"));
  test::write_file(st_->version_dir("app", "1.0.0") / "extra", "x");
  s = st_->verify("app", "1.0.0");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("extra"), std::string::npos);
}

TEST_F(InstallStoreTest, GcKeepsActivePreviousAndPinned) {
  install(*st_, dir_ / "src1", "1.0.0", {});
  install(*st_, dir_ / "src2", "2.0.0", {st_->version_dir("app", "1.0.0")});
  install(*st_, dir_ / "src3", "3.0.0", {st_->version_dir("app", "2.0.0")});
  ASSERT_TRUE(st_->activate("app", "2.0.0"));
  ASSERT_TRUE(st_->activate("app", "3.0.0"));
  ASSERT_TRUE(st_->pin("app", "1.0.0"));
  auto r = st_->gc({.keep = 1});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->removed.empty());  // 3 active, 2 previous, 1 pinned
  EXPECT_FALSE(st_->remove_version("app", "2.0.0"));
  ASSERT_TRUE(st_->pin("app", std::nullopt));
  r = st_->gc({.keep = 1});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->removed.size(), 1u);
  EXPECT_EQ(r->removed[0].second, "1.0.0");
  EXPECT_EQ(*st_->versions("app"), (std::vector<std::string>{"2.0.0", "3.0.0"}));
  EXPECT_TRUE(st_->verify("app", "2.0.0"));  // its hard links survived 1.0.0's removal
  EXPECT_TRUE(st_->verify("app", "3.0.0"));
}

// The piece cache after installs: what an installed version is made of goes (its tree is
// the seed of the next install); pieces no installed version names belong to an install
// that did not finish and stay for its resume until they are old. --dry-run lists exactly
// what a real run removes, and removes nothing.
TEST_F(InstallStoreTest, GcDropsPiecesTheInstalledTreesHoldAndKeepsAnUnfinishedInstalls) {
  install(*st_, dir_ / "src1", "1.0.0", {});
  install(*st_, dir_ / "src2", "2.0.0", {st_->version_dir("app", "1.0.0")});
  ASSERT_TRUE(st_->activate("app", "2.0.0"));
  // An install that did not finish: a piece fetched for it, named by no installed index.
  const auto extra = test::random_bytes(70000, 9);
  ASSERT_TRUE(st_->pieces().put_chunk(sha256(extra), extra, 3));
  const std::string extra_rel =
      st_->pieces().chunk_path(sha256(extra)).lexically_relative(st_->pieces().root()).string();
  auto count_chunks = [&] {
    size_t n = 0;
    for (auto& e : stdfs::recursive_directory_iterator(st_->pieces().root() / "chunks"))
      n += e.is_regular_file() ? 1 : 0;
    return n;
  };
  const size_t before = count_chunks();
  ASSERT_GT(before, 2u);
  auto dry = st_->gc({.keep = 2, .dry_run = true});
  ASSERT_TRUE(dry) << dry.error().message();
  EXPECT_EQ(count_chunks(), before) << "a dry run removes nothing";
  EXPECT_EQ(dry->pieces.size(), before - 1);
  EXPECT_EQ(std::count(dry->pieces.begin(), dry->pieces.end(), extra_rel), 0);
  auto r = st_->gc({.keep = 2});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->pieces, dry->pieces);
  EXPECT_EQ(r->pieces_removed, before - 1);
  EXPECT_EQ(count_chunks(), 1u) << "only the unfinished install's piece";
  EXPECT_TRUE(st_->verify("app", "1.0.0"));
  EXPECT_TRUE(st_->verify("app", "2.0.0"));
  // The next install still works from the trees alone.
  install(*st_, dir_ / "src3", "3.0.0", {st_->version_dir("app", "2.0.0")});
  EXPECT_TRUE(st_->verify("app", "3.0.0"));
  // Once old enough, the unfinished install's pieces go too.
  auto old = st_->gc({.keep = 3, .unfinished_piece_age_s = 0});
  ASSERT_TRUE(old);
  EXPECT_EQ(std::count(old->pieces.begin(), old->pieces.end(), extra_rel), 1);
  EXPECT_EQ(count_chunks(), 0u);
  // And the fan-out directories they emptied (a node's file count stays flat).
  size_t dirs = 0;
  for (auto& e : stdfs::recursive_directory_iterator(st_->pieces().root() / "chunks"))
    dirs += e.is_directory() ? 1 : 0;
  EXPECT_EQ(dirs, 0u);
  // A later put makes its directory again.
  ASSERT_TRUE(st_->pieces().put_chunk(sha256(extra), extra, 3));
  EXPECT_TRUE(st_->pieces().has_chunk(sha256(extra)));
}

TEST_F(InstallStoreTest, RecoverRemovesTempsAndOrphanIndexes) {
  install(*st_, dir_ / "src1", "1.0.0", {});
  ASSERT_TRUE(
      st_->put_index("app", "2.0.0", fs::read_file(st_->index_path("app", "1.0.0")).value()));
  stdfs::path tmp = st_->component_dir("app") / ".2.0.0.mup-tmp.999999.0";
  stdfs::create_directories(tmp / "x");
  ASSERT_TRUE(st_->recover());
  EXPECT_FALSE(stdfs::exists(tmp));
  EXPECT_FALSE(stdfs::exists(st_->index_path("app", "2.0.0")));
  EXPECT_TRUE(st_->has_version("app", "1.0.0"));
}

}  // namespace
}  // namespace mup::store
