// Cold pack and update bundle segments as a hostile publisher key could sign them: the
// segment's signed size and SHA-256 are the input's own, so the fuzzer reaches the header (a
// bundle) and the bounded decompression into chunks (a pack). Both must fail cleanly, handing
// on only what they describe.
#include <cstdint>

#include "chunk/cold_pack.hpp"
#include "package/bundle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  mup::chunk::PackSegment seg{0, size, mup::sha256(in)};
  uint64_t handed = 0;
  seg.chunks = size > 6 ? data[5] : 1;
  (void)mup::package::read_bundle_segment(
      in, seg, [&](const std::string&, std::span<const uint8_t> b) -> mup::Status {
        handed += b.size();
        if (handed > size) __builtin_trap();
        return {};
      });
  // Two chunks the index would name, of sizes taken from the input.
  std::vector<mup::chunk::ChunkRef> chunks(2);
  chunks[0].size = size > 1 ? data[0] * 97u + 1 : 1;
  chunks[1].size = size > 2 ? data[1] * 4099u + 1 : 1;
  seg.chunks = 2;
  (void)mup::chunk::explode_segment(
      in, seg, chunks,
      [](const mup::chunk::ChunkRef&, std::span<const uint8_t>) { return mup::Status{}; });
  return 0;
}
