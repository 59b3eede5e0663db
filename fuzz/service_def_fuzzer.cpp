// mup-service.toml from a package: any bytes either fail cleanly with a bad_definition
// error, or give a definition that survives its JSON round trip (the instance record).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "service/errors.hpp"
#include "service/service_def.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto def = mup::service::parse_service_def(text, "mup-service.toml");
  if (!def) {
    if (!def.error().is(mup::service::Code::bad_definition)) std::abort();
    return 0;
  }
  auto again = mup::service::service_def_from_json(def->to_json());
  if (!again || again->to_json() != def->to_json()) std::abort();
  return 0;
}
