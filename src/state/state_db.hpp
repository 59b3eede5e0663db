// The node's state database: what is installed, what is being done, what was done.
//
// One SQLite file (`<root>/state.db`, WAL, synchronous=FULL, foreign keys on) holds:
//   - the operation journal and history (`operations`, `operation_steps`): an operation's
//     intent is written before its effects, each step before the step acts, so a process
//     killed at any instant leaves a `running` row that the next start finishes or undoes;
//   - the inventory: remotes, components (active / previous / pinned version), installed
//     versions (manifest, index hash) and snapshots. The filesystem is the truth for
//     trees; the database is the truth for their metadata;
//   - the audit log: append-only and hash-chained, optionally signed with the node key.
//     `audit_head` holds the last (seq, hash) and is written in the same transaction as
//     each append, so removing records from the end is detected too.
//
// Schema changes are numbered migrations, each applied in its own transaction and
// recorded in `schema_migrations(version, name, applied_at, down_sql)` and PRAGMA
// user_version. A database migrated by a newer mup (user_version above what this build
// knows: mup itself was rolled back) is migrated down with the down SQL that the newer
// mup stored in it, newest version first, one transaction per version (see schema.hpp).
//
// Every call is one transaction of its own unless the caller groups calls with
// begin()/commit() or transaction(); groups nest (inner levels are savepoints). Callers
// that change state and audit it write both in one transaction(), e.g. finish_operation
// and append_audit. The fault point "state.commit" sits before every outermost commit,
// "state.migrate" before every migration commit, "state.downgrade" before every
// downgrade commit. With MUP_FAULT_ACTION=powercut the connection goes through a VFS that
// drops every write not yet fsynced when the power is cut, and "state.sync" sits before
// each of its fsyncs (src/state/powercut_vfs.cpp).
//
// Times are Unix milliseconds from the clock given to open(). Lists are newest first,
// except unfinished_operations() (oldest first, the order to resume them in) and steps().
// JSON strings that are not valid UTF-8 are stored with U+FFFD replacements.
//
// Thread-safety: a StateDb is one SQLite connection. Use one per process or thread; do
// not share one across threads without external locking. Other processes (and other
// StateDb objects) may use the same file: writers wait for each other up to 10 s (SQLite
// busy_timeout) and then fail with Errc::io. Nothing throws; every error names the
// database file and the operation that failed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "crypto/crypto.hpp"
#include "state/schema.hpp"

