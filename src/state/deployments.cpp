// StateDb: the agent's deployments (schema 6).
#include <utility>

#include "state/sqlite.hpp"
#include "state/state_db.hpp"

namespace mup::state {

using detail::Stmt;

namespace {

constexpr const char* kColumns =
    "id, component, from_version, to_version, strategy, state, reason, actor, detail, "
    "started_at, updated_at, finished_at";

Result<DeploymentRow> read_row(const Stmt& s) {
  DeploymentRow r;
  r.id = s.col_int(0);
  r.component = s.col_text(1);
  r.from_version = s.col_text(2);
  r.to_version = s.col_text(3);
  r.strategy = s.col_text(4);
  r.state = s.col_text(5);
  r.reason = s.col_text(6);
  r.actor = s.col_text(7);
  auto d = detail::parse_json(s.col_text(8), "detail of deployment " + std::to_string(r.id));
  // A detail that is not JSON reads as null: the deployment module treats it as unknown.
  r.detail = d ? std::move(*d) : nlohmann::json();
  r.started_at_ms = s.col_int(9);
  r.updated_at_ms = s.col_int(10);
  r.finished_at_ms = s.col_int(11);
  return r;
}

Result<std::vector<DeploymentRow>> collect_rows(Stmt& st) {
  std::vector<DeploymentRow> out;
  for (;;) {
    auto row = st.step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row) return out;
    auto r = read_row(st);
    if (!r) return tl::unexpected<Error>(std::move(r).error());
    out.push_back(std::move(*r));
  }
}

}  // namespace

Result<int64_t> StateDb::begin_deployment(DeploymentRow row) {
  if (row.component.empty() || row.strategy.empty() || row.state.empty())
    return fail(Errc::invalid_argument,
                "begin deployment: component, strategy and state must not be empty");
  const std::string what = "begin deployment of '" + row.component + "'";
  int64_t id = 0;
  Status r = transaction([&]() -> Status {
    const int64_t now = row.started_at_ms ? row.started_at_ms : now_ms();
    auto st = Stmt::prepare(*conn_,
                            "INSERT INTO deployments(component, from_version, to_version, "
                            "strategy, state, reason, actor, detail, started_at, updated_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            what);
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    st->bind_text(1, row.component).bind_text(2, row.from_version).bind_text(3, row.to_version);
    st->bind_text(4, row.strategy).bind_text(5, row.state).bind_text(6, row.reason);
    st->bind_text(7, row.actor.empty() ? current_actor() : row.actor);
    st->bind_text(
        8, detail::dump_json(row.detail.is_object() ? row.detail : nlohmann::json::object()));
    st->bind_int(9, now).bind_int(10, now);
    MUP_TRY(st->run());
    id = conn_->last_insert_rowid();
    auto step = Stmt::prepare(
        *conn_, "INSERT INTO deployment_steps(deployment, seq, state, at) VALUES (?, 1, ?, ?)",
        what);
    if (!step) return tl::unexpected<Error>(std::move(step).error());
    return step->bind_int(1, id).bind_text(2, row.state).bind_int(3, now).run();
  });
  if (!r && r.error().code() == Errc::already_exists)
    return fail(Errc::busy, what + ": a deployment of that component is still running");
  if (!r) return tl::unexpected<Error>(std::move(r).error());
  return id;
}

Status StateDb::update_deployment(const DeploymentRow& row) {
  const std::string what = "update deployment " + std::to_string(row.id);
  return transaction([&]() -> Status {
    auto old = deployment(row.id);
    if (!old) return tl::unexpected<Error>(std::move(old).error());
    if (!*old) return fail(Errc::not_found, what + ": no such deployment in " + path().string());
    const int64_t now = now_ms();
    auto st = Stmt::prepare(*conn_,
                            "UPDATE deployments SET from_version = ?, to_version = ?, state = ?, "
                            "reason = ?, detail = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                            what);
    if (!st) return tl::unexpected<Error>(std::move(st).error());
    st->bind_text(1, row.from_version).bind_text(2, row.to_version).bind_text(3, row.state);
    st->bind_text(4, row.reason);
    st->bind_text(
        5, detail::dump_json(row.detail.is_object() ? row.detail : nlohmann::json::object()));
    st->bind_int(6, now).bind_int(7, row.finished_at_ms).bind_int(8, row.id);
    MUP_TRY(st->run());
    if ((*old)->state == row.state) return {};
    auto step = Stmt::prepare(*conn_,
                              "INSERT INTO deployment_steps(deployment, seq, state, at) "
                              "SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3 FROM deployment_steps "
                              "WHERE deployment = ?1",
                              what);
    if (!step) return tl::unexpected<Error>(std::move(step).error());
    return step->bind_int(1, row.id).bind_text(2, row.state).bind_int(3, now).run();
  });
}

Result<std::optional<DeploymentRow>> StateDb::deployment(int64_t id) {
  auto st =
      Stmt::prepare(*conn_, std::string("SELECT ") + kColumns + " FROM deployments WHERE id = ?",
                    "read deployment " + std::to_string(id));
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_int(1, id);
  auto rows = collect_rows(*st);
  if (!rows) return tl::unexpected<Error>(std::move(rows).error());
  if (rows->empty()) return std::optional<DeploymentRow>();
  return std::optional<DeploymentRow>(std::move(rows->front()));
}

Result<std::vector<DeploymentRow>> StateDb::deployments(std::string_view component, size_t limit) {
  auto st = Stmt::prepare(*conn_,
                          std::string("SELECT ") + kColumns +
                              " FROM deployments WHERE (?1 = '' OR component = ?1) "
                              "ORDER BY id DESC LIMIT ?2",
                          "list deployments");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_text(1, component).bind_int(2, limit ? static_cast<int64_t>(limit) : -1);
  return collect_rows(*st);
}

Result<std::vector<DeploymentRow>> StateDb::unfinished_deployments() {
  auto st = Stmt::prepare(
      *conn_,
      std::string("SELECT ") + kColumns + " FROM deployments WHERE finished_at = 0 ORDER BY id",
      "list unfinished deployments");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  return collect_rows(*st);
}

Result<std::vector<StepRecord>> StateDb::deployment_steps(int64_t id) {
  auto st =
      Stmt::prepare(*conn_,
                    "SELECT seq, state, detail, at FROM deployment_steps WHERE deployment = ? "
                    "ORDER BY seq",
                    "list steps of deployment " + std::to_string(id));
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
    auto d = detail::parse_json(st->col_text(2), "deployment step");
    s.detail = d ? std::move(*d) : nlohmann::json();
    s.at_ms = st->col_int(3);
    out.push_back(std::move(s));
  }
}

// --- Plans (schema 7).

namespace {

Result<std::vector<PlanRow>> collect_plans(Stmt& st) {
  std::vector<PlanRow> out;
  for (;;) {
    auto row = st.step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row) return out;
    PlanRow r;
    r.id = st.col_int(0);
    r.state = st.col_text(1);
    auto b = detail::parse_json(st.col_text(2), "body of plan " + std::to_string(r.id));
    r.body = b ? std::move(*b) : nlohmann::json();  // unreadable: null, the caller's to judge
    r.created_at_ms = st.col_int(3);
    r.updated_at_ms = st.col_int(4);
    r.finished_at_ms = st.col_int(5);
    out.push_back(std::move(r));
  }
}

constexpr const char* kPlanColumns = "id, state, body, created_at, updated_at, finished_at";

}  // namespace

