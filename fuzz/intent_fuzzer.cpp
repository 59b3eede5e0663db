// The journal's operation detail (engine::Intent) as a restart reads it from state.db,
// which a crash, a bug or a person may have left in any shape: any bytes either fail
// cleanly (the row is "unknown" and rolled back) or give an intent that serialises back to
// itself. Nothing may throw.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "engine/operation.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  (void)mup::engine::parse_kind(text);
  (void)mup::engine::parse_state(text);
  auto in = mup::engine::Intent::from_json(j);
  if (!in) return 0;
  auto again = mup::engine::Intent::from_json(in->to_json());
  if (!again || again->to_json() != in->to_json()) std::abort();
  return 0;
}
