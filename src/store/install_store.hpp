// InstallStore: the versions of each component installed side by side on a node, and the
// pointers that say which one runs.
//
// Layout under the node root:
//   components/<name>/<version>/      an installed tree; appears only complete (unpack builds
//                                     it in a temp dir and renames it into place) and is
//                                     never modified afterwards (unchanged files are hard
//                                     links shared with other versions)
//   components/<name>/<version>.idx   its tree index, written (atomically) before the tree
//   components/<name>/current  -> <version>   the active version
//   components/<name>/previous -> <version>   the one before it (rollback target)
//   components/<name>/pinned   -> <version>   held by the administrator (never collected)
//   chunks/, deltas/                  pieces fetched from a repository (a ChunkStore),
//                                     kept until gc so an interrupted install resumes
//
// The pointers are symlinks replaced by rename(2) of a fresh symlink over the old one,
// then an fsync of the directory: a reader, or a process that restarts after a kill,
// sees the old pointer or the new one. The filesystem is the truth for what is installed
// and active; the state database mirrors it (see engine/engine.hpp).
//
// Not thread-safe; one writer per component at a time (the engine's locks, engine/locks.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "chunk/chunk_store.hpp"
#include "chunk/tree_index.hpp"
#include "core/error.hpp"
#include "delta/planner.hpp"
#include "delta/rebuild.hpp"

namespace mup::store {

struct GcOptions {
  size_t keep = 2;         // versions kept per component (newest installed first)
  uint64_t max_bytes = 0;  // then remove more (oldest first) until the store fits; 0: no cap
  bool dry_run = false;
  // Fetched pieces no installed version names are what an unfinished install resumes from:
  // kept this long after they were fetched (seconds), then removed.
  int64_t unfinished_piece_age_s = 24 * 3600;
  // Snapshots (Engine::gc): per component, the newest snapshot of each kept version is
  // kept (a rollback to it restores it); of the other automatic snapshots ("before ..."),
  // the newest snapshots_keep, within snapshot_max_bytes (0: no cap). Snapshots a user
  // took (mup snapshot create) and members of system snapshots are never collected.
  size_t snapshots_keep = 2;
  uint64_t snapshot_max_bytes = 0;
  // History (Engine::gc, state::HistoryRetention): the newest finished operations kept (and
  // as many of the agent's finished deployments and plans), those of them that keep their
  // step journals, and the newest audit records kept (older ones are cut off the front of
  // the hash chain). 0 keeps all of that kind.
  size_t history_keep = 500;
  size_t steps_keep = 50;
  size_t audit_keep = 1000;
};

struct GcReport {
  std::vector<std::pair<std::string, std::string>> removed;  // component, version
  uint64_t bytes_freed = 0;                                  // tree bytes not shared with kept
  uint64_t pieces_removed = 0, piece_bytes_freed = 0;        // fetched-piece cache
  std::vector<std::string> pieces;                           // their paths, under the store
  uint64_t bytes_after = 0;                                  // installed bytes that remain
  std::vector<std::string> snapshots_removed;                // ids (Engine::gc)
  uint64_t snapshot_bytes_freed = 0;
  // History (Engine::gc): rows removed, and the audit log's base after the trim.
  uint64_t operations_removed = 0, steps_removed = 0, audit_records_removed = 0;
  uint64_t deployments_removed = 0, plans_removed = 0;
  int64_t audit_base = 0;
  std::string audit_problem;  // why no audit record was cut (the chain does not verify)
};

class InstallStore {
 public:
  [[nodiscard]] static Result<InstallStore> open(const std::filesystem::path& root);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path component_dir(const std::string& name) const;
  std::filesystem::path version_dir(const std::string& name, const std::string& version) const;
  std::filesystem::path index_path(const std::string& name, const std::string& version) const;
  // The cache of fetched pieces.
  const chunk::ChunkStore& pieces() const { return pieces_; }

  [[nodiscard]] Result<std::vector<std::string>> components() const;
  // Complete installed versions, ascending semantic-version order.
  [[nodiscard]] Result<std::vector<std::string>> versions(const std::string& name) const;
  bool has_version(const std::string& name, const std::string& version) const;
  std::optional<std::string> active(const std::string& name) const;
  std::optional<std::string> previous(const std::string& name) const;
  std::optional<std::string> pinned(const std::string& name) const;

  [[nodiscard]] Status put_index(const std::string& name, const std::string& version,
                                 std::span<const uint8_t> index_file);
  [[nodiscard]] Result<chunk::TreeIndex> load_index(const std::string& name,
                                                    const std::string& version) const;

  // Builds components/<name>/<version>/ from the plan (pieces from pieces(), unchanged
  // files hard-linked from seeds), verifying every file before the tree appears. The pieces
  // come from `pieces` when given (the cache seen with the extents of cached bundle
  // segments: ChunkStore::with_extents), else from the cache.
  [[nodiscard]] Result<delta::UnpackStats> stage(const std::string& name,
                                                 const std::string& version,
                                                 const chunk::TreeIndex& index,
                                                 const delta::Plan& plan,
                                                 const delta::UnpackOptions& opts,
                                                 const chunk::ChunkStore* pieces = nullptr);
  // Re-reads an installed tree and checks it against its index: every entry present with
  // its type, mode, size, SHA-256 and link target, nothing else. Names the first problem.
  [[nodiscard]] Status verify(const std::string& name, const std::string& version) const;

  // Makes `version` (installed) the active one; the old active becomes `previous`.
  [[nodiscard]] Status activate(const std::string& name, const std::string& version);
  // Points `previous` at `version` (or removes it): recovery puts back what a killed
  // activation changed.
  [[nodiscard]] Status set_previous(const std::string& name,
                                    const std::optional<std::string>& version);
  [[nodiscard]] Status pin(const std::string& name, const std::optional<std::string>& version);
  // Leaves the component with no active version (undo of a first install).
  [[nodiscard]] Status deactivate(const std::string& name);
  // Removes components/<name>/ when it holds nothing (no version, index or pointer).
  [[nodiscard]] Status remove_if_empty(const std::string& name);

  // Removes an installed version (never the active, previous or pinned one): the tree is
  // renamed to a temp name first, so it is gone or intact, never half there.
  [[nodiscard]] Status remove_version(const std::string& name, const std::string& version);
  [[nodiscard]] Result<GcReport> gc(const GcOptions& opts);

  // After a kill: removes temp files and dirs, and indexes whose tree never appeared (an
  // install that resumes fetches its index again; its pieces stay in the cache).
  [[nodiscard]] Status recover();
  // The same for one component's directory only (its writer holds the component's lock).
  [[nodiscard]] Status recover_component(const std::string& name);
  // recover() for the shared piece directories only (chunks/, deltas/, indexes/).
  [[nodiscard]] Status recover_pieces();

  // Bytes of installed trees, each inode counted once.
  [[nodiscard]] Result<uint64_t> installed_bytes() const;

 private:
  InstallStore(std::filesystem::path root, chunk::ChunkStore pieces)
      : root_(std::move(root)), pieces_(std::move(pieces)) {}
  [[nodiscard]] Status set_pointer(const std::string& name, const char* pointer,
                                   const std::optional<std::string>& version);
  std::optional<std::string> read_pointer(const std::string& name, const char* pointer) const;

  std::filesystem::path root_;
  chunk::ChunkStore pieces_;
};

}  // namespace mup::store