namespace mup::state {

namespace detail {
class Conn;
}

// Fields of JSON the caller did not just build (journal detail, signed custom fields), read
// as a restart reads them: a missing or mistyped field, or a value that is not an object,
// gives `def`. Never throws.
std::string json_str(const nlohmann::json& j, const char* key, const std::string& def = "");
int64_t json_int(const nlohmann::json& j, const char* key, int64_t def = 0);

// The clock seam: returns Unix milliseconds. Empty means the system clock. New code passes
// a mup::Clock to open() instead.
using NowMs = std::function<int64_t()>;
int64_t system_now_ms();

// Who is acting, for operations and audit records started by a person: $USER, else the
// login name, else "uid <n>". The agent passes "agent".
std::string current_actor();

// One row of `operations`: the journal entry of an operation and, once finished, its
// history record.
struct OperationRecord {
  int64_t id = 0;
  std::string kind;       // "install", "activate", "rollback", "gc", "snapshot-create", ...
  std::string component;  // may be empty (gc, system snapshot)
  std::string from_version, to_version;
  std::string actor;  // empty at begin_operation means current_actor()
  std::string state;  // "running", "done", "failed", "undone"
  std::string step;   // last step recorded (the intent), e.g. "fetch", "stage", "activate"
  nlohmann::json detail = nlohmann::json::object();  // data needed to resume or undo
  int64_t started_at_ms = 0, finished_at_ms = 0;     // finished_at_ms = 0 while running
  uint64_t bytes = 0;                                // bytes fetched
  std::string error;                                 // why, when failed or undone
  // Recovery bookkeeping (schema 5): failed recovery attempts, the last one's error, and
  // whether the operation was quarantined after too many. A row whose detail is not valid
  // JSON reads with detail = null (the engine treats it as unknown), never as an error.
  int recovery_attempts = 0;
  std::string recovery_error;
  bool quarantined = false;
};

struct StepRecord {
  int64_t seq = 0;  // 1, 2, ... within the operation
  std::string step;
  nlohmann::json detail;
  int64_t at_ms = 0;
};

struct ComponentRow {
  std::string name;
  std::string remote;
  std::string type;  // package type ("service", "model", ...)
  std::string active_version, previous_version, pinned_version;  // empty = none
  int64_t updated_at_ms = 0;                                     // set by upsert_component
  // The version on trial (activated, not committed yet; empty = none), and what the
  // engine needs to decide about it: {"since_ms", "boot_id", "policy", "operation"}.
  std::string trial_version;
  nlohmann::json trial = nlohmann::json::object();
};

struct VersionRow {
  std::string component, version;
  std::string index_sha256;
  nlohmann::json manifest = nlohmann::json::object();
  uint64_t size = 0;
  int64_t installed_at_ms = 0;       // 0 at put_version means now
  std::string status = "committed";  // "trial" | "committed" | "bad" (rolled back from trial)
};

struct SnapshotRow {
  std::string id;
  std::string component, version;  // component may be empty (system snapshot)
  int64_t created_at_ms = 0;       // 0 at add_snapshot means now
  std::string content_hash;
  std::string path;
  uint64_t files = 0, bytes = 0;
};

// One row of `deployments` (schema 6): a deployment the agent runs, its journaled state
// (written before the state acts) and what it needs to resume or undo in `detail`.
struct DeploymentRow {
  int64_t id = 0;
  std::string component, from_version, to_version;
  std::string strategy;  // "immediate", "blue-green", ...
  std::string state;     // the deployment module's states; final ones set finished_at_ms
  std::string reason;    // why it failed, was aborted or rolled back
  std::string actor;
  nlohmann::json detail = nlohmann::json::object();
  int64_t started_at_ms = 0, updated_at_ms = 0, finished_at_ms = 0;  // 0: running
};

// One row of `plans` (schema 7): a plan of deployments the agent runs. `body` is the deploy
// module's (its steps and each item's progress), journaled at every change.
struct PlanRow {
  int64_t id = 0;
  std::string state;  // "running" until it ends
  nlohmann::json body = nlohmann::json::object();
  int64_t created_at_ms = 0, updated_at_ms = 0, finished_at_ms = 0;  // 0: running
};

// How much history to keep (StateDb::trim_history; gc's defaults are store::GcOptions').
// Each count is of the newest; 0 keeps everything of that kind. Running operations are
// never trimmed.
struct HistoryRetention {
  size_t operations = 0;   // finished operations (their history rows and step journals)
  size_t steps = 0;        // finished operations that keep their step journal
  size_t deployments = 0;  // the agent's finished deployments (with their steps)
  size_t plans = 0;        // the agent's finished plans
  size_t audit = 0;        // audit records; older ones are cut off the front of the chain
  bool dry_run = false;    // count what would go, change nothing
};

struct HistoryTrimmed {
  uint64_t operations = 0;    // rows removed (with their steps)
  uint64_t steps = 0;         // step rows removed, of those and of kept operations
  uint64_t deployments = 0;   // finished deployments removed (with their steps)
  uint64_t plans = 0;         // finished plans removed
  uint64_t audit = 0;         // audit records removed
  int64_t audit_base = 0;     // seq of the last record cut, after the trim (0: none ever)
  std::string audit_problem;  // why no audit record was cut although some were due
};

struct AuditRecord {
  int64_t seq = 0;  // 1, 2, ... without gaps
  int64_t at_ms = 0;
  std::string actor, action, subject;
  nlohmann::json detail;
  std::string prev_hash;  // hash of record seq-1; 64 zeros for record 1
  std::string hash;       // see audit_record_hash()
  std::string signature;  // hex; empty when no audit key was set
};

struct AuditReport {
  bool ok = false;
  uint64_t records = 0;  // records read
  int64_t base = 0;      // records 1..base were trimmed by gc: the chain starts after it
  int64_t bad_seq = 0;   // the first record at fault (0 when ok)
  std::string problem;   // e.g. "record 7 was edited (hash mismatch)"; empty when ok
};

// Lowercase hex SHA-256 of the record's canonical bytes: "mup-audit-v1\n" followed by
// seq, at_ms, actor, action, subject, detail text, prev_hash, each as
// "<byte length>:<bytes>\n" (numbers in decimal). `detail_text` is the stored JSON text
// (detail.dump() at append time).
std::string audit_record_hash(int64_t seq, int64_t at_ms, std::string_view actor,
                              std::string_view action, std::string_view subject,
                              std::string_view detail_text, std::string_view prev_hash);

class StateDb {
 public:
  // The newest schema version this build knows.
  static int latest_schema_version();

