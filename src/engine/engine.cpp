// Engine: opening a node, the reads, and each operation's entry into the transition table.
#include "engine/engine.hpp"

#include <unistd.h>

#include <fstream>
#include <map>
#include <set>

#include "core/fault.hpp"
#include "core/fs.hpp"
#include "engine/internal.hpp"
#include "transfer/fetcher.hpp"

namespace mup::engine {

namespace stdfs = std::filesystem;
using nlohmann::json;

// ---- Internals ----

Result<state::StateDb> Engine::Internals::connect() const {
  auto db = state::StateDb::open(e.root() / "state.db", clock());
  if (!db) return tl::unexpected(db.error());
  if (audit_key) db->set_audit_key(*audit_key);
  return db;
}

Result<state::StateDb> Engine::connect_state() const {
  return in_->connect();
}

const Clock& Engine::Internals::clock() const {
  return e.opts_.clock ? *e.opts_.clock : system_clock();
}

int64_t Engine::Internals::now_ms() const {
  return clock().wall_ms();
}

std::string Engine::Internals::boot_id() const {
  if (e.opts_.boot_id) return e.opts_.boot_id();
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(f, id);
  return id;
}

std::unique_ptr<transfer::Fetcher> Engine::Internals::fetcher() const {
  if (e.opts_.make_fetcher) return e.opts_.make_fetcher();
  return std::make_unique<transfer::HttpFetcher>(transfer::http_options_from_env());
}

void Engine::Internals::emit(json event) const {
  if (events) events->emit(std::move(event));
}

// ---- open ----

Engine::Engine(stdfs::path root, EngineOptions opts, store::InstallStore store)
    : root_(std::move(root)), opts_(std::move(opts)), store_(std::move(store)) {}

Engine::~Engine() {
  if (in_ && in_->events) in_->events->flush();
}

Result<std::unique_ptr<Engine>> Engine::open(const stdfs::path& root, EngineOptions opts) {
  if (opts.actor.empty()) opts.actor = state::current_actor();
  if (opts.device_key.empty()) opts.device_key = root / "device.key";
  MUP_TRY(fs::create_dirs(root));
  auto st = store::InstallStore::open(root);
  if (!st) return tl::unexpected(st.error().context("opening the install store"));
  std::unique_ptr<Engine> e(new Engine(root, std::move(opts), std::move(*st)));
  e->in_ = std::unique_ptr<Internals>(new Internals{*e, NodeLocks(root), nullptr, nullptr, {}, {}});
  e->in_->activator = e->opts_.make_activator ? e->opts_.make_activator(e->store_)
                                              : std::make_unique<SymlinkActivator>(e->store_);
  if (e->opts_.on_event) e->in_->events = std::make_unique<EventBus>(e->opts_.on_event);
  if (stdfs::exists(root / "audit-key.pem")) {
    auto pem = fs::read_file(root / "audit-key.pem", 1 << 16);
    if (!pem) return tl::unexpected(pem.error());
    auto key =
        crypto::PrivateKey::from_pem({reinterpret_cast<const char*>(pem->data()), pem->size()});
    if (!key) return tl::unexpected(key.error().context((root / "audit-key.pem").string()));
    e->in_->audit_public = key->public_key();
    e->in_->audit_key = std::move(*key);
  }
  // The database exists and is at this build's schema before anything else reads it.
  auto db = e->in_->connect();
  if (!db) return tl::unexpected(db.error());
  if (!db->downgraded().empty()) {
    // mup itself was rolled back: the newer one's down SQL ran and may have dropped data.
    json undone = db->downgraded();
    MUP_TRY(
        db->append_audit(e->opts_.actor, "schema-downgrade", "",
                         {{"undone_versions", undone}, {"schema_version", db->schema_version()}}));
  }
  const Clock* clock = &e->in_->clock();
  auto snaps =
      snapshot::SnapshotStore::open(root / "snapshots", [clock] { return clock->wall_ms(); });
  if (!snaps) return tl::unexpected(snaps.error());
  e->snapshots_ = std::make_unique<snapshot::SnapshotStore>(std::move(*snaps));
  if (e->opts_.recover) {
    // Never fatal: what could not be recovered is reported, and the node runs degraded.
    try {
      if (auto r = recover_all(*e, e->recovery_); !r) {
        e->recovery_.problems.push_back(r.error().message());
        e->recovery_.degraded = true;
      }
    } catch (const std::exception& x) {  // a bug; the node must still open
      e->recovery_.problems.push_back(std::string("recovery stopped by an internal error: ") +
                                      x.what());
      e->recovery_.degraded = true;
    }
  }
  return e;
}

// ---- reads ----

Result<std::vector<state::OperationRecord>> Engine::history(const std::string& c, size_t limit) {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  return db->history(c, limit);
}

Result<std::vector<state::AuditRecord>> Engine::audit(size_t limit) {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  return db->audit(limit);
}

Result<state::AuditReport> Engine::verify_audit() {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  return db->verify_audit(in_->audit_public ? &*in_->audit_public : nullptr);
}

Result<std::vector<std::pair<std::string, std::string>>> Engine::remotes() {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  return db->remotes();
}

Result<std::vector<snapshot::SnapshotInfo>> Engine::snapshot_list(const std::string& c) {
  return snapshots_->list(c);
}

Result<snapshot::VerifyReport> Engine::snapshot_verify(const std::string& id) {
  return snapshots_->verify(id);
}

Status Engine::verify_tree(const std::string& c, const std::string& version) {
  std::string v = version;
  if (v.empty()) {
    auto a = in_->activator->active(c);
    if (!a) return fail(Code::not_installed, c + " has no active version");
    v = *a;
  }
  return store_.verify(c, v);
}

std::string iso_time(int64_t ms) {
  return iso_utc(ms);
}

namespace {

json op_json(const state::OperationRecord& op) {
  return {{"id", op.id},
          {"kind", op.kind},
          {"component", op.component},
          {"from", op.from_version},
          {"to", op.to_version},
          {"step", op.step},
          {"started_at", iso_time(op.started_at_ms)},
          {"pid", json_int(op.detail, "pid")},
          {"recovery_attempts", op.recovery_attempts},
          {"recovery_error", op.recovery_error}};
}

}  // namespace

Result<json> Engine::versions(const std::string& c) {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  auto vs = store_.versions(c);
  if (!vs) return tl::unexpected(vs.error());
  auto act = in_->activator->active(c), prev = in_->activator->previous(c), pin = store_.pinned(c);
  auto rows = db->versions(c);
  if (!rows) return tl::unexpected(rows.error());
  json j = json::array();
  for (const auto& v : *vs) {
    json r = {{"version", v}, {"active", act == v}, {"previous", prev == v}, {"pinned", pin == v}};
    for (const auto& row : *rows)
      if (row.version == v) {
        r["size"] = row.size;
        r["installed_at"] = iso_time(row.installed_at_ms);
        r["status"] = row.status;
      }
    j.push_back(r);
  }
  return json{{"component", c}, {"versions", j}};
}

Result<json> Engine::status() {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  json comps = json::array();
  auto names = store_.components();
  if (!names) return tl::unexpected(names.error());
  for (const auto& c : *names) {
    auto row = db->component(c);
    if (!row) return tl::unexpected(row.error());
    auto vs = store_.versions(c);
    if (!vs) return tl::unexpected(vs.error());
    json trial = nullptr;
    if (*row && !(*row)->trial_version.empty())
      trial = {{"version", (*row)->trial_version},
               {"since", iso_time(json_int((*row)->trial, "since_ms"))},
               {"policy", json_str((*row)->trial, "policy", "rollback")}};
    comps.push_back({{"name", c},
                     {"active", opt_str(in_->activator->active(c))},
                     {"previous", opt_str(in_->activator->previous(c))},
                     {"pinned", opt_str(store_.pinned(c))},
                     {"versions", *vs},
                     {"remote", *row ? (*row)->remote : ""},
                     {"type", *row ? (*row)->type : ""},
                     {"trial", trial}});
  }
  auto ops = db->unfinished_operations();
  if (!ops) return tl::unexpected(ops.error());
  json running = json::array(), quarantined = json::array();
  for (const auto& op : *ops) (op.quarantined ? quarantined : running).push_back(op_json(op));
  auto bytes = store_.installed_bytes();
  auto remotes = db->remotes();
  json rj = json::array();
  if (remotes)
    for (const auto& [n, u] : *remotes) rj.push_back({{"name", n}, {"url", u}});
  return json{{"root", root_.string()},
              {"components", comps},
              {"remotes", rj},
              {"installed_bytes", bytes ? *bytes : 0},
              {"running", running},
              {"quarantined", quarantined},
              {"degraded", recovery_.degraded || !quarantined.empty()},
              {"recovered", recovery_.actions},
              {"problems", recovery_.problems}};
}

// ---- operations ----

namespace {

// The quarantined operations of component `c` (a rollback supersedes them).
Result<std::vector<int64_t>> quarantined_ops(state::StateDb& db, const std::string& c) {
  auto ops = db.unfinished_operations();
  if (!ops) return tl::unexpected(ops.error());
  std::vector<int64_t> ids;
  for (const auto& op : *ops)
    if (op.quarantined && op.component == c) ids.push_back(op.id);
  return ids;
}

}  // namespace

Status refuse_if_quarantined(state::StateDb& db, const std::string& c) {
  auto q = quarantined_ops(db, c);
  if (!q) return tl::unexpected(q.error());
  if (q->empty()) return {};
  return fail(Code::quarantined,
              "the recovery of operation " + std::to_string(q->front()) + " on " + c +
                  " failed repeatedly, so " + c +
                  " is quarantined; fix the cause (mup status says what failed), then run mup "
                  "recover, or roll back with mup rollback " +
                  c);
}

Status Engine::add_remote(const std::string& name, const std::string& url,
                          const stdfs::path& trusted_root) {
  MUP_TRY(package::validate_component_name(name));
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0 && url.rfind("file://", 0) != 0)
    return mup::fail(Errc::invalid_argument,
                     "remote URL must start with http://, https:// or file://");
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  auto existing = db->remote_url(name);
  if (!existing) return tl::unexpected(existing.error());
  if (*existing)
    return mup::fail(Errc::already_exists, "remote " + name + " exists (" + **existing + ")");
  auto bytes = fs::read_file(trusted_root, 1 << 20);
  if (!bytes) return tl::unexpected(bytes.error().context("--trusted-root"));
  MUP_TRY(fs::create_dirs(tuf_dir(name)));
  MUP_TRY(fs::write_file_atomic(tuf_dir(name) / "root.json", *bytes));
  {
    auto f = in_->fetcher();
    tuf::ClockAdapter clock(in_->clock());
    tuf::UpdaterConfig cfg;
    cfg.metadata_dir = tuf_dir(name);
    auto up = tuf::Updater::create(cfg, *f, clock);
    if (!up) {
      Error err = up.error().context("trusted root " + trusted_root.string());
      if (auto rm = fs::remove_all(tuf_dir(name)); !rm) err = err.followed_by(rm.error());
      return tl::unexpected(err);
    }
  }
  std::string u = url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  return db->transaction([&]() -> Status {
    MUP_TRY(db->add_remote(name, u));
    MUP_TRY(db->append_audit(opts_.actor, "remote-add", name, {{"url", u}}));
    return {};
  });
}

