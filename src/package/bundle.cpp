#include "package/bundle.hpp"

#include <cstring>

#include "core/bytes.hpp"

namespace mup::package {

namespace {

constexpr char kMagic[4] = {'M', 'U', 'P', 'B'};
constexpr uint8_t kVersion = 1;
constexpr size_t kMaxRelPath = 512;

Result<chunk::PackSegment> write_segment(std::span<const PieceRef> pieces,
                                         const chunk::ChunkStore& store) {
  ByteWriter w;
  w.bytes(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(kMagic), 4));
  w.u8(kVersion);
  w.varint(pieces.size());
  for (const PieceRef& p : pieces) {
    w.str(p.rel_path);
    w.varint(p.stored_size);
  }
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

Status read_bundle_segment(std::span<const uint8_t> segment,
                           const chunk::PackSegment& signed_segment, const PieceSink& sink) {
  const std::string name = "update bundle segment " + signed_segment.sha256.hex().substr(0, 16);
  if (segment.size() != signed_segment.size || sha256(segment) != signed_segment.sha256)
    return fail(Errc::corrupt, name + " does not match its signed size and SHA-256 (" +
                                   std::to_string(segment.size()) + " bytes)");
  ByteReader r(segment);
  auto magic = r.bytes(4);
  const uint8_t version = r.u8();
  const uint64_t count = r.varint();
  if (r.failed() || std::memcmp(magic.data(), kMagic, 4) != 0 || version != kVersion ||
      count != signed_segment.chunks || count > segment.size())
    return fail(Errc::corrupt, name + " has no valid header");
  std::vector<std::pair<std::string, uint64_t>> entries;
  entries.reserve(count);
  uint64_t body = 0;
  for (uint64_t i = 0; i < count; ++i) {
    std::string rel = r.str(kMaxRelPath);
    const uint64_t size = r.varint();
    if (r.failed() || size > segment.size() || (body += size) > segment.size())
      return fail(Errc::corrupt, name + ": its header does not describe its bytes");
    entries.emplace_back(std::move(rel), size);
  }
  if (body != r.remaining())
    return fail(Errc::corrupt, name + ": its header does not describe its bytes");
  for (const auto& [rel, size] : entries) MUP_TRY(sink(rel, r.bytes(size)));
  return {};
}

}  // namespace mup::package
