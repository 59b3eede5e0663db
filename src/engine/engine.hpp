// Engine: every operation on a node (install, activate, rollback, commit, gc, snapshots),
// and the reads that report on them. The CLI and the agent call the same functions; the
// CLI only parses and prints.
//
// Operations run through one journaled state machine (engine/operation.hpp): intent
// first, each step journaled before it acts, history and audit written with the result
// in one transaction. open() first recovers what dead processes left (engine/recovery.cpp):
// each unfinished operation whose owner is dead (its component lock is free) is resumed
// or undone through the same table; an operation whose process still runs is left alone
// and shown as running. A recovery that fails is retried by later commands; after
// kMaxRecoveryAttempts failures the operation is quarantined. The node then works in a
// degraded mode: reads, gc, rollback and audit work; install / activate / commit of the
// quarantined component are refused until `mup recover` succeeds or a rollback supersedes
// the operation. open() never fails because of recovery.
//
// Trial: an activated version is on trial until committed (commit(), or install with
// trial = false, the default, which commits at once). A version on trial when the node
// restarts (the boot id changed) follows its policy: "rollback" (default) or "keep".
//
// Concurrency: reads take no lock and never wait for a writer. One writer per component
// at a time (Errc::busy otherwise); operations on different components may run at once,
// in several processes or threads (each operation uses its own database connection). gc
// excludes every other writer. Events go to the observer through an EventBus (never on a
// download worker). An install can be cancelled (InstallOptions::cancel): it undoes
// itself and ends with Code::cancelled. Thread-safe, except set-up (open) itself.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "engine/activator.hpp"
#include "engine/errors.hpp"
#include "engine/locks.hpp"
#include "package/manifest.hpp"
#include "store/install_store.hpp"

namespace mup::state {
class StateDb;
struct AuditReport;
struct AuditRecord;
struct OperationRecord;
}  // namespace mup::state
namespace mup::snapshot {
class SnapshotStore;
struct SnapshotInfo;
struct VerifyReport;
}  // namespace mup::snapshot
namespace mup::transfer {
class Fetcher;
}
namespace mup::crypto {
class PublicKey;
}

