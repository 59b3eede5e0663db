// SnapshotStore: point-in-time copies of a component's state directory, to roll back to.
//
// A component's service keeps its mutable state in a directory (by convention
// `<root>/state/<component>/`). A snapshot is an immutable copy of that directory at
// `<snapshots_root>/<component>/<id>/`: `data/` (the copy) and `manifest.json` (every
// entry's path, type, mode, owner, size, SHA-256, symlink target, plus a content_hash over
// a canonical serialisation of them all). System snapshots group one snapshot per component
// under `<snapshots_root>/system/<id>.json`. A restore in progress is recorded in
// `<snapshots_root>/.restores/`.
//
// Contract:
//  - Ids: "<component>-<UTC yyyymmddThhmmss>-<6 hex random>" (so they sort by creation
//    time to the second), and "system-..." for system snapshots ("system" is not a valid
//    component here). list() orders by created_at_ms, then id.
//  - create() costs what changed: a file whose SHA-256 and mode equal a file of the
//    component's latest snapshot is hard-linked from that snapshot's data (snapshots are
//    never modified once made); any other file is copied (reflink, else copy_file_range,
//    else read/write). Nothing is ever linked from the live state directory. Every file is
//    still read once to hash it. bytes_copied reports what was written.
//  - The caller quiesces the service while create() and restore() run; a file that changes
//    while it is copied fails create() (Errc::io, naming it) rather than being captured torn.
//  - A state directory that does not exist is a valid state, "absent": its snapshot holds no
//    data, and restoring it removes the state directory. An empty directory is a different
//    state (present, no entries). The state directory itself must be a real directory (not
//    a symlink, not a mount point: restore renames beside it); FIFOs, devices and sockets
//    inside it are refused by create().
//  - Crash safety (SIGKILL at any instant): a snapshot appears in list() complete or not at
//    all (built in a temp dir beside its place, synced, renamed). restore() leaves the state
//    directory exactly as it was or exactly as snapshotted (the restored tree is built and
//    verified beside it, then swapped in with renameat2(RENAME_EXCHANGE)); remove() leaves
//    the snapshot listed and whole, or gone. open() deletes what killed calls left behind.
//  - restore() treats the manifest as untrusted: paths with "..", "." or empty components,
//    absolute paths, or entries under a non-directory are refused; a snapshot that fails
//    verification (any changed byte, mode, name, missing or extra file) is refused with
//    Errc::corrupt naming the file, and the state directory is not touched. Restored files
//    are fresh copies (never links into the snapshot); symlinks are recreated, never
//    followed. Ownership (uid/gid) is restored too, which needs root for other users' files.
//  - Not captured: extended attributes, ACLs, timestamps, hard links between state files
//    (each name becomes its own file).
//  - Thread-safety: a SnapshotStore holds no mutable state (its clock must be safe to call
//    from several threads); any call may run concurrently with any other except restore()
//    of the same state directory, and remove() of a snapshot that a concurrent restore()
//    reads (callers serialise per component, e.g. under the node lock).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"

namespace mup::snapshot {

// Milliseconds since the Unix epoch: a seam so tests control ids and ordering.
using NowMs = std::function<int64_t()>;
int64_t system_now_ms();

struct SnapshotInfo {
  std::string id;
  std::string component;
  std::string version;  // the component's active version at capture
  std::string label;
  int64_t created_at_ms = 0;
  bool absent = false;         // the state directory did not exist
  uint64_t files = 0;          // regular files
  uint64_t bytes = 0;          // their total size
  uint64_t bytes_copied = 0;   // bytes written at creation (the rest was hard-linked)
  uint64_t files_linked = 0;   // files hard-linked from the previous snapshot
  std::string content_hash;    // hex SHA-256 over the canonical entry list
  std::filesystem::path path;  // <snapshots_root>/<component>/<id>
};

struct VerifyProblem {
  enum class Kind { manifest, missing, unexpected, type, mode, size, content, target };
  Kind kind;
  std::string path;  // relative to the state directory; "" for the directory itself
  std::string detail;
};
std::string_view kind_name(VerifyProblem::Kind k);

struct VerifyReport {
  std::string id;
  uint64_t files_checked = 0;
  uint64_t bytes_checked = 0;
  std::vector<VerifyProblem> problems;  // sorted by path

