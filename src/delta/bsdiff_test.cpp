#include "delta/bsdiff.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include "core/bytes.hpp"
#include "core/zstd.hpp"
#include "test_util.hpp"

namespace mup::delta::bsdiff {
namespace {

using Bytes = std::vector<uint8_t>;

Result<Bytes> apply_all(std::span<const uint8_t> base, std::span<const uint8_t> patch,
                        uint64_t target_size, size_t* calls = nullptr) {
  Bytes out;
  auto st = apply(base, patch, target_size, [&](std::span<const uint8_t> b) -> Status {
    if (calls) ++*calls;
    out.insert(out.end(), b.begin(), b.end());
    return {};
  });
  if (!st) return tl::unexpected(st.error());
  return out;
}

void expect_round_trip(const Bytes& base, const Bytes& target, size_t* patch_size = nullptr) {
  auto patch = make(base, target, 3);
  ASSERT_TRUE(patch) << patch.error().message();
  if (patch_size) *patch_size = patch->size();
  auto out = apply_all(base, *patch, target.size());
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_TRUE(*out == target) << "round trip differs (sizes " << out->size() << " vs "
                              << target.size() << ")";
}

// Base with scattered byte edits, insertions and deletions, like a rebuilt binary.
Bytes edited(const Bytes& base, uint64_t seed) {
  Bytes out;
  auto noise = test::random_bytes(4096, seed);
  size_t ni = 0;
  auto r = [&] { return noise[ni++ % noise.size()]; };
  size_t i = 0;
  while (i < base.size()) {
    size_t run = std::min(base.size() - i, size_t{500} + r() * 16);
    out.insert(out.end(), base.begin() + i, base.begin() + i + run);
    i += run;
    switch (r() % 4) {
      case 0:  // overwrite a few bytes
        for (int k = 0; k < 3 && !out.empty(); ++k)
          out[out.size() - 1 - k * 7 % out.size()] ^= r() | 1;
        break;
      case 1:  // insert
        for (int k = r() % 40; k > 0; --k) out.push_back(r());
        break;
      case 2:  // delete
        i += r() % 60;
        break;
      default:  // shift a small run by a constant (relocated pointers)
        for (size_t k = 0; k < 32 && k < out.size(); k += 8) out[out.size() - 1 - k] += 4;
    }
  }
  return out;
}

TEST(Bsdiff, RoundTripRandom) {
  expect_round_trip(test::random_bytes(100000, 1), test::random_bytes(120000, 2));
}

TEST(Bsdiff, RoundTripSimilarIsSmall) {
  Bytes base = test::random_bytes(1 << 20, 3);
  Bytes target = edited(base, 4);
  size_t patch_size = 0;
  expect_round_trip(base, target, &patch_size);
  EXPECT_LT(patch_size, target.size() / 10);
}

TEST(Bsdiff, RoundTripText) {
  Bytes base = test::text_bytes(300000, 5);
  expect_round_trip(base, edited(base, 6));
}

// Blocks moved around: the scan often finds a match right where the previous one ended,
// which yields steps that only move the base cursor.
TEST(Bsdiff, RoundTripMovedBlocks) {
  Bytes base = test::random_bytes(200000, 21);
  Bytes target;
  for (size_t start : {150000, 7, 90000, 20000, 150000, 3})
    target.insert(target.end(), base.begin() + start, base.begin() + start + 30000);
  size_t patch_size = 0;
  expect_round_trip(base, target, &patch_size);
  EXPECT_LT(patch_size, 2000u);
}

TEST(Bsdiff, EmptyInputs) {
  Bytes some = test::random_bytes(1000, 7);
  expect_round_trip({}, {});
  expect_round_trip({}, some);
  expect_round_trip(some, {});
  expect_round_trip({1}, {1});
  expect_round_trip({1}, {2});
}

TEST(Bsdiff, IdenticalInputsCostAlmostNothing) {
  Bytes base = test::random_bytes(500000, 8);
  size_t patch_size = 0;
  expect_round_trip(base, base, &patch_size);
  EXPECT_LT(patch_size, 200u);
}

TEST(Bsdiff, OutputComesInBlocks) {
  Bytes base = test::random_bytes(3 << 20, 9);
  Bytes target = edited(base, 10);
  auto patch = make(base, target, 1);
  ASSERT_TRUE(patch);
  size_t calls = 0;
  auto out = apply_all(base, *patch, target.size(), &calls);
  ASSERT_TRUE(out);
  EXPECT_TRUE(*out == target);
  EXPECT_GE(calls, 3u);
}

// Long runs and short periods drive the classic scan loop quadratic; this must stay fast.
TEST(Bsdiff, RepetitiveInputStaysFast) {
  Bytes base(8 << 20, 0);
  Bytes target(8 << 20, 0);
  for (size_t i = 0; i < base.size(); i += 4096) base[i] = 1;      // zero runs with marks
  for (size_t i = 0; i < target.size(); i += 4099) target[i] = 1;  // slightly off period
  for (size_t i = 0; i < target.size() / 2; ++i) target[i] = static_cast<uint8_t>(i % 3);
  auto t0 = std::chrono::steady_clock::now();
  size_t patch_size = 0;
  expect_round_trip(base, target, &patch_size);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 20.0);
  EXPECT_LT(patch_size, 100000u);
}

TEST(Bsdiff, SinkErrorStopsApply) {
  Bytes base = test::random_bytes(10000, 11);
  auto patch = make(base, base, 3);
  ASSERT_TRUE(patch);
  auto st = apply(base, *patch, base.size(),
                  [](std::span<const uint8_t>) -> Status { return fail(Errc::no_space, "full"); });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Errc::no_space);
}

