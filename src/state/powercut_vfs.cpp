// The power-cut VFS: what losing power does to the state database, for crash tests.
//
// Contract. When fault points are compiled in (fault::enabled()) and the environment holds
// MUP_FAULT_ACTION=powercut when a state connection opens, Conn::open opens it through this
// shim, the SQLite VFS "mup-powercut" wrapping the default VFS (registered once, on first use,
// together with its fault::on_power_cut hook). Otherwise power_cut_vfs() returns nullptr and the
// connection uses the default VFS exactly as before; with -DMUP_FAULT_POINTS=OFF none of this is
// compiled.
//
// The shim tracks, per file (main database, -wal and rollback -journal, by full path, shared by
// every connection of this process), what was written since the file's last successful xSync:
// the size it had then, and an undo log of the old bytes of every region overwritten (or cut
// off by xTruncate) since, read before the write. Bytes beyond the synced size are not saved:
// truncating drops them. The -shm (mapped memory that SQLite rebuilds from the WAL when the
// first connection opens after a crash) and temp files pass straight through.
//
// On a power cut (the powercut action runs the hook, then SIGKILLs the process) every tracked
// file is put back to its last synced state through the real file and its real methods: the
// undo log is applied newest first, then the file is truncated to its synced size. From then
// on writes, truncates, syncs and deletes through the shim fail with SQLITE_IOERR (the disk is
// gone) until the SIGKILL lands.
//
// xSync passes the fault point "state.sync" before syncing, so a test can cut power after
// SQLite wrote WAL frames but before they are durable. An error from the point (enospc, or a
// malformed MUP_FAULT_AFTER) fails the sync with SQLITE_IOERR_FSYNC.
//
// Not modelled: creating and deleting files are taken as durable (the unix VFS fsyncs the
// directory at a new WAL's or journal's first sync; a journal delete, DELETE mode's commit, is
// not, but the state database runs in WAL mode). Only this process loses its writes: another
// process with the same database open at the cut keeps a -shm that indexes frames now gone, so
// a test must not hold the database open while its child is cut. A change to a tracked file
// by another process (seen as a size that is not ours) is taken as synced: SQLite's locks only
// let another process write when our own writes are synced.
//
// Thread-safety: one mutex serialises the tracked files' writes, truncates, syncs, closes and
// deletes with the bookkeeping and the restore, so a cut never falls between saving old bytes
// and writing new ones, nor between a sync and forgetting what it made durable.
#include <sqlite3.h>

#include "state/sqlite.hpp"

#if defined(MUP_FAULT_POINTS) && MUP_FAULT_POINTS

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/fault.hpp"

namespace mup::state::detail {

namespace {

constexpr const char* kVfsName = "mup-powercut";
constexpr int kTrackedTypes = SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL;

struct Undo {
  sqlite3_int64 offset;
  std::string old_bytes;
};

struct Tracked {
  int open_flags = 0;  // to reopen it for the restore if every handle is closed
  sqlite3_int64 synced_size = 0, size = 0;
  std::vector<Undo> undo;           // oldest first
  std::vector<sqlite3_file*> open;  // the real handles on this file
};

struct Shim {
  std::mutex mu;
  std::map<std::string, Tracked> files;  // guarded by mu; nodes stay put, File points at them
  bool cut = false;                      // guarded by mu
  sqlite3_vfs* real = nullptr;
  sqlite3_vfs vfs{};
};

Shim& shim() {  // never destroyed: connections may close during static destruction
  static Shim* s = new Shim;
  return *s;
}

// What SQLite allocates for one of our files (szOsFile): this, then the real file.
struct File {
  sqlite3_file base;
  sqlite3_file* real;
  Tracked* tracked;         // null: passed through
  const std::string* name;  // the key of `tracked` in Shim::files
};

sqlite3_file* real_of(sqlite3_file* f) {
  return reinterpret_cast<File*>(f)->real;
}

// A size we did not make means another process wrote the file, which SQLite allows only while
// our own writes are synced: take its current state as the synced one.
void adopt_foreign_changes(Tracked& t, sqlite3_file* real) {
  sqlite3_int64 now = 0;
  if (real->pMethods->xFileSize(real, &now) != SQLITE_OK || now == t.size) return;
  t.undo.clear();
  t.synced_size = t.size = now;
}

// Saves the synced bytes in [from, to) before they are overwritten or cut off.
int save_old_bytes(Tracked& t, sqlite3_file* real, sqlite3_int64 from, sqlite3_int64 to) {
  to = std::min({to, t.synced_size, t.size});
  if (to <= from) return SQLITE_OK;
  std::string old(static_cast<size_t>(to - from), '\0');
  int rc = real->pMethods->xRead(real, old.data(), static_cast<int>(old.size()), from);
  if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) return rc;
  t.undo.push_back({from, std::move(old)});
  return SQLITE_OK;
}

int file_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  File* p = reinterpret_cast<File*>(f);
  if (!p->tracked) return p->real->pMethods->xWrite(p->real, buf, n, off);
  std::lock_guard lock(shim().mu);
  if (shim().cut) return SQLITE_IOERR_WRITE;
  adopt_foreign_changes(*p->tracked, p->real);
  if (int rc = save_old_bytes(*p->tracked, p->real, off, off + n); rc != SQLITE_OK) return rc;
  int rc = p->real->pMethods->xWrite(p->real, buf, n, off);
  if (rc == SQLITE_OK) p->tracked->size = std::max(p->tracked->size, off + n);
  return rc;
}

