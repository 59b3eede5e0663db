#include "deploy/plan.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

namespace mup::deploy {

Result<std::vector<PlanStep>> validate_plan(Node& node, const PlanRequest& req) {
  if (req.items.empty()) return fail(Code::bad_request, "plan: no deployments in it");
  std::map<std::string, package::Manifest> planned;
  std::map<std::string, DeployRequest> by_name;
  for (const auto& item : req.items) {
    if (item.component.empty()) return fail(Code::bad_request, "plan: an item without component");
    if (by_name.count(item.component))
      return fail(Code::bad_request,
                  "plan: " + item.component + " is in the plan twice (one version per component)");
    auto m = node.offer(item.component, item.version);
    if (!m)
      return fail(Code::bad_request, "plan: " + item.component +
                                         (item.version.empty() ? "" : " " + item.version) + ": " +
                                         m.error().message());
    planned.emplace(item.component, *m);
    DeployRequest r = item;
    r.version = m->version.str();
    if (r.actor.empty()) r.actor = req.actor;
    by_name.emplace(item.component, std::move(r));
  }
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
    order.push_back({by_name.at(n), after[n]});
    return {};
  };
  for (const auto& item : req.items) MUP_TRY(visit(item.component));
  return order;
}

}  // namespace mup::deploy
