// Index deltas and chunk frames (zstd with a stated size, one-shot and streamed with a
// prefix): hostile bytes fail cleanly.
#include <cstdint>

#include "chunk/tree_index.hpp"
#include "core/zstd.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<uint8_t> base = [] {
    mup::chunk::TreeIndex idx;
    mup::chunk::Entry e;
    e.path = "a";
    e.type = mup::chunk::EntryType::dir;
    idx.entries.push_back(e);
    return idx.serialize();
  }();
  // The signed body size is what the delta must state; take a one-byte varint from the input
  // so the fuzzer reaches decompression, and a fixed one so it reaches the size refusal.
  uint64_t stated = size > 5 && data[5] < 0x80 ? data[5] : 0;
  (void)mup::chunk::apply_index_delta(base, {data, size}, mup::Digest{}, stated);
  (void)mup::chunk::apply_index_delta(base, {data, size}, mup::Digest{}, 1 << 16);
  (void)mup::zstd::decompress({data, size}, 1 << 16);
  (void)mup::zstd::decompress_to({data, size}, 1 << 20, base,
                                 [](std::span<const uint8_t>) { return mup::Status{}; });
  return 0;
}
