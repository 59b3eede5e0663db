// StateDb: opening, migrations, transactions and the operation journal. The inventory
// (remotes, components, versions, snapshots) is in inventory.cpp, the audit log in
// audit.cpp.
#include "state/state_db.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <system_error>
#include <utility>

#include "core/fault.hpp"
#include "state/schema.hpp"
#include "state/sqlite.hpp"

namespace mup::state {

std::string json_str(const nlohmann::json& j, const char* key, const std::string& def) {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}

int64_t json_int(const nlohmann::json& j, const char* key, int64_t def) {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : def;
}

namespace stdfs = std::filesystem;
using detail::Conn;
using detail::Stmt;

namespace {

constexpr int kBusyTimeoutMs = 10'000;

std::string op_name(int64_t id) {
  return "operation " + std::to_string(id);
}

Result<int> read_user_version(Conn& conn) {
  auto st = Stmt::prepare(conn, "PRAGMA user_version", "read schema version");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  auto row = st->step();
  if (!row) return tl::unexpected<Error>(std::move(row).error());
  return *row ? static_cast<int>(st->col_int(0)) : 0;
}

// The columns of `operations`, in the order read_operation() expects.
constexpr const char* kOperationColumns =
    "id, kind, component, from_version, to_version, actor, state, step, detail, started_at, "
    "COALESCE(finished_at, 0), bytes, error, recovery_attempts, recovery_error, quarantined";

Result<OperationRecord> read_operation(const Stmt& st) {
  OperationRecord op;
  op.id = st.col_int(0);
  op.kind = st.col_text(1);
  op.component = st.col_text(2);
  op.from_version = st.col_text(3);
  op.to_version = st.col_text(4);
  op.actor = st.col_text(5);
  op.state = st.col_text(6);
  op.step = st.col_text(7);
  // A detail that does not parse must not hide the row (recovery decides what it means).
  auto parsed = detail::parse_json(st.col_text(8), "detail of " + op_name(op.id));
  op.detail = parsed ? std::move(*parsed) : nlohmann::json();
  op.started_at_ms = st.col_int(9);
  op.finished_at_ms = st.col_int(10);
  op.bytes = static_cast<uint64_t>(st.col_int(11));
  op.error = st.col_text(12);
  op.recovery_attempts = static_cast<int>(st.col_int(13));
  op.recovery_error = st.col_text(14);
  op.quarantined = st.col_int(15) != 0;
  return op;
}

Result<std::vector<OperationRecord>> read_operations(Stmt& st) {
  std::vector<OperationRecord> out;
  for (;;) {
    auto row = st.step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row) return out;
    auto op = read_operation(st);
    if (!op) return tl::unexpected<Error>(std::move(op).error());
    out.push_back(std::move(*op));
  }
}

// `detail` as a JSON object: null becomes {}, anything else but an object is refused.
Result<nlohmann::json> as_object(const nlohmann::json& detail, std::string_view what) {
  if (detail.is_null()) return nlohmann::json::object();
  if (!detail.is_object())
    return fail(Errc::invalid_argument,
                std::string(what) + " must be a JSON object, not " + detail.type_name());
  return detail;
}

// The migration that added schema_migrations.down_sql: from it on, each migration's row
// carries its down SQL, and it fills in the rows of the migrations before it.
constexpr int kDownSqlSince = 4;

// Runs `body` in a write transaction of its own (BEGIN IMMEDIATE). `body` commits, or
// returns early, and then whatever it left open is rolled back; a failed rollback is
// chained onto body's error.
Status run_exclusive(Conn& conn, const std::string& what, const std::function<Status()>& body) {
  MUP_TRY(conn.exec("BEGIN IMMEDIATE", "begin " + what));
  Status r = body();
  if (conn.autocommit()) return r;
  Status rolled_back = conn.exec("ROLLBACK", "roll back " + what);
  if (!rolled_back && !r) return tl::unexpected<Error>(r.error().followed_by(rolled_back.error()));
  return r ? rolled_back : r;
}

Status record_migration(Conn& conn, const detail::Migration& m, int64_t now_ms,
                        const std::string& what) {
  const bool with_down = m.version >= kDownSqlSince;
  auto ins = Stmt::prepare(conn,
                           with_down ? "INSERT INTO schema_migrations(version, name, applied_at, "
                                       "down_sql) VALUES (?, ?, ?, ?)"
                                     : "INSERT INTO schema_migrations(version, name, applied_at) "
                                       "VALUES (?, ?, ?)",
                           "record " + what);
  if (!ins) return tl::unexpected<Error>(std::move(ins).error());
  ins->bind_int(1, m.version).bind_text(2, m.name).bind_int(3, now_ms);
  if (with_down) ins->bind_text(4, m.down);
  return ins->run();
}

// The down SQL of the migrations from before schema_migrations could hold it.
Status backfill_down_sql(Conn& conn, std::span<const detail::Migration> migrations,
                         const std::string& what) {
  for (const detail::Migration& m : migrations) {
    if (m.version >= kDownSqlSince) break;
    auto up = Stmt::prepare(
        conn, "UPDATE schema_migrations SET down_sql = ? WHERE version = ?",
        "store the down SQL of migration " + std::to_string(m.version) + " in " + what);
    if (!up) return tl::unexpected<Error>(std::move(up).error());
    MUP_TRY(up->bind_text(1, m.down).bind_int(2, m.version).run());
  }
  return {};
}

// The down SQL stored for version `v`; empty when there is none. The statement is done
// when this returns (an open statement would make DROP TABLE fail).
Result<std::string> stored_down_sql(Conn& conn, int v, const std::string& what) {
  auto st = Stmt::prepare(conn, "SELECT down_sql FROM schema_migrations WHERE version = ?",
                          "read the down SQL for " + what);
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  auto row = st->bind_int(1, v).step();
  if (!row) return tl::unexpected<Error>(std::move(row).error());
  return *row ? st->col_text(0) : std::string();
}

tl::unexpected<Error> newer_schema_error(const stdfs::path& path, int version, int latest,
                                         const std::string& why) {
  return fail(Errc::unsupported,
              "state database " + path.string() + " has schema version " + std::to_string(version) +
                  ", from a newer mup (this one knows versions up to " + std::to_string(latest) +
                  "), and " + why +
                  ", so this mup cannot migrate it down. Run the newer mup again, or restore a "
                  "backup of the state database taken before it was upgraded");
}

}  // namespace

