#include "state/sqlite.hpp"

#include <sqlite3.h>

#include <utility>

namespace mup::state::detail {

namespace {

// What the user can do about a failure of this kind.
struct Kind {
  Errc code;
  const char* hint;
};

Kind classify(int rc) {
  switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE: return {Errc::already_exists, ""};
    default: break;
  }
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT: return {Errc::invalid_argument, ""};
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return {Errc::corrupt, " (the state database is damaged: restore it from a backup)"};
    case SQLITE_FULL: return {Errc::no_space, " (free some space and retry)"};
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return {Errc::io,
              " (another mup process held the database for too long; retry when it is done)"};
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
      return {Errc::io, " (check that the directory exists and is writable by this user)"};
    case SQLITE_NOMEM:
    case SQLITE_IOERR:
    case SQLITE_PROTOCOL: return {Errc::io, ""};
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
    case SQLITE_ERROR: return {Errc::internal, ""};
    default: return {Errc::io, ""};
  }
}

Error make_error(const std::filesystem::path& path, std::string_view what, int rc,
                 const char* msg) {
  Kind k = classify(rc);
  std::string m = "state database " + path.string() + ": " + std::string(what) + ": ";
  m += (msg && *msg) ? msg : sqlite3_errstr(rc);
  m += k.hint;
  return Error(k.code, std::move(m));
}

}  // namespace

Result<std::unique_ptr<Conn>> Conn::open(const std::filesystem::path& path, int busy_ms) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                           power_cut_vfs());
  if (rc != SQLITE_OK) {
    Error e = make_error(path, "open", rc, db ? sqlite3_errmsg(db) : nullptr);
    sqlite3_close_v2(db);
    return tl::unexpected<Error>(std::move(e));
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, busy_ms);
  return std::unique_ptr<Conn>(new Conn(db, path));
}

Conn::~Conn() {
  sqlite3_close_v2(db_);
}

Error Conn::error(std::string_view what, int rc) const {
  return make_error(path_, what, rc, sqlite3_errmsg(db_));
}

Status Conn::exec(const std::string& sql, std::string_view what) {
  char* msg = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg);
  if (rc == SQLITE_OK) return {};
  Error e = make_error(path_, what, sqlite3_extended_errcode(db_), msg);
  sqlite3_free(msg);
  return tl::unexpected<Error>(std::move(e));
}

int64_t Conn::changes() const {
  return sqlite3_changes64(db_);
}

int64_t Conn::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}

bool Conn::autocommit() const {
  return sqlite3_get_autocommit(db_) != 0;
}

Result<Stmt> Stmt::prepare(Conn& conn, std::string_view sql, std::string what) {
  sqlite3_stmt* stmt = nullptr;
  int rc =
      sqlite3_prepare_v2(conn.handle(), sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return tl::unexpected<Error>(conn.error(what, rc));
  }
  return Stmt(conn, stmt, std::move(what));
}

Stmt::Stmt(Stmt&& o) noexcept
    : conn_(o.conn_),
      stmt_(std::exchange(o.stmt_, nullptr)),
      what_(std::move(o.what_)),
      bind_rc_(o.bind_rc_) {}

Stmt::~Stmt() {
  sqlite3_finalize(stmt_);
}

Stmt& Stmt::bind_int(int idx, int64_t v) {
  int rc = sqlite3_bind_int64(stmt_, idx, v);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind_text(int idx, std::string_view v) {
  // A non-null pointer even for empty text, so the value is '' and not NULL.
  int rc = sqlite3_bind_text64(stmt_, idx, v.empty() ? "" : v.data(), v.size(), SQLITE_TRANSIENT,
                               SQLITE_UTF8);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Result<bool> Stmt::step() {
  if (bind_rc_ != SQLITE_OK) return tl::unexpected<Error>(conn_->error(what_, bind_rc_));
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Error e = conn_->error(what_, rc);
  sqlite3_reset(stmt_);
  return tl::unexpected<Error>(std::move(e));
}

Status Stmt::run() {
  for (;;) {
    auto r = step();
    if (!r) return tl::unexpected<Error>(std::move(r).error());
    if (!*r) return {};
  }
}

int64_t Stmt::col_int(int col) const {
  return sqlite3_column_int64(stmt_, col);
}

std::string Stmt::col_text(int col) const {
  const auto* p = sqlite3_column_text(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

bool Stmt::col_null(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

std::string dump_json(const nlohmann::json& j) {
  try {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const std::exception&) {
    // dump with the replace handler does not throw for strings; stay safe regardless.
    return "null";
  }
}

Result<nlohmann::json> parse_json(std::string_view text, std::string_view what) {
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return fail(Errc::corrupt,
                std::string(what) + " is not valid JSON: " + std::string(text.substr(0, 80)));
  return j;
}

}  // namespace mup::state::detail
