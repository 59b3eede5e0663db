#include "store/node.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>

#include "core/fault.hpp"
#include "core/fs.hpp"
#include "core/parallel.hpp"
#include "core/sha256.hpp"
#include "core/zstd.hpp"
#include "delta/piece.hpp"
#include "package/manifest.hpp"
#include "package/sealed.hpp"
#include "snapshot/snapshot_store.hpp"
#include "state/state_db.hpp"
#include "transfer/fetcher.hpp"
#include "tuf/clock.hpp"
#include "tuf/updater.hpp"

namespace mup::store {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string opt_str(const std::optional<std::string>& s) {
  return s ? *s : std::string();
}

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

// A verified connection to one remote: the TUF client after refresh().
struct Session {
  std::string remote, url;
  std::unique_ptr<transfer::HttpFetcher> fetcher = std::make_unique<transfer::HttpFetcher>();
  tuf::SystemClock clock;
  std::optional<tuf::Updater> updater;

  // Every package manifest of `component` the remote offers, with its target path.
  std::vector<std::pair<package::Manifest, std::string>> offers(const std::string& component) {
    std::vector<std::pair<package::Manifest, std::string>> out;
    for (const auto& [path, tf] : updater->targets()->targets) {
      auto m = package::Manifest::from_json(tf.custom);
      if (m && m->component == component) out.push_back({std::move(*m), path});
    }
    std::sort(out.begin(), out.end(),
              [](const auto& a, const auto& b) { return a.first.version < b.first.version; });
    return out;
  }
};

}  // namespace

// ---- open / recovery ----

Node::Node(stdfs::path root, NodeOptions opts, NodeLock lock, InstallStore store)
    : root_(std::move(root)),
      opts_(std::move(opts)),
      lock_(std::move(lock)),
      store_(std::move(store)) {}

Node::~Node() = default;

Result<std::unique_ptr<Node>> Node::open(const stdfs::path& root, NodeOptions opts) {
  if (opts.actor.empty()) opts.actor = state::current_actor();
  if (opts.device_key.empty()) opts.device_key = root / "device.key";
  auto lock = NodeLock::acquire(root);
  if (!lock) return tl::unexpected(lock.error());
  auto st = InstallStore::open(root);
  if (!st) return tl::unexpected(st.error().context("opening the install store"));
  std::unique_ptr<Node> n(new Node(root, std::move(opts), std::move(*lock), std::move(*st)));
  auto db = state::StateDb::open(root / "state.db");
  if (!db) return tl::unexpected(db.error());
  n->db_ = std::make_unique<state::StateDb>(std::move(*db));
  if (stdfs::exists(root / "audit-key.pem")) {
    auto pem = fs::read_file(root / "audit-key.pem", 1 << 16);
    if (!pem) return tl::unexpected(pem.error());
    auto key =
        crypto::PrivateKey::from_pem({reinterpret_cast<const char*>(pem->data()), pem->size()});
    if (!key) return tl::unexpected(key.error().context((root / "audit-key.pem").string()));
    n->audit_public_ = key->public_key();
    n->db_->set_audit_key(std::move(*key));
  }
  auto snaps = snapshot::SnapshotStore::open(root / "snapshots");
  if (!snaps) return tl::unexpected(snaps.error());
  n->snapshots_ = std::make_unique<snapshot::SnapshotStore>(std::move(*snaps));
  MUP_TRY(n->recover());
  return n;
}

void Node::emit(const json& event) {
  if (opts_.on_event) opts_.on_event(event);
}

Status Node::reconcile(const std::string& c) {
  auto row = db_->component(c);
  if (!row) return tl::unexpected(row.error());
  state::ComponentRow r = row->value_or(state::ComponentRow{});
  r.name = c;
  r.active_version = opt_str(store_.active(c));
  r.previous_version = opt_str(store_.previous(c));
  r.pinned_version = opt_str(store_.pinned(c));
  MUP_TRY(db_->upsert_component(r));
  auto on_disk = store_.versions(c);
  if (!on_disk) return tl::unexpected(on_disk.error());
  std::set<std::string> disk(on_disk->begin(), on_disk->end());
  auto rows = db_->versions(c);
  if (!rows) return tl::unexpected(rows.error());
  std::set<std::string> known;
  for (const auto& v : *rows) {
    if (!disk.count(v.version)) {
      MUP_TRY(db_->delete_version(c, v.version));
    } else {
      known.insert(v.version);
    }
  }
  for (const auto& v : disk) {
    if (known.count(v)) continue;
    state::VersionRow vr;
    vr.component = c;
    vr.version = v;
    if (auto b = fs::read_file(store_.index_path(c, v))) vr.index_sha256 = sha256(*b).hex();
    MUP_TRY(db_->put_version(vr));
  }
  return {};
}

