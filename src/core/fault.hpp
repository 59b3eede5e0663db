// Fault points: named places where a test can make mup fail as the world would.
//
// Seam for crash and full-disk tests (STYLE.md "Seams for testing"). When the environment
// variable MUP_FAULT_AT names a point and the point has been reached MUP_FAULT_AFTER times
// (default 0), the point acts per MUP_FAULT_ACTION: "enospc" (default) returns a no-space
// error, "kill" raises SIGKILL. With MUP_FAULT_AT unset a point costs one relaxed load.
// Thread-safe.
#pragma once

#include <string_view>

#include "core/error.hpp"

namespace mup::fault {

[[nodiscard]] Status point(std::string_view name);

}  // namespace mup::fault
