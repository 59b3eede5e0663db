#include "cli/repo_roles.hpp"

#include <algorithm>

#include "core/sha256.hpp"

namespace mup::cli {

namespace {

bool is_top_level_role(const std::string& name) {
  return name == "root" || name == "targets" || name == "snapshot" || name == "timestamp";
}

bool delegates(const tuf::Repository& repo, const std::string& delegator, const std::string& role) {
  auto roles = repo.delegated_roles(delegator);
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

// Who delegates the role of `component` now: "targets", its bin, or nobody ("").
Result<std::string> find_delegator(tuf::Repository& repo, const std::string& component) {
  const std::string role = component_role_name(component);
  if (role == "targets" || delegates(repo, "targets", role)) return std::string("targets");
  const std::string bin = component_bin_name(component);
  if (auto t = repo.load_targets(bin); !t) {
    if (t.error().code() == Errc::not_found) return std::string();
    return tl::unexpected(t.error().context("reading the bin of " + component));
  }
  return delegates(repo, bin, role) ? bin : std::string();
}

// A terminating delegation for `paths` trusted like top-level targets (its keys, threshold).
Result<std::pair<tuf::DelegatedRole, std::vector<crypto::PublicKey>>> like_targets(
    const tuf::Repository& repo, const std::string& name, std::vector<std::string> paths) {
  const tuf::Root& root = repo.root();
  const tuf::Role& targets_role = root.roles.at("targets");
  std::vector<crypto::PublicKey> keys;
  for (const auto& id : targets_role.keyids) {
    auto k = root.keys.at(id).public_key();
    if (!k) return tl::unexpected(k.error().context("targets key " + id.substr(0, 12)));
    keys.push_back(std::move(*k));
  }
  tuf::DelegatedRole d;
  d.name = name;
  d.terminating = true;
  d.threshold = targets_role.threshold;
  d.paths = std::move(paths);
  return std::make_pair(std::move(d), std::move(keys));
}

}  // namespace

std::string component_role_name(const std::string& component) {
  return is_top_level_role(component) ? "targets" : component;
}

std::string component_bin_name(const std::string& component) {
  auto digest = sha256({reinterpret_cast<const uint8_t*>(component.data()), component.size()});
  return "_bin-" + digest.hex().substr(0, 1);
}

Result<ComponentRole> ensure_component_role(tuf::Repository& repo, const std::string& component,
                                            int64_t now) {
  MUP_TRY(package::validate_component_name(component));
  const std::string role = component_role_name(component);
  auto delegator = find_delegator(repo, component);
  if (!delegator) return tl::unexpected(delegator.error());
  if (!delegator->empty()) {
    for (const std::string& above : {std::string("targets"), *delegator}) {
      if (above == role) continue;  // the component's own role, rewritten by the publish
      auto t = repo.load_targets(above);
      if (!t) return tl::unexpected(t.error());
      if ((*t)->expires - now < kRenewWithin) MUP_TRY(repo.renew(above));
    }
    return ComponentRole{role, *delegator, false};
  }

  const std::string bin = component_bin_name(component);
  const std::string pattern = component + "/*/*";
  if (delegates(repo, "targets", bin)) {
    MUP_TRY(repo.add_delegated_paths("targets", bin, {pattern}));
  } else {
    auto d = like_targets(repo, bin, {pattern});
    if (!d) return tl::unexpected(d.error());
    MUP_TRY(repo.add_delegation("targets", d->first, d->second));
  }
  auto d = like_targets(repo, role, {pattern});
  if (!d) return tl::unexpected(d.error());
  MUP_TRY(repo.add_delegation(bin, d->first, d->second));
  auto moved = repo.move_targets(component + "/", "targets", role);
  if (!moved) return tl::unexpected(moved.error());
  return ComponentRole{role, bin, true};
}

Result<const tuf::Targets*> component_targets(tuf::Repository& repo, const std::string& component) {
  auto delegator = find_delegator(repo, component);
  if (!delegator) return tl::unexpected(delegator.error());
  return repo.load_targets(delegator->empty() ? "targets" : component_role_name(component));
}

Result<std::map<std::string, std::vector<package::Version>>> offered_versions(
    tuf::Repository& repo, const std::vector<std::string>& components) {
  std::map<std::string, std::vector<package::Version>> out;
  for (const auto& c : components) {
    auto t = component_targets(repo, c);
    if (!t) return tl::unexpected(t.error());
    for (const auto& [path, tf] : (*t)->targets)
      if (auto m = package::Manifest::from_json(tf.custom); m && m->component == c)
        out[c].push_back(m->version);
  }
  return out;
}

}  // namespace mup::cli