Status Node::recover() {
  auto ops = db_->unfinished_operations();
  if (!ops) return tl::unexpected(ops.error());
  for (const auto& op : *ops) {
    // record_step() merged every step's detail into the operation's.
    json detail = op.detail.is_object() ? op.detail : json::object();
    const std::string& c = op.component;
    std::string result = "undone", what;
    if (op.kind == "install" || op.kind == "activate" || op.kind == "rollback") {
      bool switched =
          (op.step == "activate" || op.step == "restore") && store_.active(c) == op.to_version;
      if (switched) {
        if (op.step == "restore" && detail.contains("snapshot")) {
          MUP_TRY(snapshots_->restore(detail["snapshot"].get<std::string>(), state_dir(c)));
        }
        result = "done";
        what = "completed after a restart (" + c + " " + op.to_version + " was already active)";
      } else {
        if (op.step == "activate" || op.step == "restore") {
          // The switch did not happen; put back the previous pointer the switch may have moved.
          std::optional<std::string> prev;
          if (detail.contains("old_previous") && !detail["old_previous"].get<std::string>().empty())
            prev = detail["old_previous"].get<std::string>();
          MUP_TRY(store_.set_previous(c, prev));
        }
        if (op.kind == "install" && detail.value("fresh", false) &&
            store_.has_version(c, op.to_version) && store_.active(c) != op.to_version)
          MUP_TRY(store_.remove_version(c, op.to_version));
        what = "undone after a restart (" + c + " stays at " +
               (op.from_version.empty() ? std::string("nothing") : op.from_version) + ")";
      }
    } else if (op.kind == "snapshot-restore" && detail.contains("snapshot")) {
      std::string id = detail["snapshot"].get<std::string>();
      MUP_TRY(id.rfind("system-", 0) == 0 ? snapshots_->restore_system(id)
                                          : snapshots_->restore(id, state_dir(c)));
      result = "done";
      what = "completed after a restart";
    } else {
      result = "failed";
      what = "interrupted (the process was killed); its effects are complete or absent";
    }
    MUP_TRY(db_->transaction([&]() -> Status {
      MUP_TRY(db_->finish_operation(op.id, result, op.bytes, result == "done" ? "" : what));
      MUP_TRY(db_->append_audit("mup-recovery", op.kind + "-recovered", c,
                                {{"operation", op.id},
                                 {"from", op.from_version},
                                 {"to", op.to_version},
                                 {"result", result},
                                 {"note", what}}));
      return {};
    }));
    recovery_.actions.push_back(op.kind + " " + c + " " + op.from_version + " -> " + op.to_version +
                                ": " + what);
  }
  MUP_TRY(store_.recover());
  auto comps = store_.components();
  if (!comps) return tl::unexpected(comps.error());
  for (const auto& c : *comps) MUP_TRY(reconcile(c));
  return {};
}

// ---- remotes ----

stdfs::path Node::tuf_dir(const std::string& remote) const {
  return root_ / "tuf" / remote;
}

Status Node::add_remote(const std::string& name, const std::string& url,
                        const stdfs::path& trusted_root) {
  MUP_TRY(package::validate_component_name(name));
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0 && url.rfind("file://", 0) != 0)
    return fail(Errc::invalid_argument, "remote URL must start with http://, https:// or file://");
  auto existing = db_->remote_url(name);
  if (!existing) return tl::unexpected(existing.error());
  if (*existing)
    return fail(Errc::already_exists, "remote " + name + " exists (" + **existing + ")");
  auto bytes = fs::read_file(trusted_root, 1 << 20);
  if (!bytes) return tl::unexpected(bytes.error().context("--trusted-root"));
  // It must be a root that signs itself; the TUF client checks that when it loads it.
  MUP_TRY(fs::create_dirs(tuf_dir(name)));
  MUP_TRY(fs::write_file_atomic(tuf_dir(name) / "root.json", *bytes));
  {
    transfer::HttpFetcher f;
    tuf::SystemClock clock;
    tuf::UpdaterConfig cfg;
    cfg.metadata_dir = tuf_dir(name);
    auto up = tuf::Updater::create(cfg, f, clock);
    if (!up) {
      (void)fs::remove_all(tuf_dir(name));
      return tl::unexpected(up.error().context("trusted root " + trusted_root.string()));
    }
  }
  std::string u = url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  return db_->transaction([&]() -> Status {
    MUP_TRY(db_->add_remote(name, u));
    MUP_TRY(db_->append_audit(opts_.actor, "remote-add", name, {{"url", u}}));
    return {};
  });
}

