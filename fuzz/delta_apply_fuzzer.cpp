// Delta pieces of every kind applied to a base: hostile pieces must fail cleanly, never
// read or write out of bounds, never produce more than the stated size.
// Input: u8 kind | u8 base length | base | piece.
#include <cstdint>
#include <cstdlib>

#include "delta/piece.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint8_t kind = static_cast<uint8_t>(data[0] % 5);
  size_t base_len = data[1];
  if (size < 2 + base_len) return 0;
  std::span<const uint8_t> base(data + 2, base_len);
  std::span<const uint8_t> piece(data + 2 + base_len, size - 2 - base_len);
  const uint64_t target_size = 4096;
  uint64_t got = 0;
  auto s = mup::delta::apply_piece(piece, kind, base, target_size,
                                   [&](std::span<const uint8_t> b) -> mup::Status {
                                     got += b.size();
                                     if (got > target_size) std::abort();
                                     return {};
                                   });
  if (s && got != target_size) std::abort();
  return 0;
}
