// Recovery: what every command does first. Each unfinished operation whose owner is dead
// (its lock is free) is mapped, from its journaled state and what the disk shows, to a
// state of the transition table, and the same step objects finish or undo it:
//
//   journaled state             disk                         resume at
//   resolve/fetch/snapshot/stage  -                           cleanup        (undone)
//   activate/restore/commit      target active                the same state (forward)
//   activate/restore/commit      target not active            undo-activate  (undone)
//   undo-activate/cleanup         -                           the same state (undone)
//   collect (gc)                  -                           collect        (done)
//   anything else, or a detail that does not parse            "unknown": roll back
//
// A recovery that fails counts an attempt; after kMaxRecoveryAttempts the operation is
// quarantined. Then: versions on trial from an earlier boot follow their policy; the
// shared temp directories are swept when no writer runs; rows are reconciled with disk.
#include <algorithm>

#include "core/fault.hpp"
#include "core/fs.hpp"
#include "engine/internal.hpp"

namespace mup::engine {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kRecoveryActor = "mup-recovery";

State resume_state(OpKind kind, State journaled, bool target_active) {
  switch (journaled) {
    case State::resolve:
    case State::fetch:
    case State::snapshot:
    case State::stage:
      return kind == OpKind::snapshot_create && journaled == State::snapshot ? State::cleanup
                                                                             : State::cleanup;
    case State::activate:
    case State::restore:
    case State::commit:
      if (kind == OpKind::snapshot_restore) return journaled;  // restores are idempotent
      if (kind == OpKind::gc) return State::commit;
      return target_active ? journaled : State::undo_activate;
    case State::undo_activate:
    case State::cleanup:
    case State::collect: return journaled;
    default: return State::undo_activate;
  }
}

// A row nobody can read: put the component back on the version the row says it had.
Status roll_back_unknown(Engine& e, state::StateDb& db, const state::OperationRecord& op,
                         const std::string& why, RecoveryReport& rep) {
  auto& act = *e.internals().activator;
  const std::string& c = op.component;
  std::string note = "journal entry could not be understood (" + why + ")";
  if (!c.empty() && !op.from_version.empty() && e.store().has_version(c, op.from_version) &&
      act.active(c) != op.from_version) {
    MUP_TRY(act.switch_to(c, op.from_version));
    note += "; rolled back to " + op.from_version;
  }
  MUP_TRY(db.transaction([&]() -> Status {
    if (!c.empty()) MUP_TRY(reconcile(e, db, c));
    MUP_TRY(db.finish_operation(op.id, "undone", op.bytes, note));
    MUP_TRY(db.append_audit(kRecoveryActor, op.kind.empty() ? "unknown" : op.kind, c,
                            {{"operation", op.id},
                             {"from", op.from_version},
                             {"to", op.to_version},
                             {"result", "undone"},
                             {"recovered", true},
                             {"error", note}}));
    return {};
  }));
  rep.actions.push_back(op.kind + " " + c + ": " + note);
  return {};
}

Status recover_one(Engine& e, state::StateDb& db, const state::OperationRecord& op,
                   RecoveryReport& rep) {
  MUP_TRY(fault::point("engine.recover"));
  auto kind = parse_kind(op.kind);
  auto intent = Intent::from_json(op.detail);
  auto journaled = parse_state(op.step.empty() ? "resolve" : op.step);
  if (!kind || !intent || !journaled)
    return roll_back_unknown(e, db, op,
                             !kind     ? "unknown operation \"" + op.kind + "\""
                             : !intent ? intent.error().message()
                                       : "unknown step \"" + op.step + "\"",
                             rep);
  auto& act = *e.internals().activator;
  if (*kind == OpKind::group) {
    // A group that did not finish is undone whole: every member it installed that is
    // still active goes back to what it replaced (committed or on trial alike).
    auto hist = db.history("", 0);
    if (!hist) return tl::unexpected(hist.error());
    std::optional<Error> err;
    for (const auto& m : *hist) {
      if (m.kind != "install" || m.state != "done") continue;
      auto mi = Intent::from_json(m.detail);
      if (!mi || mi->group != op.id) continue;
      if (act.active(m.component) != m.to_version) continue;
      auto rb = switch_operation(e, OpKind::rollback, m.component, m.from_version, "",
                                 kRecoveryActor, true);
      if (!rb) err = err ? err->followed_by(rb.error()) : rb.error();
    }
    if (err) return tl::unexpected(*err);
    MUP_TRY(db.transaction([&]() -> Status {
      MUP_TRY(db.finish_operation(op.id, "undone", 0, "undone after a restart"));
      MUP_TRY(db.append_audit(kRecoveryActor, "group", op.component,
                              {{"operation", op.id}, {"result", "undone"}, {"recovered", true}}));
      return {};
    }));
    rep.actions.push_back("group " + op.component + " " + op.to_version + ": undone");
    return {};
  }
  bool target_active = !op.component.empty() && act.active(op.component) == op.to_version &&
                       (op.to_version != op.from_version || *journaled == State::commit ||
                        *journaled == State::restore);
  State start = resume_state(*kind, *journaled, target_active);
  Operation adopted = Operation::adopt(db, op, *kind, *intent, kRecoveryActor);
  Work w(e, e.internals(), db, std::move(adopted));
  if (*kind == OpKind::gc) {
    w.gc.keep = intent->gc_keep;
    w.gc.max_bytes = intent->gc_max_bytes;
  }
  State end = run(w, start);
  if (!w.op.finished()) {
    Error err = w.error ? *w.error : Error(Errc::internal, "recovery did not finish");
    return tl::unexpected(err);
  }
  std::string what =
      std::string(state_name(end)) + " after a restart (" + op.component + " " +
      (end == State::done
           ? op.to_version + " is active"
           : "stays at " + (op.from_version.empty() ? std::string("nothing") : op.from_version)) +
      ")";
  rep.actions.push_back(op.kind + " " + op.component + " " + op.from_version + " -> " +
                        op.to_version + ": " + what);
  return {};
}

// Versions on trial since an earlier boot follow their policy.
Status trial_policies(Engine& e, state::StateDb& db, RecoveryReport& rep) {
  auto rows = db.components();
  if (!rows) return tl::unexpected(rows.error());
  std::string boot = e.internals().boot_id();
  for (const auto& r : *rows) {
    if (r.trial_version.empty()) continue;
    if (json_str(r.trial, "boot_id") == boot) continue;
    std::string policy = json_str(r.trial, "policy", "rollback");
    if (policy == "keep") {
      auto c = switch_operation(e, OpKind::commit, r.name, r.trial_version, "", kRecoveryActor);
      if (!c && is(c.error(), Code::busy)) continue;  // a writer is at work on it
      if (!c) return tl::unexpected(c.error());
      rep.actions.push_back(r.name + " " + r.trial_version +
                            " was on trial across a restart: kept (committed), per its policy");
    } else {
      std::string to = json_str(r.trial, "from");
      if (to.empty()) to = r.previous_version;
      if (to.empty()) continue;  // nothing to go back to: it stays on trial
      auto b = switch_operation(e, OpKind::rollback, r.name, to, "", kRecoveryActor);
      if (!b && is(b.error(), Code::busy)) continue;  // a writer is at work on it
      if (!b) return tl::unexpected(b.error());
      rep.actions.push_back(r.name + " " + r.trial_version +
                            " was on trial across a restart: rolled back to " + to);
    }
  }
  return {};
}

// Temp files of metadata writes in tuf/ (every remote, and the --repo trust dir).
Status sweep_tuf(const stdfs::path& dir) {
  std::error_code ec;
  std::vector<stdfs::path> doomed;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec);
       !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec))
    if (it->path().filename().string().find(".mup-tmp.") != std::string::npos)
      doomed.push_back(it->path());
  for (const auto& p : doomed) MUP_TRY(fs::remove_all(p));
  return {};
}

}  // namespace

