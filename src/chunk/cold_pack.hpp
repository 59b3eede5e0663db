// Cold packs: a version's chunks compressed together, for nodes that hold little of it.
//
// Chunks are compressed one by one in the store (so any subset can be fetched), which costs a
// node with nothing installed ~1.6x a solid `tar | zstd -19 --long` of the tree: every chunk
// starts with an empty window. A cold pack is the same chunks as a few solid segments: the
// version's unique chunks in index order (pack_order), cut into runs of about
// `segment_bytes` plain bytes at chunk boundaries, each run's plain bytes concatenated and
// compressed as one zstd frame whose window covers the whole run, with long-distance
// matching. Each segment is a content-addressed blob, packs/<2 hex>/<sha256 of the segment>,
// so any static HTTP server serves it, equal segments are stored once, and a node fetches
// a segment with one request.
//
// What a node trusts: the segment list (chunk count, size, SHA-256 per segment) travels in
// the signed package manifest; the chunks each segment holds follow from the signed tree
// index (pack_order, segment_spans). A downloaded segment must have its signed size and
// SHA-256 before it is decompressed; decompression is bounded by the sum of the index's
// chunk sizes for that segment (and a 128 MiB window); every chunk carved out must hash to
// its id. Nothing the segment states is trusted as a size.
//
// Free functions; thread-safe (write_cold_pack uses `threads` workers of its own).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "chunk/chunk_store.hpp"
#include "chunk/tree_index.hpp"
#include "core/error.hpp"
#include "core/sha256.hpp"

namespace mup::chunk {

struct PackSegment {
  uint32_t chunks = 0;  // how many chunks of pack_order() it holds, after the previous ones
  uint64_t size = 0;    // compressed bytes
  Digest sha256;        // of the compressed bytes
  bool operator==(const PackSegment&) const = default;
};

struct ColdPackOptions {
  uint64_t segment_bytes = uint64_t{32} << 20;  // plain bytes per segment (cut at chunks)
  int level = 19;
  unsigned threads = 0;  // 0 = default_threads()
  // Segments already in the store are read back and checked before they are reused (after
  // a writer that did not finish: ChunkStore::begin_batch).
  bool verify_reused = false;
};

// The index's chunks, each once, in the order of their first reference (entries by path,
// chunks in file order).
std::vector<ChunkRef> pack_order(const TreeIndex& index);

std::string pack_segment_rel_path(const Digest& sha256);

// The bytes a node downloads for `segments` (a cold pack's, or an update bundle's).
uint64_t segments_size(std::span<const PackSegment> segments);

// Reads every chunk of `index` from `store` and writes its cold pack there (segments the
// store already holds are kept). The store is synced before it returns.
[[nodiscard]] Result<std::vector<PackSegment>> write_cold_pack(const TreeIndex& index,
                                                               const ChunkStore& store,
                                                               const ColdPackOptions& opts);

// Which chunks of `order` each segment holds: [first, first + count) and their plain bytes.
// Errc::corrupt when the segments do not cover `order` exactly (a pack that does not
// belong to this index).
struct SegmentSpan {
  size_t first = 0;
  size_t count = 0;
  uint64_t plain_bytes = 0;
};
[[nodiscard]] Result<std::vector<SegmentSpan>> segment_spans(std::span<const PackSegment> segments,
                                                             std::span<const ChunkRef> order);

// Checks a downloaded segment against its signed size and SHA-256, decompresses it (bounded
// by the chunks' sizes) and hands each chunk, verified against its id, to `sink` in order.
// Errc::corrupt, naming the segment (or the chunk), on any mismatch.
using ChunkSink = std::function<Status(const ChunkRef&, std::span<const uint8_t> plain)>;
[[nodiscard]] Status explode_segment(std::span<const uint8_t> compressed,
                                     const PackSegment& segment, std::span<const ChunkRef> chunks,
                                     const ChunkSink& sink);

}  // namespace mup::chunk
