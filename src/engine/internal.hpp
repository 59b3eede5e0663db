// The engine's insides, shared by its .cpp files only (not a public header): the services
// an operation uses (Engine::Internals), a verified session with a remote, the resolver
// both check and install use, and the work of one running operation (Work) that the step
// objects of the transition table read and write.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chunk/tree_index.hpp"
#include "crypto/crypto.hpp"
#include "delta/planner.hpp"
#include "engine/engine.hpp"
#include "engine/events.hpp"
#include "engine/operation.hpp"
#include "package/manifest.hpp"
#include "package/sealed.hpp"
#include "snapshot/snapshot_store.hpp"
#include "state/state_db.hpp"
#include "transfer/fetcher.hpp"
#include "tuf/clock.hpp"
#include "tuf/updater.hpp"

namespace mup::engine {

struct Engine::Internals {
  Engine& e;
  NodeLocks locks;
  std::unique_ptr<Activator> activator;
  std::unique_ptr<EventBus> events;
  std::optional<crypto::PrivateKey> audit_key;
  std::optional<crypto::PublicKey> audit_public;

  // A connection of its own for one operation or read (with the audit key and the clock).
  [[nodiscard]] Result<state::StateDb> connect() const;
  const Clock& clock() const;
  int64_t now_ms() const;
  std::string boot_id() const;
  std::unique_ptr<transfer::Fetcher> fetcher() const;
  void emit(nlohmann::json event) const;
};

// A verified connection to one remote: the TUF client after refresh().
struct Session {
  explicit Session(const Clock& c) : clock(c) {}
  std::string remote, url;
  std::unique_ptr<transfer::Fetcher> fetcher;
  tuf::ClockAdapter clock;  // the engine's clock: TUF expiry is checked against it
  std::optional<tuf::Updater> updater;

  // Every package manifest of `component` the remote offers, with its target path, oldest
  // first; `refused` gets "version: why" for targets of the component whose manifest does
  // not parse. Reads the targets under "<component>/" wherever the delegations put them,
  // fetching only the roles that may list them (one per component in a mup repository).
  [[nodiscard]] Result<std::vector<std::pair<package::Manifest, std::string>>> offers(
      const std::string& component, std::vector<std::string>* refused = nullptr);
  // The newest version of every component the remote offers (all roles), or of
  // `component` alone when it is not empty.
  [[nodiscard]] Result<std::map<std::string, std::pair<package::Manifest, std::string>>> newest(
      const std::string& component = "");
};

[[nodiscard]] Result<std::unique_ptr<Session>> connect_remote(Engine& e, state::StateDb& db,
                                                              const std::string& remote);
// A session with the repository at `url` whose trusted metadata is in `metadata_dir`,
// refreshed (under the remote's refresh lock). `remote` may be empty (mup check --repo).
[[nodiscard]] Result<std::unique_ptr<Session>> open_session(
    Engine& e, const std::string& remote, std::string url,
    const std::filesystem::path& metadata_dir);

// What installing one package version takes, from what this node holds: the one answer
// both `check` and `install` use.
struct Resolved {
  std::vector<uint8_t> index_file;  // the plain tree index
  uint64_t index_bytes = 0;         // what fetching it cost (an index delta, or the target)
  std::optional<chunk::TreeIndex> index;
  std::vector<chunk::TreeIndex> held;  // seeds' indexes (plan refers to them)
  std::optional<delta::Plan> plan;
  std::vector<package::PieceRef> todo;  // pieces to download (not in the cache)
  // Cold pack segments to download instead of the chunks they hold (choose_segments).
  struct SegmentFetch {
    chunk::PackSegment segment;
    std::vector<chunk::ChunkRef> chunks;  // the chunks it holds, in order
    std::vector<bool> wanted;             // per chunk: to be put in the cache
  };
  std::vector<SegmentFetch> segments;
  // The update bundle from the active version, fetched before any piece (choose_bundle).
  std::vector<chunk::PackSegment> bundle;
  std::vector<package::PieceRef> bundle_pieces;  // what it holds (package::bundle_pieces)
  size_t bundle_covers = 0;                      // pieces of todo it holds
  // Where the verified pieces of the cached bundle segments are (the stage step reads them
  // there: the segment is written once, not each piece as a file of its own).
  std::shared_ptr<chunk::Extents> extents = std::make_shared<chunk::Extents>();
  uint64_t cache_bytes = 0;  // what the pieces take in the cache (those carved from segments too)
  uint64_t todo_bytes = 0;   // todo's and segments' bytes on the wire
  uint64_t cached_bytes = 0;
  std::optional<crypto::AesKey> key;  // data key of an encrypted package
  DownloadPlan summary() const;
};
[[nodiscard]] Result<Resolved> resolve_download(Engine& e, Session& s, const package::Manifest& m,
                                                const std::string& target_path,
                                                const std::filesystem::path& device_key,
                                                unsigned threads);

double seconds_since(const Clock& clock, std::chrono::steady_clock::time_point t0);

// The work of one running operation.
struct Work {
  Work(Engine& engine, Engine::Internals& internals, state::StateDb& database, Operation operation)
      : e(engine),
        in(internals),
        db(database),
        op(std::move(operation)),
        t0(internals.clock().monotonic()) {}
  Engine& e;
  Engine::Internals& in;
  state::StateDb& db;
  Operation op;
  std::chrono::steady_clock::time_point t0;  // from the engine's clock
  double elapsed() const { return seconds_since(in.clock(), t0); }

