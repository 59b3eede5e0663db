// Repository: the publisher's side of TUF. Creates, changes, signs and checks a
// repository directory laid out as TUF tools expect:
//
//   DIR/metadata/1.root.json, 2.root.json, ...   every root version, kept forever
//   DIR/metadata/N.targets.json, N.<role>.json    consistent snapshots: version-prefixed
//   DIR/metadata/N.snapshot.json
//   DIR/metadata/timestamp.json                   the only unprefixed file
//   DIR/targets/<dir>/<sha256>.<name>             target files, hash-prefixed
//
// (with consistent_snapshot off: DIR/metadata/<role>.json and DIR/targets/<path>).
//
// Ownership: a Repository holds the current metadata of DIR in memory and the private
// keys it was given (`add_signer`); it never writes a private key anywhere. Delegated
// targets roles are read from disk when first asked for (load_targets, add_target ...), so
// opening and publishing cost what the touched roles weigh, not the whole repository; the
// snapshot keeps naming the roles never loaded, at the versions it named. Changes to
// targets are staged in memory and reach the disk on publish(), which writes new versions
// in the order a client can never observe half-done: target files, delegated targets,
// targets, snapshot, then timestamp last (each file atomically). Every write signs with
// all signers the repository holds for the role; a write that cannot meet the role's
// threshold fails before anything is written.
//
// Not thread-safe: one Repository per directory and thread. Nothing throws.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "crypto/crypto.hpp"
#include "tuf/clock.hpp"
#include "tuf/metadata.hpp"

namespace mup::tuf {

// How long each role's metadata stays valid after it is written.
struct ExpiryPolicy {
  int64_t root_s = 365 * 86400;
  int64_t targets_s = 90 * 86400;  // also delegated targets
  int64_t snapshot_s = 7 * 86400;
  int64_t timestamp_s = 1 * 86400;
  int64_t for_role(std::string_view role) const;
};

// The keys of one top-level role at init: all public halves go into root; the private
// ones become signers.
struct RoleSetup {
  std::vector<crypto::PrivateKey> keys;  // at least `threshold` keys
  uint32_t threshold = 1;
};

struct InitOptions {
  RoleSetup root, targets, snapshot, timestamp;
  ExpiryPolicy expiry;
  bool consistent_snapshot = true;
};

// What Repository::verify found. ok() when `problems` is empty.
struct VerifyReport {
  uint64_t root_version = 0;
  uint64_t timestamp_version = 0;
  uint64_t snapshot_version = 0;
  uint64_t targets_version = 0;
  size_t target_count = 0;            // over targets and delegated roles
  std::vector<std::string> problems;  // one line each: what is wrong, on which file
  std::vector<std::string> warnings;  // e.g. "timestamp.json expires in 2 hours"
  bool ok() const { return problems.empty(); }
};

class Repository {
 public:
  // Creates DIR/metadata and DIR/targets with root, targets, snapshot and timestamp
  // version 1. Errc::already_exists if DIR/metadata already holds metadata.
  [[nodiscard]] static Result<Repository> init(const std::filesystem::path& dir,
                                               const InitOptions& options, const Clock& clock);
  // Loads the current metadata of an existing repository (newest root; the snapshot the
  // timestamp names; the top-level targets it names; delegated roles later, on demand).
  // No signers.
  [[nodiscard]] static Result<Repository> open(const std::filesystem::path& dir, const Clock& clock,
                                               ExpiryPolicy expiry = {});

  // Offline check of a whole repository: every root N+1 signed by a threshold of root N
  // and of itself; timestamp -> snapshot -> targets -> delegated roles consistent
  // (versions, lengths, hashes) and signed at threshold; nothing expired; every target
  // file present with the length and hashes its metadata states. The function only fails
  // (Error) when DIR is not a repository at all; findings are in the report.
  [[nodiscard]] static Result<VerifyReport> verify(const std::filesystem::path& dir,
                                                   const Clock& clock);

  // Gives the repository a private key to sign `role` with ("root", "targets",
  // "snapshot", "timestamp" or a delegated role name). Keys whose id the role does not
  // list are kept but not used, so after a rotation old and new keys can both be given.
  // A delegated role is signed by its own signers and by the "targets" signers its
  // delegation lists (mup delegates each component to the targets keys).
  void add_signer(const std::string& role, crypto::PrivateKey key);

  const std::filesystem::path& dir() const { return dir_; }
  const Root& root() const { return root_.body(); }
  const Timestamp& timestamp() const { return timestamp_.body(); }
  const Snapshot& snapshot() const { return snapshot_.body(); }
  // The current (possibly staged) body of a targets role; nullptr if there is none or it
  // is a delegated role not loaded yet (load_targets loads it).
  const Targets* targets(const std::string& role = "targets") const;
  // The body of a targets role, read from disk at the version the snapshot names when not
  // loaded yet. Errc::not_found when the snapshot names no such role (and none is staged).
  [[nodiscard]] Result<const Targets*> load_targets(const std::string& role);
  // The names of the roles `delegator` delegates to, in priority order (empty if none).
  std::vector<std::string> delegated_roles(const std::string& delegator = "targets") const;
  // Every targets role the current snapshot names or that is staged ("targets" first).
  std::vector<std::string> targets_roles() const;

  // --- Staged changes, written by publish() ---

