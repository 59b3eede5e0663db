// Index deltas and chunk frames (zstd with a stated size): hostile bytes fail cleanly.
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
  (void)mup::chunk::apply_index_delta(base, {data, size}, mup::Digest{});
  (void)mup::zstd::decompress({data, size}, 1 << 16);
  return 0;
}