  // Opens (creating) the database at `path`; its directory must exist. Applies pending
  // migrations, or the stored down migrations of a database from a newer mup.
  // Errc::unsupported for a newer database that lacks the down SQL of a version above
  // this build's (nothing is changed then); Errc::corrupt for a file that is not a
  // database.
  [[nodiscard]] static Result<StateDb> open(const std::filesystem::path& path, NowMs now = {});
  // The same, with times from `clock`'s wall_ms(). The StateDb borrows the clock: it must
  // outlive the StateDb.
  [[nodiscard]] static Result<StateDb> open(const std::filesystem::path& path, const Clock& clock);
  // Test seam: opens as a build whose migrations are `migrations` (e.g. this build's plus
  // one, to act as a newer mup). They must number 1, 2, ... without gaps.
  [[nodiscard]] static Result<StateDb> open_with_migrations_for_testing(
      const std::filesystem::path& path, NowMs now, std::span<const detail::Migration> migrations);

  StateDb(StateDb&&) noexcept;
  StateDb& operator=(StateDb&&) noexcept;
  StateDb(const StateDb&) = delete;
  StateDb& operator=(const StateDb&) = delete;
  ~StateDb();  // rolls back a transaction left open

  const std::filesystem::path& path() const;
  int schema_version() const { return schema_version_; }
  // The schema versions this open undid (newest first): mup itself was rolled back and
  // the newer one's down SQL ran. The caller audits it (it may have dropped data).
  const std::vector<int>& downgraded() const { return downgraded_; }
  // PRAGMA integrity_check; Errc::corrupt with SQLite's findings unless "ok".
  [[nodiscard]] Status integrity_check();

  // --- Transactions. begin() at the outermost level takes the write lock (BEGIN
  // IMMEDIATE); nested levels are savepoints. rollback() undoes the innermost level.
  [[nodiscard]] Status begin();
  [[nodiscard]] Status commit();
  void rollback();
  bool in_transaction() const { return depth_ > 0; }
  // begin(); body(); commit() — or rollback() and body's error if it fails.
  [[nodiscard]] Status transaction(const std::function<Status()>& body);

  // --- Journal. Intent is written before effects.
  // Inserts `op` with state "running" (started_at_ms = now unless set); returns its id.
  // op.detail must be a JSON object (or null).
  [[nodiscard]] Result<int64_t> begin_operation(OperationRecord op);
  // Records that operation `id` is about to do `step`: sets its step, merges the top-level
  // keys of `detail` (an object, or null) into its detail, and appends to its steps.
  // Errc::not_found for an unknown id, Errc::invalid_argument if it is not running.
  [[nodiscard]] Status record_step(int64_t id, std::string_view step,
                                   const nlohmann::json& detail = nullptr);
  // Ends a running operation: `state` is "done", "failed" or "undone".
  [[nodiscard]] Status finish_operation(int64_t id, std::string_view state, uint64_t bytes = 0,
                                        std::string_view error = {});
  [[nodiscard]] Result<std::optional<OperationRecord>> operation(int64_t id);
  [[nodiscard]] Result<std::vector<OperationRecord>> unfinished_operations();
  // Newest first; `component` empty = all; `limit` 0 = no limit.
  [[nodiscard]] Result<std::vector<OperationRecord>> history(std::string_view component = {},
                                                             size_t limit = 0);
  [[nodiscard]] Result<std::vector<StepRecord>> steps(int64_t id);
  // A recovery of running operation `id` failed: counts it, keeps `error`, and with
  // `quarantine` marks the operation quarantined (it stays running; recovery skips it).
  [[nodiscard]] Status note_recovery_failure(int64_t id, std::string_view error, bool quarantine);
  // Lets recovery try a quarantined operation again (attempts back to 0).
  [[nodiscard]] Status clear_quarantine(int64_t id);
  // Removes the history beyond `keep` in one transaction: finished operations and step
  // journals past their counts, and audit records past theirs (the audit base moves to the
  // last one cut, so the rest still verifies). With keep.dry_run, only counts.
  // Audit records are cut only from a chain that verifies (with `audit_key`, signatures
  // too): otherwise none is, and audit_problem says why (the rest is still trimmed).
  [[nodiscard]] Result<HistoryTrimmed> trim_history(const HistoryRetention& keep,
                                                    const crypto::PublicKey* audit_key = nullptr);

  // --- Remotes.
  [[nodiscard]] Status add_remote(std::string_view name, std::string_view url);  // exists: error
  [[nodiscard]] Result<bool> remove_remote(std::string_view name);  // false: there was none
  [[nodiscard]] Result<std::optional<std::string>> remote_url(std::string_view name);
  [[nodiscard]] Result<std::vector<std::pair<std::string, std::string>>> remotes();  // by name

