// The api module's error codes: what a caller of Client (the CLI, the agent's ProxyClient)
// branches on, e.g. `r.error().is(api::Code::unavailable)` to say "agent not running".
// Each code also carries the closest core Errc. Error::code_string() gives "api.timeout".
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mup::api {

enum class Code : int {
  unavailable = 1,  // nothing listens on the socket / address (refused, or no socket file)
  timeout,          // no complete reply within the request's timeout
  protocol,         // the peer spoke something that is not our HTTP/JSON
  busy,             // another process already serves the unix socket
};

const ErrorCategory& api_category();
std::string_view code_name(Code c);

// Found by ADL: makes Code work with mup::fail(), make_error() and Error::is().
inline const ErrorCategory& error_category(Code) {
  return api_category();
}
constexpr Errc errc_for(Code c) {
  switch (c) {
    case Code::unavailable: return Errc::io;
    case Code::timeout: return Errc::io;
    case Code::protocol: return Errc::corrupt;
    case Code::busy: return Errc::busy;
  }
  return Errc::internal;
}

}  // namespace mup::api
