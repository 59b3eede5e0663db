// Operations, steps and the transition table: the vocabulary every node operation is
// written in, and the one object that journals it.
//
// An operation (install, activate, rollback, gc, snapshot-restore, ...) is a walk through
// the states of ONE declarative table, kTransitions in operation.cpp: (state, event) ->
// state. Each state is a step object (engine/steps.cpp) that does its work on entry and
// answers an event. Before a state with outside effects is entered, its name is written
// to the journal (the operation's `step`), so a process killed at any instant leaves a row
// that says exactly where it was. Recovery (engine/recovery.cpp) maps that row, and what
// the disk shows, to a state of the same table, and runs the same step objects from there:
// a recovered operation ends with the records an uninterrupted one writes. An event with
// no row in the table is a bug: the machine stops with Errc::internal and undoes.
//
// Intent: everything a later step (or a recovery) needs is written when the operation
// begins, typed (struct Intent), and parsed without throwing: a journal row whose detail
// does not parse is "unknown", and unknown means roll back.
//
// Operation (RAII): begin() inserts the running row with its intent; step() journals the
// next state; finish() writes the result, the history fields, the audit record and any
// rows the caller adds, in ONE transaction. An Operation destroyed unfinished leaves its
// row running, as a crash would: recovery finishes it. Not thread-safe (one per thread).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mup::state {
class StateDb;
struct OperationRecord;
}  // namespace mup::state

namespace mup::engine {

enum class OpKind : uint8_t {
  install,
  activate,
  rollback,
  commit,  // a version on trial becomes committed
  gc,
  snapshot_create,
  snapshot_restore,
  group,  // install --with-deps: its members succeed or fail whole
};
std::string_view kind_name(OpKind k);
std::optional<OpKind> parse_kind(std::string_view s);

// The states of the table. The names are what the journal stores (`operations.step`);
// "activate" and "restore" keep the names earlier builds wrote, so their journals recover.
enum class State : uint8_t {
  resolve,        // pick the version, check pins and dependencies (no effects)
  fetch,          // the tree index and the missing pieces into the cache (harmless)
  snapshot,       // the component's state snapshotted
  stage,          // the new tree built beside the old one
  activate,       // the Activator switches to the new version (the point of no return)
  restore,        // a state snapshot put back (rollback --restore-state, snapshot restore)
  commit,         // records, history and audit, one transaction
  undo_activate,  // the Activator switches back
  cleanup,        // what the operation made and no longer needs: a staged tree, its snapshot
  collect,        // gc: remove versions and pieces
  done,
  failed,
  undone,
};
std::string_view state_name(State s);
std::optional<State> parse_state(std::string_view s);
bool is_terminal(State s);

enum class Event : uint8_t {
  ok,
  skip,     // the step has nothing to do for this operation
  already,  // resolve: the version is installed already (no fetch, no stage)
  current,  // resolve: the version is active already (nothing at all)
  error,
};
std::string_view event_name(Event e);

// The next state, or nullopt when the table has no row (a bug).
std::optional<State> next_state(State s, Event e);

struct Transition {
  State from;
  Event on;
  State to;
};
// The whole table, for documentation and tests.
std::vector<Transition> transition_table();

// What an operation needs from its start to its end (and a recovery from the journal).
struct Intent {
  std::string remote, target_path;  // install: where the package comes from
  nlohmann::json manifest;          // install: the signed package manifest (null otherwise)
  bool fresh = false;               // install: the tree did not exist before (undo removes it)
  std::string old_current, old_previous;  // the pointers before the switch
  std::string snapshot;                   // install: the snapshot taken before the switch
  std::string restore_snapshot;           // the snapshot to put back after the switch
  std::string undo_snapshot;              // the state restore_snapshot replaces (to undo it)
  bool trial = false;                     // leave the version on trial (not committed)
  std::string trial_policy;               // on restart while on trial: "rollback" | "keep"
  int64_t group = 0;                      // the group operation this one belongs to
  bool keep_status = false;  // rollback: leave the version's status (a group undone, not judged)
  uint64_t gc_keep = 0, gc_max_bytes = 0;
  int pid = 0;  // the process that runs it (shown by status)

  nlohmann::json to_json() const;
  // Never throws: a field of the wrong type is an error (the row is then "unknown").
  [[nodiscard]] static Result<Intent> from_json(const nlohmann::json& j);
};

enum class OpResult : uint8_t { done, failed, undone };
std::string_view result_name(OpResult r);

class Operation {
 public:
  // Inserts the running row with its whole intent.
  [[nodiscard]] static Result<Operation> begin(state::StateDb& db, OpKind kind,
                                               std::string component, std::string from,
                                               std::string to, std::string actor,
                                               const Intent& intent);
  // Takes over a row a dead process left (recovery), with its parsed intent.
  static Operation adopt(state::StateDb& db, const state::OperationRecord& row, OpKind kind,
                         Intent intent, std::string actor);

  Operation(Operation&&) noexcept = default;
  Operation& operator=(Operation&&) = delete;
  Operation(const Operation&) = delete;
  ~Operation() = default;

  int64_t id() const { return id_; }
  OpKind kind() const { return kind_; }
  const std::string& component() const { return component_; }
  const std::string& from() const { return from_; }
  const std::string& to() const { return to_; }
  const std::string& actor() const { return actor_; }
  Intent& intent() { return intent_; }
  const Intent& intent() const { return intent_; }
  bool recovering() const { return recovering_; }
  bool finished() const { return finished_; }

  // Journals that the operation is about to enter `s` (with the intent as it is now).
  [[nodiscard]] Status step(State s);
  // Ends the operation: result, bytes, error text, the audit record (action = kind name,
  // detail = `audit` plus operation id, from, to, result, error, recovered) and whatever
  // `also` writes, in one transaction. After a failed finish the row stays running.
  [[nodiscard]] Status finish(OpResult r, uint64_t bytes, const std::string& error,
                              nlohmann::json audit, const std::function<Status()>& also = {});

 private:
  Operation(state::StateDb& db, int64_t id, OpKind kind, std::string component, std::string from,
            std::string to, std::string actor, Intent intent, bool recovering)
      : db_(&db),
        id_(id),
        kind_(kind),
        component_(std::move(component)),
        from_(std::move(from)),
        to_(std::move(to)),
        actor_(std::move(actor)),
        intent_(std::move(intent)),
        recovering_(recovering) {}

  state::StateDb* db_;
  int64_t id_;
  OpKind kind_;
  std::string component_, from_, to_, actor_;
  Intent intent_;
  bool recovering_ = false;
  bool finished_ = false;
};

}  // namespace mup::engine
