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
  // The node's list: three pieces of sizes taken from the input.
  std::vector<mup::package::PieceRef> pieces(3);
  for (size_t i = 0; i < pieces.size(); ++i) {
    pieces[i].rel_path = "chunks/aa/" + std::to_string(i);
    pieces[i].stored_size = size > i ? data[i] : 0;
  }
  seg.chunks = 3;
  (void)mup::package::read_bundle_segment(
      in, seg, pieces,
      [&](const mup::package::PieceRef& p, std::span<const uint8_t> b) -> mup::Status {
        if (b.size() != p.stored_size) __builtin_trap();
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
