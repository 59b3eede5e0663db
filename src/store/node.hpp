// Node: a node's updater, for components that need no running service. It ties together
// the signed repository (TUF client), the incremental engine, the install store, the
// state snapshots and the state database, and is what `mup install`, `activate`,
// `rollback`, `pin`, `gc`, `status`, `history`, `audit verify` and `snapshot ...` drive.
//
// Crash safety. Every operation writes its intent to the state database's journal before
// it has effects, and records each step boundary (resolve, fetch, snapshot, stage,
// activate) as it passes it. The filesystem (install store pointers) is the truth for what
// is active. open() takes the node lock and recovers whatever an earlier process left
// running: an install or switch whose `current` pointer already names its target is
// completed (database, audit); any other is undone (pointers put back, a staged but never
// activated tree removed; fetched pieces stay cached so a retry downloads nothing twice);
// an interrupted state restore is run again (restores are idempotent); gc is reconciled.
// Every finished, failed or recovered operation appends to the hash-chained audit log.
//
// A rollback needs no network: it only switches pointers (and restores a snapshot).
// Not thread-safe: one Node per process, and the node lock keeps other processes out.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "crypto/crypto.hpp"
#include "store/install_store.hpp"

namespace mup::state {
class StateDb;
struct AuditReport;
}  // namespace mup::state
namespace mup::snapshot {
class SnapshotStore;
}

namespace mup::store {

struct NodeOptions {
  std::string actor;                  // who acts (default: $USER, or "unknown")
  unsigned threads = 0;               // 0: default
  unsigned download_connections = 8;  // parallel piece downloads (svc-pg: 8 beat 4 by ~1 s)
  std::filesystem::path device_key;   // for encrypted packages (default <root>/device.key)
  // Progress and step events, as JSON objects: {"event":"step","step":"fetch",...},
  // {"event":"progress","phase":"fetch","done":N,"total":M}, ... Called on the caller's
  // thread or a download worker (serialised by the Node).
  std::function<void(const nlohmann::json&)> on_event;
};

struct InstallOptions {
  std::string version;  // empty: the newest the repository offers
  std::string remote;   // empty: the component's remote, or the only one
  bool with_deps = false;
  bool snapshot = true;  // snapshot the component's state before activating
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
  double seconds = 0;
  std::vector<InstallReport> deps;  // installed first, with --with-deps
};

struct SwitchReport {
  std::string component, from_version, to_version;
  std::string restored_snapshot;
  double seconds = 0;
};

struct RecoveryReport {
  std::vector<std::string> actions;  // one line per operation recovered
};

class Node {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Node>> open(const std::filesystem::path& root,
                                                          NodeOptions opts);
  ~Node();

  const std::filesystem::path& root() const { return root_; }
  InstallStore& store() { return store_; }
  state::StateDb& db() { return *db_; }
  snapshot::SnapshotStore& snapshots() { return *snapshots_; }
  const RecoveryReport& recovery() const { return recovery_; }

  // Records a repository and its first trusted root (the publisher's 1.root.json).
  [[nodiscard]] Status add_remote(const std::string& name, const std::string& url,
                                  const std::filesystem::path& trusted_root);
  // The directory of the trusted TUF metadata of `remote`.
  std::filesystem::path tuf_dir(const std::string& remote) const;
  // The remote a command about `component` uses: `requested`, else the one recorded for
  // the component, else the only one.
  [[nodiscard]] Result<std::string> pick_remote(const std::string& component,
                                                const std::string& requested);
  [[nodiscard]] Result<std::string> remote_url(const std::string& remote);

  [[nodiscard]] Result<InstallReport> install(const std::string& component,
                                              const InstallOptions& opts);
  [[nodiscard]] Result<SwitchReport> activate(const std::string& component,
                                              const std::string& version);
  // To `to`, or to the previous version; with restore_state, also restores the state
  // snapshot taken while the target version was active (the newest one).
  [[nodiscard]] Result<SwitchReport> rollback(const std::string& component,
                                              const std::optional<std::string>& to,
                                              bool restore_state);
  [[nodiscard]] Status pin(const std::string& component, const std::optional<std::string>& version);
  [[nodiscard]] Result<GcReport> gc(const GcOptions& opts);

  // State snapshots of one component (or of all, as a system snapshot).
  [[nodiscard]] Result<nlohmann::json> snapshot_create(const std::string& component,
                                                       const std::string& label);
  [[nodiscard]] Result<nlohmann::json> snapshot_create_system(const std::string& label);
  [[nodiscard]] Status snapshot_restore(const std::string& id);
  [[nodiscard]] Status snapshot_delete(const std::string& id);

  // The node's audit signing key (<root>/audit-key.pem, Ed25519): when it exists, every
  // audit record is signed and verify_audit() demands valid signatures. create_audit_key()
  // makes one (refusing to replace it). Keep a copy of its public half off the node: a
  // signature only proves something against a key the attacker cannot rewrite.
  [[nodiscard]] Status create_audit_key();
  [[nodiscard]] Result<state::AuditReport> verify_audit();

  std::filesystem::path state_dir(const std::string& component) const {
    return root_ / "state" / component;
  }

  // {"components":[{name, active, previous, pinned, versions:[...], remote, type}], ...}
  [[nodiscard]] Result<nlohmann::json> status();

 private:
  Node(std::filesystem::path root, NodeOptions opts, NodeLock lock, InstallStore store);
  [[nodiscard]] Status recover();
  [[nodiscard]] Status reconcile(const std::string& component);
  [[nodiscard]] Result<InstallReport> install_one(const std::string& component,
                                                  const InstallOptions& opts, int depth);
  [[nodiscard]] Result<SwitchReport> switch_to(const std::string& kind,
                                               const std::string& component,
                                               const std::string& version,
                                               const std::string& restore_snapshot);
  void emit(const nlohmann::json& event);

  std::filesystem::path root_;
  NodeOptions opts_;
  NodeLock lock_;
  InstallStore store_;
  std::unique_ptr<state::StateDb> db_;
  std::unique_ptr<snapshot::SnapshotStore> snapshots_;
  std::optional<crypto::PublicKey> audit_public_;
  RecoveryReport recovery_;
};

}  // namespace mup::store
