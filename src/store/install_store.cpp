#include "store/install_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <mutex>

#include "core/fault.hpp"
#include "core/fs.hpp"
#include "core/sha256.hpp"
#include "delta/piece.hpp"
#include "package/semver.hpp"

namespace mup::store {

namespace stdfs = std::filesystem;
using chunk::EntryType;

namespace {

// The directories of the fetched-piece cache: pieces, index deltas, cached bundle segments.
constexpr const char* kPieceDirs[] = {"chunks", "deltas", "indexes", "bundles"};

constexpr const char* kPointers[] = {"current", "previous", "pinned"};

bool is_pointer_name(const std::string& n) {
  return std::find(std::begin(kPointers), std::end(kPointers), n) != std::end(kPointers);
}

bool is_temp_name(const std::string& n) {
  return n.find(".mup-tmp.") != std::string::npos;
}

// Versions sort by semantic version; names that are not versions sort after, by name.
bool version_less(const std::string& a, const std::string& b) {
  auto va = package::Version::parse(a), vb = package::Version::parse(b);
  if (va && vb) return *va < *vb;
  if (bool(va) != bool(vb)) return bool(va);
  return a < b;
}

}  // namespace

// ---- InstallStore ----

Result<InstallStore> InstallStore::open(const stdfs::path& root) {
  MUP_TRY(fs::create_dirs(root / "components"));
  auto pieces = chunk::ChunkStore::open(root, true);
  if (!pieces) return tl::unexpected(pieces.error());
  return InstallStore(root, std::move(*pieces));
}

stdfs::path InstallStore::component_dir(const std::string& name) const {
  return root_ / "components" / name;
}
stdfs::path InstallStore::version_dir(const std::string& name, const std::string& version) const {
  return component_dir(name) / version;
}
stdfs::path InstallStore::index_path(const std::string& name, const std::string& version) const {
  return component_dir(name) / (version + ".idx");
}

Result<std::vector<std::string>> InstallStore::components() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(root_ / "components", ec)) {
    std::string n = e.path().filename().string();
    if (!is_temp_name(n) && n[0] != '.' && e.is_directory()) out.push_back(n);
  }
  if (ec) return fail(Errc::io, "listing " + (root_ / "components").string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<std::string>> InstallStore::versions(const std::string& name) const {
  std::vector<std::string> out;
  std::error_code ec;
  stdfs::path dir = component_dir(name);
  if (!stdfs::exists(dir, ec)) return out;
  for (const auto& e : stdfs::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    if (is_temp_name(n) || is_pointer_name(n) || n[0] == '.' || e.is_symlink()) continue;
    if (e.is_directory() && stdfs::exists(index_path(name, n))) out.push_back(n);
  }
  if (ec) return fail(Errc::io, "listing " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(), version_less);
  return out;
}

bool InstallStore::has_version(const std::string& name, const std::string& version) const {
  std::error_code ec;
  return stdfs::is_directory(version_dir(name, version), ec) &&
         stdfs::is_regular_file(index_path(name, version), ec);
}

std::optional<std::string> InstallStore::read_pointer(const std::string& name,
                                                      const char* pointer) const {
  std::error_code ec;
  auto t = stdfs::read_symlink(component_dir(name) / pointer, ec);
  if (ec || t.empty()) return std::nullopt;
  return t.filename().string();
}

std::optional<std::string> InstallStore::active(const std::string& name) const {
  return read_pointer(name, "current");
}
std::optional<std::string> InstallStore::previous(const std::string& name) const {
  return read_pointer(name, "previous");
}
std::optional<std::string> InstallStore::pinned(const std::string& name) const {
  return read_pointer(name, "pinned");
}

namespace {

// The power-cut model of the pointers (fault builds): a pointer renamed but whose
// directory was not fsynced yet may come back as it was. The powercut fault action puts
// every such pointer back before it kills the process.
struct UnsyncedPointer {
  stdfs::path link;
  std::optional<std::string> old_target;
};
std::mutex g_unsynced_mu;
std::vector<UnsyncedPointer> g_unsynced;

void put_back_unsynced_pointers() {
  std::lock_guard<std::mutex> g(g_unsynced_mu);
  for (auto it = g_unsynced.rbegin(); it != g_unsynced.rend(); ++it) {
    ::unlink(it->link.c_str());
    if (it->old_target) (void)!::symlink(it->old_target->c_str(), it->link.c_str());
  }
  g_unsynced.clear();
}

void note_unsynced(const stdfs::path& link, std::optional<std::string> old_target) {
  if (!fault::enabled()) return;
  static const bool registered = [] {
    fault::on_power_cut(&put_back_unsynced_pointers);
    return true;
  }();
  (void)registered;
  std::lock_guard<std::mutex> g(g_unsynced_mu);
  g_unsynced.push_back({link, std::move(old_target)});
}

void note_synced(const stdfs::path& dir) {
  if (!fault::enabled()) return;
  std::lock_guard<std::mutex> g(g_unsynced_mu);
  std::erase_if(g_unsynced, [&](const UnsyncedPointer& u) { return u.link.parent_path() == dir; });
}

}  // namespace

Status InstallStore::set_pointer(const std::string& name, const char* pointer,
                                 const std::optional<std::string>& version) {
  stdfs::path dir = component_dir(name);
  stdfs::path link = dir / pointer;
  std::optional<std::string> old = read_pointer(name, pointer);
  std::string point = std::string("store.pointer.") + pointer;
  if (!version) {
    if (::unlink(link.c_str()) != 0 && errno != ENOENT)
      return fail_errno("remove", link.string(), errno);
  } else {
    stdfs::path tmp = fs::temp_sibling(link);
    if (::symlink(version->c_str(), tmp.c_str()) != 0)
      return fail_errno("create symlink", tmp.string(), errno);
    MUP_TRY(fault::point(point));
    if (::rename(tmp.c_str(), link.c_str()) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return fail_errno("rename", link.string(), e);
    }
  }
  note_unsynced(link, old);
  MUP_TRY(fault::point(point + ".renamed"));  // before the directory is durable
  MUP_TRY(fs::fsync_dir(dir));
  note_synced(dir);
  return {};
}

Status InstallStore::put_index(const std::string& name, const std::string& version,
                               std::span<const uint8_t> index_file) {
  MUP_TRY(fs::create_dirs(component_dir(name)));
  return fs::write_file_atomic(index_path(name, version), index_file);
}

Result<chunk::TreeIndex> InstallStore::load_index(const std::string& name,
                                                  const std::string& version) const {
  auto r = chunk::TreeIndex::load(index_path(name, version).string());
  if (!r) return tl::unexpected(r.error().context(name + " " + version));
  return r;
}

Result<delta::UnpackStats> InstallStore::stage(const std::string& name, const std::string& version,
                                               const chunk::TreeIndex& index,
                                               const delta::Plan& plan,
                                               const delta::UnpackOptions& opts,
                                               const chunk::ChunkStore* pieces) {
  if (!stdfs::exists(index_path(name, version)))
    return fail(Errc::internal, "staging " + name + " " + version + " before its index");
  stdfs::path dst = version_dir(name, version);
  if (stdfs::exists(dst))
    return fail(Errc::already_exists, name + " " + version + " is already installed");
  auto st = delta::unpack(index, plan, pieces ? *pieces : pieces_, dst, opts);
  if (!st) return tl::unexpected(st.error().context("staging " + name + " " + version));
  MUP_TRY(fs::fsync_dir(component_dir(name)));
  MUP_TRY(fault::point("store.staged"));
  return st;
}

Status InstallStore::verify(const std::string& name, const std::string& version) const {
  auto idx = load_index(name, version);
  if (!idx) return tl::unexpected(idx.error());
  stdfs::path dir = version_dir(name, version);
  std::string what = name + " " + version + ": ";
  std::set<std::string> expected;
  for (const auto& e : idx->entries) {
    expected.insert(e.path);
    stdfs::path p = dir / e.path;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return fail(Errc::corrupt, what + e.path + " is missing");
    bool type_ok = (e.type == EntryType::dir && S_ISDIR(st.st_mode)) ||
                   (e.type == EntryType::file && S_ISREG(st.st_mode)) ||
                   (e.type == EntryType::symlink && S_ISLNK(st.st_mode));
    if (!type_ok) return fail(Errc::corrupt, what + e.path + " has the wrong type");
    if (e.type != EntryType::symlink && (st.st_mode & 07777) != e.mode)
      return fail(Errc::corrupt, what + e.path + " has the wrong mode");
    if (e.type == EntryType::symlink) {
      std::error_code ec;
      if (stdfs::read_symlink(p, ec).string() != e.link_target)
        return fail(Errc::corrupt, what + e.path + " points elsewhere");
    } else if (e.type == EntryType::file) {
      if (static_cast<uint64_t>(st.st_size) != e.size)
        return fail(Errc::corrupt, what + e.path + " has the wrong size");
      auto m = fs::MappedFile::open(p);
      if (!m) return tl::unexpected(m.error());
      if (sha256(m->bytes()) != e.digest)
        return fail(Errc::corrupt, what + e.path + " does not match its SHA-256");
    }
  }
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec);
       !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = it->path().lexically_relative(dir).string();
    if (!expected.count(rel)) return fail(Errc::corrupt, what + rel + " is not in the index");
  }
  if (ec) return fail(Errc::io, "reading " + dir.string() + ": " + ec.message());
  return {};
}

