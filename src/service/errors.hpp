// The service module's error codes, in the "service" category: what the agent and its API
// branch on ("service.timeout", "service.crashed"). Each maps to the closest core Errc so
// code that only knows core codes still works. Error::code_string() gives the full name.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mup::service {

enum class Code : int {
  bad_definition = 1,  // mup-service.toml is malformed (file:line: key: what is wrong)
  spawn_failed,        // the instance could not be started (exec, fork, log file, user)
  crashed,             // the instance exited before it was ready
  timeout,             // not ready within the timeout, or survived SIGKILL in stop()
  not_found,           // no instance with that id
  cancelled,           // the caller's cancel flag was raised
  busy,                // another supervisor owns this root
};

const ErrorCategory& service_category();
std::string_view code_name(Code c);

// Found by ADL: makes Code work with mup::fail(), make_error() and Error::is().
inline const ErrorCategory& error_category(Code) {
  return service_category();
}
constexpr Errc errc_for(Code c) {
  switch (c) {
    case Code::bad_definition: return Errc::invalid_argument;
    case Code::spawn_failed: return Errc::io;
    case Code::crashed:
    case Code::timeout:
    case Code::cancelled: return Errc::io;
    case Code::not_found: return Errc::not_found;
    case Code::busy: return Errc::busy;
  }
  return Errc::internal;
}

[[nodiscard]] inline Error error(Code c, std::string message) {
  return make_error(c, std::move(message));
}

}  // namespace mup::service
