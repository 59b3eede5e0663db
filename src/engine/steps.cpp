// The step objects of the transition table (engine/operation.cpp) and the machine that
// walks it. Install's own steps (resolve, fetch, stage) are in install.cpp.
//
// Each step is idempotent: recovery enters the table at the journaled state and runs the
// same steps again, so a step must be right whether it ran before, half ran, or never
// ran. The undo steps (undo-activate, cleanup) are the ones that make a failed operation
// leave nothing behind; when one of them fails, the operation is NOT finished: it stays
// running in the journal and the next command's recovery tries again (the disk is not yet
// as the history would say).
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include "core/fault.hpp"
#include "core/fs.hpp"
#include "core/sha256.hpp"
#include "engine/internal.hpp"

namespace mup::engine {

namespace stdfs = std::filesystem;
using nlohmann::json;

std::string opt_str(const std::optional<std::string>& s) {
  return s ? *s : std::string();
}

double seconds_since(const Clock& clock, std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(clock.monotonic() - t0).count();
}

void Work::failed(Error err) {
  if (!error) {
    error = std::move(err);
  } else {
    error = error->followed_by(std::move(err));
  }
}

bool Work::switched() const {
  return in.activator->active(op.component()) == op.to();
}

namespace {

state::SnapshotRow snapshot_row(const snapshot::SnapshotInfo& s) {
  state::SnapshotRow r;
  r.id = s.id;
  r.component = s.component;
  r.version = s.version;
  r.created_at_ms = s.created_at_ms;
  r.content_hash = s.content_hash;
  r.path = s.path.string();
  r.files = s.files;
  r.bytes = s.bytes;
  return r;
}

bool is_switch_kind(OpKind k) {
  return k == OpKind::install || k == OpKind::activate || k == OpKind::rollback;
}

// ---- snapshot: the component's state, before the switch (install) or as asked ----

bool snapshot_applies(Work& w) {
  return !w.op.intent().snapshot.empty() &&
         (w.op.kind() == OpKind::install || w.op.kind() == OpKind::snapshot_create);
}

Result<Event> snapshot_step(Work& w) {
  const std::string& id = w.op.intent().snapshot;
  auto& snaps = w.e.snapshots();
  const std::string& c = w.op.component();
  uint64_t bytes_copied = 0;  // by this run (a resumed step finds the snapshot made)
  if (!snaps.exists(id)) {
    std::string label =
        w.op.kind() == OpKind::install ? "before install of " + w.op.to() : w.snapshot_label;
    auto s = snaps.create(c, w.e.state_dir(c), opt_str(w.in.activator->active(c)), label, id);
    if (!s) return tl::unexpected(s.error().context("snapshotting the state of " + c));
    bytes_copied = s->bytes_copied;
  }
  auto info = snaps.get(id);
  if (!info) return tl::unexpected(info.error());
  auto rows = w.db.snapshots(c);
  if (!rows) return tl::unexpected(rows.error());
  bool have = false;
  for (const auto& r : *rows) have = have || r.id == id;
  if (!have) MUP_TRY(w.db.add_snapshot(snapshot_row(*info)));
  w.snapshot_result = {{"id", info->id},
                       {"component", c},
                       {"version", info->version},
                       {"files", info->files},
                       {"bytes", info->bytes},
                       {"bytes_copied", bytes_copied},
                       {"content_hash", info->content_hash}};
  w.report.snapshot_id = id;
  return Event::ok;
}

// ---- activate: the point of no return ----

bool activate_applies(Work& w) {
  return is_switch_kind(w.op.kind());
}

Result<Event> activate_step(Work& w) {
  // A rollback to nothing (undoing a group member that was a first install) deactivates.
  if (w.op.to().empty()) {
    MUP_TRY(w.in.activator->deactivate(w.op.component()));
  } else {
    MUP_TRY(w.in.activator->switch_to(w.op.component(), w.op.to()));
  }
  return Event::ok;
}

// ---- restore: put a state snapshot back, keeping the state it replaces to undo it ----

bool restore_applies(Work& w) {
  return !w.op.intent().restore_snapshot.empty();
}

bool is_system_id(const std::string& id) {
  return id.rfind("system-", 0) == 0;
}

Result<Event> restore_step(Work& w) {
  auto& in = w.op.intent();
  auto& snaps = w.e.snapshots();
  const std::string& c = w.op.component();
  if (is_system_id(in.restore_snapshot)) {
    MUP_TRY(snaps.restore_system(in.restore_snapshot));
    return Event::ok;
  }
  if (!in.undo_snapshot.empty() && !snaps.exists(in.undo_snapshot)) {
    auto s = snaps.create(c, w.e.state_dir(c), opt_str(w.in.activator->active(c)),
                          "before restoring " + in.restore_snapshot, in.undo_snapshot);
    if (!s) return tl::unexpected(s.error().context("keeping the state of " + c + " to undo"));
    MUP_TRY(w.db.add_snapshot(snapshot_row(*s)));
  }
  MUP_TRY(snaps.restore(in.restore_snapshot, w.e.state_dir(c)));
  w.report.snapshot_id = in.restore_snapshot;
  return Event::ok;
}

// ---- commit: every record of the result, one transaction ----

Result<Event> commit_step(Work& w) {
  const std::string& c = w.op.component();
  const Intent& in = w.op.intent();
  uint64_t bytes = w.report.bytes_fetched;
  json audit = json::object();
  std::function<Status()> also;
  switch (w.op.kind()) {
    case OpKind::install:
    case OpKind::activate:
    case OpKind::rollback:
    case OpKind::commit:
      also = [&]() -> Status {
        auto before = w.db.component(c);
        if (!before) return tl::unexpected(before.error());
        std::string was_on_trial = *before ? (*before)->trial_version : "";
        MUP_TRY(reconcile(w.e, w.db, c));
        auto row = w.db.component(c);
        if (!row) return tl::unexpected(row.error());
        state::ComponentRow r = row->value_or(state::ComponentRow{});
        r.name = c;
        if (w.op.kind() == OpKind::install && !in.manifest.is_null()) {
          auto m = package::Manifest::from_json(in.manifest);
          if (!m) return tl::unexpected(m.error().context("the journaled manifest"));
          r.remote = in.remote;
          r.type = std::string(package::type_name(m->type));
          state::VersionRow vr;
          vr.component = c;
          vr.version = w.op.to();
          vr.index_sha256 = m->index_sha256;
          vr.manifest = in.manifest;
          vr.size = m->size;
          vr.status = in.trial ? "trial" : "committed";
          // Keep the install time of a version installed before (an "already" install).
          if (auto old = w.db.versions(c))
            for (const auto& v : *old)
              if (v.version == vr.version) vr.installed_at_ms = v.installed_at_ms;
          MUP_TRY(w.db.put_version(vr));
        }
        if (w.op.kind() == OpKind::rollback && !was_on_trial.empty() && was_on_trial != w.op.to())
          MUP_TRY(w.db.set_version_status(c, was_on_trial, in.keep_status ? "committed" : "bad"));
        if (w.op.kind() == OpKind::commit) {
          if (!was_on_trial.empty()) MUP_TRY(w.db.set_version_status(c, was_on_trial, "committed"));
          r.trial_version.clear();
          r.trial = json::object();
        } else if (in.trial) {
          r.trial_version = w.op.to();
          r.trial = {{"since_ms", w.in.now_ms()},
                     {"boot_id", w.in.boot_id()},
                     {"policy", in.trial_policy.empty() ? "rollback" : in.trial_policy},
                     {"operation", w.op.id()},
                     {"from", w.op.from()}};
        } else {
          r.trial_version.clear();
          r.trial = json::object();
        }
        return w.db.upsert_component(r);
      };
      audit["seconds"] = w.elapsed();
      if (w.op.kind() == OpKind::install) audit["bytes_fetched"] = bytes;
      if (!in.restore_snapshot.empty()) audit["restored_snapshot"] = in.restore_snapshot;
      if (in.trial) audit["trial"] = true;
      if (!w.superseded.empty()) audit["superseded"] = w.superseded;
      break;
    case OpKind::gc:
      also = [&]() -> Status {
        auto names = w.db.components();
        if (!names) return tl::unexpected(names.error());
        std::set<std::string> all;
        for (const auto& r : *names) all.insert(r.name);
        std::error_code ec;
        for (const auto& d : stdfs::directory_iterator(w.e.root() / "components", ec))
          if (d.is_directory()) all.insert(d.path().filename().string());
        for (const auto& n : all) MUP_TRY(reconcile(w.e, w.db, n));
        return {};
      };
      {
        json removed = json::array();
        for (const auto& [cc, v] : w.gc_report.removed) removed.push_back(cc + "@" + v);
        audit["removed"] = removed;
        audit["bytes_freed"] = w.gc_report.bytes_freed;
        audit["snapshots_removed"] = w.gc_report.snapshots_removed;
      }
      break;
    case OpKind::snapshot_create: audit["snapshot"] = in.snapshot; break;
    case OpKind::snapshot_restore: audit["snapshot"] = in.restore_snapshot; break;
    case OpKind::group: break;
  }
  MUP_TRY(fault::point("engine.commit"));
  OpResult result = OpResult::done;
  std::string err;
  if (w.op.kind() == OpKind::gc && w.error) {
    result = OpResult::failed;  // gc records what it removed, and why it stopped
    err = w.error->message();
  }
  MUP_TRY(w.op.finish(result, bytes, err, audit, also));
  return Event::ok;
}

// ---- undo-activate: the Activator back to where it was (and the state, if restored) ----

bool undo_activate_applies(Work& w) {
  if (!is_switch_kind(w.op.kind()) && w.op.intent().undo_snapshot.empty()) return false;
  const std::string& c = w.op.component();
  const Intent& in = w.op.intent();
  bool pointers =
      is_switch_kind(w.op.kind()) && (opt_str(w.in.activator->active(c)) != in.old_current ||
                                      opt_str(w.in.activator->previous(c)) != in.old_previous);
  bool state = !in.undo_snapshot.empty() && w.e.snapshots().exists(in.undo_snapshot);
  return pointers || state;
}

Result<Event> undo_activate_step(Work& w) {
  const std::string& c = w.op.component();
  const Intent& in = w.op.intent();
  if (!in.undo_snapshot.empty() && w.e.snapshots().exists(in.undo_snapshot))
    MUP_TRY(w.e.snapshots().restore(in.undo_snapshot, w.e.state_dir(c)));
  if (is_switch_kind(w.op.kind())) {
    if (opt_str(w.in.activator->active(c)) != in.old_current) {
      if (in.old_current.empty()) {
        MUP_TRY(w.in.activator->deactivate(c));
      } else {
        MUP_TRY(w.in.activator->switch_to(c, in.old_current));
      }
    }
    if (opt_str(w.in.activator->previous(c)) != in.old_previous) {
      std::optional<std::string> p;
      if (!in.old_previous.empty()) p = in.old_previous;
      MUP_TRY(w.in.activator->set_previous(c, p));
    }
  }
  return Event::ok;
}

// ---- cleanup: what the operation made and no longer needs ----

bool cleanup_applies(Work& w) {
  return w.op.kind() == OpKind::install || w.op.kind() == OpKind::snapshot_create;
}

Result<Event> cleanup_step(Work& w) {
  const std::string& c = w.op.component();
  const Intent& in = w.op.intent();
  store::InstallStore& st = w.e.store();
  if (w.op.kind() == OpKind::install && in.fresh && st.has_version(c, w.op.to()) &&
      w.in.activator->active(c) != w.op.to() && w.in.activator->previous(c) != w.op.to())
    MUP_TRY(st.remove_version(c, w.op.to()));
  if (!in.snapshot.empty()) {
    if (w.e.snapshots().exists(in.snapshot)) MUP_TRY(w.e.snapshots().remove(in.snapshot));
    auto gone = w.db.delete_snapshot(in.snapshot);
    if (!gone) return tl::unexpected(gone.error());
  }
  if (w.op.kind() == OpKind::install) {
    MUP_TRY(st.recover_component(c));  // an index whose tree never appeared, temp files
    MUP_TRY(st.remove_if_empty(c));    // a refused first install leaves no empty directory
  }
  return Event::ok;
}

// ---- collect: gc ----

Result<Event> collect_step(Work& w) {
  auto r = collect(w.e, w.db, w.gc);
  if (!r) return tl::unexpected(r.error());
  w.gc_report = std::move(*r);
  return Event::ok;
}

}  // namespace

namespace {

// Bytes only this snapshot holds (files with no other link: later snapshots hard-link the
// files that did not change).
uint64_t unique_bytes(const stdfs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec);
       !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1)
      total += static_cast<uint64_t>(st.st_size);
  }
  return total;
}

