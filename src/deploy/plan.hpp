// Plans of many deployments (the seed's deployment_create_plan / validate / execute /
// monitor): `mup deploy A B C` or `mup deploy --plan FILE.toml`.
//
// validate_plan() resolves each item's version (the remote's newest when none is named) from
// the signed manifests, and refuses, naming the components: a component twice, a dependency
// that neither the planned versions nor the active ones satisfy, a cycle among the planned
// items ("a -> b -> a"). What it returns is in dependency order: each step lists the planned
// components it waits for (its dependencies in the plan).
//
// validate_plan() also checks the disk: the versions not installed yet need their trees'
// sizes, and the node's reserve must stay free ("needs X (a@2 ..), Y free").
//
// Deployer::start_plan() runs a validated plan on its own thread: every step whose
// dependencies are committed (or, with start_when = "healthy", serving all their traffic on
// the new version) starts (independent ones at once, in parallel); a step that ends other
// than committed stops its dependents: those waiting are skipped, those started early on a
// healthy dependency are aborted (they rely on a version that is gone). With `atomic`, any
// failure also aborts the running steps and rolls back the committed ones, newest first (a
// rollback deployment each). A plan ends committed (every step), failed (some did not), or
// rolled-back (atomic). Plans live in the agent's memory: the deployments they start are journaled
// and resumed like any other, but a plan's own progress is not (an agent restart ends its runner;
// the deployments in flight still finish).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "deploy/deployer.hpp"

namespace mup::deploy {

struct PlanRequest {
  std::vector<DeployRequest> items;
  bool atomic = false;
  std::string actor;
  // When a step may start: its planned dependencies "committed" (default), or "healthy"
  // (their new versions ready and serving all their traffic, analysis still running). Per
  // component in start_when_of, else start_when.
  std::string start_when = "committed";
  std::map<std::string, std::string> start_when_of;
};

struct PlanStep {
  DeployRequest req;               // version resolved
  std::vector<std::string> after;  // planned components it depends on
  std::string start_when = "committed";
};

[[nodiscard]] Result<std::vector<PlanStep>> validate_plan(Node& node, const PlanRequest& req);

// A deployment request as JSON and back (a plan's journal keeps its steps' requests).
nlohmann::json request_to_json(const DeployRequest& r);
[[nodiscard]] Result<DeployRequest> request_from_json(const nlohmann::json& j);

}  // namespace mup::deploy
