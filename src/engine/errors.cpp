#include "engine/errors.hpp"

namespace mup::engine {

namespace {

Errc errc_of(Code c) {
  switch (c) {
    case Code::pinned:
    case Code::unmet_dependencies:
    case Code::dependency_cycle:
    case Code::ambiguous_remote:
    case Code::not_on_trial:
    case Code::bad_version:
    case Code::policy: return Errc::invalid_argument;
    case Code::no_remote:
    case Code::not_offered:
    case Code::not_installed:
    case Code::no_previous:
    case Code::no_snapshot: return Errc::not_found;
    case Code::quarantined:
    case Code::busy: return Errc::busy;
    case Code::cancelled: return Errc::io;
    case Code::integrity:
    case Code::unknown_journal: return Errc::corrupt;
    case Code::no_space: return Errc::no_space;
  }
  return Errc::internal;
}

std::string_view name_of_int(int v) {
  return code_name(static_cast<Code>(v));
}

}  // namespace

std::string_view code_name(Code c) {
  switch (c) {
    case Code::pinned: return "pinned";
    case Code::unmet_dependencies: return "unmet_dependencies";
    case Code::dependency_cycle: return "dependency_cycle";
    case Code::ambiguous_remote: return "ambiguous_remote";
    case Code::no_remote: return "no_remote";
    case Code::not_offered: return "not_offered";
    case Code::not_installed: return "not_installed";
    case Code::no_previous: return "no_previous";
    case Code::bad_version: return "bad_version";
    case Code::not_on_trial: return "not_on_trial";
    case Code::quarantined: return "quarantined";
    case Code::cancelled: return "cancelled";
    case Code::integrity: return "integrity";
    case Code::no_space: return "no_space";
    case Code::busy: return "busy";
    case Code::no_snapshot: return "no_snapshot";
    case Code::unknown_journal: return "unknown_journal";
    case Code::policy: return "policy";
  }
  return "unknown";
}

const ErrorCategory& engine_category() {
  static const ErrorCategory cat{"engine", &name_of_int};
  return cat;
}

Error error(Code c, std::string message) {
  return Error(errc_of(c), engine_category(), static_cast<int>(c), std::move(message));
}

Error classify(Error e) {
  if (&e.category() == &engine_category()) return e;
  switch (e.code()) {
    case Errc::no_space: return error(Code::no_space, e.message());
    case Errc::corrupt: return error(Code::integrity, e.message());
    case Errc::busy: return error(Code::busy, e.message());
    default: return e;
  }
}

}  // namespace mup::engine
