#include "package/bundle.hpp"

#include <gtest/gtest.h>

#include "core/bytes.hpp"
#include "test_util.hpp"

namespace mup::package {
namespace {

struct Fixture {
  test::ScratchDir dir;
  chunk::ChunkStore store = *chunk::ChunkStore::open(dir / "s", true);
  std::vector<PieceRef> pieces;
  std::vector<std::vector<uint8_t>> stored;

  explicit Fixture(int n) {
    for (int i = 0; i < n; ++i) {
      auto plain = test::text_bytes(3000 + 100 * i, static_cast<uint64_t>(i));
      chunk::ChunkRef c{sha256(plain), static_cast<uint32_t>(plain.size()), 0};
      c.stored_size = static_cast<uint32_t>(*store.put_chunk(c.id, plain, 3));
      pieces.push_back(chunk_piece(c));
      stored.push_back(*store.get_blob(pieces.back().rel_path, c.stored_size));
    }
  }
};

TEST(Bundle, SegmentsHoldThePiecesAsStoredInOrder) {
  Fixture fx(12);
  auto segs = write_bundle(fx.pieces, fx.store, 8000);
  ASSERT_TRUE(segs) << segs.error().message();
  ASSERT_GE(segs->size(), 2u);
  size_t n = 0;
  for (const auto& seg : *segs) {
    auto bytes = fx.store.get_blob(bundle_segment_rel_path(seg.sha256), seg.size);
    ASSERT_TRUE(bytes);
    auto st = read_bundle_segment(*bytes, seg, [&](const std::string& rel, auto b) -> Status {
      EXPECT_EQ(rel, fx.pieces[n].rel_path);
      EXPECT_EQ(std::vector<uint8_t>(b.begin(), b.end()), fx.stored[n]);
      EXPECT_TRUE(verify_piece(fx.pieces[n], b));
      ++n;
      return {};
    });
    EXPECT_TRUE(st) << st.error().message();
  }
  EXPECT_EQ(n, fx.pieces.size());
}

// The signed size and SHA-256 come first; a header that does not describe the segment's bytes
// (a publisher's bug or key) is refused before any piece is handed on.
TEST(Bundle, AnAlteredSegmentOrALyingHeaderIsRefused) {
  Fixture fx(3);
  auto segs = *write_bundle(fx.pieces, fx.store);
  ASSERT_EQ(segs.size(), 1u);
  auto bytes = *fx.store.get_blob(bundle_segment_rel_path(segs[0].sha256), segs[0].size);
  int handed = 0;
  auto sink = [&](const std::string&, std::span<const uint8_t>) -> Status {
    ++handed;
    return {};
  };
  auto flipped = bytes;
  flipped.back() ^= 1;
  auto r = read_bundle_segment(flipped, segs[0], sink);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("does not match its signed size"), std::string::npos);

  auto lying = [&](uint64_t count, uint64_t size0) {
    ByteWriter w;
    for (char ch : std::string("MUPB\x01")) w.u8(static_cast<uint8_t>(ch));
    w.varint(count);
    w.str("chunks/aa/x");
    w.varint(size0);
    for (int i = 0; i < 100; ++i) w.u8(7);
    auto b = w.take();
    chunk::PackSegment seg{static_cast<uint32_t>(count), b.size(), sha256(b)};
    return read_bundle_segment(b, seg, sink);
  };
  EXPECT_TRUE(lying(1, 100));
  EXPECT_FALSE(lying(1, 99)) << "bytes left over";
  EXPECT_FALSE(lying(1, 101)) << "a piece longer than the segment";
  EXPECT_FALSE(lying(1, uint64_t{1} << 62));
  EXPECT_FALSE(lying(2, 100)) << "more pieces than the header holds";
  EXPECT_EQ(handed, 1) << "only the honest segment's piece";
}

}  // namespace
}  // namespace mup::package
