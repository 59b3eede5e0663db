// StateDb: what the node has — remotes, components, installed versions, snapshots.
#include <utility>

#include "state/sqlite.hpp"
#include "state/state_db.hpp"

namespace mup::state {

using detail::Stmt;

namespace {

// Steps `st` to the end, turning each row into a T with `read`.
template <typename T, typename Read>
Result<std::vector<T>> collect(Stmt& st, Read read) {
  std::vector<T> out;
  for (;;) {
    auto row = st.step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row) return out;
    Result<T> item = read(st);
    if (!item) return tl::unexpected<Error>(std::move(item).error());
    out.push_back(std::move(*item));
  }
}

std::string in_quotes(std::string_view s) {
  return "'" + std::string(s) + "'";
}

}  // namespace

// --- Remotes ------------------------------------------------------------------------

Status StateDb::add_remote(std::string_view name, std::string_view url) {
  if (name.empty() || url.empty())
    return fail(Errc::invalid_argument, "add remote: name and url must not be empty");
  std::string what = "add remote " + in_quotes(name);
  Status r = transaction([&]() -> Status {
    auto st =
        Stmt::prepare(*conn_, "INSERT INTO remotes(name, url, added_at) VALUES (?, ?, ?)", what);
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    return st->bind_text(1, name).bind_text(2, url).bind_int(3, now_ms()).run();
  });
  if (!r && r.error().code() == Errc::already_exists)
    return fail(Errc::already_exists, what + ": a remote of that name already exists in " +
                                          path().string() +
                                          " (remove it first, or pick another name)");
  return r;
}

Result<bool> StateDb::remove_remote(std::string_view name) {
  bool removed = false;
  MUP_TRY(transaction([&]() -> Status {
    auto st = Stmt::prepare(*conn_, "DELETE FROM remotes WHERE name = ?",
                            "remove remote " + in_quotes(name));
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    MUP_TRY(st->bind_text(1, name).run());
    removed = conn_->changes() > 0;
    return {};
  }));
  return removed;
}

Result<std::optional<std::string>> StateDb::remote_url(std::string_view name) {
  auto st = Stmt::prepare(*conn_, "SELECT url FROM remotes WHERE name = ?",
                          "read remote " + in_quotes(name));
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  auto row = st->bind_text(1, name).step();
  if (!row) return tl::unexpected<Error>(std::move(row).error());
  if (!*row) return std::optional<std::string>();
  return std::optional<std::string>(st->col_text(0));
}

Result<std::vector<std::pair<std::string, std::string>>> StateDb::remotes() {
  auto st = Stmt::prepare(*conn_, "SELECT name, url FROM remotes ORDER BY name", "list remotes");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  using Pair = std::pair<std::string, std::string>;
  return collect<Pair>(
      *st, [](const Stmt& s) -> Result<Pair> { return Pair(s.col_text(0), s.col_text(1)); });
}

// --- Components ---------------------------------------------------------------------

namespace {

constexpr const char* kComponentColumns =
    "name, remote, type, active_version, previous_version, pinned_version, updated_at, "
    "trial_version, trial";

Result<ComponentRow> read_component(const Stmt& s) {
  ComponentRow c;
  c.name = s.col_text(0);
  c.remote = s.col_text(1);
  c.type = s.col_text(2);
  c.active_version = s.col_text(3);
  c.previous_version = s.col_text(4);
  c.pinned_version = s.col_text(5);
  c.updated_at_ms = s.col_int(6);
  c.trial_version = s.col_text(7);
  auto t = detail::parse_json(s.col_text(8), "trial of component " + c.name);
  c.trial = t && t->is_object() ? std::move(*t) : nlohmann::json::object();
  return c;
}

}  // namespace

Status StateDb::upsert_component(const ComponentRow& row) {
  if (row.name.empty()) return fail(Errc::invalid_argument, "save component: name is empty");
  return transaction([&]() -> Status {
    auto st = Stmt::prepare(
        *conn_,
        std::string("INSERT INTO components(") + kComponentColumns +
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "remote = excluded.remote, type = excluded.type, "
            "active_version = excluded.active_version, "
            "previous_version = excluded.previous_version, "
            "pinned_version = excluded.pinned_version, updated_at = excluded.updated_at, "
            "trial_version = excluded.trial_version, trial = excluded.trial",
        "save component " + in_quotes(row.name));
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    st->bind_text(1, row.name).bind_text(2, row.remote).bind_text(3, row.type);
    st->bind_text(4, row.active_version).bind_text(5, row.previous_version);
    st->bind_text(6, row.pinned_version).bind_int(7, now_ms()).bind_text(8, row.trial_version);
    return st
        ->bind_text(9,
                    detail::dump_json(row.trial.is_object() ? row.trial : nlohmann::json::object()))
        .run();
  });
}

Result<std::optional<ComponentRow>> StateDb::component(std::string_view name) {
  auto st = Stmt::prepare(
      *conn_, std::string("SELECT ") + kComponentColumns + " FROM components WHERE name = ?",
      "read component " + in_quotes(name));
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_text(1, name);
  auto rows = collect<ComponentRow>(*st, read_component);
  if (!rows) return tl::unexpected<Error>(std::move(rows).error());
  if (rows->empty()) return std::optional<ComponentRow>();
  return std::optional<ComponentRow>(std::move(rows->front()));
}

Result<std::vector<ComponentRow>> StateDb::components() {
  auto st = Stmt::prepare(
      *conn_, std::string("SELECT ") + kComponentColumns + " FROM components ORDER BY name",
      "list components");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  return collect<ComponentRow>(*st, read_component);
}

