// Snapshot manifests are read back before a restore and treated as hostile (a snapshot
// directory may have been edited): any bytes either fail cleanly or give a manifest whose
// serialisation parses back to the same manifest. Snapshot ids are parsed too.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "snapshot/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)mup::snapshot::parse_id(text);
  auto m = mup::snapshot::Manifest::parse(text);
  if (!m) return 0;
  (void)m->compute_content_hash();
  auto again = mup::snapshot::Manifest::parse(m->to_json());
  if (!again || again->to_json() != m->to_json()) std::abort();
  return 0;
}
