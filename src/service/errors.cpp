#include "service/errors.hpp"

namespace mup::service {

namespace {

std::string_view name_of_int(int v) {
  return code_name(static_cast<Code>(v));
}

}  // namespace

std::string_view code_name(Code c) {
  switch (c) {
    case Code::bad_definition: return "bad_definition";
    case Code::spawn_failed: return "spawn_failed";
    case Code::crashed: return "crashed";
    case Code::timeout: return "timeout";
    case Code::not_found: return "not_found";
    case Code::cancelled: return "cancelled";
    case Code::busy: return "busy";
  }
  return "unknown";
}

const ErrorCategory& service_category() {
  static const ErrorCategory cat{"service", &name_of_int};
  return cat;
}

}  // namespace mup::service
