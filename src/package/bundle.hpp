// Update bundles: the pieces an update from one version needs, in a few large files.
//
// A node updating from version B to V downloads V's index (delta), then the delta pieces and
// chunks it lacks: for a service of a few thousand files, ~1,000 small pieces, one request
// each. When V is published with --delta-from B, the publisher runs the node's planner
// against B's index and tree (bundle_pieces) and writes the pieces a node holding only B
// needs, as the store holds them, into bundle segments of about `segment_bytes` each:
//
//   "MUPB" | u8 version (1) | varint count | SHA-256 of the segment's piece list | the pieces'
//   bytes, in list order
//
// stored content-addressed at bundles/<2 hex>/<sha256 of the segment>. The manifest signs
// each segment's size, SHA-256 and piece count ("bundles": [{"from": B, "segments": [...]}]).
// A node holding B computes the same list (bundle_pieces: same index, same seed), so a
// segment carries no per-piece names: 41 bytes of header. A node fetches a segment whole,
// checks it against the signed size and SHA-256, checks that the header names its own list
// (else a planner that differs from the publisher's: the node fetches pieces one by one) and
// cuts the bytes at the list's sizes; every piece it lacks is then verified against the
// signed index (verify_piece) like a piece fetched alone. Encrypted packages get no bundles.
//
// Free functions; thread-compatible.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "chunk/chunk_store.hpp"
#include "chunk/cold_pack.hpp"
#include "core/error.hpp"
#include "package/manifest.hpp"
#include "package/sealed.hpp"

namespace mup::package {

inline constexpr uint64_t kBundleSegmentBytes = uint64_t{16} << 20;

std::string bundle_segment_rel_path(const Digest& sha256);

// The pieces a node holding only `base` (its tree and index) downloads for `index`, in order:
// what a bundle from base holds.
[[nodiscard]] Result<std::vector<PieceRef>> bundle_pieces(const chunk::TreeIndex& index,
                                                          const std::filesystem::path& base_tree,
                                                          const chunk::TreeIndex& base_index);

// Writes `pieces` (read from `store`, as stored) into bundle segments in `store`.
[[nodiscard]] Result<std::vector<chunk::PackSegment>> write_bundle(
    std::span<const PieceRef> pieces, const chunk::ChunkStore& store,
    uint64_t segment_bytes = kBundleSegmentBytes);

// The pieces of `pieces` each segment holds, by the segments' signed counts; Errc::corrupt
// when the counts do not add up to the list (a bundle of another list).
[[nodiscard]] Result<std::vector<std::span<const PieceRef>>> bundle_spans(
    std::span<const chunk::PackSegment> segments, std::span<const PieceRef> pieces);

// Segment bytes that matched their signed size and SHA-256: only check_bundle_segment makes
// one, so a segment is hashed once however many steps read it. It refers to the bytes (and
// the signed segment) it was made from: they must outlive it.
class CheckedSegment {
 public:
  std::span<const uint8_t> bytes() const { return bytes_; }
  const chunk::PackSegment& signed_segment() const { return *signed_; }

 private:
  friend Result<CheckedSegment> check_bundle_segment(std::span<const uint8_t>,
                                                     const chunk::PackSegment&);
  CheckedSegment(std::span<const uint8_t> bytes, const chunk::PackSegment& s)
      : bytes_(bytes), signed_(&s) {}
  std::span<const uint8_t> bytes_;
  const chunk::PackSegment* signed_;
};

// Errc::corrupt, naming the segment, unless `segment` has its signed size and SHA-256.
[[nodiscard]] Result<CheckedSegment> check_bundle_segment(std::span<const uint8_t> segment,
                                                          const chunk::PackSegment& signed_segment);

// Checks a segment's header against `pieces` (the node's list for this segment), then hands
// every piece to `sink` with its bytes, in order. Errc::corrupt, naming the segment, on any
// mismatch. The second form checks the bytes first (check_bundle_segment).
using PieceSink = std::function<Status(const PieceRef&, std::span<const uint8_t>)>;
[[nodiscard]] Status read_bundle_segment(const CheckedSegment& segment,
                                         std::span<const PieceRef> pieces, const PieceSink& sink);
[[nodiscard]] Status read_bundle_segment(std::span<const uint8_t> segment,
                                         const chunk::PackSegment& signed_segment,
                                         std::span<const PieceRef> pieces, const PieceSink& sink);

}  // namespace mup::package
