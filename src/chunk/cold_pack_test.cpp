#include "chunk/cold_pack.hpp"

#include <gtest/gtest.h>

#include "core/zstd.hpp"
#include "test_util.hpp"

namespace mup::chunk {
namespace {

// A store holding `files` text files of `chunks_per_file` chunks each, every chunk
// compressed alone (as a publish stores them), the last file repeating the first's chunks,
// and the index naming them.
struct Fixture {
  test::ScratchDir dir;
  ChunkStore store = *ChunkStore::open(dir / "s", true);
  TreeIndex index;
  uint64_t one_by_one = 0;  // stored bytes of the unique chunks
  std::vector<std::vector<uint8_t>> plain;

  Fixture(int files, int chunks_per_file) {
    std::vector<ChunkRef> first;
    for (int f = 0; f < files; ++f) {
      Entry e;
      e.path = "f" + std::to_string(f);
      for (int c = 0; c < chunks_per_file; ++c) {
        auto bytes = test::text_bytes(20000 + 37 * c, static_cast<uint64_t>(f * 100 + c));
        ChunkRef r{sha256(bytes), static_cast<uint32_t>(bytes.size()), 0};
        r.stored_size = static_cast<uint32_t>(*store.put_chunk(r.id, bytes, 3));
        one_by_one += r.stored_size;
        plain.push_back(std::move(bytes));
        e.chunks.push_back(r);
        e.size += r.size;
      }
      if (f == 0) first = e.chunks;
      index.entries.push_back(std::move(e));
    }
    Entry again;
    again.path = "zz-copy";
    again.chunks = first;
    index.entries.push_back(std::move(again));
  }
};

TEST(ColdPack, SegmentsHoldEveryChunkOnceInIndexOrderAndBeatChunksOneByOne) {
  Fixture fx(6, 4);
  auto order = pack_order(fx.index);
  ASSERT_EQ(order.size(), 24u) << "the copied file's chunks are packed once";
  ColdPackOptions o;
  o.segment_bytes = 100000;  // several segments
  o.level = 9;
  auto segs = write_cold_pack(fx.index, fx.store, o);
  ASSERT_TRUE(segs) << segs.error().message();
  ASSERT_GE(segs->size(), 3u);
  uint64_t packed = 0;
  for (const auto& s : *segs) packed += s.size;
  EXPECT_LT(packed, fx.one_by_one) << "solid segments share their windows";
  auto spans = segment_spans(*segs, order);
  ASSERT_TRUE(spans) << spans.error().message();
  size_t n = 0;
  for (size_t s = 0; s < segs->size(); ++s) {
    const PackSegment& seg = (*segs)[s];
    auto bytes = fx.store.get_blob(pack_segment_rel_path(seg.sha256), seg.size);
    ASSERT_TRUE(bytes);
    std::span<const ChunkRef> chunks(order.data() + (*spans)[s].first, (*spans)[s].count);
    auto st = explode_segment(*bytes, seg, chunks, [&](const ChunkRef& c, auto p) -> Status {
      EXPECT_EQ(c.id, order[n].id);
      EXPECT_EQ(std::vector<uint8_t>(p.begin(), p.end()), fx.plain[n]);
      ++n;
      return {};
    });
    EXPECT_TRUE(st) << st.error().message();
  }
  EXPECT_EQ(n, order.size());
  // The same tree packs to the same segments (content-addressed, nothing rewritten).
  auto again = write_cold_pack(fx.index, fx.store, o);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *segs);
}

TEST(ColdPack, AnAlteredOrForeignSegmentIsRefused) {
  Fixture fx(2, 3);
  ColdPackOptions o;
  o.level = 3;
  auto segs = write_cold_pack(fx.index, fx.store, o);
  ASSERT_TRUE(segs);
  ASSERT_EQ(segs->size(), 1u);
  const PackSegment seg = segs->front();
  auto order = pack_order(fx.index);
  auto bytes = *fx.store.get_blob(pack_segment_rel_path(seg.sha256), seg.size);
  auto sink = [](const ChunkRef&, std::span<const uint8_t>) -> Status { return {}; };
  auto flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x40;
  auto r = explode_segment(flipped, seg, order, sink);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
  EXPECT_NE(r.error().message().find("does not match its signed size and SHA-256"),
            std::string::npos)
      << r.error().message();
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(explode_segment(longer, seg, order, sink));

  // Segments that do not cover the index's chunks exactly are not this index's pack.
  std::vector<PackSegment> short_by_one = *segs;
  short_by_one[0].chunks -= 1;
  EXPECT_FALSE(segment_spans(short_by_one, order));
  std::vector<PackSegment> too_many = *segs;
  too_many[0].chunks += 1;
  EXPECT_FALSE(segment_spans(too_many, order));
}

// A publisher's key signs a segment whose frame holds more than the chunks the index names
// (a decompression bomb), or other bytes: decompression stops at the chunks' sizes, and a
// chunk that is not its id is refused.
TEST(ColdPack, ASignedSegmentWithOtherBytesIsRefusedWithoutExpandingIt) {
  Fixture fx(1, 2);
  auto order = pack_order(fx.index);
  auto sink = [](const ChunkRef&, std::span<const uint8_t>) -> Status { return {}; };
  uint64_t plain = 0;
  for (const auto& c : order) plain += c.size;
  std::vector<uint8_t> bomb(plain + (64 << 20), 'a');
  auto z = *zstd::compress(bomb, 3);
  PackSegment seg{static_cast<uint32_t>(order.size()), z.size(), sha256(z)};
  auto r = explode_segment(z, seg, order, sink);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt) << r.error().message();

  std::vector<uint8_t> other(plain, 'b');
  z = *zstd::compress(other, 3);
  seg = {static_cast<uint32_t>(order.size()), z.size(), sha256(z)};
  r = explode_segment(z, seg, order, sink);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("does not match its id"), std::string::npos)
      << r.error().message();

  z = *zstd::compress(std::span<const uint8_t>(other).first(plain - 10), 3);
  seg = {static_cast<uint32_t>(order.size()), z.size(), sha256(z)};
  EXPECT_FALSE(explode_segment(z, seg, order, sink));
}

// After a publish that did not finish, a torn segment under its final name is written again.
TEST(ColdPack, VerifyReusedRewritesATornSegment) {
  Fixture fx(2, 2);
  ColdPackOptions o;
  o.level = 3;
  auto segs = write_cold_pack(fx.index, fx.store, o);
  ASSERT_TRUE(segs);
  const auto path = fx.store.blob_path(pack_segment_rel_path(segs->front().sha256));
  auto good = test::read_file(path);
  test::write_file(path, std::vector<uint8_t>(good.begin(), good.begin() + 10));
  o.verify_reused = true;
  ASSERT_TRUE(write_cold_pack(fx.index, fx.store, o));
  EXPECT_EQ(test::read_file(path), good);
}

}  // namespace
}  // namespace mup::chunk