  // install
  const InstallOptions* install = nullptr;
  unsigned install_connections = 8, install_threads = 0;
  std::filesystem::path device_key;
  Session* session = nullptr;  // borrowed from the caller
  std::optional<package::Manifest> manifest;
  std::optional<Resolved> resolved;
  InstallReport report;
  // gc
  store::GcOptions gc;
  store::GcReport gc_report;
  // snapshot-create
  std::string snapshot_label;
  nlohmann::json snapshot_result;
  std::string superseded;  // rollback: the quarantined operations it supersedes, if any

  std::optional<Error> error;  // the first error; cleanup failures are chained onto it
  void failed(Error err);
  bool switched() const;  // the Activator shows the operation's target as active
};

// Runs `w` through the transition table from `start` until a terminal state, and ends the
// operation (finish()) if no step did. Returns the terminal state.
State run(Work& w, State start);

// Reconciles the database rows of `component` with the disk: component pointers,
// installed versions, snapshots. Inside the caller's transaction.
[[nodiscard]] Status reconcile(Engine& e, state::StateDb& db, const std::string& component);
// The work of gc: the store's old versions and cached pieces, then automatic snapshots, then
// the history (store::GcOptions); with dry_run, only what would go.
[[nodiscard]] Result<store::GcReport> collect(Engine& e, state::StateDb& db,
                                              const store::GcOptions& o);
// The component row's trial fields from a version row and the intent.
[[nodiscard]] Status recover_all(Engine& e, RecoveryReport& report);

// activate / rollback / commit of one component, under its writer lock. keep_status: a
// rollback that undoes a group (not a judgement of the version: it is not marked bad).
[[nodiscard]] Result<SwitchReport> switch_operation(Engine& e, OpKind kind, const std::string& c,
                                                    const std::string& v,
                                                    const std::string& restore_snapshot,
                                                    const std::string& actor,
                                                    bool keep_status = false);

// The remote a command about `component` uses: `requested`, else the component's, else
// the only one (engine.no_remote / engine.ambiguous_remote otherwise).
[[nodiscard]] Result<std::string> pick_remote(state::StateDb& db, const std::string& component,
                                              const std::string& requested);
// engine.quarantined when an operation on `component` is quarantined.
[[nodiscard]] Status refuse_if_quarantined(state::StateDb& db, const std::string& component);

std::string opt_str(const std::optional<std::string>& s);
// Reads of JSON the engine did not just build (journal rows, signed custom fields) that
// never throw: a missing or mistyped member is `def`.
using state::json_int;  // journal detail fields (state/state_db.hpp)
using state::json_str;
double seconds_since(const Clock& clock, std::chrono::steady_clock::time_point t0);

}  // namespace mup::engine