Result<std::string> Node::remote_url(const std::string& remote) {
  auto u = db_->remote_url(remote);
  if (!u) return tl::unexpected(u.error());
  if (!*u) return fail(Errc::not_found, "no remote named " + remote + " (mup remote add)");
  return **u;
}

Result<std::string> Node::pick_remote(const std::string& component, const std::string& requested) {
  if (!requested.empty()) {
    auto u = remote_url(requested);
    if (!u) return tl::unexpected(u.error());
    return requested;
  }
  auto row = db_->component(component);
  if (!row) return tl::unexpected(row.error());
  if (*row && !(*row)->remote.empty()) return (*row)->remote;
  auto all = db_->remotes();
  if (!all) return tl::unexpected(all.error());
  if (all->empty())
    return fail(Errc::not_found,
                "this node has no remote: mup remote add NAME URL --trusted-root ROOT.json");
  if (all->size() > 1)
    return fail(Errc::invalid_argument,
                "this node has several remotes: say which one with --remote");
  return all->front().first;
}

namespace {

Result<std::unique_ptr<Session>> connect(state::StateDb& db, const stdfs::path& tuf_dir,
                                         const std::string& remote) {
  auto u = db.remote_url(remote);
  if (!u) return tl::unexpected(u.error());
  if (!*u) return fail(Errc::not_found, "no remote named " + remote);
  auto s = std::make_unique<Session>();
  s->remote = remote;
  s->url = **u;
  tuf::UpdaterConfig cfg;
  cfg.metadata_dir = tuf_dir;
  cfg.metadata_base_url = s->url + "/metadata";
  cfg.target_base_url = s->url + "/targets";
  auto up = tuf::Updater::create(cfg, *s->fetcher, s->clock);
  if (!up) return tl::unexpected(up.error().context("trusted metadata of remote " + remote));
  s->updater.emplace(std::move(*up));
  if (auto r = s->updater->refresh(); !r)
    return tl::unexpected(r.error().context("refreshing metadata from " + s->url));
  return s;
}

}  // namespace

// ---- install ----

Result<InstallReport> Node::install(const std::string& component, const InstallOptions& opts) {
  return install_one(component, opts, 0);
}

