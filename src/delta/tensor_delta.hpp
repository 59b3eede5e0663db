// Tensor-aware delta for numeric weight files (safetensors, raw float arrays).
//
// Fine-tuned weights differ from their base by small perturbations: the float bit
// patterns keep sign and exponent and differ in low mantissa bits. make() maps each
// 32-bit (or 16-bit, for F16/BF16 tensors) word of base and target to an order-preserving
// integer and takes the difference target - base, zigzag-coded. It stores that difference
// as its bit length, recentred by the base word's exponent (the decoder knows it) into a
// nearly stationary one-byte symbol that zstd codes well, plus the bits under the leading
// one, raw (they are close to uniform). Unchanged words are symbol 0 and cost nearly
// nothing; blocks equal to the base cost one byte. Non-float regions (the safetensors
// header, integer tensors) are XORed bytewise and zstd-compressed. On fine-tuned fp32
// checkpoints this is ~6% smaller than XOR + byte planes + zstd, because byte planes mix
// differences of very different scales. Format: see tensor_delta.cpp.
//
// Applicable only when base and target have the same size and layout (byte-identical
// safetensors header, or, when neither is safetensors, both look like raw float32 arrays of
// at least 64 KiB); applicable() says so cheaply. make() accepts any two inputs of one size
// (unknown layouts are XOR-coded) and refuses different sizes (invalid_argument).
// Memory: make() and apply() work in 4 MiB blocks. Beyond the mapped inputs, make() holds
// the patch (twice while joining blocks) plus ~20 MB per thread (measured: 73 MB peak for a
// 35 MB patch of a 438 MB model, 2 threads); apply() holds one block and its symbols.
// make() uses default_threads() threads.
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

// Rebuilds exactly `target_size` bytes into `sink`, 4 MiB at a time; a malformed patch, or a
// base or target_size other than the patch was made for, is Errc::corrupt.
[[nodiscard]] Status apply(std::span<const uint8_t> base, std::span<const uint8_t> patch,
                           uint64_t target_size, const Sink& sink);

}  // namespace mup::delta::tensor