Result<std::string> pick_remote(state::StateDb& db, const std::string& component,
                                const std::string& requested) {
  if (!requested.empty()) {
    auto u = db.remote_url(requested);
    if (!u) return tl::unexpected(u.error());
    if (!*u) return fail(Code::no_remote, "no remote named " + requested + " (mup remote add)");
    return requested;
  }
  if (!component.empty()) {
    auto row = db.component(component);
    if (!row) return tl::unexpected(row.error());
    if (*row && !(*row)->remote.empty()) return (*row)->remote;
  }
  auto all = db.remotes();
  if (!all) return tl::unexpected(all.error());
  if (all->empty())
    return fail(Code::no_remote,
                "this node has no remote: mup remote add NAME URL --trusted-root ROOT.json");
  if (all->size() > 1)
    return fail(Code::ambiguous_remote,
                "this node has several remotes: say which one with --remote");
  return all->front().first;
}

Result<SwitchReport> switch_operation(Engine& e, OpKind kind, const std::string& c,
                                      const std::string& v, const std::string& restore_snapshot,
                                      const std::string& actor, bool keep_status) {
  auto& in = e.internals();
  auto lock = in.locks.writer(c);
  if (!lock) return tl::unexpected(error(Code::busy, lock.error().message()));
  auto db = in.connect();
  if (!db) return tl::unexpected(db.error());
  std::string superseded;
  auto q = quarantined_ops(*db, c);
  if (!q) return tl::unexpected(q.error());
  if (!q->empty()) {
    if (kind != OpKind::rollback) MUP_TRY(refuse_if_quarantined(*db, c));
    for (int64_t id : *q) superseded += (superseded.empty() ? "" : ",") + std::to_string(id);
  }
  SwitchReport rep;
  rep.component = c;
  rep.to_version = v;
  rep.from_version = opt_str(in.activator->active(c));
  bool to_nothing = kind == OpKind::rollback && v.empty();
  if (kind != OpKind::commit && !to_nothing && !e.store().has_version(c, v))
    return fail(Code::not_installed,
                c + " " + v + " is not installed on this node (mup versions " + c + ")");
  if (auto pin = e.store().pinned(c); pin && *pin != v && kind == OpKind::activate)
    return fail(Code::pinned,
                c + " is pinned to " + *pin + "; unpin it first (mup pin " + c + " --clear)");
  Intent intent;
  intent.old_current = rep.from_version;
  intent.old_previous = opt_str(in.activator->previous(c));
  intent.restore_snapshot = restore_snapshot;
  intent.keep_status = keep_status;
  if (!restore_snapshot.empty() && restore_snapshot.rfind("system-", 0) != 0)
    intent.undo_snapshot = e.snapshots().fresh_id(c);
  auto op = Operation::begin(*db, kind, c, rep.from_version, v, actor, intent);
  if (!op) return tl::unexpected(op.error());
  Work w(e, in, *db, std::move(*op));
  w.superseded = superseded;
  State start = kind == OpKind::commit ? State::commit : State::activate;
  State end = run(w, start);
  in.emit({{"event", "done"}, {"component", c}, {"result", state_name(end)}});
  if (w.error) return tl::unexpected(*w.error);
  if (!superseded.empty()) {
    for (int64_t id : *q) {
      auto f = db->transaction([&]() -> Status {
        MUP_TRY(db->finish_operation(id, "failed", 0,
                                     "superseded by " + std::string(kind_name(kind)) +
                                         " (operation " + std::to_string(w.op.id()) + ")"));
        MUP_TRY(db->append_audit(actor, "quarantine-superseded", c,
                                 {{"operation", id}, {"by", w.op.id()}}));
        return {};
      });
      if (!f) return tl::unexpected(f.error());
    }
  }
  rep.restored_snapshot = restore_snapshot;
  rep.operation = w.op.id();
  rep.seconds = w.elapsed();
  return rep;
}

