#include "health/errors.hpp"

namespace mup::health {

namespace {

std::string_view name_of_int(int v) {
  return code_name(static_cast<Code>(v));
}

}  // namespace

std::string_view code_name(Code c) {
  switch (c) {
    case Code::bad_threshold: return "bad_threshold";
    case Code::not_found: return "not_found";
    case Code::bad_file: return "bad_file";
  }
  return "unknown";
}

const ErrorCategory& health_category() {
  static const ErrorCategory cat{"health", &name_of_int};
  return cat;
}

}  // namespace mup::health
