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
    auto spans = *bundle_spans(*segs, fx.pieces);
    auto st = read_bundle_segment(
        *bytes, seg, spans[&seg - segs->data()], [&](const PieceRef& p, auto b) -> Status {
          EXPECT_EQ(p.rel_path, fx.pieces[n].rel_path);
          EXPECT_EQ(std::vector<uint8_t>(b.begin(), b.end()), fx.stored[n]);
          EXPECT_TRUE(verify_piece(fx.pieces[n], b));
          ++n;
          return {};
        });
    EXPECT_TRUE(st) << st.error().message();
  }
  EXPECT_EQ(n, fx.pieces.size());
}

// The signed size and SHA-256 come first; a segment whose header names another list of
// pieces (a publisher whose planner chose otherwise) is refused before any piece is handed on.
TEST(Bundle, AnAlteredSegmentOrAnotherListIsRefused) {
  Fixture fx(3);
  auto segs = *write_bundle(fx.pieces, fx.store);
  ASSERT_EQ(segs.size(), 1u);
  auto bytes = *fx.store.get_blob(bundle_segment_rel_path(segs[0].sha256), segs[0].size);
  int handed = 0;
  auto sink = [&](const PieceRef&, std::span<const uint8_t>) -> Status {
    ++handed;
    return {};
  };
  auto flipped = bytes;
  flipped.back() ^= 1;
  auto r = read_bundle_segment(flipped, segs[0], fx.pieces, sink);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("does not match its signed size"), std::string::npos);

  auto other = fx.pieces;
  std::swap(other[0], other[1]);
  r = read_bundle_segment(bytes, segs[0], other, sink);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("holds other pieces"), std::string::npos);
  EXPECT_FALSE(read_bundle_segment(bytes, segs[0], std::span(fx.pieces).first(2), sink));
  EXPECT_FALSE(bundle_spans(segs, std::span(fx.pieces).first(2)));
  EXPECT_EQ(handed, 0);
  EXPECT_TRUE(read_bundle_segment(bytes, segs[0], fx.pieces, sink));
  EXPECT_EQ(handed, 3);
}

}  // namespace
}  // namespace mup::package