Status InstallStore::activate(const std::string& name, const std::string& version) {
  if (!has_version(name, version))
    return fail(Errc::not_found, name + " " + version + " is not installed on this node");
  auto cur = active(name);
  if (cur == version) return {};
  // previous first: a kill between the two leaves previous == current, which recovery
  // (knowing the journaled intent) puts back.
  if (cur) MUP_TRY(set_pointer(name, "previous", cur));
  MUP_TRY(fault::point("store.activate.before_switch"));
  MUP_TRY(set_pointer(name, "current", version));
  return fault::point("store.activate.after_switch");
}

Status InstallStore::set_previous(const std::string& name,
                                  const std::optional<std::string>& version) {
  return set_pointer(name, "previous", version);
}

Status InstallStore::pin(const std::string& name, const std::optional<std::string>& version) {
  if (version && !has_version(name, *version))
    return fail(Errc::not_found, name + " " + *version + " is not installed on this node");
  return set_pointer(name, "pinned", version);
}

Status InstallStore::remove_version(const std::string& name, const std::string& version) {
  for (const char* p : kPointers)
    if (read_pointer(name, p) == version)
      return fail(Errc::invalid_argument, name + " " + version + " is the " +
                                              (std::string(p) == "current" ? "active" : p) +
                                              " version; it cannot be removed");
  stdfs::path dir = version_dir(name, version);
  stdfs::path tmp = fs::temp_sibling(dir);
  if (::rename(dir.c_str(), tmp.c_str()) != 0) return fail_errno("rename", dir.string(), errno);
  MUP_TRY(fs::fsync_dir(component_dir(name)));
  MUP_TRY(fault::point("store.remove"));
  if (::unlink(index_path(name, version).c_str()) != 0 && errno != ENOENT)
    return fail_errno("remove", index_path(name, version).string(), errno);
  return fs::remove_all(tmp);
}