Result<SwitchReport> Engine::activate(const std::string& c, const std::string& v) {
  return switch_operation(*this, OpKind::activate, c, v, "", opts_.actor);
}

Result<SwitchReport> Engine::rollback(const std::string& c, const std::optional<std::string>& to,
                                      bool restore_state) {
  std::string target;
  if (to) {
    target = *to;
  } else if (auto p = in_->activator->previous(c)) {
    target = *p;
  } else {
    return fail(Code::no_previous, c + " has no previous version to roll back to (mup versions " +
                                       c + "; mup rollback " + c + " --to VERSION)");
  }
  std::string snap;
  if (restore_state) {
    // The newest snapshot taken while `target` was the active version.
    auto list = snapshots_->list(c);
    if (!list) return tl::unexpected(list.error());
    for (const auto& s : *list)
      if (s.version == target && s.label.rfind("before restoring ", 0) != 0) snap = s.id;
    if (snap.empty())
      return fail(Code::no_snapshot, "no state snapshot of " + c + " taken while " + target +
                                         " was active; roll back without --restore-state");
  }
  return switch_operation(*this, OpKind::rollback, c, target, snap, opts_.actor);
}

Result<SwitchReport> Engine::commit(const std::string& c) {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  auto row = db->component(c);
  if (!row) return tl::unexpected(row.error());
  if (!*row || (*row)->trial_version.empty())
    return fail(Code::not_on_trial, c + " has no version on trial (mup status)");
  return switch_operation(*this, OpKind::commit, c, (*row)->trial_version, "", opts_.actor);
}

