// The health module's error codes, in the "health" category: what the agent's API answers
// ("health.bad_threshold" with the field named, "health.not_found"). Each maps to the
// closest core Errc so code that only knows core codes still works.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mup::health {

enum class Code : int {
  bad_threshold = 1,  // a threshold's field is unknown, mistyped or out of range ("field: why")
  not_found,          // nothing is known of that component
  bad_file,           // the thresholds file does not parse
};

const ErrorCategory& health_category();
std::string_view code_name(Code c);

// Found by ADL: makes Code work with mup::fail(), make_error() and Error::is().
inline const ErrorCategory& error_category(Code) {
  return health_category();
}
constexpr Errc errc_for(Code c) {
  switch (c) {
    case Code::bad_threshold: return Errc::invalid_argument;
    case Code::not_found: return Errc::not_found;
    case Code::bad_file: return Errc::corrupt;
  }
  return Errc::internal;
}

}  // namespace mup::health
