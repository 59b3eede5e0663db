#include "deploy/plan.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "core/progress.hpp"

namespace mup::deploy {

namespace {

// Every planned version not installed yet needs its tree's size (hard links from installed
// versions make it less, the piece cache's compressed copies more: an estimate that names
// what it counts), and the node's reserve stays free.
Status check_space(Node& node, const std::map<std::string, package::Manifest>& planned) {
  uint64_t need = 0;
  std::string parts;
  for (const auto& [name, m] : planned) {
    if (node.installed(name, m.version.str())) continue;
    need += m.size;
    parts += (parts.empty() ? "" : ", ") + m.id() + " " + human_bytes(m.size);
  }
  if (need == 0) return {};
  auto space = node.space();
  if (!space)
    return fail(Code::bad_request, "plan: cannot tell the free space: " + space.error().message());
  if (space->free >= space->reserve && need <= space->free - space->reserve) return {};
  return fail(Code::bad_request,
              "plan: not enough disk: the new versions need " + human_bytes(need) + " (" + parts +
                  "), " + human_bytes(space->free) + " is free and " + human_bytes(space->reserve) +
                  " stays in reserve (free some space, or deploy fewer at once)");
}

}  // namespace

Result<std::vector<PlanStep>> validate_plan(Node& node, const PlanRequest& req) {
  if (req.items.empty()) return fail(Code::bad_request, "plan: no deployments in it");
  auto known_when = [](const std::string& w) { return w == "committed" || w == "healthy"; };
  if (!known_when(req.start_when))
    return fail(Code::bad_request,
                "plan: start_when must be committed or healthy, not '" + req.start_when + "'");
  for (const auto& [name, w] : req.start_when_of)
    if (!known_when(w))
      return fail(Code::bad_request,
                  "plan: " + name + ": start_when must be committed or healthy, not '" + w + "'");
  std::map<std::string, package::Manifest> planned;
  std::map<std::string, DeployRequest> by_name;
  std::vector<std::pair<std::string, std::string>> wanted;
  for (const auto& item : req.items) {
    if (item.component.empty()) return fail(Code::bad_request, "plan: an item without component");
    if (!by_name.emplace(item.component, item).second)
      return fail(Code::bad_request,
                  "plan: " + item.component + " is in the plan twice (one version per component)");
    wanted.emplace_back(item.component, item.version);
  }
  auto offers = node.offers(wanted);
  for (size_t i = 0; i < wanted.size(); ++i) {
    const auto& [name, version] = wanted[i];
    if (!offers[i])
      return fail(Code::bad_request, "plan: " + name + (version.empty() ? "" : " " + version) +
                                         ": " + offers[i].error().message());
    DeployRequest& r = by_name.at(name);
    r.version = offers[i]->version.str();
    if (r.actor.empty()) r.actor = req.actor;
    planned.emplace(name, std::move(*offers[i]));
  }
  MUP_TRY(check_space(node, planned));
  // Dependencies against what will be active once the plan is through.
  auto have = node.active_versions();
  for (const auto& [name, m] : planned) have[name] = m.version;
  std::vector<std::string> unmet;
  for (const auto& [name, m] : planned)
    if (auto s = package::check_dependencies(m, have); !s)
      unmet.push_back(m.id() + ": " + s.error().message());
  if (!unmet.empty()) {
    std::string msg = "plan: unmet dependencies: ";
    for (size_t i = 0; i < unmet.size(); ++i) msg += (i ? "; " : "") + unmet[i];
    return fail(Code::bad_request, msg + " (add the missing components to the plan)");
  }
  std::map<std::string, std::vector<std::string>> after;
  for (const auto& [name, m] : planned)
    for (const auto& d : m.depends)
      if (planned.count(d.name)) after[name].push_back(d.name);
  // Depth-first, dependencies first; a cycle is named.
  std::vector<PlanStep> order;
  std::map<std::string, int> mark;  // 1: on the path, 2: placed
  std::vector<std::string> path;
  std::function<Status(const std::string&)> visit = [&](const std::string& n) -> Status {
    if (mark[n] == 2) return {};
    if (mark[n] == 1) {
      std::string cycle;
      for (auto it = std::find(path.begin(), path.end(), n); it != path.end(); ++it)
        cycle += *it + " -> ";
      return fail(Code::bad_request, "plan: dependency cycle " + cycle + n);
    }
    mark[n] = 1;
    path.push_back(n);
    for (const auto& d : after[n]) MUP_TRY(visit(d));
    path.pop_back();
    mark[n] = 2;
    auto when = req.start_when_of.find(n);
    order.push_back(
        {by_name.at(n), after[n], when == req.start_when_of.end() ? req.start_when : when->second});
    return {};
  };
  for (const auto& item : req.items) MUP_TRY(visit(item.component));
  return order;
}

nlohmann::json request_to_json(const DeployRequest& r) {
  return {{"component", r.component},
          {"version", r.version},
          {"strategy", strategy_name(r.strategy)},
          {"keep_old_ms", r.keep_old_ms},
          {"soak_ms", r.soak_ms},
          {"actor", r.actor},
          {"rollback_of", r.rollback_of},
          {"reason", r.reason},
          {"force", r.force},
          {"analysis_ms", r.analysis_ms},
          {"steps", r.steps},
          {"step_ms", r.step_ms},
          {"pauses", r.pauses},
          {"batch_size", r.batch_size},
          {"scheduled_for_ms", r.scheduled_for_ms},
          {"window", r.window},
          {"window_tz", r.window_tz},
          {"window_close", r.window_close},
          {"window_ms", r.window_ms},
          {"policy", r.policy}};
}

Result<DeployRequest> request_from_json(const nlohmann::json& j) {
  try {
    DeployRequest r;
    r.component = j.at("component").get<std::string>();
    r.version = j.at("version").get<std::string>();
    auto s = parse_strategy(j.at("strategy").get<std::string>());
    if (!s) return fail(Errc::corrupt, "unknown strategy " + j.at("strategy").dump());
    r.strategy = *s;
    r.keep_old_ms = j.at("keep_old_ms").get<int64_t>();
    r.soak_ms = j.at("soak_ms").get<int64_t>();
    r.actor = j.at("actor").get<std::string>();
    r.rollback_of = j.at("rollback_of").get<int64_t>();
    r.reason = j.at("reason").get<std::string>();
    r.force = j.at("force").get<bool>();
    r.analysis_ms = j.at("analysis_ms").get<int64_t>();
    r.steps = j.at("steps").get<std::vector<int>>();
    r.step_ms = j.at("step_ms").get<int64_t>();
    r.pauses = j.at("pauses").get<std::vector<int>>();
    r.batch_size = j.at("batch_size").get<int>();
    r.scheduled_for_ms = j.at("scheduled_for_ms").get<int64_t>();
    r.window = j.at("window").get<std::string>();
    r.window_tz = j.at("window_tz").get<std::string>();
    r.window_close = j.at("window_close").get<std::string>();
    r.window_ms = j.at("window_ms").get<int64_t>();
    r.policy = j.at("policy");
    return r;
  } catch (const std::exception& e) {
    return fail(Errc::corrupt, std::string("a journaled deployment request: ") + e.what());
  }
}

}  // namespace mup::deploy