// gc's snapshot retention (store::GcOptions): what it removes goes into `rep`; with dry_run
// nothing is removed. `rep.removed` names the versions gc removes (or would).
Status collect_snapshots(Engine& e, state::StateDb& db, const store::GcOptions& o,
                         store::GcReport& rep) {
  auto& snaps = e.snapshots();
  std::set<std::string> members;  // of system snapshots: removed with their group only
  auto systems = snaps.list_system();
  if (!systems) return tl::unexpected(systems.error());
  for (const auto& sys : *systems)
    for (const auto& m : sys.members) members.insert(m.id);
  std::set<std::pair<std::string, std::string>> gone(rep.removed.begin(), rep.removed.end());
  auto comps = e.store().components();
  if (!comps) return tl::unexpected(comps.error());
  std::vector<snapshot::SnapshotInfo> doomed;
  for (const auto& c : *comps) {
    auto list = snaps.list(c);
    if (!list) return tl::unexpected(list.error());
    auto vs = e.store().versions(c);
    if (!vs) return tl::unexpected(vs.error());
    std::set<std::string> kept_versions;
    for (const auto& v : *vs)
      if (!gone.count({c, v})) kept_versions.insert(v);
    std::set<std::string> has_newest;  // kept versions whose newest snapshot is kept
    size_t kept = 0;
    uint64_t kept_bytes = 0;
    for (auto it = list->rbegin(); it != list->rend(); ++it) {  // newest first
      const auto& s = *it;
      const bool automatic = s.label.rfind("before ", 0) == 0;
      if (members.count(s.id) || !automatic) continue;
      if (kept_versions.count(s.version) && has_newest.insert(s.version).second) continue;
      if (kept < o.snapshots_keep &&
          (o.snapshot_max_bytes == 0 || kept_bytes + s.bytes <= o.snapshot_max_bytes)) {
        ++kept;
        kept_bytes += s.bytes;
        continue;
      }
      doomed.push_back(s);
    }
  }
  for (const auto& s : doomed) {
    rep.snapshots_removed.push_back(s.id);
    rep.snapshot_bytes_freed += unique_bytes(s.path);
    if (o.dry_run) continue;
    MUP_TRY(fault::point("engine.gc.snapshot"));
    MUP_TRY(snaps.remove(s.id));
    auto deleted = db.delete_snapshot(s.id);
    if (!deleted) return tl::unexpected(deleted.error());
  }
  return {};
}