int file_truncate(sqlite3_file* f, sqlite3_int64 size) {
  File* p = reinterpret_cast<File*>(f);
  if (!p->tracked) return p->real->pMethods->xTruncate(p->real, size);
  std::lock_guard lock(shim().mu);
  if (shim().cut) return SQLITE_IOERR_TRUNCATE;
  adopt_foreign_changes(*p->tracked, p->real);
  if (int rc = save_old_bytes(*p->tracked, p->real, size, p->tracked->size); rc != SQLITE_OK)
    return rc;
  int rc = p->real->pMethods->xTruncate(p->real, size);
  if (rc == SQLITE_OK) p->tracked->size = size;
  return rc;
}

int file_sync(sqlite3_file* f, int flags) {
  File* p = reinterpret_cast<File*>(f);
  if (!p->tracked) return p->real->pMethods->xSync(p->real, flags);
  if (!fault::point("state.sync")) return SQLITE_IOERR_FSYNC;  // outside mu: it may cut power
  std::lock_guard lock(shim().mu);
  if (shim().cut) return SQLITE_IOERR_FSYNC;
  adopt_foreign_changes(*p->tracked, p->real);
  int rc = p->real->pMethods->xSync(p->real, flags);
  if (rc == SQLITE_OK) {
    p->tracked->synced_size = p->tracked->size;
    p->tracked->undo.clear();
  }
  return rc;
}

int file_close(sqlite3_file* f) {
  File* p = reinterpret_cast<File*>(f);
  std::lock_guard lock(shim().mu);
  if (Tracked* t = p->tracked) {
    std::erase(t->open, p->real);
    // A file closed with unsynced writes stays tracked; the restore reopens it.
    if (t->open.empty() && t->undo.empty() && t->size == t->synced_size)
      shim().files.erase(*p->name);
  }
  return p->real->pMethods->xClose(p->real);
}

int file_control(sqlite3_file* f, int op, void* arg) {
  int rc = real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
  if (op == SQLITE_FCNTL_VFSNAME && rc == SQLITE_OK)  // like SQLite's vfstrace: "outer/inner"
    *static_cast<char**>(arg) = sqlite3_mprintf("%s/%z", kVfsName, *static_cast<char**>(arg));
  return rc;
}

// Everything else goes to the real file (the default unix VFS's files are version 3).
const sqlite3_io_methods kMethods = {
    3,
    file_close,
    [](sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
      return real_of(f)->pMethods->xRead(real_of(f), b, n, o);
    },
    file_write,
    file_truncate,
    file_sync,
    [](sqlite3_file* f, sqlite3_int64* s) {
      return real_of(f)->pMethods->xFileSize(real_of(f), s);
    },
    [](sqlite3_file* f, int l) { return real_of(f)->pMethods->xLock(real_of(f), l); },
    [](sqlite3_file* f, int l) { return real_of(f)->pMethods->xUnlock(real_of(f), l); },
    [](sqlite3_file* f, int* r) { return real_of(f)->pMethods->xCheckReservedLock(real_of(f), r); },
    file_control,
    [](sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); },
    [](sqlite3_file* f) { return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f)); },
    [](sqlite3_file* f, int pg, int sz, int ext, void volatile** pp) {
      return real_of(f)->pMethods->xShmMap(real_of(f), pg, sz, ext, pp);
    },
    [](sqlite3_file* f, int off, int n, int flags) {
      return real_of(f)->pMethods->xShmLock(real_of(f), off, n, flags);
    },
    [](sqlite3_file* f) { real_of(f)->pMethods->xShmBarrier(real_of(f)); },
    [](sqlite3_file* f, int del) { return real_of(f)->pMethods->xShmUnmap(real_of(f), del); },
    [](sqlite3_file* f, sqlite3_int64 o, int n, void** pp) {
      return real_of(f)->pMethods->xFetch(real_of(f), o, n, pp);
    },
    [](sqlite3_file* f, sqlite3_int64 o, void* pp) {
      return real_of(f)->pMethods->xUnfetch(real_of(f), o, pp);
    },
};