  // Adds or replaces `target_path` in `role` with `content` (length, sha256, `custom`),
  // and stores the content under DIR/targets now (content-addressed: harmless if never
  // published). target_path is '/'-separated, relative, without "." or ".." parts.
  [[nodiscard]] Status add_target(const std::string& target_path, std::span<const uint8_t> content,
                                  const nlohmann::json& custom = nullptr,
                                  const std::string& role = "targets");
  [[nodiscard]] Status add_target_file(const std::string& target_path,
                                       const std::filesystem::path& source,
                                       const nlohmann::json& custom = nullptr,
                                       const std::string& role = "targets");
  // Errc::not_found if the role has no such target. Old target files stay on disk
  // (clients holding an older snapshot may still fetch them).
  [[nodiscard]] Status remove_target(const std::string& target_path,
                                     const std::string& role = "targets");
  // Moves every target whose path starts with `prefix` from role `from` to role `to`
  // (entries as they are: same length, hashes and custom data; no file is rewritten).
  // Returns how many moved.
  [[nodiscard]] Result<size_t> move_targets(const std::string& prefix, const std::string& from,
                                            const std::string& to);
  // Delegates from `delegator` (a targets role) to a new role signed by `keys`; appends
  // it to the delegator's list (lowest priority) and creates its empty targets metadata.
  [[nodiscard]] Status add_delegation(const std::string& delegator, const DelegatedRole& role,
                                      const std::vector<crypto::PublicKey>& keys);
  // Adds to `delegator`'s delegation to `role` the `paths` patterns it lacks (e.g. one more
  // component for a role that delegates several further on). Errc::not_found when
  // `delegator` does not delegate to `role`; Errc::invalid_argument when that delegation
  // uses path_hash_prefixes.
  [[nodiscard]] Status add_delegated_paths(const std::string& delegator, const std::string& role,
                                           const std::vector<std::string>& paths);

  // Stages a new version of targets role `role` as it is, with a fresh expiry (e.g. a role
  // that delegates further on and is rarely changed itself).
  [[nodiscard]] Status renew(const std::string& role);

  // Writes every changed targets role (version + 1, fresh expiry), then a new snapshot and
  // timestamp. With nothing staged, still writes a new snapshot and timestamp.
  [[nodiscard]] Status publish();

  // --- Root and expiry changes, written at once ---

  // Root rotation: writes root N+1 in which `role` (a top-level role) is signed by
  // `new_keys` with `threshold`. Root N+1 must be signed by a threshold of root N's root
  // keys and of its own (give both old and new private keys with add_signer("root")).
  // Any other role's current metadata is then re-signed by the new keys (targets: also
  // snapshot and timestamp; snapshot: also timestamp), so the repository stays usable: the
  // new keys' private halves must have been given with add_signer(role), a threshold of
  // them, or nothing is written. Rotating timestamp or snapshot keys makes clients delete
  // their copies of those roles (fast-forward recovery).
  [[nodiscard]] Status rotate_keys(const std::string& role,
                                   const std::vector<crypto::PublicKey>& new_keys,
                                   uint32_t threshold);
  // Writes a new version of `role` with expiry now + policy (root: a new root version;
  // targets roles: then snapshot and timestamp too; snapshot: then timestamp).
  [[nodiscard]] Status refresh_expiry(const std::string& role);
  // The metadata files under DIR/metadata that no kept snapshot needs: every
  // N.snapshot.json older than the newest `keep_snapshots` snapshot versions, and every
  // N.<targets role>.json that none of those snapshots names. Root files and timestamp.json
  // are always kept. Empty without consistent snapshots (files are replaced in place).
  [[nodiscard]] Result<std::vector<std::filesystem::path>> unneeded_metadata(
      uint64_t keep_snapshots) const;

  // Adds `key`'s signature to the current version of `role` on disk, in place (for
  // signing by several parties, one at a time). The key must belong to the role (for
  // root: to the current or previous root's root role).
  [[nodiscard]] Status sign_existing(const std::string& role, const crypto::PrivateKey& key);

  Repository(Repository&&) noexcept;
  Repository& operator=(Repository&&) noexcept;
  ~Repository();

 private:
  Repository() = default;
  struct TargetsRole {
    Metadata<Targets> md;  // as last written
    Targets staged;        // with pending changes
    bool dirty = false;
    bool on_disk = false;  // false for a delegated role not yet published
  };

  std::filesystem::path metadata_path(std::string_view role, uint64_t version) const;
  [[nodiscard]] Result<TargetsRole*> load_role(const std::string& role);
  [[nodiscard]] Status load_all_roles();
  void redelegate_to_new_targets_keys(const Role& old_targets, const Root& new_root);
  [[nodiscard]] Result<std::pair<const std::map<std::string, Key>*, const Role*>> role_keys(
      const std::string& role) const;
  template <typename T>
  [[nodiscard]] Result<Metadata<T>> sign_new(T body, const std::string& role,
                                             const Metadata<Root>* previous_root = nullptr) const;
  template <typename T>
  [[nodiscard]] Status write_metadata(const Metadata<T>& md, const std::string& role);
  [[nodiscard]] Status write_snapshot_and_timestamp(bool new_snapshot = true);
  [[nodiscard]] Status write_new_root(Root body);

  std::filesystem::path dir_;
  const Clock* clock_ = nullptr;
  ExpiryPolicy expiry_;
  std::map<std::string, std::vector<crypto::PrivateKey>> signers_;
  Metadata<Root> root_;
  Metadata<Timestamp> timestamp_;
  Metadata<Snapshot> snapshot_;
  std::map<std::string, TargetsRole> targets_;  // "targets" and the delegated roles loaded
};

}  // namespace mup::tuf