Result<InstallReport> Node::install_one(const std::string& c, const InstallOptions& opts,
                                        int depth) {
  auto t0 = std::chrono::steady_clock::now();
  if (depth > 16) return fail(Errc::invalid_argument, "dependency chain too deep at " + c);
  auto remote = pick_remote(c, opts.remote);
  if (!remote) return tl::unexpected(remote.error());
  emit({{"event", "step"}, {"step", "check"}, {"component", c}, {"remote", *remote}});
  auto sess = connect(*db_, tuf_dir(*remote), *remote);
  if (!sess) return tl::unexpected(sess.error());
  auto offers = (*sess)->offers(c);
  if (offers.empty())
    return fail(Errc::not_found, "remote " + *remote + " offers no component named " + c);
  const std::pair<package::Manifest, std::string>* pick = &offers.back();
  if (!opts.version.empty()) {
    pick = nullptr;
    for (const auto& o : offers)
      if (o.first.version.str() == opts.version) pick = &o;
    if (!pick) {
      std::string have;
      for (const auto& o : offers) have += (have.empty() ? "" : ", ") + o.first.version.str();
      return fail(Errc::not_found, c + " " + opts.version + " is not in remote " + *remote +
                                       " (it has " + have + ")");
    }
  }
  const package::Manifest& m = pick->first;
  const std::string v = m.version.str();
  InstallReport rep;
  rep.component = c;
  rep.to_version = v;
  rep.from_version = opt_str(store_.active(c));
  rep.tree_bytes = m.size;
  if (auto pin = store_.pinned(c); pin && *pin != v)
    return fail(Errc::invalid_argument, c + " is pinned to " + *pin + "; unpin it first (mup pin " +
                                            c + " --clear) to install " + v);
  // Dependencies: what is active on this node.
  auto have_of = [&]() {
    std::map<std::string, package::Version> have;
    if (auto comps = store_.components())
      for (const auto& x : *comps)
        if (auto a = store_.active(x))
          if (auto pv = package::Version::parse(*a)) have[x] = *pv;
    return have;
  };
  if (auto deps = package::check_dependencies(m, have_of()); !deps) {
    if (!opts.with_deps)
      return fail(Errc::invalid_argument, m.id() +
                                              " cannot be installed: " + deps.error().message() +
                                              " (install those first, or use --with-deps)");
    for (const auto& d : m.depends) {
      auto have = have_of();
      auto it = have.find(d.name);
      if (it != have.end() && d.constraint.matches(it->second)) continue;
      std::string dv;
      for (const auto& o : (*sess)->offers(d.name))
        if (d.constraint.matches(o.first.version)) dv = o.first.version.str();
      if (dv.empty())
        return fail(Errc::not_found, "dependency " + d.str() + " of " + m.id() +
                                         ": no version in remote " + *remote + " satisfies it");
      InstallOptions dopts = opts;
      dopts.version = dv;
      dopts.remote = *remote;
      auto dr = install_one(d.name, dopts, depth + 1);
      if (!dr) return tl::unexpected(dr.error().context("installing dependency " + d.str()));
      rep.deps.push_back(std::move(*dr));
    }
  }
  if (rep.from_version == v) {
    rep.already_installed = true;
    rep.seconds = since(t0);
    return rep;
  }
  if (store_.has_version(c, v)) {
    auto sw = switch_to("install", c, v, "");
    if (!sw) return tl::unexpected(sw.error());
    rep.already_installed = true;
    rep.seconds = since(t0);
    return rep;
  }

  // Intent first.
  state::OperationRecord op;
  op.kind = "install";
  op.component = c;
  op.from_version = rep.from_version;
  op.to_version = v;
  op.actor = opts_.actor;
  op.detail = {{"remote", *remote}, {"target", pick->second}, {"fresh", true}};
  auto op_id = db_->begin_operation(op);
  if (!op_id) return tl::unexpected(op_id.error());
  auto failed = [&](Error e) -> Result<InstallReport> {
    // Undo what this install did: a staged tree that never became active, its index.
    if (store_.has_version(c, v) && store_.active(c) != v) (void)store_.remove_version(c, v);
    (void)store_.recover();
    (void)db_->transaction([&]() -> Status {
      MUP_TRY(db_->finish_operation(*op_id, "failed", rep.bytes_fetched, e.message()));
      MUP_TRY(db_->append_audit(opts_.actor, "install", c,
                                {{"operation", *op_id},
                                 {"from", rep.from_version},
                                 {"to", v},
                                 {"result", "failed"},
                                 {"error", e.message()}}));
      return {};
    });
    return tl::unexpected(std::move(e));
  };
#define MUP_STEP(expr)                             \
  do {                                             \
    auto _s = (expr);                              \
    if (!_s) return failed(std::move(_s.error())); \
  } while (0)

  // Fetch: the index (an index delta from the active version's when the repository has
  // one), then every piece the plan needs that the cache lacks.
  MUP_STEP(db_->record_step(*op_id, "fetch", json::object()));
  emit({{"event", "step"}, {"step", "fetch"}, {"component", c}, {"version", v}});
  auto info = (*sess)->updater->get_targetinfo(pick->second);
  if (!info) return failed(info.error().context("finding " + m.id()));
  std::optional<crypto::AesKey> key;
  if (!m.encryption.is_null()) {
    auto dk = package::load_device_key(opts_.device_key);
    if (!dk)
      return failed(Error(Errc::not_found, m.id() +
                                               " is encrypted and this node has no device "
                                               "key at " +
                                               opts_.device_key.string() +
                                               " (mup keygen --device, then --device-key)"));
    auto k = package::unwrap_data_key(m, *dk);
    if (!k) return failed(k.error());
    key = *k;
  }
  std::vector<uint8_t> index_file;
  if (!key && !rep.from_version.empty() && info->file.hashes.count("sha256")) {
    auto held = fs::read_file(store_.index_path(c, rep.from_version), 64 << 20);
    auto target_sha = Digest::from_hex(info->file.hashes.at("sha256"));
    if (held && target_sha) {
      std::string rel = chunk::index_delta_rel_path(sha256(*held), *target_sha);
      if (auto d = (*sess)->fetcher->fetch((*sess)->url + "/" + rel, info->file.length)) {
        if (auto full = chunk::apply_index_delta(*held, *d, *target_sha)) {
          rep.bytes_fetched += d->size();
          index_file = std::move(*full);
        }
      }
    }
  }
  if (index_file.empty()) {
    auto t = (*sess)->updater->fetch_target(*info);
    if (!t) return failed(t.error().context("downloading the tree index of " + m.id()));
    rep.bytes_fetched += t->size();
    auto plain = package::open_index(m, *t, key ? &*key : nullptr);
    if (!plain) return failed(plain.error());
    index_file = std::move(*plain);
  } else if (sha256(index_file).hex() != m.index_sha256) {
    return failed(Error(Errc::corrupt, "tree index of " + m.id() + " does not match its manifest"));
  }
  auto idx = chunk::TreeIndex::parse(index_file);
  if (!idx) return failed(idx.error().context("tree index of " + m.id()));
  MUP_STEP(store_.put_index(c, v, index_file));
  // Seeds: the installed versions, active first, known by their indexes (not re-read).
  std::vector<std::string> held;
  if (!rep.from_version.empty()) held.push_back(rep.from_version);
  if (auto vs = store_.versions(c))
    for (auto it = vs->rbegin(); it != vs->rend(); ++it)
      if (*it != rep.from_version) held.push_back(*it);
  std::vector<chunk::TreeIndex> held_idx;
  held_idx.reserve(held.size());
  std::vector<delta::IndexedSeed> seeds;
  for (const auto& h : held) {
    auto hi = store_.load_index(c, h);
    if (!hi || hi->single_file) continue;
    held_idx.push_back(std::move(*hi));
    seeds.push_back({store_.version_dir(c, h), &held_idx.back()});
  }
  if (idx->single_file)
    return failed(Error(Errc::unsupported, m.id() + " is a single file, not a tree; publish it "
                                                    "inside a directory to install it"));
  auto plan = delta::plan(*idx, index_file.size(), seeds, opts_.threads);
  if (!plan) return failed(plan.error().context("planning " + m.id()));
  rep.full_bytes = plan->full_bytes;
  auto needed = package::pieces_to_fetch(*idx, *plan);
  std::vector<const package::PieceRef*> todo;
  uint64_t todo_bytes = 0;
  for (const auto& n : needed) {
    if (store_.pieces().has_blob(n.rel_path)) {
      rep.bytes_cached += n.stored_size;
    } else {
      todo.push_back(&n);
      todo_bytes += n.stored_size;
    }
  }
  std::mutex mu;
  std::vector<std::unique_ptr<transfer::HttpFetcher>> pool;
  uint64_t done_bytes = 0, fetched = 0;
  auto last_emit = std::chrono::steady_clock::now();
  emit({{"event", "progress"}, {"phase", "fetch"}, {"done", 0}, {"total", todo_bytes}});
  const crypto::AesKey* kp = key ? &*key : nullptr;
  auto fetch_one = [&](size_t i) -> Status {
    const package::PieceRef& n = *todo[i];
    std::unique_ptr<transfer::HttpFetcher> f;
    {
      std::lock_guard<std::mutex> g(mu);
      if (!pool.empty()) {
        f = std::move(pool.back());
        pool.pop_back();
      }
    }
    if (!f) f = std::make_unique<transfer::HttpFetcher>();
    std::string url = (*sess)->url + "/" + package::piece_download_path(m, kp, n.rel_path);
    auto got = f->fetch(url, n.stored_size + 64);
    {
      std::lock_guard<std::mutex> g(mu);
      pool.push_back(std::move(f));
    }
    if (!got) return tl::unexpected(got.error().context("downloading " + n.rel_path));
    uint64_t wire = got->size();
    auto piece = package::open_piece(m, kp, n.rel_path, std::move(*got));
    if (!piece) return tl::unexpected(piece.error());
    MUP_TRY(package::verify_piece(n, *piece));
    MUP_TRY(fault::point("install.piece"));
    MUP_TRY(store_.pieces().put_blob(n.rel_path, *piece));
    std::lock_guard<std::mutex> g(mu);
    done_bytes += n.stored_size;
    fetched += wire;
    auto now = std::chrono::steady_clock::now();
    if (now - last_emit > std::chrono::milliseconds(100) || done_bytes == todo_bytes) {
      last_emit = now;
      emit(
          {{"event", "progress"}, {"phase", "fetch"}, {"done", done_bytes}, {"total", todo_bytes}});
    }
    return {};
  };
  Status fs_ok = try_parallel_for(todo.size(), std::max(1u, opts_.download_connections), fetch_one);
  rep.bytes_fetched += fetched;
  if (!fs_ok) {
    (void)store_.pieces().sync();  // keep what was verified: a retry resumes from it
    return failed(fs_ok.error().context("fetching " + m.id()));
  }
  MUP_STEP(store_.pieces().sync());
  MUP_STEP(fault::point("install.fetched"));

  // Snapshot the component's state, with the version active now.
  if (opts.snapshot) {
    emit({{"event", "step"}, {"step", "snapshot"}, {"component", c}});
    auto snap = snapshots_->create(c, state_dir(c), rep.from_version, "before install of " + v);
    if (!snap) return failed(snap.error().context("snapshotting the state of " + c));
    rep.snapshot_id = snap->id;
    MUP_STEP(db_->add_snapshot(snapshot_row(*snap)));
    MUP_STEP(db_->record_step(*op_id, "snapshot", {{"snapshot", snap->id}}));
  }

  // Stage: the new tree beside the old, verified before it appears.
  MUP_STEP(db_->record_step(*op_id, "stage", json::object()));
  emit({{"event", "step"}, {"step", "stage"}, {"component", c}, {"version", v}});
  delta::UnpackOptions uo;
  uo.threads = opts_.threads;
  auto st = store_.stage(c, v, *idx, *plan, uo);
  if (!st) return failed(st.error());
  rep.bytes_written = st->bytes_written;
  rep.files_linked = st->files_linked;
  rep.files = st->files;

  // Activate: journal the pointers the switch changes, then switch.
  MUP_STEP(db_->record_step(
      *op_id, "activate",
      {{"old_current", rep.from_version}, {"old_previous", opt_str(store_.previous(c))}}));
  emit({{"event", "step"}, {"step", "activate"}, {"component", c}, {"version", v}});
  MUP_STEP(store_.activate(c, v));
  rep.seconds = since(t0);
  MUP_STEP(db_->transaction([&]() -> Status {
    auto row = db_->component(c);
    if (!row) return tl::unexpected(row.error());
    state::ComponentRow r = row->value_or(state::ComponentRow{});
    r.name = c;
    r.remote = *remote;
    r.type = std::string(package::type_name(m.type));
    r.active_version = v;
    r.previous_version = opt_str(store_.previous(c));
    r.pinned_version = opt_str(store_.pinned(c));
    MUP_TRY(db_->upsert_component(r));
    state::VersionRow vr;
    vr.component = c;
    vr.version = v;
    vr.index_sha256 = m.index_sha256;
    vr.manifest = m.to_json();
    vr.size = m.size;
    MUP_TRY(db_->put_version(vr));
    MUP_TRY(db_->finish_operation(*op_id, "done", rep.bytes_fetched, ""));
    MUP_TRY(db_->append_audit(opts_.actor, "install", c,
                              {{"operation", *op_id},
                               {"from", rep.from_version},
                               {"to", v},
                               {"result", "done"},
                               {"bytes_fetched", rep.bytes_fetched},
                               {"seconds", rep.seconds}}));
    return {};
  }));
#undef MUP_STEP
  emit({{"event", "done"},
        {"component", c},
        {"from", rep.from_version},
        {"to", v},
        {"bytes_fetched", rep.bytes_fetched},
        {"full_bytes", rep.full_bytes}});
  return rep;
}

