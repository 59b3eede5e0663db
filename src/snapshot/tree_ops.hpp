// File-tree operations the snapshot store is built from; internal to the module.
//
// scan_state lists a tree without following symlinks; open_beneath opens a path inside a
// directory without following any symlink on the way (so a state directory whose service
// swaps a directory for a symlink cannot make mup read outside it); copy_contents copies
// by reflink, else copy_file_range, else read/write; remove_tree deletes trees that hold
// read-only directories. Temp names follow core/fs.hpp (".<name>.mup-tmp.<pid>.<n>").
// All functions are thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/sha256.hpp"

namespace mup::snapshot::detail {

namespace stdfs = std::filesystem;

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }

 private:
  int fd_;
};

enum class Kind : uint8_t { dir, file, symlink, other };

struct StatEntry {
  std::string path;  // relative, '/'-separated
  Kind kind = Kind::file;
  uint32_t mode = 0;  // permission bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  std::string target;  // symlinks
  std::string other;   // Kind::other: "FIFO", "socket", "character device", ...
};

struct ScannedState {
  uint32_t mode = 0;  // of the root directory
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<StatEntry> entries;  // sorted by path, bytewise
};

// Names in a directory (not "." and ".."), sorted; a missing directory lists as empty.
[[nodiscard]] Result<std::vector<std::string>> list_names(const stdfs::path& dir);
bool path_exists(const stdfs::path& p);  // without following a final symlink
bool is_real_dir(const stdfs::path& p);  // a directory, not a symlink to one

// Lists the tree under the directory `root` (which must be a directory, not a symlink).
[[nodiscard]] Result<ScannedState> scan_state(const stdfs::path& root);

// Opens a directory (not through a symlink).
[[nodiscard]] Result<UniqueFd> open_dir(const stdfs::path& p);

// Opens `rel` under the directory `dirfd`, refusing symlinks in any component.
[[nodiscard]] Result<UniqueFd> open_beneath(int dirfd, const std::string& rel, int flags,
                                            const stdfs::path& what);

// SHA-256 and length of a file's content, read from offset 0.
struct Hashed {
  Digest sha256;
  uint64_t size = 0;
};
[[nodiscard]] Result<Hashed> hash_fd(int fd, const stdfs::path& what);

// Copies the first `size` bytes of `in` into the empty file `out`; fails if `in` does not
// hold exactly `size` bytes (it changed).
[[nodiscard]] Status copy_contents(int in, int out, uint64_t size, const stdfs::path& what);

// Sets owner (if it differs) then mode of an fd or of a path relative to `dirfd`
// (not following symlinks; mode is skipped for symlinks). chown comes first because it
// clears set-id bits.
[[nodiscard]] Status set_owner_mode(int fd, uint32_t uid, uint32_t gid, uint32_t mode,
                                    const stdfs::path& what);
[[nodiscard]] Status set_owner_mode_at(int dirfd, const std::string& rel, bool is_symlink,
                                       uint32_t uid, uint32_t gid, uint32_t mode,
                                       const stdfs::path& what);

// Deletes a tree, first making its directories writable.
[[nodiscard]] Status remove_tree(const stdfs::path& path);

// The process id at the start of `text` ("1234.5" gives 1234), or 0 if there is none.
pid_t leading_pid(std::string_view text);
// True when no process `pid` runs (so what it left behind can go).
bool process_gone(pid_t pid);

// Deletes temp entries in `dir` (".<name>.mup-tmp.<pid>.<n>") whose process is gone; with
// `name` non-empty, only temp siblings of `dir/name`.
void sweep_temps(const stdfs::path& dir, std::string_view name = {});

// A temp directory beside `final_path` (core/fs.hpp naming, stale siblings swept first),
// deleted with remove_tree at destruction unless released.
class TempTree {
 public:
  [[nodiscard]] static Result<TempTree> create(const stdfs::path& final_path);
  TempTree(TempTree&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  TempTree& operator=(TempTree&&) = delete;
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;
  ~TempTree();
  const stdfs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  explicit TempTree(stdfs::path p) : path_(std::move(p)) {}
  stdfs::path path_;
};

// renameat2 wrappers: swap two existing paths; rename without replacing.
[[nodiscard]] Status exchange_paths(const stdfs::path& a, const stdfs::path& b);
[[nodiscard]] Status rename_noreplace(const stdfs::path& from, const stdfs::path& to);

}  // namespace mup::snapshot::detail