int vfs_open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  File* p = reinterpret_cast<File*>(f);
  p->real = reinterpret_cast<sqlite3_file*>(p + 1);
  p->tracked = nullptr;
  p->name = nullptr;
  int rc = shim().real->xOpen(shim().real, name, p->real, flags, out_flags);
  // SQLite calls xClose exactly when pMethods is set, even after a failed open.
  f->pMethods = p->real->pMethods ? &kMethods : nullptr;
  if (rc != SQLITE_OK || !name || !(flags & kTrackedTypes)) return rc;
  sqlite3_int64 size = 0;
  if (int r = p->real->pMethods->xFileSize(p->real, &size); r != SQLITE_OK) return r;
  std::lock_guard lock(shim().mu);
  auto [it, fresh] = shim().files.try_emplace(name);
  if (fresh) {
    it->second.open_flags = flags;
    it->second.synced_size = it->second.size = size;
  }
  it->second.open.push_back(p->real);
  p->tracked = &it->second;
  p->name = &it->first;
  return rc;
}

int vfs_delete(sqlite3_vfs*, const char* name, int sync_dir) {
  std::lock_guard lock(shim().mu);
  if (shim().cut) return SQLITE_IOERR_DELETE;
  int rc = shim().real->xDelete(shim().real, name, sync_dir);
  if (auto it = shim().files.find(name);
      rc == SQLITE_OK && it != shim().files.end() && it->second.open.empty())
    shim().files.erase(it);
  return rc;
}

void restore(const std::string& name, const Tracked& t) {
  Shim& s = shim();
  sqlite3_file* f = t.open.empty() ? nullptr : t.open.front();
  std::unique_ptr<char[]> reopened;
  if (!f) {
    reopened = std::make_unique<char[]>(static_cast<size_t>(s.real->szOsFile));
    f = reinterpret_cast<sqlite3_file*>(reopened.get());
    std::string z = name + std::string(4, '\0');  // no URI parameters follow the name
    int flags = t.open_flags & ~(SQLITE_OPEN_CREATE | SQLITE_OPEN_EXCLUSIVE |
                                 SQLITE_OPEN_DELETEONCLOSE | SQLITE_OPEN_URI);
    if (s.real->xOpen(s.real, z.c_str(), f, flags, nullptr) != SQLITE_OK) {
      if (f->pMethods) f->pMethods->xClose(f);
      return;  // nothing better to do: the process is about to be killed
    }
  }
  for (auto u = t.undo.rbegin(); u != t.undo.rend(); ++u)
    f->pMethods->xWrite(f, u->old_bytes.data(), static_cast<int>(u->old_bytes.size()), u->offset);
  sqlite3_int64 size = 0;
  if (f->pMethods->xFileSize(f, &size) == SQLITE_OK && size > t.synced_size)
    f->pMethods->xTruncate(f, t.synced_size);
  if (reopened) f->pMethods->xClose(f);
}

void cut_power() {
  Shim& s = shim();
  std::lock_guard lock(s.mu);
  s.cut = true;
  for (const auto& [name, t] : s.files) restore(name, t);
}

bool register_shim() {
  Shim& s = shim();
  s.real = sqlite3_vfs_find(nullptr);
  if (!s.real) return false;
  s.vfs = *s.real;  // the rest of the real VFS, which reads nothing but pAppData from it
  s.vfs.pNext = nullptr;
  s.vfs.zName = kVfsName;
  s.vfs.szOsFile = static_cast<int>(sizeof(File)) + s.real->szOsFile;
  s.vfs.xOpen = vfs_open;
  s.vfs.xDelete = vfs_delete;
  if (sqlite3_vfs_register(&s.vfs, /*makeDflt=*/0) != SQLITE_OK) return false;
  fault::on_power_cut(&cut_power);
  return true;
}

}  // namespace

const char* power_cut_vfs() {
  const char* action = std::getenv("MUP_FAULT_ACTION");
  if (!action || std::string_view(action) != "powercut") return nullptr;
  static const bool registered = register_shim();
  (void)registered;  // if registration failed, opening names the missing VFS
  return kVfsName;
}

}  // namespace mup::state::detail

#else

namespace mup::state::detail {

const char* power_cut_vfs() {
  return nullptr;
}

}  // namespace mup::state::detail

#endif  // MUP_FAULT_POINTS