// gc's history retention (history_keep, steps_keep, audit_keep): counts into `rep`; with
// dry_run nothing is removed. Audit records are cut only from a chain that verifies (with
// the node's audit key when it has one).
Status collect_history(const Engine::Internals& in, state::StateDb& db, const store::GcOptions& o,
                       store::GcReport& rep) {
  state::HistoryRetention keep;
  keep.operations = keep.deployments = keep.plans = o.history_keep;
  keep.steps = o.steps_keep;
  keep.audit = o.audit_keep;
  keep.dry_run = o.dry_run;
  auto t = db.trim_history(keep, in.audit_public ? &*in.audit_public : nullptr);
  if (!t) return tl::unexpected(t.error().context("trimming the history"));
  rep.operations_removed = t->operations;
  rep.deployments_removed = t->deployments;
  rep.plans_removed = t->plans;
  rep.steps_removed = t->steps;
  rep.audit_records_removed = t->audit;
  rep.audit_base = t->audit_base;
  rep.audit_problem = t->audit_problem;
  return {};
}

}  // namespace

Result<store::GcReport> collect(Engine& e, state::StateDb& db, const store::GcOptions& o) {
  auto rep = e.store().gc(o);
  if (!rep) return rep;
  MUP_TRY(collect_snapshots(e, db, o, *rep));
  MUP_TRY(collect_history(e.internals(), db, o, *rep));
  return rep;
}

