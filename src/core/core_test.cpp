#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

#include "core/bytes.hpp"
#include "core/fs.hpp"
#include "core/parallel.hpp"
#include "core/sha256.hpp"
#include "core/zstd.hpp"
#include "test_util.hpp"

namespace mup {
namespace {

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256({}).hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256(as_bytes("abc")).hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.update(as_bytes("a"));
  h.update(as_bytes("bc"));
  EXPECT_EQ(h.finish(), sha256(as_bytes("abc")));
  EXPECT_EQ(h.finish(), sha256({})) << "finish() resets the hasher";
}

TEST(Digest, HexRoundTripAndRejects) {
  Digest d = sha256(as_bytes("x"));
  auto back = Digest::from_hex(d.hex());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, d);
  EXPECT_FALSE(Digest::from_hex("abc"));
  EXPECT_FALSE(Digest::from_hex(std::string(64, 'g')));
}

TEST(ByteReader, BoundsAndVarints) {
  ByteWriter w;
  w.varint(0);
  w.varint(300);
  w.varint(UINT64_MAX);
  w.str("hello");
  auto buf = w.take();
  ByteReader r(buf);
  EXPECT_EQ(r.varint(), 0u);
  EXPECT_EQ(r.varint(), 300u);
  EXPECT_EQ(r.varint(), UINT64_MAX);
  EXPECT_EQ(r.str(10), "hello");
  EXPECT_TRUE(r.at_end());
  EXPECT_FALSE(r.failed());
  r.u8();
  EXPECT_TRUE(r.failed()) << "reading past the end must fail, not crash";

  ByteReader r2(buf);
  r2.varint();
  r2.varint();
  r2.varint();
  r2.str(3);  // longer than allowed
  EXPECT_TRUE(r2.failed());

  std::vector<uint8_t> endless(20, 0xff);  // a varint that never ends
  ByteReader r3(endless);
  r3.varint();
  EXPECT_TRUE(r3.failed());
}

TEST(Zstd, RoundTripAndBounds) {
  auto data = test::text_bytes(100000, 1);
  auto z = zstd::compress(data, 3);
  ASSERT_TRUE(z);
  EXPECT_LT(z->size(), data.size());
  auto back = zstd::decompress(*z, data.size());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, data);

  auto small = zstd::decompress(*z, data.size() - 1);
  ASSERT_FALSE(small) << "a frame larger than the stated size must be refused";
  EXPECT_EQ(small.error().code(), Errc::corrupt);

  std::vector<uint8_t> truncated(z->begin(), z->begin() + static_cast<long>(z->size() / 2));
  auto t = zstd::decompress(truncated, data.size());
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), Errc::corrupt);

  auto garbage = zstd::decompress(test::random_bytes(100, 2), 1000);
  EXPECT_FALSE(garbage);
}

TEST(Zstd, PrefixDeltaNeedsTheSamePrefix) {
  auto base = test::random_bytes(200000, 3);
  auto target = base;
  target[1000] ^= 1;
  auto z = zstd::compress_with_prefix(target, base, 19);
  ASSERT_TRUE(z);
  EXPECT_LT(z->size(), 1000u);
  auto back = zstd::decompress(*z, target.size(), base);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, target);
}

TEST(Fs, AtomicWriteReplacesAndLeavesNoTemp) {
  test::ScratchDir dir;
  auto p = dir / "file";
  ASSERT_TRUE(fs::write_file_atomic(p, as_bytes("one")));
  ASSERT_TRUE(fs::write_file_atomic(p, as_bytes("two"), 0600));
  EXPECT_EQ(test::read_file(p), std::vector<uint8_t>({'t', 'w', 'o'}));
  struct stat st {};
  ::stat(p.c_str(), &st);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) (void)e, ++n;
  EXPECT_EQ(n, 1u);
  auto missing = fs::read_file(dir / "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::not_found);
}

TEST(Fs, ReadFileRefusesOversize) {
  test::ScratchDir dir;
  test::write_file(dir / "f", std::string(100, 'a'));
  auto r = fs::read_file(dir / "f", 10);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
}

TEST(Fs, TempDirIsRemovedAndStaleOnesSwept) {
  test::ScratchDir dir;
  auto final_path = dir / "out";
  std::filesystem::path kept;
  {
    auto t = fs::TempDir::create(final_path);
    ASSERT_TRUE(t);
    kept = t->path();
    EXPECT_TRUE(std::filesystem::is_directory(kept));
  }
  EXPECT_FALSE(std::filesystem::exists(kept));
  // A temp dir of a process that no longer runs (pid 2^22-1 is above any default pid_max).
  auto stale = dir / ".out.mup-tmp.4194303.0";
  std::filesystem::create_directories(stale / "sub");
  auto mine = dir / (".out.mup-tmp." + std::to_string(::getpid()) + ".99");
  std::filesystem::create_directories(mine);
  fs::sweep_stale_temps(final_path);
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(mine)) << "a live process's temp dir must be left alone";
}

TEST(Parallel, RunsEveryItemAndReportsLowestError) {
  std::atomic<int> sum{0};
  parallel_for(1000, 4, [&](size_t i) { sum += static_cast<int>(i); });
  EXPECT_EQ(sum, 999 * 1000 / 2);
  auto s = try_parallel_for(100, 1, [&](size_t i) -> Status {
    if (i == 7 || i == 50) return fail(Errc::io, "item " + std::to_string(i));
    return {};
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "item 7");
}

TEST(Error, ContextPrepends) {
  Error e(Errc::corrupt, "bad chunk");
  EXPECT_EQ(e.context("while unpacking").message(), "while unpacking: bad chunk");
  EXPECT_EQ(errc_name(e.code()), "corrupt");
}

}  // namespace
}  // namespace mup
