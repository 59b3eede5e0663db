// The engine's error codes: what a caller (the CLI's exit status and --json, the agent's
// API, a deployment) branches on. Each carries the closest core Errc too, so code that only
// knows core codes still works. Error::code_string() gives e.g. "engine.pinned".
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mup::engine {

enum class Code : int {
  pinned = 1,          // the component is pinned to another version
  unmet_dependencies,  // dependencies are not satisfied (and --with-deps was not given)
  dependency_cycle,    // the dependencies of a package form a cycle
  ambiguous_remote,    // several remotes, none named
  no_remote,           // no remote at all, or none with that name
  not_offered,         // the remote does not offer that component or version
  not_installed,       // the version is not installed on this node
  no_previous,         // nothing to roll back to
  bad_version,         // the version was rolled back as bad (install --force to retry it)
  not_on_trial,        // commit of a component with no version on trial
  quarantined,         // a recovery failed repeatedly: the component is quarantined
  cancelled,           // the caller cancelled the operation
  integrity,           // bytes failed verification
  no_space,            // the disk is full
  busy,                // another process works on the component
  no_snapshot,         // no snapshot to restore
  unknown_journal,     // a journal entry that could not be understood (rolled back)
  policy,              // the node's policy refuses the package (setuid files, ...)
};

const ErrorCategory& engine_category();
std::string_view code_name(Code c);

[[nodiscard]] Error error(Code c, std::string message);
inline tl::unexpected<Error> fail(Code c, std::string message) {
  return tl::unexpected<Error>(error(c, std::move(message)));
}
inline bool is(const Error& e, Code c) {
  return e.is(engine_category(), static_cast<int>(c));
}
// Gives a core error an engine code where one fits (no_space, corrupt, busy), unchanged
// otherwise.
Error classify(Error e);

}  // namespace mup::engine