// ---- switching ----

Result<SwitchReport> Node::switch_to(const std::string& kind, const std::string& c,
                                     const std::string& v, const std::string& restore_snapshot) {
  auto t0 = std::chrono::steady_clock::now();
  SwitchReport rep;
  rep.component = c;
  rep.to_version = v;
  rep.from_version = opt_str(store_.active(c));
  if (!store_.has_version(c, v))
    return fail(Errc::not_found,
                c + " " + v + " is not installed on this node (mup versions " + c + ")");
  if (auto pin = store_.pinned(c); pin && *pin != v && kind != "rollback")
    return fail(Errc::invalid_argument,
                c + " is pinned to " + *pin + "; unpin it first (mup pin " + c + " --clear)");
  state::OperationRecord op;
  op.kind = kind;
  op.component = c;
  op.from_version = rep.from_version;
  op.to_version = v;
  op.actor = opts_.actor;
  op.detail = {{"fresh", false}};
  auto op_id = db_->begin_operation(op);
  if (!op_id) return tl::unexpected(op_id.error());
  auto finish = [&](const std::string& result, const std::string& err) -> Status {
    return db_->transaction([&]() -> Status {
      MUP_TRY(reconcile(c));
      MUP_TRY(db_->finish_operation(*op_id, result, 0, err));
      json d = {{"operation", *op_id}, {"from", rep.from_version}, {"to", v}, {"result", result}};
      if (!err.empty()) d["error"] = err;
      if (!restore_snapshot.empty()) d["restored_snapshot"] = restore_snapshot;
      MUP_TRY(db_->append_audit(opts_.actor, kind, c, d));
      return {};
    });
  };
  auto step = db_->record_step(
      *op_id, "activate",
      {{"old_current", rep.from_version}, {"old_previous", opt_str(store_.previous(c))}});
  Status s = step;
  if (s) s = store_.activate(c, v);
  if (s && !restore_snapshot.empty()) {
    s = db_->record_step(*op_id, "restore", {{"snapshot", restore_snapshot}});
    if (s) s = snapshots_->restore(restore_snapshot, state_dir(c));
    rep.restored_snapshot = restore_snapshot;
  }
  if (!s) {
    // Put the pointers back as they were (the switch is all or nothing).
    if (store_.active(c) == v && !rep.from_version.empty() && rep.from_version != v)
      (void)store_.activate(c, rep.from_version);
    (void)finish("failed", s.error().message());
    return tl::unexpected(s.error());
  }
  MUP_TRY(finish("done", ""));
  rep.seconds = since(t0);
  return rep;
}

