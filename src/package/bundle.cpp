#include "package/bundle.hpp"

#include <cstring>

#include "core/bytes.hpp"
#include "delta/planner.hpp"

namespace mup::package {

namespace {

constexpr char kMagic[4] = {'M', 'U', 'P', 'B'};
constexpr uint8_t kVersion = 1;

// What a segment's header names: its pieces (path and stored size), in order.
Digest list_digest(std::span<const PieceRef> pieces) {
  Sha256 h;
  for (const PieceRef& p : pieces) {
    const std::string line = p.rel_path + " " + std::to_string(p.stored_size) + "\n";
    h.update(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(line.data()), line.size()));
  }
  return h.finish();
}

Result<chunk::PackSegment> write_segment(std::span<const PieceRef> pieces,
                                         const chunk::ChunkStore& store) {
  ByteWriter w;
  for (char c : kMagic) w.u8(static_cast<uint8_t>(c));
  w.u8(kVersion);
  w.varint(pieces.size());
  w.digest(list_digest(pieces));
  for (const PieceRef& p : pieces) {
    auto bytes = store.get_blob(p.rel_path, p.stored_size);
    if (!bytes) return tl::unexpected(bytes.error().context("writing an update bundle"));
    if (bytes->size() != p.stored_size)
      return fail(Errc::corrupt, p.rel_path + " in " + store.root().string() + " has " +
                                     std::to_string(bytes->size()) + " bytes, its index says " +
                                     std::to_string(p.stored_size));
    w.bytes(*bytes);
  }
  std::vector<uint8_t> seg = w.take();
  chunk::PackSegment out{static_cast<uint32_t>(pieces.size()), seg.size(), sha256(seg)};
  const std::string rel = bundle_segment_rel_path(out.sha256);
  if (!store.has_blob(rel)) MUP_TRY(store.put_blob(rel, seg));
  return out;
}

}  // namespace

std::string bundle_segment_rel_path(const Digest& sha256) {
  std::string hex = sha256.hex();
  return "bundles/" + hex.substr(0, 2) + "/" + hex;
}

Result<std::vector<PieceRef>> bundle_pieces(const chunk::TreeIndex& index,
                                            const std::filesystem::path& base_tree,
                                            const chunk::TreeIndex& base_index) {
  auto plan = delta::plan(index, 0, std::vector<delta::IndexedSeed>{{base_tree, &base_index}});
  if (!plan) return tl::unexpected(plan.error());
  return pieces_to_fetch(index, *plan);
}

Result<std::vector<chunk::PackSegment>> write_bundle(std::span<const PieceRef> pieces,
                                                     const chunk::ChunkStore& store,
                                                     uint64_t segment_bytes) {
  std::vector<chunk::PackSegment> out;
  size_t first = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    bytes += pieces[i].stored_size;
    if (bytes < segment_bytes && i + 1 < pieces.size()) continue;
    auto seg = write_segment(pieces.subspan(first, i + 1 - first), store);
    if (!seg) return tl::unexpected(seg.error());
    out.push_back(*seg);
    first = i + 1;
    bytes = 0;
  }
  MUP_TRY(store.sync());
  return out;
}

Result<std::vector<std::span<const PieceRef>>> bundle_spans(
    std::span<const chunk::PackSegment> segments, std::span<const PieceRef> pieces) {
  std::vector<std::span<const PieceRef>> out;
  size_t next = 0;
  for (const auto& seg : segments) {
    if (seg.chunks > pieces.size() - next) break;
    out.push_back(pieces.subspan(next, seg.chunks));
    next += seg.chunks;
  }
  if (out.size() != segments.size() || next != pieces.size())
    return fail(Errc::corrupt, "the update bundle's segments hold other pieces than the " +
                                   std::to_string(pieces.size()) + " this node needs");
  return out;
}

namespace {
std::string segment_name(const chunk::PackSegment& s) {
  return "update bundle segment " + s.sha256.hex().substr(0, 16);
}
}  // namespace

Result<CheckedSegment> check_bundle_segment(std::span<const uint8_t> segment,
                                            const chunk::PackSegment& signed_segment) {
  if (segment.size() != signed_segment.size || sha256(segment) != signed_segment.sha256)
    return fail(Errc::corrupt, segment_name(signed_segment) +
                                   " does not match its signed size and SHA-256 (" +
                                   std::to_string(segment.size()) + " bytes)");
  return CheckedSegment(segment, signed_segment);
}

Status read_bundle_segment(std::span<const uint8_t> segment,
                           const chunk::PackSegment& signed_segment,
                           std::span<const PieceRef> pieces, const PieceSink& sink) {
  auto checked = check_bundle_segment(segment, signed_segment);
  if (!checked) return tl::unexpected(checked.error());
  return read_bundle_segment(*checked, pieces, sink);
}

Status read_bundle_segment(const CheckedSegment& segment, std::span<const PieceRef> pieces,
                           const PieceSink& sink) {
  const std::string name = segment_name(segment.signed_segment());
  ByteReader r(segment.bytes());
  auto magic = r.bytes(4);
  const uint8_t version = r.u8();
  const uint64_t count = r.varint();
  const Digest listed = r.digest();
  if (r.failed() || std::memcmp(magic.data(), kMagic, 4) != 0 || version != kVersion)
    return fail(Errc::corrupt, name + " has no valid header");
  uint64_t body = 0;
  for (const PieceRef& p : pieces) body += p.stored_size;
  if (count != pieces.size() || listed != list_digest(pieces) || body != r.remaining())
    return fail(Errc::corrupt, name +
                                   " holds other pieces than this node's plan from the same "
                                   "version (a publisher with another planner)");
  for (const PieceRef& p : pieces) MUP_TRY(sink(p, r.bytes(p.stored_size)));
  return {};
}

}  // namespace mup::package
