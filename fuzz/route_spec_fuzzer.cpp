// The proxy's control API body (PUT /v1/routes/{service}) and its saved table
// (<root>/proxy/routes.json): any bytes either fail cleanly with a field named, or give a
// route spec that serialises back to itself. Nothing may throw.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "traffic/route.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  (void)mup::traffic::bad_route_name(text);
  std::string field;
  auto spec = mup::traffic::parse_route_spec(j, &field);
  if (spec) {
    auto again = mup::traffic::parse_route_spec(mup::traffic::to_json(*spec));
    if (!again || !(*again == *spec)) std::abort();
  }
  (void)mup::traffic::parse_route(j, &field);
  return 0;
}
