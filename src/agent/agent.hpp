// Agent: the control plane of a node (`mup agent`). It decides; the data plane serves.
//
// What runs where (docs/agent.md has the why):
//   - the proxy is its own process (`mup proxy`), started detached when none answers on
//     <root>/proxy.sock, and found again by the next agent; it owns every listening socket;
//   - service instances run in their own sessions, logging to files; the supervisor records
//     them under <root>/run/instances/ and a restarted agent adopts them;
//   - the agent holds the engine, the deployer (deployments journaled in state.db), the API
//     (<root>/agent.sock, mode 0600; optionally loopback TCP with the bearer token of
//     <root>/agent.token) and a loop that keeps the proxy's routes in step with the
//     instances (a crashed instance restarted on a new port is re-routed).
// So SIGKILL of the agent stops no instance and drops no request: the next agent adopts
// the instances, re-reads the routes, and resumes the deployments it was running.
//
// start() returns once the API answers; run() serves until `stop` is set (SIGTERM), then
// the agent leaves: deployments in progress stay journaled (the next start resumes them),
// instances and proxy keep serving. Thread-safe.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/clock.hpp"
#include "core/error.hpp"

namespace mup::agent {

struct AgentOptions {
  std::filesystem::path root;
  std::filesystem::path config;      // agent.toml (optional): see parse_config()
  std::string tcp_listen;            // "127.0.0.1:PORT": also serve the API there, with the token
  std::filesystem::path mup_binary;  // what starts the proxy (`<binary> proxy --root R`)
  const Clock* clock = nullptr;
  std::function<void(std::string_view)> log;  // one line per event; empty: stderr
};

// agent.toml: [agent] listen = "127.0.0.1:PORT"; [deploy] strategy = "immediate",
// keep_old = "10m", soak = "2s". Unknown keys are errors naming file, line and key.
struct AgentConfig {
  std::string listen;
  std::string strategy = "immediate";
  int64_t keep_old_ms = 10 * 60 * 1000;
  int64_t soak_ms = 2000;
};
[[nodiscard]] Result<AgentConfig> parse_config(const std::filesystem::path& file);
// "30s", "10m", "1h", "500ms", "2" (seconds) -> milliseconds.
[[nodiscard]] Result<int64_t> parse_duration_ms(std::string_view text);

class Agent {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Agent>> start(AgentOptions opts);
  ~Agent();
  void run(const std::atomic<bool>& stop);
  uint16_t tcp_port() const;

  struct Impl;

 private:
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mup::agent