namespace {

Result<Event> no_op(Work&) {
  return Event::ok;
}

struct StepDef {
  State state;
  bool (*applies)(Work&);  // null: always
  Result<Event> (*enter)(Work&);
  bool journal;  // the state has outside effects: journal it before entering
  bool undo;     // an undo step: its failure leaves the operation running
};

}  // namespace

// install.cpp
Result<Event> resolve_step(Work& w);
Result<Event> fetch_step(Work& w);
bool fetch_applies(Work& w);
Result<Event> stage_step(Work& w);
bool stage_applies(Work& w);

namespace {

const StepDef kSteps[] = {
    {State::resolve, nullptr, &resolve_step, false, false},
    {State::fetch, &fetch_applies, &fetch_step, true, false},
    {State::snapshot, &snapshot_applies, &snapshot_step, true, false},
    {State::stage, &stage_applies, &stage_step, true, false},
    {State::activate, &activate_applies, &activate_step, true, false},
    {State::restore, &restore_applies, &restore_step, true, false},
    {State::commit, nullptr, &commit_step, true, false},
    {State::undo_activate, &undo_activate_applies, &undo_activate_step, true, true},
    {State::cleanup, &cleanup_applies, &cleanup_step, true, true},
    {State::collect, nullptr, &collect_step, true, false},
    {State::done, nullptr, &no_op, false, false},
    {State::failed, nullptr, &no_op, false, false},
    {State::undone, nullptr, &no_op, false, false},
};

const StepDef& step_def(State s) {
  for (const auto& d : kSteps)
    if (d.state == s) return d;
  return kSteps[0];  // unreachable: every state has a row (engine_test checks)
}

}  // namespace