int64_t system_now_ms() {
  return system_clock().wall_ms();
}

std::string current_actor() {
  if (const char* user = std::getenv("USER"); user && *user) return user;
  char buf[256];
  if (getlogin_r(buf, sizeof buf) == 0 && buf[0]) return buf;
  return "uid " + std::to_string(getuid());
}

int StateDb::latest_schema_version() {
  return detail::migrations().back().version;
}

StateDb::StateDb(std::unique_ptr<Conn> conn, NowMs now)
    : conn_(std::move(conn)), now_(now ? std::move(now) : NowMs(system_now_ms)) {}

StateDb::StateDb(StateDb&&) noexcept = default;
StateDb& StateDb::operator=(StateDb&&) noexcept = default;

StateDb::~StateDb() {
  if (conn_ && depth_ > 0 && !conn_->autocommit()) (void)conn_->exec("ROLLBACK", "roll back");
}

const stdfs::path& StateDb::path() const {
  return conn_->path();
}

Result<StateDb> StateDb::open(const stdfs::path& path, const Clock& clock) {
  return open(path, [&clock] { return clock.wall_ms(); });
}

Result<StateDb> StateDb::open(const stdfs::path& path, NowMs now) {
  return open_impl(path, std::move(now), detail::migrations());
}

Result<StateDb> StateDb::open_with_migrations_for_testing(
    const stdfs::path& path, NowMs now, std::span<const detail::Migration> migrations) {
  return open_impl(path, std::move(now), migrations);
}

