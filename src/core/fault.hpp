// Fault points: named places where a test can make mup fail as the world would.
//
// Seam for crash and full-disk tests (STYLE.md "Seams for testing"). Fault points exist
// only in builds configured with -DMUP_FAULT_POINTS=ON (the default: tests, CI and the
// demo); packaged release builds turn it OFF, and then point() is an inline `return {}`
// that compiles to nothing and enabled() is false.
//
// Contract (an outside crash-test tool relies on it exactly). Hits are counted per point
// name, from 0, per process. The environment is read at the first hit:
//   - MUP_FAULT_LIST=FILE: every point passed appends "<point> <hit>\n" to FILE with one
//     write(2) on an O_APPEND descriptor, unbuffered, so the line survives a SIGKILL right
//     after it (no fsync: it need not survive a power cut).
//   - MUP_FAULT_AT=<point> MUP_FAULT_AFTER=<n> (default 0) MUP_FAULT_ACTION=<action>: at
//     exactly hit n of that point (0-based; earlier and later hits pass, so cleanup paths
//     do not fail too) the point acts, after its list line is written:
//       enospc (default): returns Errc::no_space, "injected fault at <point> hit <n>: no
//         space left on device";
//       kill: SIGKILL to this process;
//       powercut: calls every on_power_cut() hook (each simulates losing what was not
//         fsynced), then SIGKILL.
//     An unknown action or a malformed MUP_FAULT_AFTER makes that point return
//     Errc::invalid_argument instead, naming the variable.
// With neither MUP_FAULT_LIST nor MUP_FAULT_AT set, a point costs one relaxed atomic load
// (after the first). Thread-safe; hooks run on the thread that hit the point.
#pragma once

#include <functional>
#include <string_view>

#include "core/error.hpp"

namespace mup::fault {

#if defined(MUP_FAULT_POINTS) && MUP_FAULT_POINTS

constexpr bool enabled() {
  return true;
}

[[nodiscard]] Status point(std::string_view name);

// Registers a hook for the powercut action. Hooks are kept for the life of the process
// and called in registration order.
void on_power_cut(std::function<void()> hook);

// Tests only: reads the MUP_FAULT_* variables again and forgets every hit count (hooks
// stay). Not to be called while another thread may be at a fault point.
void reload_config_for_testing();

#else

constexpr bool enabled() {
  return false;
}

[[nodiscard]] inline Status point(std::string_view) {
  return {};
}

inline void on_power_cut(std::function<void()>) {}

inline void reload_config_for_testing() {}

#endif

}  // namespace mup::fault
