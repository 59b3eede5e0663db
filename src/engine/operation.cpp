#include "engine/operation.hpp"

#include <unistd.h>

#include <array>

#include "state/state_db.hpp"

namespace mup::engine {

using nlohmann::json;

namespace {

constexpr std::array<std::pair<OpKind, std::string_view>, 8> kKinds = {{
    {OpKind::install, "install"},
    {OpKind::activate, "activate"},
    {OpKind::rollback, "rollback"},
    {OpKind::commit, "commit"},
    {OpKind::gc, "gc"},
    {OpKind::snapshot_create, "snapshot-create"},
    {OpKind::snapshot_restore, "snapshot-restore"},
    {OpKind::group, "group"},
}};

constexpr std::array<std::pair<State, std::string_view>, 13> kStates = {{
    {State::resolve, "resolve"},
    {State::fetch, "fetch"},
    {State::snapshot, "snapshot"},
    {State::stage, "stage"},
    {State::activate, "activate"},
    {State::restore, "restore"},
    {State::commit, "commit"},
    {State::undo_activate, "undo-activate"},
    {State::cleanup, "cleanup"},
    {State::collect, "collect"},
    {State::done, "done"},
    {State::failed, "failed"},
    {State::undone, "undone"},
}};

// THE table. Every operation kind enters it at its own state (see engine.cpp) and walks
// it; the step objects decide the events. Reading it top to bottom is reading the life
// of an install:
//   resolve -> fetch -> snapshot -> stage -> activate -> restore -> commit -> done
// Before `activate` an error only needs a cleanup; after it, the switch is undone first.
// `cleanup` ends in `failed` (an error stopped the operation) or `undone` (recovery undid
// it); the machine picks which, the table names the first.
constexpr Transition kTransitions[] = {
    {State::resolve, Event::ok, State::fetch},
    {State::resolve, Event::already, State::activate},  // installed before: switch only
    {State::resolve, Event::current, State::done},      // active already: nothing to do
    {State::resolve, Event::error, State::failed},      // nothing was changed yet
    {State::fetch, Event::ok, State::snapshot},
    {State::fetch, Event::skip, State::snapshot},
    {State::fetch, Event::error, State::cleanup},
    {State::snapshot, Event::ok, State::stage},
    {State::snapshot, Event::skip, State::stage},
    {State::snapshot, Event::error, State::cleanup},
    {State::stage, Event::ok, State::activate},
    {State::stage, Event::skip, State::activate},  // snapshot-create: no tree
    {State::stage, Event::error, State::cleanup},
    {State::activate, Event::ok, State::restore},
    {State::activate, Event::skip, State::restore},  // snapshot-restore: no switch
    {State::activate, Event::error, State::undo_activate},
    {State::restore, Event::ok, State::commit},
    {State::restore, Event::skip, State::commit},
    {State::restore, Event::error, State::undo_activate},
    {State::commit, Event::ok, State::done},
    {State::commit, Event::error, State::undo_activate},
    {State::undo_activate, Event::ok, State::cleanup},
    {State::undo_activate, Event::skip, State::cleanup},
    {State::undo_activate, Event::error, State::failed},  // recovery retries, then quarantines
    {State::cleanup, Event::ok, State::failed},
    {State::cleanup, Event::skip, State::failed},
    {State::cleanup, Event::error, State::failed},
    {State::collect, Event::ok, State::commit},
    {State::collect, Event::error, State::commit},  // gc records what it removed either way
};

template <typename E, size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& t, E v) {
  for (const auto& [e, n] : t)
    if (e == v) return n;
  return "?";
}
template <typename E, size_t N>
std::optional<E> parse_name(const std::array<std::pair<E, std::string_view>, N>& t,
                            std::string_view s) {
  for (const auto& [e, n] : t)
    if (n == s) return e;
  return std::nullopt;
}

// Typed reads of a JSON object that never throw.
struct Reader {
  const json& j;
  std::string bad;
  void str(const char* k, std::string& out) {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return;
    if (!it->is_string()) {
      bad = k;
      return;
    }
    out = it->get<std::string>();
  }
  void boolean(const char* k, bool& out) {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return;
    if (!it->is_boolean()) {
      bad = k;
      return;
    }
    out = it->get<bool>();
  }
  template <typename N>
  void number(const char* k, N& out) {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return;
    if (!it->is_number_integer() && !it->is_number_unsigned()) {
      bad = k;
      return;
    }
    out = it->get<N>();
  }
};

}  // namespace

