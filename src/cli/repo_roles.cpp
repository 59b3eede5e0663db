#include "cli/repo_roles.hpp"

#include <algorithm>

namespace mup::cli {

namespace {

bool is_top_level_role(const std::string& name) {
  return name == "root" || name == "targets" || name == "snapshot" || name == "timestamp";
}

bool is_delegated(const tuf::Repository& repo, const std::string& role) {
  auto roles = repo.delegated_roles("targets");
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

}  // namespace

std::string component_role_name(const std::string& component) {
  return is_top_level_role(component) ? "targets" : component;
}

Result<std::string> ensure_component_role(tuf::Repository& repo, const std::string& component,
                                          bool* created) {
  if (created) *created = false;
  MUP_TRY(package::validate_component_name(component));
  std::string role = component_role_name(component);
  if (role == "targets" || is_delegated(repo, role)) return role;
  const tuf::Root& root = repo.root();
  const tuf::Role& targets_role = root.roles.at("targets");
  std::vector<crypto::PublicKey> keys;
  for (const auto& id : targets_role.keyids) {
    auto k = root.keys.at(id).public_key();
    if (!k) return tl::unexpected(k.error().context("targets key " + id.substr(0, 12)));
    keys.push_back(std::move(*k));
  }
  tuf::DelegatedRole d;
  d.name = role;
  d.terminating = true;
  d.threshold = targets_role.threshold;
  d.paths = std::vector<std::string>{component + "/*/*"};
  MUP_TRY(repo.add_delegation("targets", d, keys));
  auto moved = repo.move_targets(component + "/", "targets", role);
  if (!moved) return tl::unexpected(moved.error());
  if (created) *created = true;
  return role;
}

Result<const tuf::Targets*> component_targets(tuf::Repository& repo, const std::string& component) {
  std::string role = component_role_name(component);
  if (role != "targets" && !is_delegated(repo, role)) role = "targets";
  return repo.load_targets(role);
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