namespace {

// Bytes of the files under `dirs`, each inode counted once across all of them.
uint64_t tree_bytes(const std::vector<stdfs::path>& dirs, std::set<std::pair<dev_t, ino_t>>& seen) {
  uint64_t total = 0;
  for (const auto& d : dirs) {
    std::error_code ec;
    for (auto it = stdfs::recursive_directory_iterator(d, ec);
         !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
      struct stat st {};
      if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (seen.insert({st.st_dev, st.st_ino}).second) total += static_cast<uint64_t>(st.st_size);
    }
  }
  return total;
}

}  // namespace

Result<uint64_t> InstallStore::installed_bytes() const {
  auto comps = components();
  if (!comps) return tl::unexpected(comps.error());
  std::vector<stdfs::path> dirs;
  for (const auto& c : *comps) {
    auto vs = versions(c);
    if (!vs) return tl::unexpected(vs.error());
    for (const auto& v : *vs) dirs.push_back(version_dir(c, v));
  }
  std::set<std::pair<dev_t, ino_t>> seen;
  return tree_bytes(dirs, seen);
}

Result<GcReport> InstallStore::gc(const GcOptions& opts) {
  GcReport rep;
  auto comps = components();
  if (!comps) return tl::unexpected(comps.error());
  struct Candidate {
    std::string component, version;
  };
  std::vector<Candidate> removable;  // oldest first within a component
  std::vector<stdfs::path> kept_dirs;
  std::vector<std::pair<std::string, std::string>> kept;
  for (const auto& c : *comps) {
    auto vs = versions(c);
    if (!vs) return tl::unexpected(vs.error());
    std::set<std::string> protect;
    for (const char* p : kPointers)
      if (auto v = read_pointer(c, p)) protect.insert(*v);
    // Keep the newest `keep` plus every protected version.
    size_t n = vs->size();
    for (size_t i = 0; i < n; ++i) {
      const std::string& v = (*vs)[i];
      bool keep = protect.count(v) || i + opts.keep >= n;
      if (keep) {
        kept.push_back({c, v});
      } else {
        removable.push_back({c, v});
      }
    }
  }
  std::vector<Candidate> doomed = removable;
  if (opts.max_bytes > 0) {
    // Beyond the count rule, remove the oldest unprotected kept versions until the store fits.
    std::vector<Candidate> extra;
    for (const auto& [c, v] : kept) {
      bool prot = false;
      for (const char* p : kPointers) prot = prot || read_pointer(c, p) == v;
      if (!prot) extra.push_back({c, v});
    }
    auto bytes_without = [&](const std::vector<Candidate>& gone) {
      std::vector<stdfs::path> dirs;
      for (const auto& [c, v] : kept) {
        bool g = false;
        for (const auto& x : gone) g = g || (x.component == c && x.version == v);
        if (!g) dirs.push_back(version_dir(c, v));
      }
      std::set<std::pair<dev_t, ino_t>> seen;
      return tree_bytes(dirs, seen);
    };
    std::vector<Candidate> gone;
    for (const auto& x : extra) {
      if (bytes_without(gone) <= opts.max_bytes) break;
      gone.push_back(x);
    }
    doomed.insert(doomed.end(), gone.begin(), gone.end());
  }
  // What the kept versions hold, to count the bytes freed.
  std::set<std::pair<std::string, std::string>> doomed_set;
  for (const auto& d : doomed) doomed_set.insert({d.component, d.version});
  std::set<std::pair<dev_t, ino_t>> kept_inodes;
  for (const auto& [c, v] : kept)
    if (!doomed_set.count({c, v})) kept_dirs.push_back(version_dir(c, v));
  // The pieces every installed version (kept or not) is made of: the installed trees are the
  // seeds of the next install, so their pieces are dead weight in the cache.
  std::set<std::string> installed_pieces;
  {
    std::vector<std::pair<std::string, std::string>> all = kept;
    for (const auto& d : doomed) all.push_back({d.component, d.version});
    for (const auto& [c, v] : all) {
      auto bytes = fs::read_file(index_path(c, v), uint64_t{2} << 30);  // local, written by us
      if (!bytes) continue;
      installed_pieces.insert(sha256(*bytes).hex());  // index deltas end "-<target index sha>"
      auto idx = chunk::TreeIndex::parse(*bytes);
      if (!idx) continue;
      for (const auto& e : idx->entries) {
        for (const auto& ch : e.chunks) installed_pieces.insert(ch.id.hex());
        for (const auto& d : e.deltas)
          installed_pieces.insert(delta::piece_rel_path(d.base, e.digest));
      }
    }
  }
  rep.bytes_after = tree_bytes(kept_dirs, kept_inodes);
  for (const auto& d : doomed) {
    std::set<std::pair<dev_t, ino_t>> seen = kept_inodes;
    rep.bytes_freed += tree_bytes({version_dir(d.component, d.version)}, seen);
    rep.removed.push_back({d.component, d.version});
    if (!opts.dry_run) {
      MUP_TRY(fault::point("store.gc.version"));
      MUP_TRY(remove_version(d.component, d.version));
    }
  }
  // Fetched pieces: those an installed version is made of go (its tree holds the bytes);
  // the others, and cached bundle segments (an install removes its own once staged),
  // belong to an install that did not finish, and stay for its resume until they are
  // unfinished_piece_age_s old.
  const auto now = std::chrono::system_clock::now();
  for (const char* sub : kPieceDirs) {
    std::error_code ec;
    std::vector<std::pair<stdfs::path, uint64_t>> unused;
    for (auto it = stdfs::recursive_directory_iterator(root_ / sub, ec);
         !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
      struct stat st {};
      if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      const std::string name = it->path().filename().string();
      const std::string rel = it->path().lexically_relative(root_).string();
      const bool installed =
          std::string(sub) == "chunks" ? installed_pieces.count(name) > 0
          : std::string(sub) == "deltas"
              ? installed_pieces.count(rel) > 0
              : name.size() > 64 && installed_pieces.count(name.substr(name.size() - 64)) > 0;
      const auto age = now - std::chrono::system_clock::from_time_t(st.st_mtime);
      if (!installed && age < std::chrono::seconds(opts.unfinished_piece_age_s)) continue;
      unused.push_back({it->path(), static_cast<uint64_t>(st.st_size)});
    }
    std::set<stdfs::path> emptied;
    for (const auto& [p, sz] : unused) {
      if (!opts.dry_run && ::unlink(p.c_str()) != 0) continue;
      ++rep.pieces_removed;
      rep.piece_bytes_freed += sz;
      rep.pieces.push_back(p.lexically_relative(root_).string());
      emptied.insert(p.parent_path());
    }
    // The fan-out directories (chunks/ab/) a removal emptied go too (a put makes them again),
    // or a node's file count would grow with every piece prefix it ever saw.
    for (const auto& d : emptied)
      if (d != root_ / sub) (void)::rmdir(d.c_str());  // fails, harmlessly, when not empty
  }
  return rep;
}

