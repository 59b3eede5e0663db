#include "deploy/deployment.hpp"

#include <iterator>

namespace mup::deploy {

namespace {

using S = State;
using E = Event;

// The one table. Forward rows first, then the undo path; abort and rollback leave the
// forward path from any state before commit. After commit a deployment is final: a rollback
// is a new deployment (strategy rollback).
constexpr Transition kTransitions[] = {
    {S::scheduled, E::ok, S::install},
    {S::scheduled, E::error, S::failed},
    {S::scheduled, E::abort, S::aborted},  // cancelled: nothing was done
    {S::scheduled, E::rollback, S::aborted},
    {S::install, E::ok, S::start_new},
    {S::install, E::error, S::failed},  // the engine undid its own install
    {S::install, E::abort, S::aborted},
    {S::install, E::rollback, S::rolled_back},
    {S::start_new, E::ok, S::wait_ready},
    {S::wait_ready, E::ok, S::soak},
    {S::soak, E::ok, S::switch_new},
    {S::soak, E::skip, S::switch_new},  // immediate and rollback: no soak
    {S::switch_new, E::ok, S::analyze},
    {S::analyze, E::ok, S::drain_old},
    {S::drain_old, E::skip, S::commit},  // blue-green: the old set stays warm
    {S::drain_old, E::ok, S::stop_old},
    {S::drain_old, E::error, S::stop_old},  // drain_ms passed: the proxy closed them
    {S::stop_old, E::ok, S::commit},
    {S::stop_old, E::error, S::commit},  // stopped by SIGKILL after its timeout
    {S::commit, E::ok, S::committed},
    // Leaving the forward path.
    {S::start_new, E::error, S::stop_new},
    {S::start_new, E::abort, S::stop_new},
    {S::start_new, E::rollback, S::stop_new},
    {S::wait_ready, E::error, S::stop_new},
    {S::wait_ready, E::abort, S::stop_new},
    {S::wait_ready, E::rollback, S::stop_new},
    {S::soak, E::error, S::stop_new},
    {S::soak, E::abort, S::stop_new},
    {S::soak, E::rollback, S::stop_new},
    {S::switch_new, E::error, S::switch_back},
    {S::switch_new, E::abort, S::switch_back},
    {S::switch_new, E::rollback, S::switch_back},
    {S::analyze, E::error, S::switch_back},
    {S::analyze, E::abort, S::switch_back},
    {S::analyze, E::rollback, S::switch_back},  // the judge's decision, or mup rollback
    {S::drain_old, E::abort, S::switch_back},
    {S::drain_old, E::rollback, S::switch_back},
    {S::stop_old, E::abort, S::switch_back},
    {S::stop_old, E::rollback, S::switch_back},
    {S::commit, E::error, S::switch_back},
    {S::commit, E::abort, S::switch_back},
    {S::commit, E::rollback, S::switch_back},
    // The undo path: never stops half-way.
    {S::switch_back, E::ok, S::stop_new},
    {S::switch_back, E::error, S::stop_new},
    {S::stop_new, E::ok, S::undo_install},
    {S::stop_new, E::error, S::undo_install},
    // The outcome: failed, unless the deployment was aborted or rolled back (the deployer
    // puts the outcome it recorded when it left the forward path in place of failed).
    {S::undo_install, E::ok, S::failed},
    {S::undo_install, E::error, S::failed},  // the engine could not roll back: the reason says so
};

constexpr std::string_view kStateNames[] = {
    "scheduled",    "install",   "start-new",   "wait-ready", "soak",        "switch",
    "analyze",      "drain-old", "stop-old",    "commit",     "switch-back", "stop-new",
    "undo-install", "committed", "rolled-back", "failed",     "aborted",
};

}  // namespace

std::string_view strategy_name(Strategy s) {
  switch (s) {
    case Strategy::immediate: return "immediate";
    case Strategy::blue_green: return "blue-green";
    case Strategy::rollback: return "rollback";
    case Strategy::canary: return "canary";
    case Strategy::rolling: return "rolling";
  }
  return "unknown";
}

std::optional<Strategy> parse_strategy(std::string_view s) {
  if (s == "immediate") return Strategy::immediate;
  if (s == "blue-green") return Strategy::blue_green;
  if (s == "rollback") return Strategy::rollback;
  if (s == "canary") return Strategy::canary;
  if (s == "rolling") return Strategy::rolling;
  return std::nullopt;
}

std::string_view state_name(State s) {
  auto i = static_cast<size_t>(s);
  return i < std::size(kStateNames) ? kStateNames[i] : "unknown";
}

std::optional<State> parse_state(std::string_view s) {
  for (size_t i = 0; i < std::size(kStateNames); ++i)
    if (kStateNames[i] == s) return static_cast<State>(i);
  return std::nullopt;
}

bool is_final(State s) {
  return s == S::committed || s == S::rolled_back || s == S::failed || s == S::aborted;
}

bool is_undoing(State s) {
  return s == S::switch_back || s == S::stop_new || s == S::undo_install || is_final(s);
}

std::string_view event_name(Event e) {
  switch (e) {
    case E::ok: return "ok";
    case E::error: return "error";
    case E::abort: return "abort";
    case E::rollback: return "rollback";
    case E::skip: return "skip";
  }
  return "unknown";
}

std::optional<State> next_state(State s, Event e) {
  for (const auto& t : kTransitions)
    if (t.from == s && t.on == e) return t.to;
  return std::nullopt;
}

std::vector<Transition> transition_table() {
  return {std::begin(kTransitions), std::end(kTransitions)};
}

}  // namespace mup::deploy
