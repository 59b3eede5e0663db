#include "delta/piece.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/zstd.hpp"
#include "test_util.hpp"

namespace mup::delta {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes piece_of(DeltaKind kind, const Bytes& payload) {
  Bytes p(5 + payload.size());
  const uint8_t header[5] = {'M', 'U', 'P', 'D', static_cast<uint8_t>(kind)};
  std::copy(header, header + 5, p.begin());
  std::copy(payload.begin(), payload.end(), p.begin() + 5);
  return p;
}

TEST(Piece, MakeBestRoundTrips) {
  auto base = test::random_bytes(300000, 1);
  auto target = base;
  for (size_t i = 0; i < target.size(); i += 5000) target[i] ^= 0x5a;
  auto p = make_best(base, target, 19);
  ASSERT_TRUE(p && p->has_value());
  EXPECT_LT((*p)->bytes.size(), target.size() / 10);
  Bytes out;
  ASSERT_TRUE(apply_piece((*p)->bytes, static_cast<uint8_t>((*p)->kind), base, target.size(),
                          [&](std::span<const uint8_t> b) -> Status {
                            out.insert(out.end(), b.begin(), b.end());
                            return {};
                          }));
  EXPECT_EQ(out, target);
}

// Issue 11 item 5: a zstd prefix delta for a target the index says is 1 TB used to be
// decompressed whole in memory (std::bad_alloc aborted the process). It is streamed now: the
// sink sees pieces of at most 1 MiB, a sink error (a full disk) stops it, and a frame shorter
// than the stated size is refused.
TEST(Piece, AZstdDeltaForA1TbTargetStreamsInBoundedPieces) {
  const uint64_t kTb = uint64_t{1} << 40;
  auto base = test::random_bytes(4096, 2);
  Bytes zeros(64 << 20, 0);
  auto z = zstd::compress_with_prefix(zeros, base, 1);
  ASSERT_TRUE(z);
  Bytes piece = piece_of(DeltaKind::zstd_patch, *z);
  uint64_t seen = 0;
  size_t largest = 0;
  auto full = apply_piece(piece, static_cast<uint8_t>(DeltaKind::zstd_patch), base, kTb,
                          [&](std::span<const uint8_t> b) -> Status {
                            seen += b.size();
                            largest = std::max(largest, b.size());
                            if (seen > (uint64_t{8} << 20))
                              return fail(Errc::no_space, "disk full (test)");
                            return {};
                          });
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), Errc::no_space) << full.error().message();
  EXPECT_LE(seen, uint64_t{9} << 20) << "stopped at the sink's first error";
  EXPECT_LE(largest, size_t{1} << 20);

  uint64_t all = 0;
  auto short_frame = apply_piece(piece, static_cast<uint8_t>(DeltaKind::zstd_patch), base, kTb,
                                 [&](std::span<const uint8_t> b) -> Status {
                                   all += b.size();
                                   return {};
                                 });
  ASSERT_FALSE(short_frame);
  EXPECT_EQ(short_frame.error().code(), Errc::corrupt);
  EXPECT_EQ(all, zeros.size());
  EXPECT_NE(short_frame.error().message().find("wrong size"), std::string::npos)
      << short_frame.error().message();
}

TEST(Piece, AZstdDeltaLongerThanItsTargetIsRefused) {
  auto base = test::random_bytes(4096, 3);
  Bytes target(3 << 20, 7);
  auto z = zstd::compress_with_prefix(target, base, 1);
  ASSERT_TRUE(z);
  uint64_t seen = 0;
  auto r =
      apply_piece(piece_of(DeltaKind::zstd_patch, *z), static_cast<uint8_t>(DeltaKind::zstd_patch),
                  base, 1 << 20, [&](std::span<const uint8_t> b) -> Status {
                    seen += b.size();
                    return {};
                  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
  EXPECT_LE(seen, uint64_t{1} << 20);
}

TEST(Piece, WrongKindOrMagicIsRefused) {
  auto base = test::random_bytes(1000, 4);
  auto z = zstd::compress_with_prefix(base, base, 3);
  ASSERT_TRUE(z);
  auto sink = [](std::span<const uint8_t>) -> Status { return {}; };
  Bytes p = piece_of(DeltaKind::zstd_patch, *z);
  auto wrong_kind = apply_piece(p, static_cast<uint8_t>(DeltaKind::bsdiff), base, 1000, sink);
  ASSERT_FALSE(wrong_kind);
  EXPECT_NE(wrong_kind.error().message().find("kind zstd-patch"), std::string::npos);
  p[0] = 'X';
  EXPECT_FALSE(apply_piece(p, static_cast<uint8_t>(DeltaKind::zstd_patch), base, 1000, sink));
}

}  // namespace
}  // namespace mup::delta
