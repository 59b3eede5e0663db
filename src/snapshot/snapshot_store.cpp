// SnapshotStore: create, list, verify, restore and remove snapshots of one component.
// Verification is in verify.cpp, system snapshots (groups) in system_snapshot.cpp.
//
// Crash safety rests on three renames: create builds `.<id>.mup-tmp.<pid>.<n>` beside its
// final place and renames it in after syncfs; remove renames a snapshot to a temp name
// before deleting it; restore builds the new state beside the state directory and swaps the
// two with renameat2(RENAME_EXCHANGE). Temp names carry the pid, so open() can tell a
// killed call's leftovers from a running one's. A restore first records its state directory
// in `<root>/.restores/<pid>.<n>`, because the leftovers there are outside the store.
#include "snapshot/snapshot_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <random>

#include "core/fault.hpp"
#include "core/fs.hpp"
#include "core/parallel.hpp"
#include "package/manifest.hpp"
#include "snapshot/manifest.hpp"
#include "snapshot/store_internal.hpp"
#include "snapshot/tree_ops.hpp"

namespace mup::snapshot {

namespace stdfs = std::filesystem;
using detail::Kind;
using detail::UniqueFd;

namespace {

SnapshotInfo info_of(const Manifest& m, const stdfs::path& dir) {
  SnapshotInfo i;
  i.id = m.id;
  i.component = m.component;
  i.version = m.version;
  i.label = m.label;
  i.created_at_ms = m.created_at_ms;
  i.absent = m.absent;
  i.files = m.files();
  i.bytes = m.bytes();
  i.bytes_copied = m.bytes_copied;
  i.files_linked = m.files_linked;
  i.content_hash = m.content_hash;
  i.path = dir;
  return i;
}

// The component's latest snapshot (by id time, then created_at_ms, then id), if readable:
// the source of hard links for the next one. A damaged one just means copying everything.
std::optional<Manifest> latest_snapshot(const stdfs::path& comp_dir) {
  std::vector<std::string> best;  // ids with the greatest time stamp
  std::string best_stamp;
  auto names = detail::list_names(comp_dir);
  if (!names) return std::nullopt;
  for (const std::string& name : *names) {
    auto parts = parse_id(name);  // temp names start with '.', which no id does
    if (!parts) continue;
    std::string stamp(parts->stamp);
    if (stamp > best_stamp) {
      best_stamp = stamp;
      best.clear();
    }
    if (stamp == best_stamp) best.push_back(name);
  }
  std::optional<Manifest> latest;
  for (const std::string& id : best) {
    auto m = load_manifest(comp_dir / id, id);
    if (m && (!latest ||
              std::pair(m->created_at_ms, m->id) > std::pair(latest->created_at_ms, latest->id)))
      latest = std::move(*m);
  }
  return latest;
}

// Records which state directory a restore works beside, so that open() can delete what a
// killed restore left there. Removed when the restore returns.
class RestoreIntent {
 public:
  static Result<RestoreIntent> begin(const stdfs::path& root, const stdfs::path& state_dir) {
    static std::atomic<uint64_t> counter{0};
    stdfs::path dir = root / kRestoresDir;
    MUP_TRY(fs::create_dirs(dir));
    stdfs::path p = dir / (std::to_string(::getpid()) + "." + std::to_string(counter++));
    const std::string& s = state_dir.native();
    MUP_TRY(fs::write_file_atomic(p, {reinterpret_cast<const uint8_t*>(s.data()), s.size()}));
    return RestoreIntent(std::move(p));
  }
  RestoreIntent(RestoreIntent&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  RestoreIntent& operator=(RestoreIntent&&) = delete;
  ~RestoreIntent() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }

