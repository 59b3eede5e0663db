// zstd one-shot compression with bounded decompression.
//
// decompress() refuses frames that would expand beyond `max_size` (a stated or expected
// length), so hostile input cannot make us allocate without bound. Thread-safe: each call
// uses its own context.
#pragma once

#include <cstdint>
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
[[nodiscard]] Result<std::vector<uint8_t>> decompress(std::span<const uint8_t> in, size_t max_size,
                                                      std::span<const uint8_t> prefix = {});

}  // namespace mup::zstd