std::string_view kind_name(OpKind k) {
  return name_of(kKinds, k);
}
std::optional<OpKind> parse_kind(std::string_view s) {
  return parse_name(kKinds, s);
}
std::string_view state_name(State s) {
  return name_of(kStates, s);
}
std::optional<State> parse_state(std::string_view s) {
  return parse_name(kStates, s);
}
bool is_terminal(State s) {
  return s == State::done || s == State::failed || s == State::undone;
}

std::string_view event_name(Event e) {
  switch (e) {
    case Event::ok: return "ok";
    case Event::skip: return "skip";
    case Event::already: return "already";
    case Event::current: return "current";
    case Event::error: return "error";
  }
  return "?";
}

std::optional<State> next_state(State s, Event e) {
  for (const auto& t : kTransitions)
    if (t.from == s && t.on == e) return t.to;
  return std::nullopt;
}

std::vector<Transition> transition_table() {
  return {std::begin(kTransitions), std::end(kTransitions)};
}

std::string_view result_name(OpResult r) {
  switch (r) {
    case OpResult::done: return "done";
    case OpResult::failed: return "failed";
    case OpResult::undone: return "undone";
  }
  return "?";
}

json Intent::to_json() const {
  json j = {{"remote", remote},
            {"target", target_path},
            {"fresh", fresh},
            {"old_current", old_current},
            {"old_previous", old_previous},
            {"snapshot", snapshot},
            {"restore_snapshot", restore_snapshot},
            {"undo_snapshot", undo_snapshot},
            {"trial", trial},
            {"trial_policy", trial_policy},
            {"group", group},
            {"keep_status", keep_status},
            {"gc_keep", gc_keep},
            {"gc_max_bytes", gc_max_bytes},
            {"pid", pid}};
  if (!manifest.is_null()) j["manifest"] = manifest;
  return j;
}

Result<Intent> Intent::from_json(const json& j) {
  if (!j.is_object()) return fail(Errc::corrupt, "the operation's detail is not a JSON object");
  Intent in;
  Reader r{j, {}};
  r.str("remote", in.remote);
  r.str("target", in.target_path);
  r.boolean("fresh", in.fresh);
  r.str("old_current", in.old_current);
  r.str("old_previous", in.old_previous);
  r.str("snapshot", in.snapshot);
  r.str("restore_snapshot", in.restore_snapshot);
  r.str("undo_snapshot", in.undo_snapshot);
  r.boolean("trial", in.trial);
  r.str("trial_policy", in.trial_policy);
  r.number("group", in.group);
  r.boolean("keep_status", in.keep_status);
  r.number("gc_keep", in.gc_keep);
  r.number("gc_max_bytes", in.gc_max_bytes);
  r.number("pid", in.pid);
  if (auto it = j.find("manifest"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) r.bad = "manifest";
    in.manifest = *it;
  }
  if (!r.bad.empty())
    return fail(Errc::corrupt, "the operation's detail has a malformed field \"" + r.bad + "\"");
  return in;
}

Result<Operation> Operation::begin(state::StateDb& db, OpKind kind, std::string component,
                                   std::string from, std::string to, std::string actor,
                                   const Intent& intent) {
  state::OperationRecord rec;
  rec.kind = std::string(kind_name(kind));
  rec.component = component;
  rec.from_version = from;
  rec.to_version = to;
  rec.actor = actor;
  rec.detail = intent.to_json();
  rec.detail["pid"] = static_cast<int>(::getpid());
  auto id = db.begin_operation(rec);
  if (!id) return tl::unexpected(id.error());
  Intent in = intent;
  in.pid = static_cast<int>(::getpid());
  return Operation(db, *id, kind, std::move(component), std::move(from), std::move(to),
                   std::move(actor), std::move(in), false);
}

Operation Operation::adopt(state::StateDb& db, const state::OperationRecord& row, OpKind kind,
                           Intent intent, std::string actor) {
  return Operation(db, row.id, kind, row.component, row.from_version, row.to_version,
                   std::move(actor), std::move(intent), true);
}

Status Operation::step(State s) {
  return db_->record_step(id_, state_name(s), intent_.to_json());
}

Status Operation::finish(OpResult r, uint64_t bytes, const std::string& error, json audit,
                         const std::function<Status()>& also) {
  if (!audit.is_object()) audit = json::object();
  audit["operation"] = id_;
  audit["from"] = from_;
  audit["to"] = to_;
  audit["result"] = result_name(r);
  if (!error.empty()) audit["error"] = error;
  if (recovering_) audit["recovered"] = true;
  auto s = db_->transaction([&]() -> Status {
    if (also) MUP_TRY(also());
    MUP_TRY(db_->finish_operation(id_, result_name(r), bytes, error));
    MUP_TRY(db_->append_audit(actor_, kind_name(kind_), component_, audit));
    return {};
  });
  if (s) finished_ = true;
  return s;
}

}  // namespace mup::engine