State run(Work& w, State s) {
  bool undo_failed = false;
  for (int steps = 0; !is_terminal(s); ++steps) {
    if (steps > 64) {  // the table has no cycle this long: a bug, stop loudly
      w.failed(Error(Errc::internal, "the operation did not end after 64 steps (a bug in mup)"));
      undo_failed = true;
      s = State::failed;
      break;
    }
    const StepDef& d = step_def(s);
    Event ev = Event::ok;
    if (d.applies && !d.applies(w)) {
      ev = Event::skip;
    } else {
      Status pre = d.journal ? w.op.step(s) : Status{};
      if (pre) pre = fault::point(std::string("engine.step.") + std::string(state_name(s)));
      if (!pre && !d.undo) {
        w.failed(classify(pre.error()));
        ev = Event::error;
      } else {
        // An undo step runs even when its journal entry could not be written: it is
        // idempotent, and recovery would run it anyway.
        if (d.state != State::resolve && d.state != State::commit)
          w.in.emit({{"event", "step"},
                     {"step", state_name(s)},
                     {"component", w.op.component()},
                     {"version", w.op.to()},
                     {"operation", w.op.id()}});
        auto r = d.enter(w);
        if (!r) {
          w.failed(classify(r.error()));
          ev = Event::error;
          if (d.undo) undo_failed = true;
        } else {
          ev = *r;
        }
      }
    }
    if (w.install && w.install->cancel && w.install->cancel->load() && ev == Event::ok &&
        (s == State::fetch || s == State::snapshot || s == State::stage)) {
      w.failed(error(Code::cancelled, "cancelled before " + std::string(state_name(s)) + " ended"));
      ev = Event::error;
    }
    auto next = next_state(s, ev);
    if (!next) {
      w.failed(Error(Errc::internal, "no transition from " + std::string(state_name(s)) + " on " +
                                         std::string(event_name(ev)) + " (a bug in mup)"));
      // Undo what a switch may have done; from the undo states themselves, stop.
      next =
          s == State::undo_activate || s == State::cleanup ? State::failed : State::undo_activate;
    }
    s = *next;
  }
  if (w.op.finished()) return s;
  if (s == State::done) {
    // resolve found the version active already: an operation without effects.
    auto f = w.op.finish(OpResult::done, 0, "", {{"note", "already active"}});
    if (!f) w.failed(f.error());
    return s;
  }
  if (undo_failed) {
    // The disk is not as it was: leave the operation running for recovery to retry.
    if (w.error)
      w.error = w.error->context(std::string(kind_name(w.op.kind())) + " " + w.op.component() +
                                 " could not be undone completely; the next mup command retries "
                                 "the undo");
    return State::failed;
  }
  OpResult r = w.op.recovering() ? OpResult::undone : OpResult::failed;
  std::string why = w.error ? w.error->message() : std::string("undone after a restart");
  auto f = w.op.finish(r, w.report.bytes_fetched, why, json::object(), [&]() -> Status {
    if (w.op.component().empty()) return {};
    return reconcile(w.e, w.db, w.op.component());
  });
  if (!f) w.failed(f.error());
  return r == OpResult::undone ? State::undone : State::failed;
}

