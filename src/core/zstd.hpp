// zstd compression, and decompression bounded in output and memory.
//
// decompress() refuses frames that would expand beyond `max_size` (a stated or expected
// length), so hostile input cannot make us allocate without bound. Thread-safe: each call
// uses its own context.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/error.hpp"

namespace mup::zstd {

[[nodiscard]] Result<std::vector<uint8_t>> compress(std::span<const uint8_t> in, int level);
// `dict_prefix`, when not empty, is referenced as a raw prefix (the --patch-from scheme):
// the same bytes must be given to decompress.
[[nodiscard]] Result<std::vector<uint8_t>> compress_with_prefix(std::span<const uint8_t> in,
                                                                std::span<const uint8_t> prefix,
                                                                int level);
// One frame over `in` whose window covers all of it, with long-distance matching: what a
// solid archive (tar | zstd --long) gets from matches far apart. Decoding needs a window of
// the input's size (at most prefix_window_log_max(0), 128 MiB, for inputs up to that).
[[nodiscard]] Result<std::vector<uint8_t>> compress_solid(std::span<const uint8_t> in, int level);
[[nodiscard]] Result<std::vector<uint8_t>> decompress(std::span<const uint8_t> in, size_t max_size,
                                                      std::span<const uint8_t> prefix = {});

// Largest window (log2) a prefix delta against a prefix of `prefix_size` bytes may use: enough
// to reach back over the whole prefix, at least 128 MiB, and never a function of the output's
// size. compress_with_prefix() stays within it; decompress_to() refuses frames above it.
int prefix_window_log_max(size_t prefix_size);

// Streams the frame's output to `sink` in pieces of at most 1 MiB. Memory is the decoder's
// window (bounded by prefix_window_log_max(prefix.size())), whatever the output's size: a
// frame that expands beyond `max_size`, is truncated or asks for a larger window fails, and
// an error of the sink stops decompression and is returned.
using Sink = std::function<Status(std::span<const uint8_t>)>;
[[nodiscard]] Status decompress_to(std::span<const uint8_t> in, uint64_t max_size,
                                   std::span<const uint8_t> prefix, const Sink& sink);

}  // namespace mup::zstd
