// Suffix-array binary diff in the bsdiff family (libdivsufsort), streams compressed with zstd.
//
// make() finds, for each region of the target, the longest approximate match in the base
// (suffix array of the base, bsdiff's scan with mismatch tolerance) and emits three
// streams: control triples (add length, copy length, base seek), the byte-wise difference
// target - base over matched regions (mostly zeros for rebuilt binaries), and the literal
// extra bytes; each stream is zstd-compressed at `level`.
//
// Memory: make() holds the suffix array (4 bytes per base byte, int32) plus both inputs
// and the three streams: about 5*|base| + 3*|target| bytes. Callers keep |base| under
// kMaxBase (checked). apply() holds only the patch and one output block.
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

// Rebuilds exactly `target_size` bytes from `base` and `patch` into `sink`. Any malformed,
// truncated or inconsistent patch (bad lengths, seeks outside the base, wrong total) is
// Errc::corrupt; the sink may then have received a prefix of the output.
[[nodiscard]] Status apply(std::span<const uint8_t> base, std::span<const uint8_t> patch,
                           uint64_t target_size, const Sink& sink);

}  // namespace bsdiff
}  // namespace mup::delta