Result<StateDb> StateDb::open_impl(const stdfs::path& path, NowMs now,
                                   std::span<const detail::Migration> migrations) {
  std::error_code ec;
  if (stdfs::path dir = path.parent_path(); !dir.empty() && !stdfs::is_directory(dir, ec))
    return fail(Errc::not_found, "state database " + path.string() + ": directory " + dir.string() +
                                     " does not exist (create it, or choose another --root)");
  auto conn = Conn::open(path, kBusyTimeoutMs);
  if (!conn) return tl::unexpected<Error>(std::move(conn).error());
  StateDb db(std::move(*conn), std::move(now));

  auto version = read_user_version(*db.conn_);
  if (!version) return tl::unexpected<Error>(std::move(version).error());
  db.schema_version_ = *version;
  // Refuse a newer schema that cannot be migrated down before changing anything in the file.
  if (*version > migrations.back().version) MUP_TRY(db.check_down_sql(migrations.back().version));

  {
    // In its own scope: a statement still open would block the migrations' COMMIT.
    auto mode = Stmt::prepare(*db.conn_, "PRAGMA journal_mode=WAL", "switch to WAL mode");
    if (!mode) return tl::unexpected<Error>(std::move(mode).error());
    auto row = mode->step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row || mode->col_text(0) != "wal")
      return fail(Errc::unsupported, "state database " + path.string() +
                                         ": cannot use WAL mode (journal mode is " +
                                         (*row ? mode->col_text(0) : std::string("unknown")) +
                                         "); put --root on a local filesystem");
  }
  MUP_TRY(db.conn_->exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", "set pragmas"));
  MUP_TRY(db.migrate(migrations));
  return db;
}

// Each migration in its own transaction, which also records it. The write lock is taken
// first and the version read again under it, so two processes opening a fresh database
// at once apply each migration exactly once.
Status StateDb::migrate(std::span<const detail::Migration> migrations) {
  MUP_TRY(downgrade(migrations.back().version));
  for (const detail::Migration& m : migrations) {
    if (m.version <= schema_version_) continue;
    std::string what = "schema migration " + std::to_string(m.version) + " (" + m.name + ")";
    MUP_TRY(run_exclusive(*conn_, what, [&]() -> Status {
      auto current = read_user_version(*conn_);
      if (!current) return tl::unexpected<Error>(std::move(current).error());
      if (*current >= m.version) return {};  // another process applied it meanwhile
      MUP_TRY(
          conn_->exec("CREATE TABLE IF NOT EXISTS schema_migrations(version INTEGER PRIMARY KEY, "
                      "name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
                      "create schema_migrations for " + what));
      MUP_TRY(conn_->exec(m.sql, "apply " + what));
      MUP_TRY(record_migration(*conn_, m, now_ms(), what));
      if (m.version == kDownSqlSince) MUP_TRY(backfill_down_sql(*conn_, migrations, what));
      MUP_TRY(conn_->exec("PRAGMA user_version = " + std::to_string(m.version),
                          "set schema version for " + what));
      MUP_TRY(fault::point("state.migrate"));
      return conn_->exec("COMMIT", "commit " + what);
    }));
    auto now_version = read_user_version(*conn_);
    if (!now_version) return tl::unexpected<Error>(std::move(now_version).error());
    schema_version_ = *now_version;
  }
  return {};
}

// The database is at a version above `latest` (the newest this build knows): is there a
// stored down SQL for each version in between? Reads only.
Status StateDb::check_down_sql(int latest) {
  auto st = Stmt::prepare(*conn_,
                          "SELECT version FROM schema_migrations WHERE version > ? AND "
                          "version <= ? AND down_sql != '' ORDER BY version",
                          "read the stored down migrations");
  if (!st)
    return newer_schema_error(
        path(), schema_version_, latest,
        "its schema_migrations table keeps no down SQL (" + st.error().message() + ")");
  st->bind_int(1, latest).bind_int(2, schema_version_);
  int expect = latest + 1;
  for (;;) {
    auto row = st->step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row || st->col_int(0) != expect) break;
    ++expect;
  }
  if (expect > schema_version_) return {};
  return newer_schema_error(path(), schema_version_, latest,
                            "it holds no down SQL for version " + std::to_string(expect));
}

