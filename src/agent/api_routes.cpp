// The agent's API (docs/agent.md): each handler parses, calls one deployer / engine /
// runtime function, and answers. Errors carry the module code ("deploy.busy") and the field
// a 400 is about.
#include <algorithm>
#include <charconv>
#include <set>

#include "agent/internal.hpp"
#include "deploy/deployment.hpp"
#include "deploy/plan.hpp"
#include "state/state_db.hpp"

namespace mup::agent {

namespace {

using api::Request;
using api::Response;
using nlohmann::json;

Response from_error(const Error& e) {
  int status = 500;
  if (e.is(deploy::Code::busy) || e.is(deploy::Code::not_running) || e.code() == Errc::busy)
    status = 409;
  else if (e.is(deploy::Code::not_found) || e.is(deploy::Code::not_a_service) ||
           e.code() == Errc::not_found)
    status = 404;
  else if (e.is(deploy::Code::bad_request) || e.code() == Errc::invalid_argument)
    status = 400;
  return Response::error(status, e.code_string(), e.message());
}

std::optional<int64_t> parse_id(const std::string& s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

// A duration field: milliseconds as an integer (`<name>_ms`) or a string like "10m" (`<name>`).
std::optional<Response> read_duration(const json& body, const std::string& name, int64_t& out) {
  const std::string ms = name + "_ms";
  if (body.contains(ms)) {
    if (!body[ms].is_number_integer() || body[ms].get<int64_t>() < 0)
      return Response::error(400, "bad_request", ms + " must be a non-negative integer", ms);
    out = body[ms].get<int64_t>();
  }
  if (body.contains(name)) {
    if (!body[name].is_string())
      return Response::error(400, "bad_request", name + " must be a string like \"30s\"", name);
    auto d = parse_duration_ms(body[name].get<std::string>());
    if (!d) return Response::error(400, "bad_request", name + ": " + d.error().message(), name);
    out = *d;
  }
  return std::nullopt;
}

// The judge's and the schedule's fields of POST /v1/deployments: at (RFC 3339), steps,
// step_seconds, alpha, auto_rollback and policy (overrides of the version's [rollback] table; alpha
// and auto_rollback win over it).
std::optional<Response> read_judge_fields(const json& b, deploy::DeployRequest& req) {
  if (b.contains("steps")) {
    if (!b["steps"].is_array())
      return Response::error(400, "bad_request", "steps must be an array of percentages", "steps");
    for (const auto& v : b["steps"]) {
      if (!v.is_number_integer())
        return Response::error(400, "bad_request", "steps must be integers 1..100", "steps");
      req.steps.push_back(v.get<int>());
    }
  }
  if (b.contains("pauses")) {
    if (!b["pauses"].is_array())
      return Response::error(400, "bad_request", "pauses must be an array of step weights",
                             "pauses");
    for (const auto& v : b["pauses"]) {
      if (!v.is_number_integer() ||
          std::find(req.steps.begin(), req.steps.end(), v.get<int>()) == req.steps.end())
        return Response::error(400, "bad_request", "pauses: each must be one of the steps",
                               "pauses");
      req.pauses.push_back(v.get<int>());
    }
  }
  if (b.contains("step_seconds")) {
    if (!b["step_seconds"].is_number() || b["step_seconds"].get<double>() < 0)
      return Response::error(400, "bad_request", "step_seconds must be a non-negative number",
                             "step_seconds");
    req.step_ms = static_cast<int64_t>(b["step_seconds"].get<double>() * 1000);
  }
  if (b.contains("at")) {
    auto at = b["at"].is_string() ? parse_rfc3339(b["at"].get<std::string>()) : std::nullopt;
    if (!at)
      return Response::error(400, "bad_request",
                             "at must be an RFC 3339 time, e.g. 2026-12-01T21:19:00Z", "at");
    if (*at < system_clock().wall_ms() - 5000)
      return Response::error(400, "bad_request",
                             "at: " + b["at"].get<std::string>() +
                                 " is in the past (now: " + iso_utc(system_clock().wall_ms()) + ")",
                             "at");
    req.scheduled_for_ms = *at;
  }
  const std::pair<const char*, std::string*> window_fields[] = {
      {"window", &req.window}, {"window_tz", &req.window_tz}, {"window_close", &req.window_close}};
  for (const auto& [f, field] : window_fields) {
    if (!b.contains(f)) continue;
    if (!b[f].is_string())
      return Response::error(400, "bad_request", std::string(f) + " must be a string", f);
    *field = b[f].get<std::string>();
  }
  if (b.contains("at") && b.contains("window"))
    return Response::error(400, "bad_request", "at and window: give one of them", "window");
  if (b.contains("batch_size")) {
    if (!b["batch_size"].is_number_integer() || b["batch_size"].get<int64_t>() < 1 ||
        b["batch_size"].get<int64_t>() > 64)
      return Response::error(400, "bad_request", "batch_size must be an integer 1..64",
                             "batch_size");
    req.batch_size = b["batch_size"].get<int>();
  }
  if (b.contains("force")) {
    if (!b["force"].is_boolean())
      return Response::error(400, "bad_request", "force must be true or false", "force");
    req.force = b["force"].get<bool>();
  }
  if (b.contains("policy")) {
    if (!b["policy"].is_object())
      return Response::error(400, "bad_request", "policy must be an object", "policy");
    req.policy = b["policy"];
  }
  if (b.contains("alpha")) {
    if (!b["alpha"].is_number())
      return Response::error(400, "bad_request", "alpha must be a number", "alpha");
    req.policy["alpha"] = b["alpha"];
  }
  if (b.contains("auto_rollback")) {
    if (!b["auto_rollback"].is_boolean())
      return Response::error(400, "bad_request", "auto_rollback must be true or false",
                             "auto_rollback");
    req.policy["automatic"] = b["auto_rollback"];
  }
  return std::nullopt;
}

// A deployment request from a JSON body (POST /v1/deployments, and each item of a plan).
std::optional<Response> deploy_request_from(const AgentConfig& config, const json& b,
                                            deploy::DeployRequest& req) {
  if (!b.is_object() || !b.contains("component") || !b["component"].is_string() ||
      b["component"].get<std::string>().empty())
    return Response::error(400, "bad_request", "component: a non-empty string is required",
                           "component");
  req.component = b["component"].get<std::string>();
  req.actor = b.value("actor", "agent");
  if (b.contains("version")) {
    if (!b["version"].is_string())
      return Response::error(400, "bad_request", "version must be a string", "version");
    req.version = b["version"].get<std::string>();
  }
  std::string strategy = config.strategy;
  if (b.contains("strategy")) {
    if (!b["strategy"].is_string())
      return Response::error(400, "bad_request", "strategy must be a string", "strategy");
    strategy = b["strategy"].get<std::string>();
  }
  auto st = deploy::parse_strategy(strategy);
  if (!st || *st == deploy::Strategy::rollback)
    return Response::error(
        400, "bad_request",
        "strategy '" + strategy + "' is not one of immediate, blue-green, canary, rolling",
        "strategy");
  req.strategy = *st;
  req.keep_old_ms = config.keep_old_ms;
  req.soak_ms = config.soak_ms;
  if (auto bad = read_duration(b, "keep_old", req.keep_old_ms)) return *bad;
  if (auto bad = read_duration(b, "soak", req.soak_ms)) return *bad;
  if (auto bad = read_duration(b, "analysis", req.analysis_ms)) return *bad;
  if (auto bad = read_duration(b, "batch_interval", req.step_ms)) return *bad;
  if (auto bad = read_duration(b, "step", req.step_ms)) return *bad;
  if (auto bad = read_duration(b, "window_duration", req.window_ms)) return *bad;
  if (auto bad = read_judge_fields(b, req)) return *bad;
  static const std::set<std::string> kFields = {"component",
                                                "version",
                                                "strategy",
                                                "keep_old",
                                                "keep_old_ms",
                                                "soak",
                                                "soak_ms",
                                                "actor",
                                                "analysis",
                                                "analysis_ms",
                                                "step",
                                                "step_ms",
                                                "step_seconds",
                                                "steps",
                                                "alpha",
                                                "auto_rollback",
                                                "policy",
                                                "at",
                                                "window",
                                                "window_tz",
                                                "window_close",
                                                "window_duration",
                                                "window_duration_ms",
                                                "force",
                                                "batch_size",
                                                "batch_interval",
                                                "batch_interval_ms",
                                                "pauses"};
  for (const auto& [k, v] : b.items())
    if (!kFields.count(k))
      return Response::error(400, "bad_request", "unknown field '" + k + "'", k);
  return std::nullopt;
}

Response with_steps(deploy::Deployer& d, const state::DeploymentRow& row, int status = 200) {
  auto steps = d.steps(row.id);
  return {status, deploy::deployment_json(row, steps ? *steps : std::vector<state::StepRecord>{})};
}

}  // namespace

Status register_routes(Agent::Impl& a) {
  api::Server& s = *a.server;
  deploy::Deployer& d = *a.deployer;

  MUP_TRY(s.route("GET", "/v1/services",
                  [&a](const Request&) { return Response::ok(a.runtime->services_json()); }));
  MUP_TRY(s.route("GET", "/v1/status", [&a](const Request&) {
    auto st = a.engine->status();
    return st ? Response::ok(*st) : from_error(st.error());
  }));
  MUP_TRY(s.route("GET", "/v1/stats", [&a](const Request&) {
    auto st = a.runtime->proxy_stats();
    return st ? Response::ok(*st) : from_error(st.error());
  }));
  MUP_TRY(s.route("GET", "/v1/deployments", [&d](const Request& r) {
    std::string component;
    size_t limit = 50;
    if (auto it = r.query.find("component"); it != r.query.end()) component = it->second;
    if (auto it = r.query.find("limit"); it != r.query.end()) {
      auto n = parse_id(it->second);
      if (!n)
        return Response::error(400, "bad_request", "limit must be a positive integer", "limit");
      limit = static_cast<size_t>(*n);
    }
    auto rows = d.list(component, limit);
    if (!rows) return from_error(rows.error());
    json out = json::array();
    for (const auto& row : *rows) out.push_back(deploy::deployment_json(row));
    return Response::ok({{"deployments", out}});
  }));
  MUP_TRY(s.route("GET", "/v1/deployments/{id}", [&d](const Request& r) {
    auto id = parse_id(r.params.at("id"));
    if (!id) return Response::error(400, "bad_request", "id must be a positive integer", "id");
    auto row = d.get(*id);
    if (!row) return from_error(row.error());
    if (!*row)
      return Response::error(404, "deploy.not_found", "no deployment " + std::to_string(*id));
    return with_steps(d, **row);
  }));
  MUP_TRY(s.route("POST", "/v1/deployments", [&a, &d](const Request& r) {
    deploy::DeployRequest req;
    if (auto bad = deploy_request_from(a.config, r.body, req)) return *bad;
    auto row = d.start(req);
    if (!row) return from_error(row.error());
    return with_steps(d, *row, 202);
  }));
  MUP_TRY(s.route("POST", "/v1/plans", [&a, &d](const Request& r) {
    const json& b = r.body;
    if (!b.is_object() || !b.contains("items") || !b["items"].is_array() || b["items"].empty())
      return Response::error(400, "bad_request", "items: a non-empty array of deployments",
                             "items");
    deploy::PlanRequest plan;
    plan.actor = b.value("actor", "agent");
    if (b.contains("atomic")) {
      if (!b["atomic"].is_boolean())
        return Response::error(400, "bad_request", "atomic must be true or false", "atomic");
      plan.atomic = b["atomic"].get<bool>();
    }
    for (const auto& [k, v] : b.items())
      if (k != "items" && k != "atomic" && k != "actor" && k != "start_when")
        return Response::error(400, "bad_request", "unknown field '" + k + "'", k);
    auto start_when = [](const json& v) -> std::optional<std::string> {
      if (!v.is_string() || (v != "committed" && v != "healthy")) return std::nullopt;
      return v.get<std::string>();
    };
    if (b.contains("start_when")) {
      auto w = start_when(b["start_when"]);
      if (!w)
        return Response::error(400, "bad_request", "start_when must be committed or healthy",
                               "start_when");
      plan.start_when = *w;
    }
    for (size_t i = 0; i < b["items"].size(); ++i) {
      json item = b["items"][i];
      if (item.is_object() && item.contains("start_when")) {
        auto w = start_when(item["start_when"]);
        const std::string field = "items[" + std::to_string(i) + "].start_when";
        if (!w)
          return Response::error(400, "bad_request", field + " must be committed or healthy",
                                 field);
        if (item.contains("component") && item["component"].is_string())
          plan.start_when_of[item["component"].get<std::string>()] = *w;
        item.erase("start_when");
      }
      deploy::DeployRequest req;
      if (auto bad = deploy_request_from(a.config, item, req)) {
        Response e = *bad;
        if (e.body.contains("error") && e.body["error"].contains("field"))
          e.body["error"]["field"] =
              "items[" + std::to_string(i) + "]." + e.body["error"]["field"].get<std::string>();
        return e;
      }
      if (!b["items"][i].contains("actor")) req.actor = plan.actor;
      plan.items.push_back(std::move(req));
    }
    auto started = d.start_plan(plan);
    if (!started) return from_error(started.error());
    return Response{202, *started};
  }));
  MUP_TRY(s.route("GET", "/v1/plans/{id}", [&d](const Request& r) {
    auto id = parse_id(r.params.at("id"));
    if (!id) return Response::error(400, "bad_request", "id must be a positive integer", "id");
    auto p = d.plan(*id);
    return p ? Response{200, *p} : from_error(p.error());
  }));
  MUP_TRY(s.route("POST", "/v1/deployments/{id}/abort", [&d](const Request& r) {
    auto id = parse_id(r.params.at("id"));
    if (!id) return Response::error(400, "bad_request", "id must be a positive integer", "id");
    auto row = d.abort(*id);
    return row ? with_steps(d, *row, 202) : from_error(row.error());
  }));
  MUP_TRY(s.route("POST", "/v1/deployments/{id}/promote", [&d](const Request& r) {
    auto id = parse_id(r.params.at("id"));
    if (!id) return Response::error(400, "bad_request", "id must be a positive integer", "id");
    auto row = d.promote(*id);
    return row ? with_steps(d, *row, 202) : from_error(row.error());
  }));
  MUP_TRY(s.route("POST", "/v1/services/{name}/rollback", [&d](const Request& r) {
    std::string actor = r.body.is_object() ? r.body.value("actor", "agent") : "agent";
    auto row = d.rollback(r.params.at("name"), actor);
    return row ? with_steps(d, *row, 202) : from_error(row.error());
  }));
  return {};
}

}  // namespace mup::agent