Status InstallStore::recover_component(const std::string& c) {
  stdfs::path dir = component_dir(c);
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) return {};
  std::vector<stdfs::path> doomed;
  for (const auto& e : stdfs::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    if (is_temp_name(n)) {
      doomed.push_back(e.path());
    } else if (e.path().extension() == ".idx") {
      std::string v = e.path().stem().string();
      if (!stdfs::is_directory(dir / v)) doomed.push_back(e.path());
    }
  }
  // The component's writer holds its lock: a temp here belongs to a dead process.
  for (const auto& p : doomed) MUP_TRY(fs::remove_all(p));
  if (!doomed.empty()) MUP_TRY(fs::fsync_dir(dir));
  // A pointer to a version that is not there (removed by hand) is dropped.
  for (const char* p : {"previous", "pinned"}) {
    auto v = read_pointer(c, p);
    if (v && !has_version(c, *v)) MUP_TRY(set_pointer(c, p, std::nullopt));
  }
  return {};
}

Status InstallStore::recover_pieces() {
  for (const char* sub : kPieceDirs) {
    std::error_code ec;
    std::vector<stdfs::path> temps;
    for (auto it = stdfs::recursive_directory_iterator(root_ / sub, ec);
         !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec))
      if (is_temp_name(it->path().filename().string())) temps.push_back(it->path());
    for (const auto& p : temps) MUP_TRY(fs::remove_all(p));
  }
  return {};
}

Status InstallStore::recover() {
  auto comps = components();
  if (!comps) return tl::unexpected(comps.error());
  for (const auto& c : *comps) MUP_TRY(recover_component(c));
  return recover_pieces();
}

Status InstallStore::deactivate(const std::string& name) {
  return set_pointer(name, "current", std::nullopt);
}

Status InstallStore::remove_if_empty(const std::string& name) {
  stdfs::path dir = component_dir(name);
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec) || !stdfs::is_empty(dir, ec)) return {};
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY)
    return fail_errno("remove directory", dir.string(), errno);
  return fs::fsync_dir(root_ / "components");
}

}  // namespace mup::store