// mup was rolled back past the schema of its database: undo each newer migration with the
// down SQL that the newer mup stored, newest first, each in a transaction that also drops
// its record and lowers user_version. As for migrate(), the version is read again under
// the write lock.
Status StateDb::downgrade(int latest) {
  while (schema_version_ > latest) {
    const int v = schema_version_;
    std::string what = "schema downgrade of version " + std::to_string(v);
    MUP_TRY(run_exclusive(*conn_, what, [&]() -> Status {
      auto current = read_user_version(*conn_);
      if (!current) return tl::unexpected<Error>(std::move(current).error());
      if (*current != v) return {};  // another process moved it meanwhile
      auto down = stored_down_sql(*conn_, v, what);
      if (!down) return tl::unexpected<Error>(std::move(down).error());
      if (down->empty())
        return newer_schema_error(path(), v, latest,
                                  "it holds no down SQL for version " + std::to_string(v));
      MUP_TRY(conn_->exec(*down, "apply " + what));
      auto del = Stmt::prepare(*conn_, "DELETE FROM schema_migrations WHERE version = ?",
                               "forget " + what);
      if (!del) return tl::unexpected<Error>(std::move(del).error());
      MUP_TRY(del->bind_int(1, v).run());
      MUP_TRY(conn_->exec("PRAGMA user_version = " + std::to_string(v - 1),
                          "set schema version for " + what));
      MUP_TRY(fault::point("state.downgrade"));
      MUP_TRY(conn_->exec("COMMIT", "commit " + what));
      downgraded_.push_back(v);
      return {};
    }));
    auto now_version = read_user_version(*conn_);
    if (!now_version) return tl::unexpected<Error>(std::move(now_version).error());
    schema_version_ = *now_version;
  }
  return {};
}

Status StateDb::integrity_check() {
  auto st = Stmt::prepare(*conn_, "PRAGMA integrity_check", "integrity check");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  std::string findings;
  for (;;) {
    auto row = st->step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row) break;
    if (!findings.empty()) findings += "; ";
    findings += st->col_text(0);
  }
  if (findings == "ok") return {};
  return fail(Errc::corrupt, "state database " + path().string() + " failed its integrity check: " +
                                 findings + " (restore it from a backup)");
}

// --- Transactions -------------------------------------------------------------------

Status StateDb::begin() {
  // SQLite may end a transaction by itself after an error (disk full, I/O); the caller's
  // outer level must then roll back rather than nest into nothing.
  if (depth_ > 0 && conn_->autocommit())
    return fail(Errc::io, "state database " + path().string() +
                              ": the enclosing transaction was rolled back by SQLite after an "
                              "earlier error");
  if (depth_ == 0)
    MUP_TRY(conn_->exec("BEGIN IMMEDIATE", "begin transaction"));
  else
    MUP_TRY(conn_->exec("SAVEPOINT mup_" + std::to_string(depth_), "begin nested transaction"));
  ++depth_;
  return {};
}

Status StateDb::commit() {
  if (depth_ == 0) return fail(Errc::internal, "state database: commit without begin");
  if (conn_->autocommit()) {
    depth_ = 0;
    return fail(Errc::io, "state database " + path().string() +
                              ": the transaction was rolled back by SQLite after an earlier "
                              "error; nothing was committed");
  }
  if (depth_ > 1) {
    MUP_TRY(conn_->exec("RELEASE mup_" + std::to_string(depth_ - 1), "commit nested transaction"));
    --depth_;
    return {};
  }
  if (auto f = fault::point("state.commit"); !f) {
    rollback();
    return f;
  }
  if (auto r = conn_->exec("COMMIT", "commit"); !r) {
    rollback();
    return r;
  }
  depth_ = 0;
  return {};
}

