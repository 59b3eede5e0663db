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

}  // namespace mup::deploy
