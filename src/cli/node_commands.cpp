// The node's view of a repository: mup check. The node's state lives under --root
// (default /var/lib/mup, or MUP_ROOT). With --remote (or no --repo), check asks a remote
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

#include "chunk/tree_index.hpp"
#include "cli/commands.hpp"
#include "core/fs.hpp"
#include "core/progress.hpp"
#include "delta/planner.hpp"
#include "package/manifest.hpp"
#include "package/sealed.hpp"
#include "store/node.hpp"
#include "transfer/fetcher.hpp"
#include "tuf/clock.hpp"
#include "tuf/updater.hpp"

namespace mup::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

struct CheckArgs {
  std::string repo, remote, trusted_root, root, component, device_key;
  bool json = false;
};

struct Installed {
  package::Version version;
  stdfs::path tree;
  stdfs::path index;
};

std::optional<Installed> installed(const stdfs::path& node, const std::string& name) {
  std::error_code ec;
  stdfs::path cur = node / "components" / name / "current";
  auto target = stdfs::read_symlink(cur, ec);
  if (ec) return std::nullopt;
  auto v = package::Version::parse(target.filename().string());
  if (!v) return std::nullopt;
  return Installed{*v, node / "components" / name / v->str(),
                   node / "components" / name / (v->str() + ".idx")};
}

void run_check(const CheckArgs& a) {
  stdfs::path node = a.root.empty()
                         ? (std::getenv("MUP_ROOT") ? std::getenv("MUP_ROOT") : "/var/lib/mup")
                         : a.root;
  stdfs::path tuf_dir = node / "tuf";
  std::string base = a.repo;
  std::unique_ptr<store::Node> held;  // holds the node lock while checking a remote
  if (!a.repo.empty() && !a.remote.empty())
    die(Error(Errc::invalid_argument, "give --remote NAME or --repo URL, not both"));
  if (a.repo.empty()) {
    if (!a.trusted_root.empty())
      die(Error(Errc::invalid_argument,
                "--trusted-root goes with --repo; a remote got its root at mup remote add"));
    held = must(store::Node::open(node, {}), "opening node " + node.string());
    std::string r = must(held->pick_remote(a.component, a.remote));
    base = must(held->remote_url(r));
    tuf_dir = held->tuf_dir(r);
  }
  must(fs::create_dirs(tuf_dir));
  if (!stdfs::exists(tuf_dir / "root.json")) {
    if (a.trusted_root.empty())
      die(Error(Errc::invalid_argument,
                "this node trusts no repository root yet: give --trusted-root ROOT.json "
                "(the publisher's metadata/1.root.json, obtained out of band)"));
    auto bytes = must(fs::read_file(a.trusted_root, 1 << 20), "--trusted-root");
    must(fs::write_file_atomic(tuf_dir / "root.json", bytes));
  }
  while (!base.empty() && base.back() == '/') base.pop_back();
  transfer::HttpFetcher fetcher;
  tuf::SystemClock clock;
  tuf::UpdaterConfig cfg;
  cfg.metadata_dir = tuf_dir;
  cfg.metadata_base_url = base + "/metadata";
  cfg.target_base_url = base + "/targets";
  // The device key is needed only for encrypted packages; without one they are listed as
  // unreadable rather than failing the check.
  std::optional<crypto::DeviceKey> device;
  stdfs::path device_key = a.device_key.empty() ? node / "device.key" : stdfs::path(a.device_key);
  if (!a.device_key.empty() || stdfs::exists(device_key))
    device = must(package::load_device_key(device_key), "--device-key");
  auto up =
      must(tuf::Updater::create(cfg, fetcher, clock), "trusted metadata in " + tuf_dir.string());
  must(up.refresh(), "refreshing metadata from " + base);

  // The newest version of each component, from the signed manifests.
  std::map<std::string, std::pair<package::Manifest, std::string>>
      newest;  // name -> manifest, target path
  for (const auto& [path, tf] : up.targets()->targets) {
    auto m = package::Manifest::from_json(tf.custom);
    if (!m) continue;  // not a package (or from a newer mup): skip it
    if (!a.component.empty() && m->component != a.component) continue;
    auto it = newest.find(m->component);
    if (it == newest.end() || it->second.first.version < m->version)
      newest[m->component] = {*m, path};
  }
  std::map<std::string, Installed> on_node;
  std::map<std::string, package::Version> have;
  for (const auto& [name, _] : newest) {
    if (auto i = installed(node, name)) {
      have[name] = i->version;
      on_node.emplace(name, std::move(*i));
    }
  }

  json rows = json::array();
  for (const auto& [name, entry] : newest) {
    const auto& [m, path] = entry;
    auto found = on_node.find(name);
    const Installed* inst = found == on_node.end() ? nullptr : &found->second;
    if (inst && !(inst->version < m.version)) continue;  // up to date
    auto deps = package::check_dependencies(m, have);
    json row = {{"component", name},
                {"installed", inst ? inst->version.str() : ""},
                {"available", m.version.str()},
                {"type", package::type_name(m.type)},
                {"priority", package::priority_name(m.priority)},
                {"strategy", m.strategy},
                {"encrypted", package::is_encrypted(m)},
                {"readable", true},
                {"download_bytes", 0},
                {"full_bytes", 0},
                {"deps_ok", bool(deps)},
                {"deps_error", deps ? "" : deps.error().message()}};
    std::optional<crypto::AesKey> key;
    if (package::is_encrypted(m)) {
      std::string why = "this node has no device key (" + device_key.string() + ")";
      if (device) {
        auto k = package::unwrap_data_key(m, *device);
        if (k)
          key = *k;
        else if (k.error().code() == Errc::not_found)
          why = k.error().message();
        else
          die(k.error());  // a recipient entry for this device that does not open
      }
      if (!key) {
        row["readable"] = false;
        row["note"] = "encrypted for other devices";
        row["why"] = why;
        rows.push_back(std::move(row));
        continue;
      }
    }
    auto info = must(up.get_targetinfo(path));
    auto target = must(up.fetch_target(info), "tree index of " + m.id());
    auto idx_bytes = must(package::open_index(m, target, key ? &*key : nullptr));
    auto idx = must(chunk::TreeIndex::parse(idx_bytes), m.id());
    // The installed version is known by its held index: planning does not re-read it.
    std::optional<chunk::TreeIndex> held_idx;
    std::vector<delta::IndexedSeed> seeds;
    if (inst && stdfs::is_directory(inst->tree)) {
      if (auto hi = chunk::TreeIndex::load(inst->index.string()); hi && !hi->single_file)
        held_idx = std::move(*hi);
      seeds.push_back({inst->tree, held_idx ? &*held_idx : nullptr});
    }
    auto p = must(delta::plan(idx, target.size(), seeds), "planning " + m.id());
    if (key) package::add_seal_overhead(idx, p);
    row["download_bytes"] = p.bytes_to_fetch;
    row["full_bytes"] = p.full_bytes;
    rows.push_back(std::move(row));
  }
  if (a.json) {
    std::printf("%s\n", json({{"updates", rows}}).dump(2).c_str());
    return;
  }
  if (rows.empty()) {
    std::printf("everything is up to date (%zu component(s) in the repository)\n", newest.size());
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
