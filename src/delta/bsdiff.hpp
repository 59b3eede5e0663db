// Suffix-array binary diff in the bsdiff family (libdivsufsort), streams compressed with zstd.
//
// make() finds, for each region of the target, the longest approximate match in the base
// (suffix array of the base, bsdiff's scan with mismatch tolerance) and emits three
// streams: control triples (seek, add length, copy length), the byte-wise difference
// target - base over matched regions (mostly zeros for rebuilt binaries), and the literal
// extra bytes; each stream is zstd-compressed at `level`. The scan stays near-linear on
// repetitive input, and splits targets over 1 MiB into segments scanned on
// default_threads() threads. Format and algorithm: see bsdiff.cpp.
//
// Memory: make() holds the suffix array (4 bytes per base byte, int32) plus the diff and
// extra streams (about |target|, twice while joining segments) and zstd's context: about
// 4*|base| + 2*|target| + ~60 MB at level 19, beyond the (mapped) inputs. Bases must be
// under kMaxBase (checked: invalid_argument). apply() holds three zstd decoders and one
// 1 MiB output block beyond base and patch; it never materializes the target.
// Thread-safe: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/error.hpp"

namespace mup::delta {

// Output sink: receives the target bytes in order, in blocks.
using Sink = std::function<Status(std::span<const uint8_t>)>;

namespace bsdiff {

inline constexpr uint64_t kMaxBase = uint64_t{1} << 31;

[[nodiscard]] Result<std::vector<uint8_t>> make(std::span<const uint8_t> base,
                                                std::span<const uint8_t> target, int level);

// Rebuilds exactly `target_size` bytes from `base` and `patch` into `sink`, in blocks of at
// most 1 MiB. Any malformed, truncated or inconsistent patch (bad lengths, seeks outside
// the base, wrong total, streams longer than used) is Errc::corrupt; the sink may then have
// received a prefix of the output. An error from the sink is returned as is.
[[nodiscard]] Status apply(std::span<const uint8_t> base, std::span<const uint8_t> patch,
                           uint64_t target_size, const Sink& sink);

}  // namespace bsdiff
}  // namespace mup::delta
