// Deployments: how a new version of a running service takes over its traffic, as ONE
// declarative transition table (state, event) -> state, kTransitions in deployment.cpp.
//
// A deployment walks the table from `install`; each state is journaled (the deployments
// row, state/state_db.hpp) before its work starts, and every state's work is idempotent,
// so an agent killed at any instant resumes the deployment from the journaled state on its
// next start (deploy/deployer.hpp) and ends it with the records an uninterrupted one
// writes. A row whose state or detail does not parse is unknown, and unknown is undone
// (the old version back on all traffic).
//
//   immediate:  install -> start-new -> wait-ready -> switch (old warm at weight 0)
//               -> analyze -> drain-old -> stop-old -> commit -> committed
//   blue-green: install -> start-new -> wait-ready -> soak -> switch -> analyze -> commit
//               -> committed, the old set kept warm (weight 0) until the window closes
//               (keep_old_ms)
//   canary:     install -> start-new -> wait-ready -> switch (the first step's weight)
//               -> analyze (each step: weights, then the judge for step_ms; the step index
//               and the judge's statistics journaled per step) -> drain-old -> stop-old
//               -> commit -> committed
//   rolling:    install -> start-new (the first batch of instances) -> wait-ready -> switch
//               -> analyze (each batch: new instances up to k, ready, weights k/N, old ones
//               down; then the judge for the batch interval) -> drain-old -> stop-old -> commit
//   rollback:   like immediate, to the previous version, without analysis; its "install" is
//               the engine's rollback, and the new set is usually still warm (a weight flip)
//
// A deployment with a start time (`mup deploy --at`) begins in `scheduled`: journaled like any
// state, it waits for its time (an agent restart resumes the wait) and then goes to install;
// abort (or a rollback request) while scheduled cancels it: aborted, nothing done.
// `analyze` runs the rollback judge (rollback/judge.hpp) on the proxy's counts: a decision
// to roll back is the event `rollback` (outcome rolled-back, the decision recorded).
// Every failure, abort or rollback request leaves the forward path for the undo path:
// switch-back (the old version ready and on all traffic) -> stop-new -> undo-install (the
// engine's rollback of the version on trial) -> the outcome the deployment was heading to:
// failed, aborted or rolled-back. A state that fails on the undo path still moves on (its
// error is added to the reason): an undo never stops half-way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mup::deploy {

enum class Strategy : uint8_t { immediate, blue_green, rollback, canary, rolling };
std::string_view strategy_name(Strategy s);
std::optional<Strategy> parse_strategy(std::string_view s);

enum class State : uint8_t {
  scheduled,     // waiting for its start time (persisted: survives agent restarts)
  install,       // the engine installs the version, on trial (or, for a rollback, switches back)
  start_new,     // the new version's instances are started (restart off while deploying)
  wait_ready,    // ... and pass their readiness check
  soak,          // blue-green: they stay alive and ready for soak_ms before any traffic
  switch_new,    // traffic to the new version (all, or the canary's first step); old warm
  analyze,       // the judge watches the new version (canary: step by step) before commit
  drain_old,     // the old version off the route; its requests in flight finish (drain_ms);
                 // blue-green: skipped, the old set stays warm
  stop_old,      // the old instances are stopped
  commit,        // the engine commits the version; restarts turned on for the new set
  switch_back,   // undo: the old version ready and on all traffic; the new one drains
  stop_new,      // undo: the new instances are stopped
  undo_install,  // undo: the engine rolls the version on trial back
  committed,     // final
  rolled_back,   // final: a rollback was asked for (mup rollback), or a judge decided
  failed,        // final: the new version did not become ready, crashed, or a step failed
  aborted,       // final: mup abort
};
std::string_view state_name(State s);
std::optional<State> parse_state(std::string_view s);
bool is_final(State s);
// On the undo path (switch-back, stop-new, undo-install) or final.
bool is_undoing(State s);

enum class Event : uint8_t {
  ok,
  error,     // the state's work failed: undo, outcome failed
  abort,     // mup abort while in this state: undo, outcome aborted
  rollback,  // mup rollback while in this state: undo, outcome rolled-back
  skip,      // the state has nothing to do for this strategy
};
std::string_view event_name(Event e);

struct Transition {
  State from;
  Event on;
  State to;
};
// The next state; nullopt when the table has no row (a bug: the deployment stops loudly and
// undoes). (undo-install, ok) is `failed`; the deployer substitutes the outcome it recorded
// when the deployment left the forward path (aborted, rolled-back).
std::optional<State> next_state(State s, Event e);
std::vector<Transition> transition_table();

}  // namespace mup::deploy
