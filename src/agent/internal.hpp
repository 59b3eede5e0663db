// The agent's parts, shared by agent.cpp (start, loop) and api_routes.cpp (the API).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>

#include "agent/agent.hpp"
#include "agent/runtime.hpp"
#include "api/server.hpp"
#include "deploy/deployer.hpp"
#include "engine/engine.hpp"
#include "health/monitor.hpp"
#include "service/supervisor.hpp"

namespace mup::agent {

struct Agent::Impl {
  AgentOptions opts;
  AgentConfig config;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<service::Supervisor> supervisor;
  std::unique_ptr<Runtime> runtime;
  std::unique_ptr<EngineNode> node;
  std::unique_ptr<deploy::Deployer> deployer;
  std::unique_ptr<api::Server> server;
  std::unique_ptr<health::Monitor> health;  // destroyed before the runtime it samples
  std::mutex wake_mu;
  std::condition_variable wake;  // an instance event: reconcile now

  void say(const std::string& line) const;
  void on_instance_event(const nlohmann::json& e);
};

// GET/POST /v1/... on the agent's server.
[[nodiscard]] Status register_routes(Agent::Impl& a);
// The health monitor (started) and its routes: /v1/health..., and /metrics (public).
[[nodiscard]] Status start_health(Agent::Impl& a);

}  // namespace mup::agent
