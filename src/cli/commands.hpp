// The mup command line: each file registers a group of subcommands on the CLI11 app.
// A command's callback throws CliExit to end with a status; main() maps it to the exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "core/error.hpp"

namespace mup::cli {

struct CliExit {
  int code;
};

// Prints "mup: error: <message>" on stderr and ends the command with exit code 1.
[[noreturn]] void die(const Error& e);

// The value of `r`, or die() with its error (prefixed by `where`, if given).
template <typename T>
T must(Result<T> r, const std::string& where = "") {
  if (!r) die(where.empty() ? r.error() : r.error().context(where));
  return std::move(*r);
}
inline void must(Status s, const std::string& where = "") {
  if (!s) die(where.empty() ? s.error() : s.error().context(where));
}

// The incremental engine's plumbing commands: pack, plan, unpack, index show.
void register_engine_commands(CLI::App& app);
// The publisher's commands: repo init/verify/serve/sign/rotate-key/expire, publish, keygen.
void register_repo_commands(CLI::App& app);
// The node's commands: check.
void register_node_commands(CLI::App& app);
// The node administrator's commands: remote, install, versions, activate, rollback, pin, gc,
// status, history, audit, snapshot, verify.
void register_install_commands(CLI::App& app);
// The agent and the commands that talk to it: agent, deploy, deployments, services,
// promote, abort.
void register_agent_commands(CLI::App& app);
// The data plane: mup proxy.
void register_proxy_commands(CLI::App& app);
// The health monitor, through the agent: health [NAME] [--watch], health thresholds NAME.
void register_health_commands(CLI::App& app);

struct NodeArgs;
// mup rollback while an agent runs on the node: the agent rolls the service back with its
// traffic (true); false when no agent answers (the offline rollback goes on).
bool rollback_via_agent(const NodeArgs& n, const std::string& name, bool has_to_or_state);
// Before an offline install/activate: when an agent serves `name`, says on stderr that the
// pointers move but the traffic does not (mup deploy moves both).
void warn_if_agent_serves(const NodeArgs& n, const std::string& name, const std::string& verb);

}  // namespace mup::cli
