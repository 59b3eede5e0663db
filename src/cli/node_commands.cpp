// The node's view of a repository: mup check, which asks the engine's resolver (the one
// install uses, so download_bytes is what install then fetches). The node's state lives under
// --root (default /var/lib/mup, or MUP_ROOT). With --remote (or no --repo), check asks a remote
// recorded by `mup remote add`, whose trusted metadata is in tuf/<remote>/; with --repo URL,
// tuf/ holds the trusted metadata (first the root given with --trusted-root: trust on
// first use is never allowed). In both cases
// components/<name>/current -> <version> names what is installed, with the installed
// version's tree index beside it as components/<name>/<version>.idx. The device key for
// encrypted packages is <root>/device.key unless --device-key names another file.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/node_args.hpp"
#include "core/progress.hpp"
#include "engine/engine.hpp"

namespace mup::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

struct CheckArgs {
  std::string repo, remote, trusted_root, root, component, device_key;
  bool json = false;
};

void run_check(const CheckArgs& a) {
  NodeArgs n;
  n.root_opt = a.root;
  n.device_key = a.device_key;
  n.json_opt = a.json;
  auto node = open_node(n);
  engine::CheckOptions o;
  o.remote = a.remote;
  o.repo_url = a.repo;
  o.trusted_root = a.trusted_root;
  o.component = a.component;
  json result = must(node->check(o));
  const json& rows = result["updates"];
  if (a.json || global_args().json) {
    std::printf("%s\n", json({{"updates", rows}}).dump(2).c_str());
    return;
  }
  if (rows.empty()) {
    std::printf("everything is up to date (%zu component(s) in the repository)\n",
                result["components_offered"].get<size_t>());
    return;
  }
  std::printf("%-20s %-12s    %-12s %-12s %-9s %s\n", "COMPONENT", "INSTALLED", "AVAILABLE", "TYPE",
              "PRIORITY", "DOWNLOAD");
  for (const auto& r : rows) {
    std::string inst = r["installed"].get<std::string>();
    std::string download = r["readable"].get<bool>()
                               ? human_bytes(r["download_bytes"].get<uint64_t>()) + " of " +
                                     human_bytes(r["full_bytes"].get<uint64_t>()) +
                                     (r["encrypted"].get<bool>() ? " (encrypted)" : "")
                               : r["note"].get<std::string>();
    std::printf("%-20s %-12s -> %-12s %-12s %-9s %s%s\n", r["component"].get<std::string>().c_str(),
                inst.empty() ? "-" : inst.c_str(), r["available"].get<std::string>().c_str(),
                r["type"].get<std::string>().c_str(), r["priority"].get<std::string>().c_str(),
                download.c_str(),
                r["deps_ok"].get<bool>()
                    ? ""
                    : ("  [blocked: " + r["deps_error"].get<std::string>() + "]").c_str());
  }
}

}  // namespace

void register_node_commands(CLI::App& app) {
  auto ca = std::make_shared<CheckArgs>();
  auto* check = app.add_subcommand(
      "check", "List the updates a repository offers this node (verified with TUF)");
  check->add_option("--remote", ca->remote,
                    "A remote of this node (mup remote add); the default when --repo is absent");
  check->add_option("--repo", ca->repo,
                    "Or a repository URL (serving metadata/ and targets/), trusted via "
                    "--trusted-root");
  check->add_option("--trusted-root", ca->trusted_root,
                    "The repository's root.json, the first time");
  check->add_option("--root", ca->root, "Node state directory (default $MUP_ROOT or /var/lib/mup)");
  check->add_option("--component", ca->component, "Only this component");
  check->add_option("--device-key", ca->device_key,
                    "This device's key for encrypted packages (default ROOT/device.key if it "
                    "exists)");
  check->add_flag("--json", ca->json, "Print JSON");
  check->callback([ca] { run_check(*ca); });
}

}  // namespace mup::cli