void StateDb::rollback() {
  if (depth_ == 0) return;
  if (conn_->autocommit()) {
    depth_ = 0;
    return;
  }
  if (depth_ > 1) {
    std::string sp = "mup_" + std::to_string(depth_ - 1);
    (void)conn_->exec("ROLLBACK TO " + sp + "; RELEASE " + sp, "roll back nested transaction");
    --depth_;
    return;
  }
  (void)conn_->exec("ROLLBACK", "roll back");
  depth_ = 0;
}

Status StateDb::transaction(const std::function<Status()>& body) {
  MUP_TRY(begin());
  Status r;
  try {
    r = body();
  } catch (...) {
    rollback();
    throw;  // the caller's own exception, not one of ours
  }
  if (!r) {
    rollback();
    return r;
  }
  return commit();
}

// --- Journal ------------------------------------------------------------------------

Result<int64_t> StateDb::begin_operation(OperationRecord op) {
  if (op.kind.empty()) return fail(Errc::invalid_argument, "begin operation: kind is empty");
  auto obj = as_object(op.detail, "detail of a new " + op.kind + " operation");
  if (!obj) return tl::unexpected<Error>(std::move(obj).error());
  if (op.actor.empty()) op.actor = current_actor();
  if (op.started_at_ms == 0) op.started_at_ms = now_ms();
  int64_t id = 0;
  MUP_TRY(transaction([&]() -> Status {
    auto st = Stmt::prepare(*conn_,
                            "INSERT INTO operations(kind, component, from_version, to_version, "
                            "actor, state, step, detail, started_at) "
                            "VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                            "begin " + op.kind + " operation");
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    st->bind_text(1, op.kind).bind_text(2, op.component).bind_text(3, op.from_version);
    st->bind_text(4, op.to_version).bind_text(5, op.actor).bind_text(6, op.step);
    st->bind_text(7, detail::dump_json(*obj)).bind_int(8, op.started_at_ms);
    MUP_TRY(st->run());
    id = conn_->last_insert_rowid();
    return {};
  }));
  return id;
}

namespace {

// The state of operation `id`, under the caller's transaction; errors if it is missing
// or not running.
Result<std::string> running_detail(Conn& conn, int64_t id, std::string_view doing) {
  auto st = Stmt::prepare(conn, "SELECT state, detail FROM operations WHERE id = ?",
                          std::string(doing) + " of " + op_name(id));
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  auto row = st->bind_int(1, id).step();
  if (!row) return tl::unexpected<Error>(std::move(row).error());
  if (!*row)
    return fail(Errc::not_found, std::string(doing) + ": " + op_name(id) +
                                     " is not in state database " + conn.path().string());
  if (std::string state = st->col_text(0); state != "running")
    return fail(Errc::invalid_argument,
                std::string(doing) + ": " + op_name(id) + " is " + state + ", not running");
  return st->col_text(1);
}

}  // namespace

Status StateDb::record_step(int64_t id, std::string_view step, const nlohmann::json& step_detail) {
  std::string doing = "record step '" + std::string(step) + "'";
  if (step.empty())
    return fail(Errc::invalid_argument, "record step of " + op_name(id) + ": empty step");
  auto add = as_object(step_detail, "detail of step '" + std::string(step) + "'");
  if (!add) return tl::unexpected<Error>(std::move(add).error());
  return transaction([&]() -> Status {
    auto cur_text = running_detail(*conn_, id, doing);
    if (!cur_text) return tl::unexpected<Error>(std::move(cur_text).error());
    auto cur = detail::parse_json(*cur_text, "detail of " + op_name(id));
    if (!cur) return tl::unexpected<Error>(std::move(cur).error());
    if (!cur->is_object()) *cur = nlohmann::json::object();
    cur->update(*add);

    auto upd = Stmt::prepare(*conn_, "UPDATE operations SET step = ?, detail = ? WHERE id = ?",
                             doing + " of " + op_name(id));
    if (!upd) return tl::unexpected<Error>(std::move(upd).error());
    upd->bind_text(1, step).bind_text(2, detail::dump_json(*cur)).bind_int(3, id);
    MUP_TRY(upd->run());

    auto ins = Stmt::prepare(
        *conn_,
        "INSERT INTO operation_steps(op_id, seq, step, detail, at) VALUES "
        "(?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM operation_steps WHERE op_id = ?1), ?2, "
        "?3, ?4)",
        doing + " of " + op_name(id));
    if (!ins) return tl::unexpected<Error>(std::move(ins).error());
    ins->bind_int(1, id).bind_text(2, step).bind_text(3, detail::dump_json(*add));
    return ins->bind_int(4, now_ms()).run();
  });
}

Status StateDb::finish_operation(int64_t id, std::string_view state, uint64_t bytes,
                                 std::string_view error) {
  std::string doing = "finish " + op_name(id) + " as '" + std::string(state) + "'";
  if (state != "done" && state != "failed" && state != "undone")
    return fail(Errc::invalid_argument, doing + ": the state must be done, failed or undone");
  return transaction([&]() -> Status {
    auto cur = running_detail(*conn_, id, doing);
    if (!cur) return tl::unexpected<Error>(std::move(cur).error());
    auto st = Stmt::prepare(
        *conn_,
        "UPDATE operations SET state = ?, finished_at = ?, bytes = ?, error = ? WHERE id = ?",
        doing);
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    st->bind_text(1, state).bind_int(2, now_ms()).bind_int(3, static_cast<int64_t>(bytes));
    return st->bind_text(4, error).bind_int(5, id).run();
  });
}

Result<std::optional<OperationRecord>> StateDb::operation(int64_t id) {
  auto st = Stmt::prepare(
      *conn_, std::string("SELECT ") + kOperationColumns + " FROM operations WHERE id = ?",
      "read " + op_name(id));
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_int(1, id);
  auto ops = read_operations(*st);
  if (!ops) return tl::unexpected<Error>(std::move(ops).error());
  if (ops->empty()) return std::optional<OperationRecord>();
  return std::optional<OperationRecord>(std::move(ops->front()));
}

Result<std::vector<OperationRecord>> StateDb::unfinished_operations() {
  auto st = Stmt::prepare(*conn_,
                          std::string("SELECT ") + kOperationColumns +
                              " FROM operations WHERE state = 'running' ORDER BY id",
                          "list unfinished operations");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  return read_operations(*st);
}

Result<std::vector<OperationRecord>> StateDb::history(std::string_view component, size_t limit) {
  auto st = Stmt::prepare(*conn_,
                          std::string("SELECT ") + kOperationColumns +
                              " FROM operations WHERE (?1 = '' OR component = ?1) "
                              "ORDER BY id DESC LIMIT ?2",
                          "read history");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_text(1, component).bind_int(2, limit == 0 ? -1 : static_cast<int64_t>(limit));
  return read_operations(*st);
}

Result<std::vector<StepRecord>> StateDb::steps(int64_t id) {
  auto st = Stmt::prepare(
      *conn_, "SELECT seq, step, detail, at FROM operation_steps WHERE op_id = ? ORDER BY seq",
      "read steps of " + op_name(id));
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_int(1, id);
  std::vector<StepRecord> out;
  for (;;) {
    auto row = st->step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row) return out;
    StepRecord s;
    s.seq = st->col_int(0);
    s.step = st->col_text(1);
    auto d = detail::parse_json(st->col_text(2),
                                "detail of step " + std::to_string(s.seq) + " of " + op_name(id));
    if (!d) return tl::unexpected<Error>(std::move(d).error());
    s.detail = std::move(*d);
    s.at_ms = st->col_int(3);
    out.push_back(std::move(s));
  }
}

