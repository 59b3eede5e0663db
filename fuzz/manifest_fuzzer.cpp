// Package manifests and version constraints from repository data: any bytes either fail
// cleanly or give a manifest that serialises back to itself.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "package/manifest.hpp"
#include "package/semver.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)mup::package::Version::parse(text);
  (void)mup::package::Dependency::parse(text);
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto m = mup::package::Manifest::from_json(j);
  if (!m) return 0;
  auto again = mup::package::Manifest::from_json(m->to_json());
  if (!again || again->to_json() != m->to_json()) std::abort();
  return 0;
}