namespace mup::engine {

constexpr int kMaxRecoveryAttempts = 3;

// "YYYY-MM-DDTHH:MM:SSZ" of Unix milliseconds: how status, history and audit show times.
std::string iso_time(int64_t unix_ms);

struct EngineOptions {
  std::string actor;                  // who acts (default: $USER, or "unknown")
  unsigned threads = 0;               // 0: default
  unsigned download_connections = 8;  // parallel piece downloads (svc-pg: 8 beat 4 by ~1 s)
  std::filesystem::path device_key;   // for encrypted packages (default <root>/device.key)
  // Step, progress and result events, as JSON objects: {"event":"step","step":"fetch",...},
  // {"event":"progress","phase":"fetch","done":N,"total":M}. Delivered on the EventBus thread.
  std::function<void(const nlohmann::json&)> on_event;
  // Seams. Empty: the real ones (HttpFetcher, the install store's symlinks, the system
  // clock, /proc/sys/kernel/random/boot_id). The clock must outlive the engine.
  std::function<std::unique_ptr<transfer::Fetcher>()> make_fetcher;
  std::function<std::unique_ptr<Activator>(store::InstallStore&)> make_activator;
  const Clock* clock = nullptr;
  std::function<std::string()> boot_id;
  bool recover = true;  // false: open without recovering (tests of recovery itself)
  // Package types whose trees may carry setuid or setgid files or world-writable entries
  // (a signed tree with a 04755 file would otherwise give any holder of a publisher key
  // root on every node). nullopt: $MUP_ALLOW_SPECIAL_MODES (comma-separated types, e.g.
  // "kernel"), else none: such a tree is refused at install, naming the files.
  std::optional<std::vector<package::PackageType>> allow_special_modes;
  // Seam: bytes free for the node's root (default: statvfs of the root). An install checks
  // what staging needs against it, keeping 5% of the filesystem (at most 1 GiB) in reserve.
  std::function<Result<uint64_t>()> free_bytes;
};

struct InstallOptions {
  std::string version;  // empty: the newest the repository offers
  std::string remote;   // empty: the component's remote, or the only one
  bool with_deps = false;
  bool snapshot = true;      // snapshot the component's state before activating
  bool trial = false;        // leave the version on trial (commit() or rollback() later)
  std::string trial_policy;  // on restart while on trial: "rollback" (default) | "keep"
  bool force = false;        // install a version marked bad
  const std::atomic<bool>* cancel = nullptr;
};

struct InstallReport {
  std::string component, from_version, to_version;
  bool already_installed = false;  // the version was installed: only activated
  uint64_t bytes_fetched = 0;      // index + pieces downloaded now
  uint64_t bytes_cached = 0;       // pieces found in the cache (an earlier, interrupted run)
  uint64_t full_bytes = 0;         // what fetching everything would cost
  uint64_t tree_bytes = 0;         // plain size of the installed tree
  uint64_t bytes_written = 0, files_linked = 0, files = 0;
  std::string snapshot_id;
  bool trial = false;  // left on trial
  int64_t operation = 0;
  double seconds = 0;
  std::vector<InstallReport> deps;  // installed first, with --with-deps
};

struct SwitchReport {
  std::string component, from_version, to_version;
  std::string restored_snapshot;
  int64_t operation = 0;
  double seconds = 0;
};

// What one resolver says a node must download for a version (check and install agree).
struct DownloadPlan {
  uint64_t download_bytes = 0;  // index (or index delta) + pieces not in the cache
  uint64_t cached_bytes = 0;    // pieces the cache holds already
  uint64_t full_bytes = 0;      // index + every piece
  size_t pieces = 0;            // pieces to download
  size_t pack_segments = 0;     // cold pack segments to download (each one request)
  size_t bundle_segments = 0;   // update bundle segments to download (each one request)
};

struct CheckOptions {
  std::string remote;    // a remote of the node (default: the only one)
  std::string repo_url;  // or a repository URL, trusted through trusted_root
  std::filesystem::path trusted_root;
  std::string component;  // only this one
};

struct RecoveryReport {
  std::vector<std::string> actions;   // one line per operation recovered
  std::vector<std::string> problems;  // recoveries that failed this time
  bool degraded = false;              // problems, or quarantined operations
};

class Engine {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Engine>> open(const std::filesystem::path& root,
                                                            EngineOptions opts);
  ~Engine();

  const std::filesystem::path& root() const { return root_; }
  const EngineOptions& options() const { return opts_; }
  // Space on the node's filesystem for new versions: what is free, and the reserve that must
  // stay free (5% of the filesystem, at most 1 GiB). Installs and the agent's plans check it.
  struct DiskSpace {
    uint64_t free = 0, reserve = 0;
  };
  [[nodiscard]] Result<DiskSpace> disk_space() const;
  const RecoveryReport& recovery() const { return recovery_; }
  std::filesystem::path state_dir(const std::string& component) const {
    return root_ / "state" / component;
  }
  std::filesystem::path tuf_dir(const std::string& remote) const { return root_ / "tuf" / remote; }

  // A new connection to the node's state database, with the audit key set (records appended
  // through it are signed like the engine's). For the agent's deployer.
  [[nodiscard]] Result<state::StateDb> connect_state() const;

