#include "chunk/cold_pack.hpp"

#include <unordered_set>

#include "core/parallel.hpp"
#include "core/zstd.hpp"

namespace mup::chunk {

namespace {

// Runs of `order` of about `segment_bytes` plain bytes each (at least one chunk each).
std::vector<SegmentSpan> cut(std::span<const ChunkRef> order, uint64_t segment_bytes) {
  std::vector<SegmentSpan> out;
  for (size_t i = 0; i < order.size(); ++i) {
    if (out.empty() || out.back().plain_bytes >= segment_bytes) out.push_back({i, 0, 0});
    out.back().count++;
    out.back().plain_bytes += order[i].size;
  }
  return out;
}

bool stored_intact(const ChunkStore& store, const std::string& rel, const Digest& sha,
                   uint64_t size, bool verify) {
  if (!store.has_blob(rel)) return false;
  if (!verify) return true;
  auto bytes = store.get_blob(rel, size);
  return bytes && bytes->size() == size && sha256(*bytes) == sha;
}

}  // namespace

std::vector<ChunkRef> pack_order(const TreeIndex& index) {
  std::vector<ChunkRef> out;
  std::unordered_set<Digest> seen;
  for (const Entry& e : index.entries)
    for (const ChunkRef& c : e.chunks)
      if (seen.insert(c.id).second) out.push_back(c);
  return out;
}

std::string pack_segment_rel_path(const Digest& sha256) {
  std::string hex = sha256.hex();
  return "packs/" + hex.substr(0, 2) + "/" + hex;
}

uint64_t segments_size(std::span<const PackSegment> segments) {
  uint64_t n = 0;
  for (const PackSegment& s : segments) n += s.size;
  return n;
}

Result<std::vector<PackSegment>> write_cold_pack(const TreeIndex& index, const ChunkStore& store,
                                                 const ColdPackOptions& opts) {
  const std::vector<ChunkRef> order = pack_order(index);
  const std::vector<SegmentSpan> spans = cut(order, std::max<uint64_t>(opts.segment_bytes, 1));
  std::vector<PackSegment> out(spans.size());
  MUP_TRY(try_parallel_for(
      spans.size(), opts.threads ? opts.threads : default_threads(), [&](size_t s) -> Status {
        const SegmentSpan& sp = spans[s];
        std::vector<uint8_t> plain;
        plain.reserve(sp.plain_bytes);
        for (size_t i = sp.first; i < sp.first + sp.count; ++i) {
          auto c = store.get_chunk(order[i].id, order[i].size);
          if (!c) return tl::unexpected(c.error().context("writing the cold pack"));
          plain.insert(plain.end(), c->begin(), c->end());
        }
        auto z = zstd::compress_solid(plain, opts.level);
        if (!z) return tl::unexpected(z.error());
        PackSegment& seg = out[s];
        seg.chunks = static_cast<uint32_t>(sp.count);
        seg.size = z->size();
        seg.sha256 = sha256(*z);
        const std::string rel = pack_segment_rel_path(seg.sha256);
        if (stored_intact(store, rel, seg.sha256, seg.size, opts.verify_reused)) return {};
        return store.put_blob(rel, *z);
      }));
  MUP_TRY(store.sync());
  return out;
}

Result<std::vector<SegmentSpan>> segment_spans(std::span<const PackSegment> segments,
                                               std::span<const ChunkRef> order) {
  std::vector<SegmentSpan> out;
  out.reserve(segments.size());
  size_t next = 0;
  for (const PackSegment& seg : segments) {
    if (seg.chunks == 0 || seg.chunks > order.size() - next)
      return fail(Errc::corrupt, "the cold pack's segments do not match the tree index (" +
                                     std::to_string(order.size()) + " chunks)");
    SegmentSpan sp{next, seg.chunks, 0};
    for (size_t i = next; i < next + seg.chunks; ++i) sp.plain_bytes += order[i].size;
    next += seg.chunks;
    out.push_back(sp);
  }
  if (next != order.size())
    return fail(Errc::corrupt, "the cold pack's segments hold " + std::to_string(next) +
                                   " chunks, the tree index " + std::to_string(order.size()));
  return out;
}

Status explode_segment(std::span<const uint8_t> compressed, const PackSegment& segment,
                       std::span<const ChunkRef> chunks, const ChunkSink& sink) {
  const std::string name = "pack segment " + segment.sha256.hex().substr(0, 16);
  if (compressed.size() != segment.size || sha256(compressed) != segment.sha256)
    return fail(Errc::corrupt, name + " does not match its signed size and SHA-256 (" +
                                   std::to_string(compressed.size()) + " bytes)");
  uint64_t plain_bytes = 0;
  for (const ChunkRef& c : chunks) plain_bytes += c.size;
  size_t at = 0;  // the chunk being filled
  std::vector<uint8_t> buf;
  if (!chunks.empty()) buf.reserve(chunks[0].size);
  auto take = [&](std::span<const uint8_t> out) -> Status {
    while (!out.empty()) {
      if (at >= chunks.size()) return fail(Errc::corrupt, name + " holds more than its chunks");
      const ChunkRef& c = chunks[at];
      const size_t n = std::min<size_t>(out.size(), c.size - buf.size());
      buf.insert(buf.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
      out = out.subspan(n);
      if (buf.size() < c.size) continue;
      if (sha256(buf) != c.id)
        return fail(Errc::corrupt, name + ": chunk " + c.id.hex() + " does not match its id");
      MUP_TRY(sink(c, buf));
      buf.clear();
      if (++at < chunks.size()) buf.reserve(chunks[at].size);
    }
    return {};
  };
  if (auto r = zstd::decompress_to(compressed, plain_bytes, {}, take); !r)
    return tl::unexpected(r.error().context(name));
  if (at != chunks.size())
    return fail(Errc::corrupt, name + " ends after " + std::to_string(at) + " of its " +
                                   std::to_string(chunks.size()) + " chunks");
  return {};
}

}  // namespace mup::chunk