Status StateDb::note_recovery_failure(int64_t id, std::string_view error, bool quarantine) {
  return transaction([&]() -> Status {
    auto st =
        Stmt::prepare(*conn_,
                      "UPDATE operations SET recovery_attempts = recovery_attempts + 1, "
                      "recovery_error = ?, quarantined = ? WHERE id = ? AND state = 'running'",
                      "note a failed recovery of " + op_name(id));
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    st->bind_text(1, error).bind_int(2, quarantine ? 1 : 0).bind_int(3, id);
    return st->run();
  });
}

Status StateDb::clear_quarantine(int64_t id) {
  return transaction([&]() -> Status {
    auto st = Stmt::prepare(*conn_,
                            "UPDATE operations SET recovery_attempts = 0, quarantined = 0 "
                            "WHERE id = ? AND state = 'running'",
                            "clear the quarantine of " + op_name(id));
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    return st->bind_int(1, id).run();
  });
}

namespace {

// SQL: the ids of the finished rows of `table` (operations, deployments, plans) older than
// the newest `keep` (keep > 0).
std::string finished_beyond(const std::string& table, size_t keep) {
  const std::string finished = table == "operations" ? "state != 'running'" : "finished_at != 0";
  return "SELECT id FROM " + table + " WHERE " + finished + " ORDER BY id DESC LIMIT -1 OFFSET " +
         std::to_string(keep);
}

// Counts the rows of `table` matching `where` and, unless dry_run, deletes them.
Result<uint64_t> remove_rows(Conn& conn, const std::string& table, const std::string& where,
                             bool dry_run) {
  const std::string what = "trim the history (" + table + ")";
  auto st = Stmt::prepare(conn, "SELECT COUNT(*) FROM " + table + " WHERE " + where, what);
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  auto row = st->step();
  if (!row) return tl::unexpected<Error>(std::move(row).error());
  const uint64_t n = *row ? static_cast<uint64_t>(st->col_int(0)) : 0;
  if (dry_run || n == 0) return n;
  auto del = Stmt::prepare(conn, "DELETE FROM " + table + " WHERE " + where, what);
  if (!del) return tl::unexpected<Error>(std::move(del).error());
  MUP_TRY(del->run());
  return n;
}

}  // namespace

