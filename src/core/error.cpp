#include "core/error.hpp"

#include <cerrno>
#include <cstring>

namespace mup {

std::string_view errc_name(Errc c) {
  switch (c) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::already_exists: return "already_exists";
    case Errc::io: return "io";
    case Errc::no_space: return "no_space";
    case Errc::corrupt: return "corrupt";
    case Errc::unsupported: return "unsupported";
    case Errc::internal: return "internal";
    case Errc::busy: return "busy";
  }
  return "unknown";
}

tl::unexpected<Error> fail_errno(std::string_view op, std::string_view what, int err) {
  Errc code = Errc::io;
  if (err == ENOENT) code = Errc::not_found;
  if (err == EEXIST) code = Errc::already_exists;
  if (err == ENOSPC || err == EDQUOT) code = Errc::no_space;
  std::string msg = std::string(op) + " " + std::string(what) + ": " + std::strerror(err);
  if (code == Errc::no_space) msg += " (free some space and retry; nothing was changed)";
  return tl::unexpected<Error>(Error(code, std::move(msg)));
}

}  // namespace mup