Result<SwitchReport> Node::activate(const std::string& c, const std::string& v) {
  return switch_to("activate", c, v, "");
}

Result<SwitchReport> Node::rollback(const std::string& c, const std::optional<std::string>& to,
                                    bool restore_state) {
  std::string target;
  if (to) {
    target = *to;
  } else if (auto p = store_.previous(c)) {
    target = *p;
  } else {
    return fail(Errc::not_found, c + " has no previous version to roll back to (mup versions " + c +
                                     "; mup rollback " + c + " --to VERSION)");
  }
  std::string snap;
  if (restore_state) {
    // The newest snapshot taken while `target` was the active version.
    auto list = snapshots_->list(c);
    if (!list) return tl::unexpected(list.error());
    for (const auto& s : *list)
      if (s.version == target) snap = s.id;  // list is oldest first
    if (snap.empty())
      return fail(Errc::not_found, "no state snapshot of " + c + " taken while " + target +
                                       " was active; roll back without --restore-state");
  }
  return switch_to("rollback", c, target, snap);
}

Status Node::pin(const std::string& c, const std::optional<std::string>& v) {
  MUP_TRY(store_.pin(c, v));
  return db_->transaction([&]() -> Status {
    MUP_TRY(reconcile(c));
    MUP_TRY(db_->append_audit(opts_.actor, v ? "pin" : "unpin", c, {{"version", opt_str(v)}}));
    return {};
  });
}