 private:
  explicit RestoreIntent(stdfs::path p) : path_(std::move(p)) {}
  stdfs::path path_;
};

// What create() needs to copy one file.
struct Capture {
  Capture(int state_fd, const stdfs::path& state_dir, int data_fd, const stdfs::path& data_dir,
          const stdfs::path& prev_data)
      : state_fd(state_fd),
        state_dir(state_dir),
        data_fd(data_fd),
        data_dir(data_dir),
        prev_data(prev_data) {}
  int state_fd;
  const stdfs::path& state_dir;
  int data_fd;
  const stdfs::path& data_dir;
  const stdfs::path& prev_data;                                   // empty: no previous snapshot
  std::map<std::pair<Digest, uint32_t>, std::string> prev_files;  // (sha256, mode) -> path
  std::atomic<uint64_t> bytes_copied{0};
  std::atomic<uint64_t> files_linked{0};
};

bool same_version(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
         a.st_ctim.tv_nsec == b.st_ctim.tv_nsec && a.st_ino == b.st_ino;
}

// Hashes one state file, then hard-links an equal file of the previous snapshot or copies it.
Status capture_file(ManifestEntry& e, Capture& c) {
  const stdfs::path src_path = c.state_dir / e.path;
  auto src = detail::open_beneath(c.state_fd, e.path, O_RDONLY, src_path);
  if (!src) return tl::unexpected(src.error());
  struct stat before {};
  if (::fstat(src->get(), &before) != 0) return fail_errno("stat", src_path.string(), errno);
  if (!S_ISREG(before.st_mode))
    return fail(Errc::io, src_path.string() +
                              " stopped being a regular file while it was snapshotted; stop "
                              "the service and snapshot again");
  auto h = detail::hash_fd(src->get(), src_path);
  if (!h) return tl::unexpected(h.error());
  e.size = h->size;
  e.sha256 = h->sha256;
  e.mode = before.st_mode & 07777;
  e.uid = before.st_uid;
  e.gid = before.st_gid;
  const stdfs::path dst_path = c.data_dir / e.path;
  bool linked = false;
  if (e.size > 0 && !c.prev_data.empty()) {
    auto it = c.prev_files.find({e.sha256, e.mode});
    if (it != c.prev_files.end()) {
      // The previous snapshot is immutable, but check what can be checked cheaply; any
      // failure (EMLINK, a concurrent remove) just means copying instead.
      const stdfs::path prev = c.prev_data / it->second;
      struct stat ps {};
      linked = ::lstat(prev.c_str(), &ps) == 0 && S_ISREG(ps.st_mode) &&
               (ps.st_mode & 07777) == e.mode && static_cast<uint64_t>(ps.st_size) == e.size &&
               ::linkat(AT_FDCWD, prev.c_str(), c.data_fd, e.path.c_str(), 0) == 0;
    }
  }
  if (linked) {
    ++c.files_linked;
  } else {
    UniqueFd dst(::openat(c.data_fd, e.path.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (dst.get() < 0) return fail_errno("create", dst_path.string(), errno);
    MUP_TRY(detail::copy_contents(src->get(), dst.get(), e.size, src_path));
    if (::fchmod(dst.get(), e.mode) != 0) return fail_errno("chmod", dst_path.string(), errno);
    c.bytes_copied += e.size;
  }
  struct stat after {};
  if (::fstat(src->get(), &after) != 0) return fail_errno("stat", src_path.string(), errno);
  if (!same_version(before, after))
    return fail(Errc::io, src_path.string() +
                              " changed while it was being snapshotted; stop the service (or "
                              "pause its writes) and snapshot again");
  return {};
}

Status check_component(std::string_view component) {
  MUP_TRY(package::validate_component_name(component));
  if (component == kSystemDir)
    return fail(Errc::invalid_argument,
                "\"system\" names system snapshots; a component cannot be called that");
  return {};
}

// `arg` as an absolute, normal path, refused if it holds the store or lies in it (a snapshot
// of the store, or a restore over it, would eat the store).
Result<stdfs::path> resolve_state_dir(const stdfs::path& arg, const stdfs::path& store_root) {
  std::error_code ec;
  stdfs::path p = stdfs::absolute(arg, ec).lexically_normal();
  if (ec) return fail_errno("resolve", arg.string(), ec.value());
  if (!p.has_filename()) p = p.parent_path();  // "state/web/"
  if (!p.has_filename())
    return fail(Errc::invalid_argument, p.string() + " cannot be a state directory");
  stdfs::path store = stdfs::absolute(store_root, ec).lexically_normal();
  if (ec) return fail_errno("resolve", store_root.string(), ec.value());
  auto within = [](const stdfs::path& inner, const stdfs::path& outer) {
    stdfs::path rel = inner.lexically_relative(outer);
    return !rel.empty() && *rel.begin() != "..";
  };
  if (within(store, p) || within(p, store))
    return fail(Errc::invalid_argument, "state directory " + p.string() +
                                            " and the snapshot store " + store.string() +
                                            " overlap; keep them apart");
  return p;
}

std::string random_hex6() {
  std::random_device rd;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%06x", static_cast<unsigned>(rd() & 0xffffff));
  return buf;
}

}  // namespace

int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string new_id(std::string_view prefix, int64_t now_ms) {
  return std::string(prefix) + "-" + format_stamp(now_ms) + "-" + random_hex6();
}

Result<Manifest> load_manifest(const stdfs::path& dir, std::string_view id) {
  auto bytes = fs::read_file(dir / kManifestName, kMaxManifestBytes);
  if (!bytes) return tl::unexpected(bytes.error());
  auto m = Manifest::parse({reinterpret_cast<const char*>(bytes->data()), bytes->size()});
  if (!m) return tl::unexpected(m.error().context("snapshot " + std::string(id)));
  if (m->id != id)
    return fail(Errc::corrupt, "snapshot " + std::string(id) + ": its manifest names id " + m->id);
  return m;
}

Result<SnapshotStore> SnapshotStore::open(const stdfs::path& snapshots_root, NowMs now) {
  if (auto s = fs::create_dirs(snapshots_root); !s)
    return tl::unexpected(s.error().context("opening the snapshot store"));
  // Leftovers of killed creates and removes (in component dirs), system record writes, ...
  detail::sweep_temps(snapshots_root);
  auto names = detail::list_names(snapshots_root);
  if (!names) return tl::unexpected(names.error().context("opening the snapshot store"));
  for (const std::string& name : *names)
    if (name[0] != '.' && detail::is_real_dir(snapshots_root / name))
      detail::sweep_temps(snapshots_root / name);
  // ... and of killed restores, beside the state directories they were restoring.
  const stdfs::path restores = snapshots_root / kRestoresDir;
  detail::sweep_temps(restores);
  auto intents = detail::list_names(restores);
  if (!intents) return tl::unexpected(intents.error().context("opening the snapshot store"));
  for (const std::string& name : *intents) {
    pid_t pid = detail::leading_pid(name);
    if (pid <= 0 || !detail::process_gone(pid)) continue;
    const stdfs::path intent = restores / name;
    if (auto bytes = fs::read_file(intent, uint64_t{64} << 10)) {
      stdfs::path state_dir(std::string(bytes->begin(), bytes->end()));
      if (state_dir.is_absolute() && state_dir.has_filename())
        detail::sweep_temps(state_dir.parent_path(), state_dir.filename().string());
    }
    ::unlink(intent.c_str());
  }
  return SnapshotStore(snapshots_root, std::move(now));
}

Result<SnapshotInfo> SnapshotStore::create(std::string_view component, const stdfs::path& state_dir,
                                           std::string_view active_version, std::string_view label,
                                           std::string_view id) {
  auto r = create_impl(component, state_dir, active_version, label, id);
  if (!r)
    return tl::unexpected(
        r.error().context("snapshot of " + std::string(component) + " from " + state_dir.string()));
  return r;
}

Result<SnapshotInfo> SnapshotStore::create_impl(std::string_view component,
                                                const stdfs::path& state_dir_arg,
                                                std::string_view active_version,
                                                std::string_view label,
                                                std::string_view wanted_id) {
  MUP_TRY(check_component(component));
  if (!wanted_id.empty() && wanted_id.rfind(std::string(component) + "-", 0) != 0)
    return fail(Errc::invalid_argument, "snapshot id " + std::string(wanted_id) +
                                            " is not one of " + std::string(component));
  auto resolved = resolve_state_dir(state_dir_arg, root_);
  if (!resolved) return tl::unexpected(resolved.error());
  const stdfs::path& state_dir = *resolved;
  Manifest m;
  m.component = component;
  m.version = active_version;
  m.label = label;
  struct stat st {};
  if (::lstat(state_dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return fail_errno("stat", state_dir.string(), errno);
    m.absent = true;
  } else if (!S_ISDIR(st.st_mode)) {
    return fail(Errc::invalid_argument,
                state_dir.string() + " is not a directory (" +
                    (S_ISLNK(st.st_mode) ? "a symlink" : "a file") +
                    "); a state directory must be a real directory, or absent");
  } else {
    auto s = detail::scan_state(state_dir);
    if (!s) return tl::unexpected(s.error());
    for (const detail::StatEntry& e : s->entries)
      if (e.kind == Kind::other)
        return fail(Errc::unsupported,
                    (state_dir / e.path).string() + " is a " + e.other +
                        "; a snapshot holds only directories, regular files and symlinks (keep "
                        "sockets and FIFOs under /run, outside the state directory)");
    m.root_mode = s->mode;
    m.root_uid = s->uid;
    m.root_gid = s->gid;
    m.entries.reserve(s->entries.size());
    for (const detail::StatEntry& e : s->entries) {
      ManifestEntry me;
      me.path = e.path;
      me.type = e.kind == Kind::dir    ? EntryType::dir
                : e.kind == Kind::file ? EntryType::file
                                       : EntryType::symlink;
      me.mode = e.mode;
      me.uid = e.uid;
      me.gid = e.gid;
      me.target = e.target;
      m.entries.push_back(std::move(me));
    }
  }

  const stdfs::path comp_dir = root_ / component;
  const bool new_component = !detail::path_exists(comp_dir);
  MUP_TRY(fs::create_dirs(comp_dir));
  if (new_component) MUP_TRY(fs::fsync_dir(root_));
  m.created_at_ms = now_();
  stdfs::path final_dir;
  for (int attempt = 0;; ++attempt) {
    m.id = wanted_id.empty() ? new_id(component, m.created_at_ms) : std::string(wanted_id);
    final_dir = comp_dir / m.id;
    if (!wanted_id.empty() && detail::path_exists(final_dir))
      return fail(Errc::already_exists, "snapshot " + m.id + " exists");
    if (!detail::path_exists(final_dir)) break;
    if (attempt == 10) return fail(Errc::internal, "no unused snapshot id in " + comp_dir.string());
  }
  std::optional<Manifest> prev = latest_snapshot(comp_dir);

  auto tmp = detail::TempTree::create(final_dir);
  if (!tmp) return tl::unexpected(tmp.error());
  const stdfs::path data = tmp->path() / kDataName;
  if (!m.absent) {
    if (::mkdir(data.c_str(), 0700) != 0)
      return fail_errno("create directory", data.string(), errno);
    auto state_fd = detail::open_dir(state_dir);
    if (!state_fd) return tl::unexpected(state_fd.error());
    auto data_fd = detail::open_dir(data);
    if (!data_fd) return tl::unexpected(data_fd.error());
    // Directories (writable while filling them) and symlinks first: cheap, in order.
    std::vector<size_t> files;
    for (size_t i = 0; i < m.entries.size(); ++i) {
      const ManifestEntry& e = m.entries[i];
      if (e.type == EntryType::dir && ::mkdirat(data_fd->get(), e.path.c_str(), 0700) != 0)
        return fail_errno("create directory", (data / e.path).string(), errno);
      if (e.type == EntryType::symlink &&
          ::symlinkat(e.target.c_str(), data_fd->get(), e.path.c_str()) != 0)
        return fail_errno("create symlink", (data / e.path).string(), errno);
      if (e.type == EntryType::file) files.push_back(i);
    }
    const stdfs::path prev_data = prev ? comp_dir / prev->id / kDataName : stdfs::path();
    Capture c(state_fd->get(), state_dir, data_fd->get(), data, prev_data);
    if (prev)
      for (const ManifestEntry& e : prev->entries)
        if (e.type == EntryType::file) c.prev_files.emplace(std::pair(e.sha256, e.mode), e.path);
    MUP_TRY(try_parallel_for(files.size(), default_threads(), [&](size_t k) -> Status {
      MUP_TRY(fault::point("snapshot.create.copy"));
      return capture_file(m.entries[files[k]], c);
    }));
    m.bytes_copied = c.bytes_copied;
    m.files_linked = c.files_linked;
    // Directory modes last, deepest first, so a read-only directory does not block its
    // children. The snapshot keeps the state's modes: verify() checks them.
    for (auto it = m.entries.rbegin(); it != m.entries.rend(); ++it)
      if (it->type == EntryType::dir && ::fchmodat(data_fd->get(), it->path.c_str(), it->mode, 0))
        return fail_errno("chmod", (data / it->path).string(), errno);
    if (::fchmod(data_fd->get(), m.root_mode) != 0)
      return fail_errno("chmod", data.string(), errno);
  }
  m.content_hash = m.compute_content_hash();
  const std::string text = m.to_json();
  const stdfs::path manifest = tmp->path() / kManifestName;
  UniqueFd mf(::open(manifest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (mf.get() < 0) return fail_errno("create", manifest.string(), errno);
  MUP_TRY(fs::write_all(mf.get(), {reinterpret_cast<const uint8_t*>(text.data()), text.size()},
                        manifest));
  MUP_TRY(fault::point("snapshot.create.before_rename"));
  MUP_TRY(fs::sync_filesystem(tmp->path()));
  MUP_TRY(detail::rename_noreplace(tmp->path(), final_dir));
  tmp->release();
  MUP_TRY(fs::fsync_dir(comp_dir));
  return info_of(m, final_dir);
}

Result<std::vector<SnapshotInfo>> SnapshotStore::list(std::string_view component) const {
  std::vector<std::string> components;
  if (!component.empty()) {
    MUP_TRY(check_component(component));
    components.emplace_back(component);
  } else {
    auto names = detail::list_names(root_);
    if (!names) return tl::unexpected(names.error());
    for (std::string& name : *names)
      if (name != kSystemDir && package::validate_component_name(name) &&
          detail::is_real_dir(root_ / name))
        components.push_back(std::move(name));
  }
  std::vector<SnapshotInfo> out;
  for (const std::string& c : components) {
    const stdfs::path dir = root_ / c;
    auto ids = detail::list_names(dir);
    if (!ids) return tl::unexpected(ids.error());
    for (const std::string& id : *ids) {
      auto parts = parse_id(id);  // temp names start with '.', which no id does
      if (!parts || parts->component != c) continue;
      auto m = load_manifest(dir / id, id);
      if (!m)
        return tl::unexpected(
            m.error().context("listing snapshots (remove " + id + " if it cannot be repaired)"));
      out.push_back(info_of(*m, dir / id));
    }
  }
  std::sort(out.begin(), out.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return std::pair(a.created_at_ms, a.id) < std::pair(b.created_at_ms, b.id);
  });
  return out;
}

Result<stdfs::path> SnapshotStore::dir_of(std::string_view id) const {
  auto parts = parse_id(id);
  if (!parts) return tl::unexpected(parts.error());
  if (parts->component == kSystemDir)
    return fail(Errc::invalid_argument,
                std::string(id) + " is a system snapshot; use the system snapshot calls");
  stdfs::path dir = root_ / parts->component / id;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return fail(Errc::not_found, "no snapshot " + std::string(id) + " in " + root_.string());
    return fail_errno("stat", dir.string(), errno);
  }
  return dir;
}

Result<SnapshotInfo> SnapshotStore::get(std::string_view id) const {
  auto dir = dir_of(id);
  if (!dir) return tl::unexpected(dir.error());
  auto m = load_manifest(*dir, id);
  if (!m) return tl::unexpected(m.error());
  return info_of(*m, *dir);
}

Status SnapshotStore::restore(std::string_view id, const stdfs::path& state_dir) const {
  auto s = restore_impl(id, state_dir);
  if (!s)
    return tl::unexpected(
        s.error().context("restoring snapshot " + std::string(id) + " into " + state_dir.string()));
  return s;
}

Status SnapshotStore::restore_impl(std::string_view id, const stdfs::path& state_dir_arg) const {
  auto dir = dir_of(id);
  if (!dir) return tl::unexpected(dir.error());
  auto m = load_manifest(*dir, id);
  if (!m) return tl::unexpected(m.error());
  // Structure first (names, types, modes, sizes, links: no reading); contents are checked
  // on the copies, before anything is swapped in.
  auto report = check_snapshot(*m, *dir, false);
  if (!report) return tl::unexpected(report.error());
  if (!report->ok())
    return fail(Errc::corrupt,
                report->summary() + "; refusing to restore it (the state directory is unchanged)");

  auto resolved = resolve_state_dir(state_dir_arg, root_);
  if (!resolved) return tl::unexpected(resolved.error());
  const stdfs::path& state_dir = *resolved;
  const stdfs::path parent = state_dir.parent_path();
  bool exists = false;
  struct stat st {};
  if (::lstat(state_dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return fail(Errc::invalid_argument,
                  state_dir.string() + " is not a directory; refusing to replace it");
    exists = true;
  } else if (errno != ENOENT) {
    return fail_errno("stat", state_dir.string(), errno);
  }
  MUP_TRY(fs::create_dirs(parent));
  auto intent = RestoreIntent::begin(root_, state_dir);
  if (!intent) return tl::unexpected(intent.error());

  if (m->absent) {  // the state was "no directory": move the current one out of the way
    if (!exists) return {};
    const stdfs::path old = fs::temp_sibling(state_dir);
    MUP_TRY(fault::point("snapshot.restore.before_swap"));
    if (::rename(state_dir.c_str(), old.c_str()) != 0)
      return fail_errno("move aside", state_dir.string(), errno);
    MUP_TRY(fs::fsync_dir(parent));
    MUP_TRY(fault::point("snapshot.restore.after_swap"));
    return detail::remove_tree(old);
  }

  auto tmp = detail::TempTree::create(state_dir);
  if (!tmp) return tl::unexpected(tmp.error());
  const stdfs::path data = *dir / kDataName;
  auto data_fd = detail::open_dir(data);
  if (!data_fd) return tl::unexpected(data_fd.error());
  auto out_fd = detail::open_dir(tmp->path());
  if (!out_fd) return tl::unexpected(out_fd.error());
  const stdfs::path& out = tmp->path();
  std::vector<size_t> files;
  for (size_t i = 0; i < m->entries.size(); ++i) {
    const ManifestEntry& e = m->entries[i];
    if (e.type == EntryType::dir && ::mkdirat(out_fd->get(), e.path.c_str(), 0700) != 0)
      return fail_errno("create directory", (out / e.path).string(), errno);
    if (e.type == EntryType::symlink) {
      if (::symlinkat(e.target.c_str(), out_fd->get(), e.path.c_str()) != 0)
        return fail_errno("create symlink", (out / e.path).string(), errno);
      MUP_TRY(
          detail::set_owner_mode_at(out_fd->get(), e.path, true, e.uid, e.gid, 0, out / e.path));
    }
    if (e.type == EntryType::file) files.push_back(i);
  }
  // Fresh copies, never links: the service will write to these files.
  MUP_TRY(try_parallel_for(files.size(), default_threads(), [&](size_t k) -> Status {
    MUP_TRY(fault::point("snapshot.restore.copy"));
    const ManifestEntry& e = m->entries[files[k]];
    auto src = detail::open_beneath(data_fd->get(), e.path, O_RDONLY, data / e.path);
    if (!src) return tl::unexpected(src.error());
    UniqueFd dst(::openat(out_fd->get(), e.path.c_str(),
                          O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (dst.get() < 0) return fail_errno("create", (out / e.path).string(), errno);
    MUP_TRY(detail::copy_contents(src->get(), dst.get(), e.size, data / e.path));
    auto hashed = detail::hash_fd(dst.get(), out / e.path);
    if (!hashed) return tl::unexpected(hashed.error());
    if (hashed->size != e.size || hashed->sha256 != e.sha256)
      return fail(Errc::corrupt, "snapshot " + m->id + ": " + e.path +
                                     ": content differs from the manifest (SHA-256 " +
                                     hashed->sha256.short_hex() + "…, the manifest says " +
                                     e.sha256.short_hex() +
                                     "…); refusing to restore it (the state directory is "
                                     "unchanged)");
    return detail::set_owner_mode(dst.get(), e.uid, e.gid, e.mode, out / e.path);
  }));
  for (auto it = m->entries.rbegin(); it != m->entries.rend(); ++it)
    if (it->type == EntryType::dir)
      MUP_TRY(detail::set_owner_mode_at(out_fd->get(), it->path, false, it->uid, it->gid, it->mode,
                                        out / it->path));
  MUP_TRY(detail::set_owner_mode(out_fd->get(), m->root_uid, m->root_gid, m->root_mode, out));
  MUP_TRY(fault::point("snapshot.restore.before_swap"));
  MUP_TRY(fs::sync_filesystem(out));
  if (exists) {
    // One atomic step: state_dir now holds the restored tree, the temp name the old one.
    MUP_TRY(detail::exchange_paths(out, state_dir));
  } else {
    MUP_TRY(detail::rename_noreplace(out, state_dir));
    tmp->release();
  }
  MUP_TRY(fs::fsync_dir(parent));
  MUP_TRY(fault::point("snapshot.restore.after_swap"));
  return {};  // ~TempTree deletes the old state
}

Status SnapshotStore::remove(std::string_view id) {
  auto dir = dir_of(id);
  if (!dir) return tl::unexpected(dir.error());
  auto groups = system_groups_naming(id);
  if (!groups) return tl::unexpected(groups.error());
  if (!groups->empty())
    return fail(Errc::invalid_argument, "snapshot " + std::string(id) +
                                            " belongs to system snapshot " + groups->front() +
                                            "; remove that first");
  // Out of list()'s sight in one rename, then deleted at leisure (or by open() after a kill).
  const stdfs::path tmp = fs::temp_sibling(*dir);
  if (::rename(dir->c_str(), tmp.c_str()) != 0)
    return fail_errno("move aside", dir->string(), errno);
  MUP_TRY(fs::fsync_dir(dir->parent_path()));
  MUP_TRY(fault::point("snapshot.remove"));
  return detail::remove_tree(tmp);
}

}  // namespace mup::snapshot

namespace mup::snapshot {

std::string SnapshotStore::fresh_id(std::string_view component) const {
  return snapshot::new_id(component, now_());
}

bool SnapshotStore::exists(std::string_view id) const {
  auto d = dir_of(id);
  return d && detail::path_exists(*d / kManifestName);
}

}  // namespace mup::snapshot