  bool ok() const { return problems.empty(); }
  // "snapshot web-...: a/b: content differs from the manifest (and 2 more problems)".
  std::string summary() const;
};

// One member of a system snapshot: which component, where its state lives, which version
// of it is active.
struct ComponentState {
  std::string component;
  std::filesystem::path state_dir;
  std::string version;
};

struct SystemSnapshot {
  std::string id;
  std::string label;
  int64_t created_at_ms = 0;
  std::vector<SnapshotInfo> members;
  std::vector<std::filesystem::path> state_dirs;  // members[i] restores to state_dirs[i]
};

class SnapshotStore {
 public:
  // Opens (creating if needed) the store at `snapshots_root` and deletes temp trees left by
  // killed processes: half-built or half-removed snapshots, and half-restored state
  // directories of restores that were interrupted.
  [[nodiscard]] static Result<SnapshotStore> open(const std::filesystem::path& snapshots_root,
                                                  NowMs now = system_now_ms);

  // Snapshots `state_dir` (see the contract for an absent one).
  // `id` empty: a fresh one. A caller that journals the id before the snapshot exists
  // (so a crash can be undone exactly) takes one from fresh_id() and passes it here.
  [[nodiscard]] Result<SnapshotInfo> create(std::string_view component,
                                            const std::filesystem::path& state_dir,
                                            std::string_view active_version, std::string_view label,
                                            std::string_view id = {});
  // An id for a new snapshot of `component` (not used yet).
  std::string fresh_id(std::string_view component) const;
  // Whether a complete snapshot `id` exists.
  bool exists(std::string_view id) const;
  // Oldest first; `component` empty lists all components (not system snapshots).
  [[nodiscard]] Result<std::vector<SnapshotInfo>> list(std::string_view component) const;
  [[nodiscard]] Result<SnapshotInfo> get(std::string_view id) const;
  // Rehashes the data against the manifest. An error means verification could not run
  // (unknown id, unreadable manifest); a damaged snapshot is a report with problems.
  [[nodiscard]] Result<VerifyReport> verify(std::string_view id) const;
  // Makes `state_dir` exactly the snapshotted state (see the contract).
  [[nodiscard]] Status restore(std::string_view id, const std::filesystem::path& state_dir) const;
  // Refused while a system snapshot names the snapshot (remove that one first).
  [[nodiscard]] Status remove(std::string_view id);

  // One snapshot per member, grouped; on failure none is left behind (a kill leaves the
  // members made so far as ordinary snapshots). State directories are recorded (made
  // absolute) so restore_system() knows where each member goes.
  [[nodiscard]] Result<SystemSnapshot> create_system(const std::vector<ComponentState>& members,
                                                     std::string_view label);
  [[nodiscard]] Result<std::vector<SystemSnapshot>> list_system() const;
  [[nodiscard]] Result<SystemSnapshot> get_system(std::string_view id) const;
  // Verifies every member first and restores none if one is damaged; then restores the
  // members in order. Each member's restore is atomic; the group as a whole is not (a kill
  // between members leaves some restored: run restore_system again).
  [[nodiscard]] Status restore_system(std::string_view id) const;
  // Removes the group record, then its members.
  [[nodiscard]] Status remove_system(std::string_view id);

  const std::filesystem::path& root() const { return root_; }

 private:
  SnapshotStore(std::filesystem::path root, NowMs now)
      : root_(std::move(root)), now_(std::move(now)) {}

  [[nodiscard]] Result<SnapshotInfo> create_impl(std::string_view component,
                                                 const std::filesystem::path& state_dir,
                                                 std::string_view active_version,
                                                 std::string_view label, std::string_view id);
  [[nodiscard]] Status restore_impl(std::string_view id,
                                    const std::filesystem::path& state_dir) const;
  [[nodiscard]] Result<std::filesystem::path> dir_of(std::string_view id) const;
  // Ids of the system snapshots that name snapshot `id` as a member.
  [[nodiscard]] Result<std::vector<std::string>> system_groups_naming(std::string_view id) const;

  std::filesystem::path root_;
  NowMs now_;
};

}  // namespace mup::snapshot