Result<GcReport> Node::gc(const GcOptions& o) {
  state::OperationRecord op;
  op.kind = "gc";
  op.actor = opts_.actor;
  op.detail = {{"keep", o.keep}, {"max_bytes", o.max_bytes}};
  auto op_id = db_->begin_operation(op);
  if (!op_id) return tl::unexpected(op_id.error());
  auto rep = store_.gc(o);
  auto comps = store_.components();
  MUP_TRY(db_->transaction([&]() -> Status {
    if (comps)
      for (const auto& c : *comps) MUP_TRY(reconcile(c));
    json removed = json::array();
    if (rep)
      for (const auto& [c, v] : rep->removed) removed.push_back(c + "@" + v);
    MUP_TRY(db_->finish_operation(*op_id, rep ? "done" : "failed", 0,
                                  rep ? "" : rep.error().message()));
    MUP_TRY(db_->append_audit(opts_.actor, "gc", "",
                              {{"operation", *op_id},
                               {"removed", removed},
                               {"result", rep ? "done" : "failed"},
                               {"bytes_freed", rep ? rep->bytes_freed : 0}}));
    return {};
  }));
  return rep;
}

// ---- snapshots ----

Result<json> Node::snapshot_create(const std::string& c, const std::string& label) {
  auto s = snapshots_->create(c, state_dir(c), opt_str(store_.active(c)), label);
  if (!s) return tl::unexpected(s.error());
  MUP_TRY(db_->transaction([&]() -> Status {
    MUP_TRY(db_->add_snapshot(snapshot_row(*s)));
    MUP_TRY(db_->append_audit(opts_.actor, "snapshot-create", c,
                              {{"snapshot", s->id}, {"content_hash", s->content_hash}}));
    return {};
  }));
  return json{{"id", s->id},
              {"component", c},
              {"version", s->version},
              {"files", s->files},
              {"bytes", s->bytes},
              {"bytes_copied", s->bytes_copied},
              {"content_hash", s->content_hash}};
}

