// Delta pieces: the per-file binary deltas a publisher stores beside the chunks.
//
// A piece rebuilds one target file from one base file, addressed by the pair
// (base SHA-256 -> target SHA-256) at deltas/<2 hex>/<base>-<target> in the store. Its
// bytes are "MUPD" | u8 kind | payload; the TreeIndex records the kind, the size and the
// piece's own SHA-256, which is checked before the payload is parsed, and the rebuilt file
// is checked against the target SHA-256 before it becomes visible.
//
// make_best() computes the candidates that fit the file (tensor delta for float weight
// files; a deflate-aware delta for gzip files; bsdiff for bases up to kBsdiffMaxBase; zstd
// --patch-from style prefix deltas for larger files, and as a second opinion where the
// others did poorly) and returns the smallest.
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/sha256.hpp"
#include "delta/bsdiff.hpp"  // Sink

namespace mup::delta {

enum class DeltaKind : uint8_t { bsdiff = 1, zstd_patch = 2, tensor = 3, puff = 4 };

std::string_view kind_name(uint8_t kind);
std::string piece_rel_path(const Digest& base, const Digest& target);

// Largest base bsdiff is asked to index: its suffix array costs 4 bytes per base byte, so a
// 64 MiB base costs ~0.4 GiB per worker with both inputs and the streams.
inline constexpr uint64_t kBsdiffMaxBase = uint64_t{64} << 20;
// A bsdiff patch larger than this fraction of its target (bitcode, compressed data, where
// byte-level diffs find little) is checked against a zstd prefix delta. On the svc-pg pair
// this keeps 82% of what a zstd second opinion on every file saves, for 19% of its time.
inline constexpr double kSecondOpinionRatio = 0.10;

struct Piece {
  DeltaKind kind;
  std::vector<uint8_t> bytes;  // the whole piece, header included
};

// The smallest delta of `target` against `base` among the kinds that apply, or nullopt when
// none applies (e.g. an empty target).
[[nodiscard]] Result<std::optional<Piece>> make_best(std::span<const uint8_t> base,
                                                     std::span<const uint8_t> target, int level);

// Checks the header against `expected_kind` and applies the payload.
[[nodiscard]] Status apply_piece(std::span<const uint8_t> piece, uint8_t expected_kind,
                                 std::span<const uint8_t> base, uint64_t target_size,
                                 const Sink& sink);

}  // namespace mup::delta
