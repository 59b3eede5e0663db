// Tensor-aware delta for numeric weight files (safetensors, raw float arrays).
//
// Fine-tuned weights differ from their base by small perturbations: the float bit
// patterns keep sign and exponent and differ in low mantissa bits. make() maps each
// 32-bit (or 16-bit, for F16/BF16 tensors) word of base and target to an order-preserving
// integer, takes the difference target - base, zigzag-codes it, splits the words into byte
// planes (all low bytes, then the next bytes, ...), and zstd-compresses the planes; untouched
// tensors become runs of zeros that cost nearly nothing. Non-float regions (the safetensors
// header, integer tensors) are XORed bytewise.
//
// Applicable only when base and target have the same size and layout (same safetensors
// header, or both look like raw float32 arrays); applicable() says so cheaply.
// Memory: make() and apply() work in blocks: O(block) beyond the mapped inputs and the patch.
// Thread-safe: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/error.hpp"
#include "delta/bsdiff.hpp"  // Sink

namespace mup::delta::tensor {

[[nodiscard]] bool applicable(std::span<const uint8_t> base, std::span<const uint8_t> target);

[[nodiscard]] Result<std::vector<uint8_t>> make(std::span<const uint8_t> base,
                                                std::span<const uint8_t> target, int level);

// Rebuilds exactly `target_size` bytes into `sink`; a malformed patch is Errc::corrupt.
[[nodiscard]] Status apply(std::span<const uint8_t> base, std::span<const uint8_t> patch,
                           uint64_t target_size, const Sink& sink);

}  // namespace mup::delta::tensor