Result<json> Node::snapshot_create_system(const std::string& label) {
  auto comps = store_.components();
  if (!comps) return tl::unexpected(comps.error());
  std::vector<snapshot::ComponentState> members;
  for (const auto& c : *comps) members.push_back({c, state_dir(c), opt_str(store_.active(c))});
  auto s = snapshots_->create_system(members, label);
  if (!s) return tl::unexpected(s.error());
  json ids = json::array();
  MUP_TRY(db_->transaction([&]() -> Status {
    for (const auto& m : s->members) {
      MUP_TRY(db_->add_snapshot(snapshot_row(m)));
      ids.push_back(m.id);
    }
    MUP_TRY(db_->append_audit(opts_.actor, "snapshot-create-system", "",
                              {{"snapshot", s->id}, {"members", ids}}));
    return {};
  }));
  return json{{"id", s->id}, {"members", ids}};
}

Status Node::snapshot_restore(const std::string& id) {
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
  state::OperationRecord op;
  op.kind = "snapshot-restore";
  op.component = component;
  op.actor = opts_.actor;
  op.detail = {{"snapshot", id}};
  auto op_id = db_->begin_operation(op);
  if (!op_id) return tl::unexpected(op_id.error());
  Status s =
      system ? snapshots_->restore_system(id) : snapshots_->restore(id, state_dir(component));
  return db_->transaction([&]() -> Status {
    MUP_TRY(db_->finish_operation(*op_id, s ? "done" : "failed", 0, s ? "" : s.error().message()));
    MUP_TRY(db_->append_audit(opts_.actor, "snapshot-restore", component,
                              {{"snapshot", id}, {"result", s ? "done" : "failed"}}));
    return s;
  });
}

Status Node::snapshot_delete(const std::string& id) {
  MUP_TRY(snapshots_->remove(id));
  return db_->transaction([&]() -> Status {
    MUP_TRY(db_->delete_snapshot(id));
    MUP_TRY(db_->append_audit(opts_.actor, "snapshot-delete", "", {{"snapshot", id}}));
    return {};
  });
}

// ---- audit ----

Status Node::create_audit_key() {
  stdfs::path p = root_ / "audit-key.pem";
  if (stdfs::exists(p)) return fail(Errc::already_exists, p.string() + " exists");
  auto key = crypto::PrivateKey::generate();
  if (!key) return tl::unexpected(key.error());
  std::string pem = key->to_pem();
  MUP_TRY(
      fs::write_file_atomic(p, {reinterpret_cast<const uint8_t*>(pem.data()), pem.size()}, 0600));
  audit_public_ = key->public_key();
  db_->set_audit_key(std::move(*key));
  MUP_TRY(db_->append_audit(opts_.actor, "audit-key-created", "", nullptr));
  return {};
}

Result<state::AuditReport> Node::verify_audit() {
  return db_->verify_audit(audit_public_ ? &*audit_public_ : nullptr);
}

// ---- status ----

Result<json> Node::status() {
  json comps = json::array();
  auto names = store_.components();
  if (!names) return tl::unexpected(names.error());
  for (const auto& c : *names) {
    auto row = db_->component(c);
    if (!row) return tl::unexpected(row.error());
    auto vs = store_.versions(c);
    if (!vs) return tl::unexpected(vs.error());
    comps.push_back({{"name", c},
                     {"active", opt_str(store_.active(c))},
                     {"previous", opt_str(store_.previous(c))},
                     {"pinned", opt_str(store_.pinned(c))},
                     {"versions", *vs},
                     {"remote", *row ? (*row)->remote : ""},
                     {"type", *row ? (*row)->type : ""}});
  }
  auto bytes = store_.installed_bytes();
  auto remotes = db_->remotes();
  json rj = json::array();
  if (remotes)
    for (const auto& [n, u] : *remotes) rj.push_back({{"name", n}, {"url", u}});
  return json{{"root", root_.string()},
              {"components", comps},
              {"remotes", rj},
              {"installed_bytes", bytes ? *bytes : 0},
              {"recovered", recovery_.actions}};
}

}  // namespace mup::store