Result<int64_t> StateDb::begin_plan(const PlanRow& row) {
  auto st = Stmt::prepare(
      *conn_, "INSERT INTO plans(state, body, created_at, updated_at) VALUES (?, ?, ?, ?)",
      "begin plan");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  const int64_t now = now_ms();
  st->bind_text(1, row.state.empty() ? "running" : row.state)
      .bind_text(2, detail::dump_json(row.body.is_object() ? row.body : nlohmann::json::object()))
      .bind_int(3, now)
      .bind_int(4, now);
  MUP_TRY(st->run());
  return conn_->last_insert_rowid();
}

Status StateDb::update_plan(const PlanRow& row) {
  const std::string what = "update plan " + std::to_string(row.id);
  auto st = Stmt::prepare(
      *conn_, "UPDATE plans SET state = ?, body = ?, updated_at = ?, finished_at = ? WHERE id = ?",
      what);
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_text(1, row.state)
      .bind_text(2, detail::dump_json(row.body.is_object() ? row.body : nlohmann::json::object()))
      .bind_int(3, now_ms())
      .bind_int(4, row.finished_at_ms)
      .bind_int(5, row.id);
  MUP_TRY(st->run());
  if (conn_->changes() == 0)
    return fail(Errc::not_found, what + ": no such plan in " + path().string());
  return {};
}

Result<std::optional<PlanRow>> StateDb::plan(int64_t id) {
  auto st =
      Stmt::prepare(*conn_, std::string("SELECT ") + kPlanColumns + " FROM plans WHERE id = ?",
                    "read plan " + std::to_string(id));
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_int(1, id);
  auto rows = collect_plans(*st);
  if (!rows) return tl::unexpected<Error>(std::move(rows).error());
  if (rows->empty()) return std::optional<PlanRow>();
  return std::optional<PlanRow>(std::move(rows->front()));
}

Result<std::vector<PlanRow>> StateDb::unfinished_plans() {
  auto st = Stmt::prepare(
      *conn_,
      std::string("SELECT ") + kPlanColumns + " FROM plans WHERE finished_at = 0 ORDER BY id",
      "list unfinished plans");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  return collect_plans(*st);
}

}  // namespace mup::state