Status StateDb::delete_component(std::string_view name) {
  return transaction([&]() -> Status {
    auto st = Stmt::prepare(*conn_, "DELETE FROM components WHERE name = ?",
                            "delete component " + in_quotes(name));
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    return st->bind_text(1, name).run();
  });
}

// --- Versions -----------------------------------------------------------------------

Status StateDb::put_version(const VersionRow& row) {
  if (row.component.empty() || row.version.empty())
    return fail(Errc::invalid_argument, "save version: component and version must not be empty");
  std::string what = "save version " + row.component + " " + row.version;
  return transaction([&]() -> Status {
    auto st = Stmt::prepare(*conn_,
                            "INSERT OR REPLACE INTO versions(component, version, index_sha256, "
                            "manifest, size, installed_at, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            what);
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    st->bind_text(1, row.component).bind_text(2, row.version).bind_text(3, row.index_sha256);
    st->bind_text(4, detail::dump_json(row.manifest)).bind_int(5, static_cast<int64_t>(row.size));
    st->bind_int(6, row.installed_at_ms ? row.installed_at_ms : now_ms());
    return st->bind_text(7, row.status.empty() ? std::string("committed") : row.status).run();
  });
}

Result<bool> StateDb::delete_version(std::string_view component, std::string_view version) {
  bool removed = false;
  MUP_TRY(transaction([&]() -> Status {
    auto st =
        Stmt::prepare(*conn_, "DELETE FROM versions WHERE component = ? AND version = ?",
                      "delete version " + std::string(component) + " " + std::string(version));
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    MUP_TRY(st->bind_text(1, component).bind_text(2, version).run());
    removed = conn_->changes() > 0;
    return {};
  }));
  return removed;
}

Result<std::vector<VersionRow>> StateDb::versions(std::string_view component) {
  auto st =
      Stmt::prepare(*conn_,
                    "SELECT component, version, index_sha256, manifest, size, installed_at, "
                    "status FROM versions WHERE component = ? ORDER BY installed_at DESC, version",
                    "list versions of " + in_quotes(component));
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_text(1, component);
  return collect<VersionRow>(*st, [](const Stmt& s) -> Result<VersionRow> {
    VersionRow v;
    v.component = s.col_text(0);
    v.version = s.col_text(1);
    v.index_sha256 = s.col_text(2);
    auto m = detail::parse_json(s.col_text(3),
                                "manifest of " + v.component + " " + v.version + " in the state");
    if (!m) return tl::unexpected<Error>(std::move(m).error());
    v.manifest = std::move(*m);
    v.size = static_cast<uint64_t>(s.col_int(4));
    v.installed_at_ms = s.col_int(5);
    v.status = s.col_text(6);
    return v;
  });
}

Status StateDb::set_version_status(std::string_view component, std::string_view version,
                                   std::string_view status) {
  std::string what =
      "mark " + std::string(component) + " " + std::string(version) + " " + std::string(status);
  return transaction([&]() -> Status {
    auto st = Stmt::prepare(
        *conn_, "UPDATE versions SET status = ? WHERE component = ? AND version = ?", what);
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    MUP_TRY(st->bind_text(1, status).bind_text(2, component).bind_text(3, version).run());
    if (conn_->changes() == 0)
      return fail(Errc::not_found, what + ": the version has no row in " + path().string());
    return {};
  });
}

// --- Snapshots ----------------------------------------------------------------------

Status StateDb::add_snapshot(const SnapshotRow& row) {
  if (row.id.empty() || row.path.empty())
    return fail(Errc::invalid_argument, "add snapshot: id and path must not be empty");
  std::string what = "add snapshot " + in_quotes(row.id);
  Status r = transaction([&]() -> Status {
    auto st = Stmt::prepare(*conn_,
                            "INSERT INTO snapshots(id, component, version, created_at, "
                            "content_hash, path, files, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            what);
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    st->bind_text(1, row.id).bind_text(2, row.component).bind_text(3, row.version);
    st->bind_int(4, row.created_at_ms ? row.created_at_ms : now_ms());
    st->bind_text(5, row.content_hash).bind_text(6, row.path);
    st->bind_int(7, static_cast<int64_t>(row.files)).bind_int(8, static_cast<int64_t>(row.bytes));
    return st->run();
  });
  if (!r && r.error().code() == Errc::already_exists)
    return fail(Errc::already_exists,
                what + ": a snapshot with that id is already recorded in " + path().string());
  return r;
}

Result<bool> StateDb::delete_snapshot(std::string_view id) {
  bool removed = false;
  MUP_TRY(transaction([&]() -> Status {
    auto st = Stmt::prepare(*conn_, "DELETE FROM snapshots WHERE id = ?",
                            "delete snapshot " + in_quotes(id));
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    MUP_TRY(st->bind_text(1, id).run());
    removed = conn_->changes() > 0;
    return {};
  }));
  return removed;
}

Result<std::vector<SnapshotRow>> StateDb::snapshots(std::string_view component) {
  auto st = Stmt::prepare(*conn_,
                          "SELECT id, component, version, created_at, content_hash, path, files, "
                          "bytes FROM snapshots WHERE (?1 = '' OR component = ?1) "
                          "ORDER BY created_at DESC, id",
                          "list snapshots");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_text(1, component);
  return collect<SnapshotRow>(*st, [](const Stmt& s) -> Result<SnapshotRow> {
    SnapshotRow r;
    r.id = s.col_text(0);
    r.component = s.col_text(1);
    r.version = s.col_text(2);
    r.created_at_ms = s.col_int(3);
    r.content_hash = s.col_text(4);
    r.path = s.col_text(5);
    r.files = static_cast<uint64_t>(s.col_int(6));
    r.bytes = static_cast<uint64_t>(s.col_int(7));
    return r;
  });
}

}  // namespace mup::state