  // --- Components, versions, snapshots. Deleting what is not there is not an error (so a
  // resumed gc can repeat itself); the result says whether a row was removed.
  [[nodiscard]] Status upsert_component(const ComponentRow& row);
  [[nodiscard]] Result<std::optional<ComponentRow>> component(std::string_view name);
  [[nodiscard]] Result<std::vector<ComponentRow>> components();  // by name
  [[nodiscard]] Status delete_component(std::string_view name);
  [[nodiscard]] Status put_version(const VersionRow& row);  // insert or replace
  [[nodiscard]] Result<bool> delete_version(std::string_view component, std::string_view version);
  [[nodiscard]] Result<std::vector<VersionRow>> versions(std::string_view component);
  // Errc::not_found when the version has no row.
  [[nodiscard]] Status set_version_status(std::string_view component, std::string_view version,
                                          std::string_view status);
  [[nodiscard]] Status add_snapshot(const SnapshotRow& row);  // Errc::already_exists for a used id
  [[nodiscard]] Result<bool> delete_snapshot(std::string_view id);
  [[nodiscard]] Result<std::vector<SnapshotRow>> snapshots(std::string_view component = {});

  // --- Deployments. At most one unfinished deployment per component: begin_deployment
  // of a second is Errc::busy. update_deployment writes state, versions, reason, detail and
  // finished_at_ms, and appends a step when the state changed.
  [[nodiscard]] Result<int64_t> begin_deployment(DeploymentRow row);
  [[nodiscard]] Status update_deployment(const DeploymentRow& row);
  [[nodiscard]] Result<std::optional<DeploymentRow>> deployment(int64_t id);
  // Newest first; `component` empty = all; `limit` 0 = no limit.
  [[nodiscard]] Result<std::vector<DeploymentRow>> deployments(std::string_view component = {},
                                                               size_t limit = 0);
  [[nodiscard]] Result<std::vector<DeploymentRow>> unfinished_deployments();  // oldest first
  [[nodiscard]] Result<std::vector<StepRecord>> deployment_steps(int64_t id);
  // --- Plans: begin_plan returns the new id; update_plan writes state, body, finished_at_ms.
  [[nodiscard]] Result<int64_t> begin_plan(const PlanRow& row);
  [[nodiscard]] Status update_plan(const PlanRow& row);
  [[nodiscard]] Result<std::optional<PlanRow>> plan(int64_t id);
  [[nodiscard]] Result<std::vector<PlanRow>> unfinished_plans();  // oldest first

  // --- Audit log.
  // With a key set, each appended record carries the hex signature of its raw 32-byte hash.
  void set_audit_key(std::optional<crypto::PrivateKey> key);
  [[nodiscard]] Result<AuditRecord> append_audit(std::string_view actor, std::string_view action,
                                                 std::string_view subject,
                                                 const nlohmann::json& detail = nullptr);
  [[nodiscard]] Result<std::vector<AuditRecord>> audit(size_t limit = 0);  // newest first
  // Checks the whole chain from the audit base (see trim_history): seq continuity, prev_hash links,
  // each hash, the head. With `key`, every signature must verify under it, every record after the
  // first signed one must be signed, and so must the last (records from before the node had its key
  // may be unsigned; the chain ties them to the first signature). A broken log is a report with ok
  // = false, not an error; errors are for failing to read it.
  [[nodiscard]] Result<AuditReport> verify_audit(const crypto::PublicKey* key = nullptr);

 private:
  StateDb(std::unique_ptr<detail::Conn> conn, NowMs now);
  [[nodiscard]] static Result<StateDb> open_impl(const std::filesystem::path& path, NowMs now,
                                                 std::span<const detail::Migration> migrations);
  [[nodiscard]] Status migrate(std::span<const detail::Migration> migrations);
  [[nodiscard]] Status check_down_sql(int latest);
  // trim_history's audit part, under its transaction.
  [[nodiscard]] Status trim_audit(const HistoryRetention& keep, const crypto::PublicKey* key,
                                  HistoryTrimmed& out);
  [[nodiscard]] Status downgrade(int latest);
  int64_t now_ms() const { return now_(); }

  std::unique_ptr<detail::Conn> conn_;
  NowMs now_;
  std::optional<crypto::PrivateKey> audit_key_;
  int schema_version_ = 0;
  std::vector<int> downgraded_;
  int depth_ = 0;  // transaction nesting
};

}  // namespace mup::state
