// TUF metadata parser: any bytes either fail cleanly or parse into metadata whose
// canonical serialisation parses back to the same signed content.
#include <cstdint>
#include <cstdlib>

#include "tuf/metadata.hpp"

namespace {

template <typename T>
void check(const uint8_t* data, size_t size) {
  auto md = mup::tuf::Metadata<T>::parse({data, size});
  if (!md) return;
  auto again = mup::tuf::Metadata<T>::parse(md->to_bytes());
  if (!again || again->signed_bytes() != md->signed_bytes() ||
      again->signatures() != md->signatures())
    std::abort();
  // Re-serialising the typed body must give metadata that parses as well.
  if (!mup::tuf::Metadata<T>::from_body(md->body())) std::abort();
  if constexpr (std::is_same_v<T, mup::tuf::Targets>) {
    if (md->body().delegations)
      for (const auto& r : md->body().delegations->roles) (void)r.is_delegated_path("a/b.txt");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check<mup::tuf::Root>(data, size);
  check<mup::tuf::Timestamp>(data, size);
  check<mup::tuf::Snapshot>(data, size);
  check<mup::tuf::Targets>(data, size);
  return 0;
}
