// What every node command shares: the global options (--root, --json, --config, accepted
// before or after the subcommand, as git and kubectl users expect), opening the node's
// engine (which first recovers what dead processes left) and printing.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/engine.hpp"

namespace mup::cli {

// Options given before the subcommand (`mup --root R --json status`).
struct GlobalArgs {
  std::string root, config;
  bool json = false;
};
GlobalArgs& global_args();
// Whether --json appears anywhere on the command line (errors are then JSON too).
bool json_requested();
void set_json_requested();
// Registers --root, --json and --config on the app itself.
void add_global_options(CLI::App& app);

struct NodeArgs {
  std::string root_opt, device_key;
  bool json_opt = false;
  unsigned threads = 0;
  unsigned connections = 0;  // 0: the engine's default
  bool json() const { return json_opt || global_args().json; }
  // --root, else the global --root, else $MUP_ROOT, else /var/lib/mup.
  std::filesystem::path root() const;
};

void add_node_options(CLI::App* cmd, NodeArgs& a, bool with_json = true);
std::unique_ptr<engine::Engine> open_node(const NodeArgs& a,
                                          std::function<void(const nlohmann::json&)> on_event = {});
void print_json(const nlohmann::json& j);

}  // namespace mup::cli
