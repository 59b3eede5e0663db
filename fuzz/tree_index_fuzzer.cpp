// Tree index parser: any bytes either fail cleanly or give an index that validates and
// serialises back to bytes that parse to the same index.
#include <cstdint>
#include <cstdlib>

#include "chunk/tree_index.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto idx = mup::chunk::TreeIndex::parse({data, size});
  if (!idx) return 0;
  if (!idx->validate()) std::abort();
  auto again = mup::chunk::TreeIndex::parse(idx->serialize());
  if (!again || !(again->entries == idx->entries)) std::abort();
  return 0;
}
