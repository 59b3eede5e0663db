// Node locks: who may change what, and how a dead writer is told from a live one.
//
//   <root>/locks/node.lock            every writer holds it shared; gc holds it exclusive
//   <root>/locks/c/<component>.lock   the one writer of a component holds it exclusive
//   <root>/locks/g/<operation>.lock   the owner of a group operation (install --with-deps)
//   <root>/locks/r/<remote>.lock      whoever refreshes a remote's trusted metadata (waited for)
//
// Readers (status, history, versions, audit show) take no lock: the state database is in
// WAL mode and the install store's pointers are replaced by rename, so a reader never
// waits for a writer and never sees half a change. flock(2) locks die with their process,
// so "this component's lock is free" means "whoever journaled a running operation on it is
// dead": that is how recovery tells a crashed operation from one still running, without
// pid files. flock locks belong to an open file description, so two threads of one
// process exclude each other too. Thread-safe.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "core/error.hpp"

namespace mup::engine {

class LockFile {
 public:
  enum class Mode { shared, exclusive };
  // Errc::busy when another holder conflicts (no waiting).
  [[nodiscard]] static Result<LockFile> try_acquire(const std::filesystem::path& path, Mode mode,
                                                    const std::string& what);
  // Waits for the lock (for short critical sections only, e.g. a metadata refresh).
  [[nodiscard]] static Result<LockFile> wait(const std::filesystem::path& path, Mode mode);
  LockFile() = default;
  LockFile(LockFile&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  LockFile& operator=(LockFile&& o) noexcept;
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;
  ~LockFile();
  bool held() const { return fd_ >= 0; }

 private:
  explicit LockFile(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The locks a writer of one component holds: node shared + component exclusive.
struct WriterLock {
  LockFile node, component;
};

class NodeLocks {
 public:
  explicit NodeLocks(std::filesystem::path root) : root_(std::move(root)) {}
  [[nodiscard]] Result<WriterLock> writer(const std::string& component) const;
  // Everything (gc, the sweep of shared temp directories).
  [[nodiscard]] Result<LockFile> exclusive() const;
  // A group operation's owner holds this for the group's whole life (its members lock
  // their components one at a time).
  [[nodiscard]] Result<LockFile> group(int64_t id) const;
  // Serialises refreshes of one remote's trusted metadata (tuf/<remote>/) across writers of
  // different components; waits.
  [[nodiscard]] Result<LockFile> remote(const std::string& name) const;
  std::filesystem::path node_lock() const { return root_ / "locks" / "node.lock"; }
  std::filesystem::path component_lock(const std::string& component) const {
    return root_ / "locks" / "c" / (component + ".lock");
  }

 private:
  std::filesystem::path root_;
};

}  // namespace mup::engine
