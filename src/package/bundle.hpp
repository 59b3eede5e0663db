// Update bundles: the pieces an update from one version needs, in a few large files.
//
// A node updating from version B to V downloads V's index (delta), then the delta pieces and
// chunks it lacks: for a service of a few thousand files, ~1,000 small pieces, one request
// each. When V is published with --delta-from B, the publisher knows what a node holding
// only B needs (it runs the node's planner against B's index and tree) and writes those
// pieces, as the store holds them, into bundle segments of about `segment_bytes` each:
//
//   "MUPB" | u8 version (1) | varint count | count x (varint path length, rel path,
//   varint stored size) | the pieces' bytes, in that order
//
// stored content-addressed at bundles/<2 hex>/<sha256 of the segment>. The manifest signs
// each segment's size and SHA-256 and its piece count ("bundles": [{"from": B, "segments":
// [...]}]). A node fetches a segment whole, checks it against the signed size and SHA-256,
// then reads the header as untrusted (every length bounded by the segment's size) and
// takes the pieces it lacks, each verified against the signed index like a piece fetched
// alone (verify_piece); the others are skipped. Encrypted packages get no bundles.
//
// Free functions; thread-compatible.
#pragma once

#include <cstdint>
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

// Writes `pieces` (read from `store`, as stored) into bundle segments in `store`.
[[nodiscard]] Result<std::vector<chunk::PackSegment>> write_bundle(
    std::span<const PieceRef> pieces, const chunk::ChunkStore& store,
    uint64_t segment_bytes = kBundleSegmentBytes);

// Checks a downloaded segment against its signed size and SHA-256, then hands every piece
// it holds to `sink` (rel path, stored bytes), in order. Errc::corrupt on a segment that does
// not match or whose header does not describe its bytes.
using PieceSink = std::function<Status(const std::string& rel_path, std::span<const uint8_t>)>;
[[nodiscard]] Status read_bundle_segment(std::span<const uint8_t> segment,
                                         const chunk::PackSegment& signed_segment,
                                         const PieceSink& sink);

}  // namespace mup::package