Status reconcile(Engine& e, state::StateDb& db, const std::string& c) {
  store::InstallStore& st = e.store();
  auto& act = *e.internals().activator;
  auto row = db.component(c);
  if (!row) return tl::unexpected(row.error());
  auto on_disk = st.versions(c);
  if (!on_disk) return tl::unexpected(on_disk.error());
  if (on_disk->empty() && !st.active(c)) {
    // Nothing installed (a first install undone): no component row either.
    if (*row) MUP_TRY(db.delete_component(c));
    auto rows = db.versions(c);
    if (!rows) return tl::unexpected(rows.error());
    for (const auto& v : *rows) MUP_TRY(db.delete_version(c, v.version));
    return {};
  }
  state::ComponentRow r = row->value_or(state::ComponentRow{});
  r.name = c;
  r.active_version = opt_str(act.active(c));
  r.previous_version = opt_str(act.previous(c));
  r.pinned_version = opt_str(st.pinned(c));
  if (!r.trial_version.empty() && r.trial_version != r.active_version) {
    r.trial_version.clear();
    r.trial = json::object();
  }
  MUP_TRY(db.upsert_component(r));
  std::set<std::string> disk(on_disk->begin(), on_disk->end());
  auto rows = db.versions(c);
  if (!rows) return tl::unexpected(rows.error());
  std::set<std::string> known;
  for (const auto& v : *rows) {
    if (!disk.count(v.version)) {
      MUP_TRY(db.delete_version(c, v.version));
    } else {
      known.insert(v.version);
    }
  }
  for (const auto& v : disk) {
    if (known.count(v)) continue;
    state::VersionRow vr;
    vr.component = c;
    vr.version = v;
    if (auto b = fs::read_file(st.index_path(c, v))) vr.index_sha256 = sha256(*b).hex();
    MUP_TRY(db.put_version(vr));
  }
  // Snapshots: the directory is the truth; a row without its snapshot goes, a snapshot
  // without its row gets one.
  auto snaps = e.snapshots().list(c);
  auto srows = db.snapshots(c);
  if (snaps && srows) {
    std::set<std::string> have;
    for (const auto& s : *snaps) have.insert(s.id);
    std::set<std::string> recorded;
    for (const auto& s : *srows) {
      if (!have.count(s.id)) {
        MUP_TRY(db.delete_snapshot(s.id));
      } else {
        recorded.insert(s.id);
      }
    }
    for (const auto& s : *snaps)
      if (!recorded.count(s.id)) MUP_TRY(db.add_snapshot(snapshot_row(s)));
  }
  return {};
}

}  // namespace mup::engine
