// The deployer: a thread per running deployment walking the table of deployment.cpp.
#include "deploy/deployer.hpp"

#include <algorithm>

#include "core/fault.hpp"

namespace mup::deploy {

using state::json_int;
using state::json_str;

namespace {

std::string_view code_name_of(int v) {
  switch (static_cast<Code>(v)) {
    case Code::busy: return "busy";
    case Code::not_found: return "not_found";
    case Code::bad_request: return "bad_request";
    case Code::not_running: return "not_running";
    case Code::not_a_service: return "not_a_service";
  }
  return "unknown";
}

}  // namespace

const ErrorCategory& deploy_category() {
  static const ErrorCategory cat{"deploy", &code_name_of};
  return cat;
}

nlohmann::json deployment_json(const state::DeploymentRow& row,
                               const std::vector<state::StepRecord>& steps) {
  nlohmann::json j = {
      {"id", row.id},
      {"component", row.component},
      {"from_version", row.from_version},
      {"to_version", row.to_version},
      {"strategy", row.strategy},
      {"state", row.state},
      {"final", row.finished_at_ms != 0},
      {"reason", row.reason},
      {"actor", row.actor},
      {"created_at", iso_utc(row.started_at_ms)},
      {"finished_at",
       row.finished_at_ms ? nlohmann::json(iso_utc(row.finished_at_ms)) : nlohmann::json(nullptr)},
      {"started_at_ms", row.started_at_ms},
      {"finished_at_ms", row.finished_at_ms},
      {"duration_ms",
       (row.finished_at_ms ? row.finished_at_ms : row.updated_at_ms) - row.started_at_ms}};
  const nlohmann::json& d = row.detail.is_object() ? row.detail : nlohmann::json::object();
  // A scheduled deployment started when its wait ended (null until then).
  if (auto at = json_int(d, "scheduled_for_ms", 0)) {
    j["scheduled_for"] = iso_utc(at);
    j["scheduled_for_ms"] = at;
    const int64_t began = json_int(d, "started_at_ms", 0);
    j["started_at"] = began ? nlohmann::json(iso_utc(began)) : nlohmann::json(nullptr);
    j["started_at_ms"] = began;
  } else {
    j["started_at"] = iso_utc(row.started_at_ms);
  }
  j["traffic"] = d.contains("traffic") ? d["traffic"] : nlohmann::json::object();
  if (auto it = d.find("window"); it != d.end() && it->is_object()) {
    j["keep_old_until"] = iso_utc(json_int(*it, "until", 0));
    j["window_open"] = it->value("open", false);
  } else {
    j["keep_old_until"] = nullptr;
  }
  if (d.contains("rolled_back_by")) j["rolled_back_by"] = d["rolled_back_by"];
  if (d.contains("decision")) j["decision"] = d["decision"];
  if (auto w = d.find("window_sched"); w != d.end() && w->is_object())
    j["window"] = {{"cron", w->value("cron", "")},
                   {"tz", w->value("tz", "")},
                   {"duration_ms", json_int(*w, "ms", 0)},
                   {"close", w->value("close", "")},
                   {"opens_at", iso_utc(json_int(*w, "start_ms", 0))},
                   {"closes_at", iso_utc(json_int(*w, "closes_at_ms", 0))}};
  if (auto w = d.find("watch"); w != d.end() && w->is_object()) {
    nlohmann::json wj = {{"open", w->value("open", false)},
                         {"until", iso_utc(json_int(*w, "until", 0))},
                         {"result", w->value("result", "watching")}};
    if (w->contains("decision")) wj["decision"] = (*w)["decision"];
    j["watch"] = std::move(wj);
  }
  if (d.contains("warnings")) j["warnings"] = d["warnings"];
  if (d.contains("checks")) j["checks"] = d["checks"];
  if (auto at = json_int(d, "rolled_back_at_ms", 0)) {
    j["rolled_back_at"] = iso_utc(at);
    j["rolled_back_at_ms"] = at;
  }
  if (d.contains("batch_size"))
    j["rolling"] = {{"batch_size", json_int(d, "batch_size", 1)},
                    {"batch", json_int(d, "step", 0)},
                    {"batch_interval_ms", json_int(d, "step_ms", 0)}};
  if (d.contains("steps") && d["steps"].is_array()) {
    j["canary"] = {{"steps", d["steps"]},
                   {"pauses", d.value("pauses", nlohmann::json::array())},
                   {"paused", d.value("paused", false)},
                   {"step", json_int(d, "step", 0)},
                   {"step_ms", json_int(d, "step_ms", 0)}};
  }
  if (d.contains("rollback_of")) j["rollback_of"] = d["rollback_of"];
  if (!steps.empty()) {
    nlohmann::json s = nlohmann::json::array();
    for (const auto& st : steps)
      s.push_back({{"state", st.step}, {"at", iso_utc(st.at_ms)}, {"at_ms", st.at_ms}});
    j["steps"] = std::move(s);
  }
  return j;
}

Deployer::Deployer(DeployerOptions opts, Node& node, DataPlane& plane)
    : opts_(std::move(opts)),
      node_(node),
      plane_(plane),
      clock_(opts_.clock ? *opts_.clock : system_clock()) {}

Result<std::unique_ptr<Deployer>> Deployer::open(DeployerOptions opts, Node& node,
                                                 DataPlane& plane) {
  std::unique_ptr<Deployer> d(new Deployer(std::move(opts), node, plane));
  auto db = d->connect();
  if (!db) return tl::unexpected(db.error().context("while opening the deployer"));
  return d;
}

Deployer::~Deployer() {
  stopping_ = true;
  {
    std::lock_guard lk(mu_);
    for (auto& [c, job] : jobs_) job->cancel = true;
  }
  for (auto& [c, t] : threads_)
    if (t.joinable()) t.join();
  std::vector<std::thread> plans;
  {
    std::lock_guard lk(mu_);
    plans.swap(plan_threads_);
  }
  for (auto& t : plans)
    if (t.joinable()) t.join();
}

Result<state::StateDb> Deployer::connect() const {
  if (!opts_.connect) return fail(Errc::internal, "the deployer has no state database");
  return opts_.connect();
}

void Deployer::notify(const state::DeploymentRow& row) {
  changed_.notify_all();
  if (opts_.on_event) {
    nlohmann::json e = deployment_json(row);
    e["event"] = "deployment";
    opts_.on_event(e);
  }
}

bool Deployer::running(const std::string& component) const {
  std::lock_guard lk(mu_);
  auto it = jobs_.find(component);
  return it != jobs_.end() && !it->second->done;
}

// Why component@version is bad (the judge or the watch rolled it back), or "".
Result<std::string> Deployer::marked_bad(state::StateDb& db, const std::string& component,
                                         const std::string& version) {
  auto rows = db.deployments(component, 500);
  if (!rows) return tl::unexpected(rows.error());
  for (const auto& r : *rows) {
    if (r.to_version != version || !r.detail.is_object()) continue;
    const auto& d = r.detail;
    const std::string verdict = d.contains("decision") && d["decision"].is_object()
                                    ? d["decision"].value("verdict", "")
                                    : "";
    const std::string watched =
        d.contains("watch") && d["watch"].is_object() ? d["watch"].value("result", "") : "";
    if ((r.state == "rolled-back" && (verdict == "rollback" || verdict == "no-data")) ||
        watched == "rolled-back")
      return "deployment " + std::to_string(r.id) + " was rolled back by the " +
             (watched == "rolled-back" ? "watch after commit" : "judge") + " (" + r.reason + ")";
  }
  return std::string();
}

Result<state::DeploymentRow> Deployer::start(const DeployRequest& req) {
  if (req.component.empty()) return fail(Code::bad_request, "component: missing");
  if (req.keep_old_ms < 0 || req.soak_ms < 0 || req.analysis_ms < 0 || req.step_ms < 0)
    return fail(Code::bad_request,
                "keep_old_ms, soak_ms, analysis_ms and step_ms must not be negative");
  for (size_t i = 0; i < req.steps.size(); ++i)
    if (req.steps[i] < 1 || req.steps[i] > 100 || (i && req.steps[i] <= req.steps[i - 1]))
      return fail(Code::bad_request,
                  "steps: weights of the new version in percent, ascending, 1..100 (e.g. "
                  "5,25,50,100)");
  if (!req.steps.empty() && req.strategy != Strategy::canary)
    return fail(Code::bad_request, "steps: only for the canary strategy");
  if (auto p = rollback::policy_from_json(req.policy); !p)
    return fail(Code::bad_request, p.error().message());
  auto db = connect();
  if (!db) return tl::unexpected(db.error());
  if (!req.force && !req.version.empty() && req.strategy != Strategy::rollback) {
    auto bad = marked_bad(*db, req.component, req.version);
    if (!bad) return tl::unexpected(bad.error());
    if (!bad->empty())
      return fail(Code::bad_request, req.component + " " + req.version + " is marked bad: " + *bad +
                                         "; deploy it again with --force (\"force\": true)");
  }
  state::DeploymentRow row;
  row.component = req.component;
  row.strategy = std::string(strategy_name(req.strategy));
  nlohmann::json window;
  int64_t scheduled_for_ms = req.scheduled_for_ms;
  if (!req.window.empty()) {
    auto cron = parse_cron(req.window);
    if (!cron) return fail(Code::bad_request, cron.error().message());
    auto tz = parse_tz_offset(req.window_tz);
    if (!tz) return fail(Code::bad_request, "window_tz: " + tz.error().message());
    if (req.window_close != "finish" && req.window_close != "rollback")
      return fail(Code::bad_request,
                  "window_close: '" + req.window_close +
                      "' is not finish or rollback (pausing a deployment at the window's end "
                      "is not built)");
    if (req.window_ms < 60000) return fail(Code::bad_request, "window_ms: at least a minute");
    auto w = window_at_or_after(*cron, clock_.wall_ms(), req.window_ms, *tz);
    if (!w) return fail(Code::bad_request, "window: '" + req.window + "' never matches");
    scheduled_for_ms = w->start_ms;
    window = {{"cron", req.window},       {"tz", req.window_tz},       {"tz_min", *tz},
              {"ms", req.window_ms},      {"close", req.window_close}, {"start_ms", w->start_ms},
              {"closes_at_ms", w->end_ms}};
  }
  const bool scheduled = scheduled_for_ms > clock_.wall_ms();
  row.state = std::string(state_name(scheduled ? State::scheduled : State::install));
  row.actor = req.actor;
  row.reason = req.reason;
  row.to_version = req.version;
  row.detail = {{"requested_version", req.version},
                {"keep_old_ms", req.keep_old_ms},
                {"soak_ms", req.soak_ms},
                {"analysis_ms", req.analysis_ms},
                {"policy", req.policy}};
  if (req.force) row.detail["force"] = true;
  if (scheduled) row.detail["scheduled_for_ms"] = scheduled_for_ms;
  if (!window.is_null()) row.detail["window_sched"] = window;
  if (req.strategy == Strategy::rolling) {
    if (req.batch_size < 1) return fail(Code::bad_request, "batch_size: at least 1");
    row.detail["batch_size"] = req.batch_size;
    row.detail["step_ms"] = req.step_ms;
  }
  if (req.strategy == Strategy::canary) {
    row.detail["steps"] = req.steps.empty() ? kDefaultCanarySteps : req.steps;
    row.detail["pauses"] = req.pauses;
    row.detail["step_ms"] = req.step_ms;
  }
  if (req.strategy == Strategy::rollback) {
    row.from_version = node_.active(req.component).value_or("");
    if (req.rollback_of) row.detail["rollback_of"] = req.rollback_of;
  }
  {
    std::lock_guard lk(mu_);
    if (stopping_) return fail(Code::busy, "the agent is stopping");
    auto it = jobs_.find(req.component);
    if (it != jobs_.end() && !it->second->done)
      return fail(Code::busy, "a deployment of " + req.component + " is running (id " +
                                  std::to_string(it->second->id) +
                                  "): wait for it, or mup abort it");
    auto id = db->begin_deployment(row);
    if (!id) {
      if (id.error().code() == Errc::busy) return fail(Code::busy, id.error().message());
      return tl::unexpected(id.error());
    }
    row.id = *id;
  }
  launch(row.id, row.component);
  auto fresh = db->deployment(row.id);
  if (fresh && *fresh) row = **fresh;
  return row;
}

void Deployer::launch(int64_t id, const std::string& component) {
  auto job = std::make_shared<Job>();
  job->id = id;
  job->component = component;
  std::lock_guard lk(mu_);
  jobs_[component] = job;
  // The component's previous deployment thread has ended (its job was done, or there would
  // be no launch): joined here, so a long-running agent keeps one thread per component.
  std::thread& t = threads_[component];
  if (t.joinable()) t.join();
  t = std::thread([this, job] { run(job); });
}

Result<state::DeploymentRow> Deployer::rollback(const std::string& component,
                                                const std::string& actor,
                                                const std::string& reason) {
  {
    std::lock_guard lk(mu_);
    auto it = jobs_.find(component);
    if (it != jobs_.end() && !it->second->done) {
      it->second->request = static_cast<int>(Request::rollback);
      it->second->cancel = true;
      int64_t id = it->second->id;
      auto db = connect();
      if (!db) return tl::unexpected(db.error());
      auto row = db->deployment(id);
      if (!row) return tl::unexpected(row.error());
      if (*row) return **row;
    }
  }
  auto active = node_.active(component);
  if (!active) return fail(Code::not_found, component + " has no active version");
  // Back to the version the last deployment came from, else the engine's previous.
  auto db = connect();
  if (!db) return tl::unexpected(db.error());
  auto last = db->deployments(component, 1);
  if (!last) return tl::unexpected(last.error());
  std::string target;
  int64_t of = 0;
  if (!last->empty() && (*last)[0].to_version == *active && !(*last)[0].from_version.empty()) {
    target = (*last)[0].from_version;
    of = (*last)[0].id;
  } else if (auto p = node_.previous(component)) {
    target = *p;
  }
  if (target.empty())
    return fail(Code::not_found, component +
                                     " has no previous version to roll "
                                     "back to (mup versions " +
                                     component + ")");
  DeployRequest req;
  req.component = component;
  req.version = target;
  req.strategy = Strategy::rollback;
  req.actor = actor;
  req.rollback_of = of;
  req.reason = reason;
  auto row = start(req);
  return row;
}

Result<state::DeploymentRow> Deployer::abort(int64_t id) {
  auto db = connect();
  if (!db) return tl::unexpected(db.error());
  auto row = db->deployment(id);
  if (!row) return tl::unexpected(row.error());
  if (!*row) return fail(Code::not_found, "no deployment " + std::to_string(id));
  std::lock_guard lk(mu_);
  auto it = jobs_.find((*row)->component);
  if ((*row)->finished_at_ms || it == jobs_.end() || it->second->id != id || it->second->done)
    return fail(Code::not_running,
                "deployment " + std::to_string(id) + " is " + (*row)->state + ": nothing to abort");
  it->second->request = static_cast<int>(Request::abort);
  it->second->cancel = true;
  return **row;
}

Result<state::DeploymentRow> Deployer::promote(int64_t id) {
  auto db = connect();
  if (!db) return tl::unexpected(db.error());
  auto row = db->deployment(id);
  if (!row) return tl::unexpected(row.error());
  if (!*row) return fail(Code::not_found, "no deployment " + std::to_string(id));
  state::DeploymentRow r = **row;
  if (r.finished_at_ms) {
    auto w = r.detail.find("window");
    if (r.state != "committed" || w == r.detail.end() || !w->value("open", false))
      return fail(Code::not_running,
                  "deployment " + std::to_string(id) + " is " + r.state + " with no open window");
    Cancel never{false};
    MUP_TRY(close_window(*db, r, never));
    return r;
  }
  std::lock_guard lk(mu_);
  auto it = jobs_.find(r.component);
  if (it == jobs_.end() || it->second->id != id || it->second->done)
    return fail(Code::not_running, "deployment " + std::to_string(id) + " is not running here");
  it->second->request = static_cast<int>(Request::promote);
  return r;
}

void Deployer::resume_all() {
  auto db = connect();
  if (!db) return;
  auto rows = db->unfinished_deployments();
  if (!rows) return;
  for (const auto& r : *rows) {
    {
      std::lock_guard lk(mu_);
      auto it = jobs_.find(r.component);
      if (it != jobs_.end() && !it->second->done) continue;
    }
    launch(r.id, r.component);
  }
  resume_plans();
}

Status Deployer::close_window(state::StateDb& db, state::DeploymentRow& row, const Cancel& cancel) {
  auto w = row.detail.find("window");
  if (w == row.detail.end() || !w->is_object() || !w->value("open", false)) return {};
  const std::string old = json_str(*w, "old");
  if (!old.empty() && old != node_.active(row.component).value_or("")) {
    auto weights = plane_.weights(row.component);
    weights.erase(old);
    MUP_TRY(plane_.route(row.component, weights));
    (void)plane_.wait_drained(row.component, old, cancel);  // drain_ms bounds it; stop follows
    MUP_TRY(plane_.stop(row.component, old));
  }
  (*w)["open"] = false;
  (*w)["closed_at"] = clock_.wall_ms();
  row.detail["traffic"] = plane_.weights(row.component);
  MUP_TRY(db.update_deployment(row));
  notify(row);
  return {};
}

void Deployer::tick() {
  auto rows = list({}, 200);
  if (!rows) return;
  std::optional<state::StateDb> db;  // opened only when a window must close
  const int64_t now = clock_.wall_ms();
  std::map<std::string, bool> seen;
  for (auto& r : *rows) {
    if (seen[r.component]) continue;  // only a component's newest deployment has a window
    seen[r.component] = true;
    auto w = r.detail.find("window");
    if (r.state != "committed" || w == r.detail.end() || !w->is_object() ||
        !w->value("open", false) || json_int(*w, "until", 0) > now || running(r.component))
      continue;
    if (!db) {
      auto c = connect();
      if (!c) return;
      db.emplace(std::move(*c));
    }
    Cancel never{false};
    (void)close_window(*db, r, never);  // retried on the next tick when it fails
  }
  // Maintenance windows that closed mid-deployment, with close = rollback.
  for (auto& r : *rows) {
    if (r.finished_at_ms) continue;
    auto w = r.detail.find("window_sched");
    auto st = parse_state(r.state);
    if (w == r.detail.end() || !w->is_object() || w->value("close", "") != "rollback" ||
        json_int(*w, "closes_at_ms", 0) > now || !st || *st == State::scheduled ||
        is_undoing(*st) || *st == State::commit)
      continue;
    std::lock_guard lk(mu_);
    auto it = jobs_.find(r.component);
    if (it == jobs_.end() || it->second->id != r.id || it->second->done || it->second->request)
      continue;
    it->second->why = "the maintenance window closed at " +
                      iso_utc(json_int(*w, "closes_at_ms", 0)) + " before the deployment ended";
    it->second->request = static_cast<int>(Request::rollback);
    it->second->cancel = true;
  }
  seen.clear();
  for (auto& r : *rows) {
    if (seen[r.component]) continue;
    seen[r.component] = true;
    auto w = r.detail.find("watch");
    if (r.state != "committed" || w == r.detail.end() || !w->is_object() ||
        !w->value("open", false) || running(r.component))
      continue;
    watch(r, now);
  }
}

Result<state::DeploymentRow> Deployer::wait(int64_t id, std::chrono::milliseconds timeout) {
  auto db = connect();
  if (!db) return tl::unexpected(db.error());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto row = db->deployment(id);
    if (!row) return tl::unexpected(row.error());
    if (!*row) return fail(Code::not_found, "no deployment " + std::to_string(id));
    if ((*row)->finished_at_ms || std::chrono::steady_clock::now() >= deadline) return **row;
    std::unique_lock lk(mu_);
    changed_.wait_for(lk, std::chrono::milliseconds(100));
  }
}

// Reads share one connection (opening one costs a schema check: the API polls often).
template <typename F>
auto Deployer::with_reader(F&& read) -> decltype(read(std::declval<state::StateDb&>())) {
  std::lock_guard lk(read_mu_);
  if (!reader_) {
    auto db = connect();
    if (!db) return tl::unexpected(db.error());
    reader_ = std::make_unique<state::StateDb>(std::move(*db));
  }
  auto r = read(*reader_);
  if (!r) reader_.reset();  // a broken connection is opened afresh next time
  return r;
}

Result<std::optional<state::DeploymentRow>> Deployer::get(int64_t id) {
  return with_reader([&](state::StateDb& db) { return db.deployment(id); });
}

Result<std::vector<state::DeploymentRow>> Deployer::list(const std::string& component,
                                                         size_t limit) {
  return with_reader([&](state::StateDb& db) { return db.deployments(component, limit); });
}

Result<std::vector<state::StepRecord>> Deployer::steps(int64_t id) {
  return with_reader([&](state::StateDb& db) { return db.deployment_steps(id); });
}

}  // namespace mup::deploy
