// Updater: the TUF client workflow (specification v1.0.x, section 5).
//
// refresh() brings the trusted metadata in `metadata_dir` up to date in the spec's order:
// root (N+1, N+2, ... each signed by a threshold of the previous root and of itself, at
// most max_root_rotations steps; the final root must not be expired; when timestamp or
// snapshot keys changed, the local copies are deleted: fast-forward recovery), then
// timestamp, snapshot and top-level targets, with every version, rollback, hash, length,
// signature and expiry check of section 5. Delegated targets are loaded lazily by
// get_targetinfo() (pre-order depth-first search, terminating roles, path patterns and
// hash prefixes, a visited set and max_delegations).
//
// Files: metadata_dir holds root.json, timestamp.json, snapshot.json, targets.json and
// "<percent-encoded role>.json", each exactly the bytes received, replaced atomically and
// only after they were verified. download_target() writes a target file only after its
// length and every hash matched, atomically: never a partial or unverified file.
//
// Network: every request goes through the Fetcher with a size limit (metadata: the
// length stated by the parent, else the configured maximum; targets: their length);
// timeouts are the Fetcher's job. URLs are "<metadata_base_url>/<N>.<role>.json" (root
// always; others when consistent_snapshot), ".../timestamp.json", and
// "<target_base_url>/<dir>/<hash>.<name>" (consistent snapshots) or "<base>/<path>".
//
// One Updater per thread; it borrows the Fetcher and Clock, which must outlive it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "transfer/fetcher.hpp"
#include "tuf/clock.hpp"
#include "tuf/metadata.hpp"

namespace mup::tuf {

struct UpdaterConfig {
  std::filesystem::path metadata_dir;  // must hold a trusted root.json
  std::string metadata_base_url;       // e.g. "http://host/repo/metadata"
  std::string target_base_url;         // e.g. "http://host/repo/targets"
  uint32_t max_root_rotations = 256;
  uint32_t max_delegations = 32;  // roles visited per target search
  uint64_t root_max_length = 512'000;
  uint64_t timestamp_max_length = 16'384;
  uint64_t snapshot_max_length = 2'000'000;
  uint64_t targets_max_length = 5'000'000;
  bool prefix_targets_with_hash = true;  // when root says consistent_snapshot
};

// A target found by get_targetinfo(): its path and what the signing role says about it.
struct TargetInfo {
  std::string path;
  TargetFile file;
  std::string role;  // the role that listed it
};

class Updater {
 public:
  // Loads root.json from config.metadata_dir and checks it is signed by a threshold of
  // its own root keys. Makes no request. Also loads local timestamp/snapshot/targets
  // copies when present and valid (they are only a starting point for rollback checks).
  [[nodiscard]] static Result<Updater> create(UpdaterConfig config, transfer::Fetcher& fetcher,
                                              const Clock& clock);

  // Section 5.3-5.6: root, timestamp, snapshot, top-level targets. Runs once per
  // Updater; later calls return the first result.
  [[nodiscard]] Status refresh();

  // Finds `target_path` through the delegation graph (refreshing first if needed).
  // Errc::not_found when no trusted role lists it.
  [[nodiscard]] Result<TargetInfo> get_targetinfo(const std::string& target_path);

  // Every target whose path starts with `prefix` (e.g. "web/"; "" for all), each as
  // get_targetinfo() would find it (role priority, terminating delegations, path patterns):
  // only the roles whose delegation may list such paths are fetched, so asking about one
  // component of a repository with a role per component fetches that role alone.
  [[nodiscard]] Result<std::vector<TargetInfo>> targets_with_prefix(const std::string& prefix);

  // True when `file` exists and matches `info` by length and every hash.
  bool is_cached(const TargetInfo& info, const std::filesystem::path& file) const;

  // Downloads the target and verifies length and hashes, then atomically writes it to
  // `file` (the parent directory must exist). On any failure `file` is unchanged.
  [[nodiscard]] Status download_target(const TargetInfo& info, const std::filesystem::path& file);
  // Same, returning the verified bytes instead of writing a file.
  [[nodiscard]] Result<std::vector<uint8_t>> fetch_target(const TargetInfo& info);

  // The trusted metadata (after refresh(); before it, what was loaded from disk).
  const Root& root() const { return root_.body(); }
  const Timestamp* timestamp() const { return timestamp_ ? &timestamp_->body() : nullptr; }
  const Snapshot* snapshot() const { return snapshot_ ? &snapshot_->body() : nullptr; }
  const Targets* targets() const;  // top-level targets

 private:
  Updater(UpdaterConfig config, transfer::Fetcher& fetcher, const Clock& clock);

  [[nodiscard]] Status do_refresh();
  [[nodiscard]] Status update_root();
  [[nodiscard]] Status update_timestamp();
  [[nodiscard]] Status update_snapshot();
  [[nodiscard]] Status update_targets_role(const std::string& role, const std::string& delegator);
  [[nodiscard]] Result<std::vector<uint8_t>> fetch_metadata(const std::string& role,
                                                            std::optional<uint64_t> version,
                                                            uint64_t max_length);
  [[nodiscard]] Status persist(const std::string& role, std::span<const uint8_t> bytes);
  void forget(const std::string& role);
  std::filesystem::path local_path(const std::string& role) const;

  UpdaterConfig config_;
  transfer::Fetcher* fetcher_;
  const Clock* clock_;
  std::optional<Status> refreshed_;
  Metadata<Root> root_;
  std::optional<Metadata<Timestamp>> timestamp_;
  std::optional<Metadata<Snapshot>> snapshot_;
  std::map<std::string, Metadata<Targets>> targets_;  // "targets" and delegated roles
  // (role, delegator) pairs whose signatures were checked: a role reached again through the
  // same delegator is not verified twice.
  std::set<std::pair<std::string, std::string>> verified_via_;
};

}  // namespace mup::tuf