Result<HistoryTrimmed> StateDb::trim_history(const HistoryRetention& keep,
                                             const crypto::PublicKey* audit_key) {
  HistoryTrimmed out;
  // Step journals go past the newest `steps` finished operations, and with the operations
  // removed past the newest `operations`: past the smaller of the two (0 keeps all).
  const size_t keep_steps = keep.operations == 0 ? keep.steps
                            : keep.steps == 0    ? keep.operations
                                                 : std::min(keep.operations, keep.steps);
  MUP_TRY(transaction([&]() -> Status {
    auto remove = [&](uint64_t* count, const std::string& table, const std::string& column,
                      const std::string& owner, size_t kept) -> Status {
      auto n = remove_rows(*conn_, table, column + " IN (" + finished_beyond(owner, kept) + ")",
                           keep.dry_run);
      if (!n) return tl::unexpected<Error>(std::move(n).error());
      if (count) *count = *n;
      return {};
    };
    if (keep_steps)
      MUP_TRY(remove(&out.steps, "operation_steps", "op_id", "operations", keep_steps));
    if (keep.operations)
      MUP_TRY(remove(&out.operations, "operations", "id", "operations", keep.operations));
    if (keep.deployments) {  // a deployment's steps with it
      MUP_TRY(remove(nullptr, "deployment_steps", "deployment", "deployments", keep.deployments));
      MUP_TRY(remove(&out.deployments, "deployments", "id", "deployments", keep.deployments));
    }
    if (keep.plans) MUP_TRY(remove(&out.plans, "plans", "id", "plans", keep.plans));
    return trim_audit(keep, audit_key, out);
  }));
  return out;
}

}  // namespace mup::state
