// End to end through the library: pack v1, pack v2 against v1, plan, unpack, compare.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "chunk/chunk_store.hpp"
#include "delta/packer.hpp"
#include "delta/piece.hpp"
#include "delta/planner.hpp"
#include "delta/rebuild.hpp"
#include "test_util.hpp"

namespace mup::delta {
namespace {

namespace stdfs = std::filesystem;
using chunk::ChunkStore;
using chunk::TreeIndex;

// v1: a "binary", text, an empty file, a symlink, a read-only dir; v2 edits, adds, removes.
void make_versions(const stdfs::path& v1, const stdfs::path& v2) {
  auto bin = test::random_bytes(600000, 11);
  auto text = test::text_bytes(300000, 12);
  test::write_file(v1 / "bin/app", bin);
  test::write_file(v1 / "etc/app.conf", text);
  test::write_file(v1 / "etc/empty", std::string());
  test::write_file(v1 / "share/same.dat", test::random_bytes(200000, 13));
  test::write_file(v1 / "share/old", std::string("going away"));
  stdfs::create_symlink("../bin/app", v1 / "share/app-link");
  stdfs::permissions(v1 / "bin/app", stdfs::perms(0755));
  stdfs::copy(v1, v2, stdfs::copy_options::recursive | stdfs::copy_options::copy_symlinks);
  // A rebuilt binary: a patched region and growth.
  for (size_t i = 0; i < 3000; ++i) bin[250000 + i] ^= 0x11;
  auto extra = test::random_bytes(5000, 14);
  bin.insert(bin.end(), extra.begin(), extra.end());
  test::write_file(v2 / "bin/app", bin);
  stdfs::permissions(v2 / "bin/app", stdfs::perms(0755));
  text[1000] = 'X';
  text.insert(text.begin() + 5000, 'Y');
  test::write_file(v2 / "etc/app.conf", text);
  stdfs::remove(v2 / "share/old");
  test::write_file(v2 / "share/new", test::random_bytes(70000, 15));
  test::write_file(v2 / "ro/file", std::string("read only dir"));
  stdfs::permissions(v2 / "ro", stdfs::perms(0555));
}

class Engine : public ::testing::Test {
 protected:
  void SetUp() override {
    make_versions(d_ / "v1", d_ / "v2");
    store_.emplace(*ChunkStore::open(d_ / "store", true));
    PackOptions o;
    o.params = {1024, 4096, 16384};
    auto i1 = pack(d_ / "v1", *store_, o);
    ASSERT_TRUE(i1) << i1.error().message();
    v1_ = *i1;
    o.bases.push_back({v1_, d_ / "v1"});
    auto i2 = pack(d_ / "v2", *store_, o, &stats_);
    ASSERT_TRUE(i2) << i2.error().message();
    v2_ = *i2;
  }
  Result<UnpackStats> unpack_to(const stdfs::path& out, std::vector<stdfs::path> seeds) {
    auto p = plan(v2_, 1000, seeds);
    if (!p) return tl::unexpected(p.error());
    return unpack(v2_, *p, *store_, out, {});
  }
  void expect_nothing_left(const stdfs::path& out) {
    EXPECT_FALSE(stdfs::exists(out));
    for (auto& e : stdfs::directory_iterator(out.parent_path()))
      EXPECT_EQ(e.path().filename().string().find("mup-tmp"), std::string::npos) << e.path();
  }
  test::ScratchDir d_;
  std::optional<ChunkStore> store_;
  TreeIndex v1_, v2_;
  PackStats stats_;
};

TEST_F(Engine, IncrementalPlanFetchesLessThanFull) {
  EXPECT_GE(stats_.deltas, 1u) << "the edited binary and config must get deltas";
  auto p = plan(v2_, 1000, {d_ / "v1"});
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_LT(p->bytes_to_fetch * 5, p->full_bytes)
      << "fetch " << p->bytes_to_fetch << " of " << p->full_bytes;
  EXPECT_EQ(p->files_reused, 2u);  // share/same.dat and etc/empty
  EXPECT_GE(p->files_delta, 2u);
  auto cold = plan(v2_, 1000, std::vector<stdfs::path>{});
  ASSERT_TRUE(cold);
  EXPECT_EQ(cold->bytes_to_fetch, cold->full_bytes);
}

TEST_F(Engine, UnpackWithSeedIsByteIdentical) {
  auto st = unpack_to(d_ / "out", {d_ / "v1"});
  ASSERT_TRUE(st) << st.error().message();
  std::string why;
  EXPECT_TRUE(test::trees_equal(d_ / "v2", d_ / "out", &why)) << why;
  EXPECT_GE(st->files_linked, 1u);
}

TEST_F(Engine, UnpackWithoutSeedIsByteIdentical) {
  auto st = unpack_to(d_ / "out", {});
  ASSERT_TRUE(st) << st.error().message();
  std::string why;
  EXPECT_TRUE(test::trees_equal(d_ / "v2", d_ / "out", &why)) << why;
}

TEST_F(Engine, SingleFileTree) {
  auto w1 = test::random_bytes(300000, 21), w2 = w1;
  for (size_t i = 0; i < w2.size(); i += 997) w2[i] ^= 1;
  test::write_file(d_ / "m1", w1);
  test::write_file(d_ / "m2", w2);
  PackOptions o;
  auto i1 = pack(d_ / "m1", *store_, o);
  ASSERT_TRUE(i1);
  EXPECT_TRUE(i1->single_file);
  o.bases.push_back({*i1, d_ / "m1"});
  auto i2 = pack(d_ / "m2", *store_, o);
  ASSERT_TRUE(i2);
  auto p = plan(*i2, 0, {d_ / "m1"});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->files_delta, 1u);
  auto st = unpack(*i2, *p, *store_, d_ / "m2.out", {});
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(test::read_file(d_ / "m2.out"), w2);
}

TEST_F(Engine, CorruptChunkIsNamedAndNothingIsLeft) {
  const auto& e = *v2_.find("share/new");
  auto path = store_->chunk_path(e.chunks[0].id);
  auto z = test::read_file(path);
  z[z.size() / 2] ^= 1;
  test::write_file(path, z);
  auto st = unpack_to(d_ / "out", {d_ / "v1"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::corrupt);
  EXPECT_NE(st.error().message().find(e.chunks[0].id.hex()), std::string::npos)
      << st.error().message();
  expect_nothing_left(d_ / "out");
}

TEST_F(Engine, CorruptOrTruncatedDeltaIsRefused) {
  const auto& e = *v2_.find("bin/app");
  ASSERT_FALSE(e.deltas.empty());
  auto path = store_->blob_path(piece_rel_path(e.deltas[0].base, e.digest));
  auto piece = test::read_file(path);
  for (int variant = 0; variant < 2; ++variant) {
    auto bad = piece;
    if (variant == 0) bad[bad.size() / 2] ^= 0x80;
    if (variant == 1) bad.resize(bad.size() - 1);
    test::write_file(path, bad);
    auto st = unpack_to(d_ / "out", {d_ / "v1"});
    ASSERT_FALSE(st) << "variant " << variant;
    EXPECT_NE(st.error().message().find("bin/app"), std::string::npos) << st.error().message();
    expect_nothing_left(d_ / "out");
  }
}

TEST_F(Engine, SeedChangedAfterPlanningIsCaught) {
  auto p = plan(v2_, 0, {d_ / "v1"});
  ASSERT_TRUE(p);
  test::write_file(d_ / "v1/bin/app", test::random_bytes(600000, 99));  // base of the delta
  auto st = unpack(v2_, *p, *store_, d_ / "out", {.link = false});
  ASSERT_FALSE(st);
  expect_nothing_left(d_ / "out");
}

TEST_F(Engine, RefusesExistingDestination) {
  stdfs::create_directories(d_ / "out");
  auto st = unpack_to(d_ / "out", {d_ / "v1"});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::already_exists);
}

TEST_F(Engine, BaseTreeThatDoesNotMatchItsIndexIsRefused) {
  test::write_file(d_ / "v1/bin/app", test::random_bytes(600000, 98));
  PackOptions o;
  o.params = {1024, 4096, 16384};
  o.bases.push_back({v1_, d_ / "v1"});
  auto r = pack(d_ / "v2", *store_, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("does not match its base index"), std::string::npos);
}

TEST_F(Engine, PackIsDeterministic) {
  ChunkStore other = *ChunkStore::open(d_ / "store2", true);
  PackOptions o;
  o.params = {1024, 4096, 16384};
  auto again = pack(d_ / "v1", other, o);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->serialize(), v1_.serialize());
}

}  // namespace
}  // namespace mup::delta