  // ---- reads (no lock) ----
  // {"root", "components": [{name, active, previous, pinned, versions, remote, type,
  //   trial: {version, since, policy} | null}], "remotes", "installed_bytes",
  //   "running": [...], "quarantined": [...], "degraded", "recovered", "problems"}
  [[nodiscard]] Result<nlohmann::json> status();
  [[nodiscard]] Result<std::vector<state::OperationRecord>> history(const std::string& component,
                                                                    size_t limit);
  [[nodiscard]] Result<nlohmann::json> versions(const std::string& component);
  [[nodiscard]] Result<std::vector<state::AuditRecord>> audit(size_t limit);
  [[nodiscard]] Result<state::AuditReport> verify_audit();
  [[nodiscard]] Result<std::vector<std::pair<std::string, std::string>>> remotes();
  [[nodiscard]] Status verify_tree(const std::string& component, const std::string& version);
  // Snapshots of `component` (all components when empty), oldest first; a snapshot's
  // content rehashed against its manifest.
  [[nodiscard]] Result<std::vector<snapshot::SnapshotInfo>> snapshot_list(
      const std::string& component);
  [[nodiscard]] Result<snapshot::VerifyReport> snapshot_verify(const std::string& id);
  snapshot::SnapshotStore& snapshots() { return *snapshots_; }
  store::InstallStore& store() { return store_; }
  // The updates a repository offers this node: {"updates": [...]} (see README, mup check).
  [[nodiscard]] Result<nlohmann::json> check(const CheckOptions& opts);
  // The signed manifest of component@version (the newest when version is empty) as the
  // component's remote offers it (deployment plans read dependencies from it).
  [[nodiscard]] Result<package::Manifest> offer(const std::string& component,
                                                const std::string& version);
  // offer() for several (component, version) at once, answers in order: one metadata
  // refresh per remote, however many components it serves (a plan's validation).
  [[nodiscard]] std::vector<Result<package::Manifest>> offers(
      const std::vector<std::pair<std::string, std::string>>& wanted);
  // The signed manifest recorded when component@version was installed (no network);
  // Code::not_installed when that version is not installed.
  [[nodiscard]] Result<package::Manifest> installed_manifest(const std::string& component,
                                                             const std::string& version);
  // The active version of every component (what a plan's dependencies may be met by).
  std::map<std::string, package::Version> active_versions();

  // ---- operations ----
  [[nodiscard]] Status add_remote(const std::string& name, const std::string& url,
                                  const std::filesystem::path& trusted_root);
  [[nodiscard]] Result<InstallReport> install(const std::string& component,
                                              const InstallOptions& opts);
  [[nodiscard]] Result<SwitchReport> activate(const std::string& component,
                                              const std::string& version);
  // To `to`, or to the previous version; with restore_state, also restores the state
  // snapshot taken while the target version was active (the newest one). Works in
  // degraded mode, and supersedes a quarantined operation of the component.
  [[nodiscard]] Result<SwitchReport> rollback(const std::string& component,
                                              const std::optional<std::string>& to,
                                              bool restore_state);
  // The version on trial becomes committed.
  [[nodiscard]] Result<SwitchReport> commit(const std::string& component);
  [[nodiscard]] Status pin(const std::string& component, const std::optional<std::string>& version);
  [[nodiscard]] Result<store::GcReport> gc(const store::GcOptions& opts);
  [[nodiscard]] Result<nlohmann::json> snapshot_create(const std::string& component,
                                                       const std::string& label);
  [[nodiscard]] Result<nlohmann::json> snapshot_create_system(const std::string& label);
  [[nodiscard]] Status snapshot_restore(const std::string& id);
  [[nodiscard]] Status snapshot_delete(const std::string& id);
  [[nodiscard]] Status create_audit_key();
  // Retries quarantined operations (all, or the one with this id): `mup recover`.
  [[nodiscard]] Result<RecoveryReport> retry_quarantined(int64_t id = 0);

  // For the engine's own step objects and recovery (engine/*.cpp), not for callers.
  struct Internals;
  Internals& internals() { return *in_; }

 private:
  Engine(std::filesystem::path root, EngineOptions opts, store::InstallStore store);

  std::filesystem::path root_;
  EngineOptions opts_;
  store::InstallStore store_;
  std::unique_ptr<snapshot::SnapshotStore> snapshots_;
  std::unique_ptr<Internals> in_;
  RecoveryReport recovery_;
};

}  // namespace mup::engine