TEST(Bsdiff, RejectsWrongTargetSize) {
  Bytes base = test::random_bytes(10000, 12);
  Bytes target = edited(base, 13);
  auto patch = make(base, target, 3);
  ASSERT_TRUE(patch);
  for (uint64_t size : {uint64_t{0}, uint64_t{target.size() - 1}, uint64_t{target.size() + 1}}) {
    auto out = apply_all(base, *patch, size);
    ASSERT_FALSE(out) << size;
    EXPECT_EQ(out.error().code(), Errc::corrupt);
  }
}

TEST(Bsdiff, RejectsWrongBase) {
  Bytes base = test::random_bytes(10000, 14);
  Bytes target = edited(base, 15);
  auto patch = make(base, target, 3);
  ASSERT_TRUE(patch);
  Bytes short_base(base.begin(), base.begin() + 100);
  auto out = apply_all(short_base, *patch, target.size());
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code(), Errc::corrupt);
}

TEST(Bsdiff, RejectsTruncatedPatches) {
  Bytes base = test::random_bytes(20000, 16);
  Bytes target = edited(base, 17);
  auto patch = make(base, target, 3);
  ASSERT_TRUE(patch);
  for (size_t n = 0; n < patch->size(); n += std::max<size_t>(1, patch->size() / 200)) {
    Bytes cut(patch->begin(), patch->begin() + n);
    auto out = apply_all(base, cut, target.size());
    ASSERT_FALSE(out) << "accepted a patch cut at " << n;
    EXPECT_EQ(out.error().code(), Errc::corrupt);
  }
  Bytes longer = *patch;
  longer.push_back(0);
  auto out = apply_all(base, longer, target.size());
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code(), Errc::corrupt);
}

TEST(Bsdiff, FlippedBytesNeverCrash) {
  Bytes base = test::random_bytes(20000, 18);
  Bytes target = edited(base, 19);
  auto patch = make(base, target, 3);
  ASSERT_TRUE(patch);
  auto noise = test::random_bytes(4000, 20);
  int rejected = 0;
  for (size_t k = 0; k + 1 < noise.size(); k += 2) {
    Bytes bad = *patch;
    size_t at = (size_t{noise[k]} << 8 | noise[k + 1]) % bad.size();
    bad[at] ^= static_cast<uint8_t>(1u << (k % 8));
    auto out = apply_all(base, bad, target.size());
    if (!out) {
      EXPECT_EQ(out.error().code(), Errc::corrupt) << out.error().message();
      ++rejected;
    } else {
      // A flip in diff or extra payload bytes can decode fine; the output must keep its size.
      EXPECT_EQ(out->size(), target.size());
    }
  }
  EXPECT_GT(rejected, 0);
}

// Hand-built patches with hostile control triples: each must be refused as corrupt.
TEST(Bsdiff, RejectsHostileControlStreams) {
  Bytes base(100, 7);
  auto build = [](const Bytes& ctrl, const Bytes& diff, const Bytes& extra, uint64_t size) {
    ByteWriter w;
    w.bytes(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("MBD1"), 4));
    w.varint(size);
    auto c = *zstd::compress(ctrl, 1), d = *zstd::compress(diff, 1), e = *zstd::compress(extra, 1);
    w.varint(c.size());
    w.varint(d.size());
    w.varint(e.size());
    w.bytes(c);
    w.bytes(d);
    w.bytes(e);
    return w.take();
  };
  // A well-formed one first, so the builder is known to be right: 10 from base, 2 extra.
  {
    auto ok = apply_all(base, build({10, 2, 0}, Bytes(10, 1), {5, 6}, 12), 12);
    ASSERT_TRUE(ok) << ok.error().message();
    EXPECT_EQ(*ok, (Bytes{8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 5, 6}));
  }
  struct Case {
    const char* what;
    Bytes ctrl, diff, extra;
    uint64_t size;
  };
  const Case cases[] = {
      {"diff run past the base end", {0x80, 0x01, 0, 0}, Bytes(128, 0), {}, 128},   // add=128 > 100
      {"seek before the base start", {10, 0, 0, 10, 0, 21}, Bytes(20, 0), {}, 20},  // seek -11
      {"seek past the base end", {10, 0, 202, 1}, Bytes(10, 0), {}, 10},            // seek +101
      {"add past the base end after a seek", {10, 0, 182, 1}, Bytes(10, 0), {}, 10},  // +91
      {"empty triple", {0, 0, 0, 10, 0, 0}, Bytes(10, 0), {}, 10},
      {"triple overruns target", {10, 5, 0}, Bytes(10, 0), Bytes(5, 0), 12},
      {"control ends early", {10, 0, 0}, Bytes(20, 0), {}, 20},
      {"diff stream short", {10, 0, 0}, Bytes(9, 0), {}, 10},
      {"extra stream short", {0, 10, 0}, {}, Bytes(9, 0), 10},
      {"diff stream long", {10, 0, 0}, Bytes(11, 0), {}, 10},
      {"extra stream long", {0, 10, 0}, {}, Bytes(11, 0), 10},
      {"control stream long", {10, 0, 0, 1}, Bytes(10, 0), {}, 10},
      {"bad varint",
       {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
       {},
       {},
       10},
  };
  for (const auto& c : cases) {
    auto out = apply_all(base, build(c.ctrl, c.diff, c.extra, c.size), c.size);
    ASSERT_FALSE(out) << c.what;
    EXPECT_EQ(out.error().code(), Errc::corrupt) << c.what;
  }
}

}  // namespace
}  // namespace mup::delta::bsdiff
