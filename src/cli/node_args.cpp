#include "cli/node_args.hpp"

#include <cstdio>
#include <cstdlib>

#include "cli/commands.hpp"

namespace mup::cli {

GlobalArgs& global_args() {
  static GlobalArgs g;
  return g;
}

namespace {
bool g_json_requested = false;
}
bool json_requested() {
  return g_json_requested;
}
void set_json_requested() {
  g_json_requested = true;
}

void add_global_options(CLI::App& app) {
  GlobalArgs& g = global_args();
  app.add_option("--root", g.root, "Node directory (default $MUP_ROOT or /var/lib/mup)");
  app.add_flag("--json", g.json, "Print JSON");
  app.add_option("--config", g.config, "Agent configuration (default /etc/mup/agent.toml)");
}

std::filesystem::path NodeArgs::root() const {
  if (!root_opt.empty()) return root_opt;
  if (!global_args().root.empty()) return global_args().root;
  const char* env = std::getenv("MUP_ROOT");
  return env && *env ? env : "/var/lib/mup";
}

void add_node_options(CLI::App* cmd, NodeArgs& a, bool with_json) {
  cmd->add_option("--root", a.root_opt, "Node directory (default $MUP_ROOT or /var/lib/mup)");
  if (with_json) cmd->add_flag("--json", a.json_opt, "Print JSON");
}

std::unique_ptr<engine::Engine> open_node(const NodeArgs& a,
                                          std::function<void(const nlohmann::json&)> on_event) {
  engine::EngineOptions o;
  o.threads = a.threads;
  if (a.connections > 0) o.download_connections = a.connections;
  if (!a.device_key.empty()) o.device_key = a.device_key;
  o.on_event = std::move(on_event);
  // Test seam: a test stands for a reboot by changing the boot id.
  if (const char* b = std::getenv("MUP_BOOT_ID"); b && *b) {
    std::string id = b;
    o.boot_id = [id] { return id; };
  }
  std::filesystem::path root = a.root();
  auto n = must(engine::Engine::open(root, std::move(o)), "opening node " + root.string());
  if (!a.json()) {
    for (const auto& line : n->recovery().actions)
      std::fprintf(stderr, "mup: recovered: %s\n", line.c_str());
    for (const auto& line : n->recovery().problems)
      std::fprintf(stderr, "mup: warning: %s\n", line.c_str());
  }
  return n;
}

void print_json(const nlohmann::json& j) {
  std::printf("%s\n", j.dump(2).c_str());
}

}  // namespace mup::cli
