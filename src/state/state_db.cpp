// StateDb: opening, migrations, transactions and the operation journal. The inventory
// (remotes, components, versions, snapshots) is in inventory.cpp, the audit log in
// audit.cpp.
#include "state/state_db.hpp"

#include <unistd.h>

#include <cstdlib>
#include <system_error>
#include <utility>

#include "core/fault.hpp"
#include "state/schema.hpp"
#include "state/sqlite.hpp"

namespace mup::state {

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
    "COALESCE(finished_at, 0), bytes, error";

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
  auto parsed = detail::parse_json(st.col_text(8), "detail of " + op_name(op.id));
  if (!parsed) return tl::unexpected<Error>(std::move(parsed).error());
  op.detail = std::move(*parsed);
  op.started_at_ms = st.col_int(9);
  op.finished_at_ms = st.col_int(10);
  op.bytes = static_cast<uint64_t>(st.col_int(11));
  op.error = st.col_text(12);
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
  std::error_code ec;
  if (stdfs::path dir = path.parent_path(); !dir.empty() && !stdfs::is_directory(dir, ec))
    return fail(Errc::not_found, "state database " + path.string() + ": directory " + dir.string() +
                                     " does not exist (create it, or choose another --root)");
  auto conn = Conn::open(path, kBusyTimeoutMs);
  if (!conn) return tl::unexpected<Error>(std::move(conn).error());
  StateDb db(std::move(*conn), std::move(now));

  // Refuse a newer schema before changing anything in the file.
  auto version = read_user_version(*db.conn_);
  if (!version) return tl::unexpected<Error>(std::move(version).error());
  if (*version > latest_schema_version())
    return fail(Errc::unsupported,
                "state database " + path.string() + " has schema version " +
                    std::to_string(*version) + " but this mup knows versions up to " +
                    std::to_string(latest_schema_version()) +
                    ": it was written by a newer mup. Upgrade mup (downgrading the state "
                    "database is not supported), or restore a backup written by this version");
  db.schema_version_ = *version;

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
  MUP_TRY(db.migrate());
  return db;
}

// Each migration in its own transaction, which also records it. The write lock is taken
// first and the version read again under it, so two processes opening a fresh database
// at once apply each migration exactly once.
Status StateDb::migrate() {
  for (const detail::Migration& m : detail::migrations()) {
    if (m.version <= schema_version_) continue;
    std::string what = "schema migration " + std::to_string(m.version) + " (" + m.name + ")";
    MUP_TRY(conn_->exec("BEGIN IMMEDIATE", "begin " + what));
    auto apply = [&]() -> Status {
      auto current = read_user_version(*conn_);
      if (!current) return tl::unexpected<Error>(std::move(current).error());
      if (*current >= m.version) return {};  // another process applied it meanwhile
      MUP_TRY(
          conn_->exec("CREATE TABLE IF NOT EXISTS schema_migrations(version INTEGER PRIMARY KEY, "
                      "name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
                      "create schema_migrations for " + what));
      MUP_TRY(conn_->exec(m.sql, "apply " + what));
      auto ins = Stmt::prepare(
          *conn_, "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
          "record " + what);
      if (!ins) return tl::unexpected<Error>(std::move(ins).error());
      MUP_TRY(ins->bind_int(1, m.version).bind_text(2, m.name).bind_int(3, now_ms()).run());
      MUP_TRY(conn_->exec("PRAGMA user_version = " + std::to_string(m.version),
                          "set schema version for " + what));
      MUP_TRY(fault::point("state.migrate"));
      return conn_->exec("COMMIT", "commit " + what);
    };
    Status r = apply();
    if (!conn_->autocommit()) (void)conn_->exec("ROLLBACK", "roll back " + what);
    if (!r) return tl::unexpected<Error>(std::move(r).error());
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

}  // namespace mup::state