Status recover_all(Engine& e, RecoveryReport& rep) {
  auto& in = e.internals();
  auto db = in.connect();
  if (!db) return tl::unexpected(db.error());
  auto ops = db->unfinished_operations();
  if (!ops) return tl::unexpected(ops.error());
  // Members before the groups they belong to.
  std::stable_partition(ops->begin(), ops->end(),
                        [](const state::OperationRecord& o) { return o.kind != "group"; });
  for (const auto& op : *ops) {
    if (op.quarantined) {
      rep.degraded = true;
      continue;
    }
    // A live owner holds the operation's lock: its operation is running, not crashed.
    Result<LockFile> whole = LockFile();
    Result<WriterLock> comp = WriterLock();
    if (op.kind == "group") {
      whole = in.locks.group(op.id);  // its members lock their components themselves
      if (!whole) continue;
    } else if (op.component.empty() || op.kind == "gc") {
      whole = in.locks.exclusive();
      if (!whole) continue;
    } else {
      comp = in.locks.writer(op.component);
      if (!comp) continue;
    }
    auto r = recover_one(e, *db, op, rep);
    if (!r) {
      bool quarantine = op.recovery_attempts + 1 >= kMaxRecoveryAttempts;
      std::string msg = r.error().message();
      if (auto n = db->note_recovery_failure(op.id, msg, quarantine); !n)
        msg = r.error().followed_by(n.error()).message();
      rep.problems.push_back(op.kind + " " + op.component + " (operation " + std::to_string(op.id) +
                             "): recovery failed" + (quarantine ? " again; quarantined" : "") +
                             ": " + msg);
      rep.degraded = true;
    }
  }
  if (auto t = trial_policies(e, *db, rep); !t) {
    rep.problems.push_back("trial policy: " + t.error().message());
    rep.degraded = true;
  }
  // Shared directories only when no writer at all runs; each component under its lock.
  if (auto whole = in.locks.exclusive()) {
    MUP_TRY(e.store().recover_pieces());
    MUP_TRY(sweep_tuf(e.root() / "tuf"));
  }
  auto comps = e.store().components();
  if (!comps) return tl::unexpected(comps.error());
  for (const auto& c : *comps) {
    auto lock = in.locks.writer(c);
    if (!lock) continue;
    MUP_TRY(e.store().recover_component(c));
    MUP_TRY(e.store().remove_if_empty(c));
    MUP_TRY(db->transaction([&]() -> Status { return reconcile(e, *db, c); }));
  }
  return {};
}

Result<RecoveryReport> Engine::retry_quarantined(int64_t id) {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  auto ops = db->unfinished_operations();
  if (!ops) return tl::unexpected(ops.error());
  bool any = false;
  for (const auto& op : *ops)
    if (op.quarantined && (id == 0 || op.id == id)) {
      MUP_TRY(db->clear_quarantine(op.id));
      any = true;
    }
  if (!any && id != 0)
    return mup::fail(Errc::not_found, "operation " + std::to_string(id) + " is not quarantined");
  RecoveryReport rep;
  MUP_TRY(recover_all(*this, rep));
  recovery_ = rep;
  return rep;
}

}  // namespace mup::engine
