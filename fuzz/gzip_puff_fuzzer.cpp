// The deflate "puffer": any bytes either fail cleanly or puff to a form that re-encodes to
// exactly the input (the property the puff delta relies on).
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "delta/deflate_puff.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto puffed = mup::delta::puff::puff_gzip({data, size});
  if (puffed) {
    auto back = mup::delta::puff::huff_gzip(*puffed);
    if (!back || back->size() != size || !std::equal(back->begin(), back->end(), data))
      std::abort();
  }
  // And arbitrary bytes as a puffed stream must not crash the encoder.
  (void)mup::delta::puff::huff_gzip({data, size});
  return 0;
}