Status Engine::pin(const std::string& c, const std::optional<std::string>& v) {
  auto lock = in_->locks.writer(c);
  if (!lock) return tl::unexpected(error(Code::busy, lock.error().message()));
  MUP_TRY(store_.pin(c, v));
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  return db->transaction([&]() -> Status {
    MUP_TRY(reconcile(*this, *db, c));
    MUP_TRY(db->append_audit(opts_.actor, v ? "pin" : "unpin", c, {{"version", opt_str(v)}}));
    return {};
  });
}

Result<store::GcReport> Engine::gc(const store::GcOptions& o) {
  auto lock = in_->locks.exclusive();
  if (!lock) return tl::unexpected(error(Code::busy, lock.error().message()));
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  if (o.dry_run) return collect(*this, *db, o);
  Intent intent;
  intent.gc_keep = o.keep;
  intent.gc_max_bytes = o.max_bytes;
  auto op = Operation::begin(*db, OpKind::gc, "", "", "", opts_.actor, intent);
  if (!op) return tl::unexpected(op.error());
  Work w(*this, *in_, *db, std::move(*op));
  w.gc = o;
  run(w, State::collect);
  if (w.error) return tl::unexpected(*w.error);
  return w.gc_report;
}

Result<json> Engine::snapshot_create(const std::string& c, const std::string& label) {
  auto lock = in_->locks.writer(c);
  if (!lock) return tl::unexpected(error(Code::busy, lock.error().message()));
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  Intent intent;
  intent.snapshot = snapshots_->fresh_id(c);
  std::string active = opt_str(in_->activator->active(c));
  auto op = Operation::begin(*db, OpKind::snapshot_create, c, active, active, opts_.actor, intent);
  if (!op) return tl::unexpected(op.error());
  Work w(*this, *in_, *db, std::move(*op));
  w.snapshot_label = label;
  run(w, State::snapshot);
  if (w.error) return tl::unexpected(*w.error);
  return w.snapshot_result;
}

