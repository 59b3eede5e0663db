// Internal to the state module: a thin RAII layer over the SQLite C API.
//
// Conn owns one connection; Stmt owns one prepared statement and is finalised at scope
// exit. Every failure becomes a mup::Error naming the database file and the operation
// ("state database /var/lib/mup/state.db: add remote origin: UNIQUE constraint failed:
// remotes.name"). Not thread-safe: a Conn and its statements belong to one thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace mup::state::detail {

class Conn {
 public:
  // Opens (creating) the file through power_cut_vfs(); extended result codes on; busy_timeout
  // `busy_ms`.
  [[nodiscard]] static Result<std::unique_ptr<Conn>> open(const std::filesystem::path& path,
                                                          int busy_ms);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  sqlite3* handle() const { return db_; }
  const std::filesystem::path& path() const { return path_; }

  // The error for a failed call that returned `rc`, with the connection's message.
  Error error(std::string_view what, int rc) const;
  // Runs one or more statements that return no rows.
  [[nodiscard]] Status exec(const std::string& sql, std::string_view what);
  int64_t changes() const;
  int64_t last_insert_rowid() const;
  bool autocommit() const;  // true when no transaction is open

 private:
  Conn(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::filesystem::path path_;
};

class Stmt {
 public:
  [[nodiscard]] static Result<Stmt> prepare(Conn& conn, std::string_view sql, std::string what);
  Stmt(Stmt&& o) noexcept;
  Stmt& operator=(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  // Parameters are 1-based. A failed bind is reported by the next step().
  Stmt& bind_int(int idx, int64_t v);
  Stmt& bind_text(int idx, std::string_view v);

  // true: a row is ready; false: done.
  [[nodiscard]] Result<bool> step();
  // Steps to the end (a statement that returns no rows).
  [[nodiscard]] Status run();

  int64_t col_int(int col) const;
  std::string col_text(int col) const;
  bool col_null(int col) const;

 private:
  Stmt(Conn& conn, sqlite3_stmt* stmt, std::string what)
      : conn_(&conn), stmt_(stmt), what_(std::move(what)) {}
  Conn* conn_;
  sqlite3_stmt* stmt_;
  std::string what_;
  int bind_rc_ = 0;
};

// The VFS a state connection opens with: nullptr (SQLite's default) unless fault points are
// compiled in and MUP_FAULT_ACTION=powercut is set; then "mup-powercut", which drops what was
// not fsynced when the powercut action fires and has the fault point "state.sync" (see
// powercut_vfs.cpp). Read at every open; thread-safe.
const char* power_cut_vfs();

// JSON text as stored: dump() with invalid UTF-8 replaced, never throwing.
std::string dump_json(const nlohmann::json& j);
// Parses stored JSON text; Errc::corrupt naming `what` when it is not JSON.
[[nodiscard]] Result<nlohmann::json> parse_json(std::string_view text, std::string_view what);

}  // namespace mup::state::detail
