#include "api/errors.hpp"

namespace mup::api {

namespace {

std::string_view name_of_int(int v) {
  return code_name(static_cast<Code>(v));
}

}  // namespace

std::string_view code_name(Code c) {
  switch (c) {
    case Code::unavailable: return "unavailable";
    case Code::timeout: return "timeout";
    case Code::protocol: return "protocol";
    case Code::busy: return "busy";
  }
  return "unknown";
}

const ErrorCategory& api_category() {
  static const ErrorCategory cat{"api", &name_of_int};
  return cat;
}

}  // namespace mup::api