Result<json> Engine::snapshot_create_system(const std::string& label) {
  auto lock = in_->locks.exclusive();
  if (!lock) return tl::unexpected(error(Code::busy, lock.error().message()));
  auto comps = store_.components();
  if (!comps) return tl::unexpected(comps.error());
  std::vector<snapshot::ComponentState> members;
  for (const auto& c : *comps)
    members.push_back({c, state_dir(c), opt_str(in_->activator->active(c))});
  auto s = snapshots_->create_system(members, label);
  if (!s) return tl::unexpected(s.error());
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  json ids = json::array();
  MUP_TRY(db->transaction([&]() -> Status {
    for (const auto& c : *comps) MUP_TRY(reconcile(*this, *db, c));  // adds the members' rows
    for (const auto& m : s->members) ids.push_back(m.id);
    MUP_TRY(db->append_audit(opts_.actor, "snapshot-create-system", "",
                             {{"snapshot", s->id}, {"members", ids}}));
    return {};
  }));
  return json{{"id", s->id}, {"members", ids}};
}

Status Engine::snapshot_restore(const std::string& id) {
  bool system = id.rfind("system-", 0) == 0;
  std::string component;
  if (!system) {
    auto info = snapshots_->get(id);
    if (!info) return tl::unexpected(info.error());
    component = info->component;
  } else {
    auto info = snapshots_->get_system(id);
    if (!info) return tl::unexpected(info.error());
  }
  Result<LockFile> node_lock = LockFile();
  Result<WriterLock> comp_lock = WriterLock();
  if (system) {
    node_lock = in_->locks.exclusive();
    if (!node_lock) return tl::unexpected(error(Code::busy, node_lock.error().message()));
  } else {
    comp_lock = in_->locks.writer(component);
    if (!comp_lock) return tl::unexpected(error(Code::busy, comp_lock.error().message()));
  }
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  if (!component.empty()) MUP_TRY(refuse_if_quarantined(*db, component));
  Intent intent;
  intent.restore_snapshot = id;
  if (!system) intent.undo_snapshot = snapshots_->fresh_id(component);
  std::string active = component.empty() ? "" : opt_str(in_->activator->active(component));
  auto op = Operation::begin(*db, OpKind::snapshot_restore, component, active, active, opts_.actor,
                             intent);
  if (!op) return tl::unexpected(op.error());
  Work w(*this, *in_, *db, std::move(*op));
  run(w, State::restore);
  if (w.error) return tl::unexpected(*w.error);
  return {};
}

Status Engine::snapshot_delete(const std::string& id) {
  std::string component;
  if (auto info = snapshots_->get(id)) component = info->component;
  auto lock = component.empty() ? Result<WriterLock>(WriterLock()) : in_->locks.writer(component);
  if (!lock) return tl::unexpected(error(Code::busy, lock.error().message()));
  MUP_TRY(snapshots_->remove(id));
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  return db->transaction([&]() -> Status {
    auto gone = db->delete_snapshot(id);
    if (!gone) return tl::unexpected(gone.error());
    MUP_TRY(db->append_audit(opts_.actor, "snapshot-delete", component, {{"snapshot", id}}));
    return {};
  });
}

Status Engine::create_audit_key() {
  stdfs::path p = root_ / "audit-key.pem";
  if (stdfs::exists(p)) return mup::fail(Errc::already_exists, p.string() + " exists");
  auto key = crypto::PrivateKey::generate();
  if (!key) return tl::unexpected(key.error());
  std::string pem = key->to_pem();
  MUP_TRY(
      fs::write_file_atomic(p, {reinterpret_cast<const uint8_t*>(pem.data()), pem.size()}, 0600));
  in_->audit_public = key->public_key();
  in_->audit_key = std::move(*key);
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  MUP_TRY(db->append_audit(opts_.actor, "audit-key-created", "", nullptr));
  return {};
}

}  // namespace mup::engine
