// Where a repository keeps each component's targets: one delegated targets role per
// component, so that a publish rewrites metadata whose size depends on that component's
// history only, and a node asking about one component fetches that role, its bin and
// top-level targets only.
//
// Layout (two levels): top-level "targets" delegates to at most 16 bin roles, "_bin-0" ..
// "_bin-f" (file N._bin-3.json); the bin of component C is the first hex digit of
// SHA-256(C). Top-level's delegation to a bin lists the pattern "C/*/*" (the tree indexes
// "C/<version>/tree.idx") of each component in it, ~14 bytes a component, and the bin
// delegates role C (file N.C.json) for "C/*/*". Both delegations are terminating and signed
// by the top-level targets keys at their threshold; bins hold no targets. A bin name starts
// with '_', which no component name does (package::validate_component_name), so the two
// never collide. Explicit patterns, not TUF's hash bins (path_hash_prefixes): those hash
// each path, and a component's versions have different paths that one role must hold.
//
// Before bins, top-level "targets" delegated each component's role directly (~157 bytes a
// component in top-level targets: its keyid). A component delegated so stays there; a
// component new to the repository goes to its bin. The role is created by the first
// publish of C; a repository written before roles (C's targets in top-level targets) has
// them moved into the new role by that publish, once. A component named like a top-level
// role (root, targets, snapshot, timestamp) keeps its targets in top-level targets: its
// role name would be taken.
//
// Not thread-safe (one publisher per repository holds .mup-publish.lock).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "package/manifest.hpp"
#include "tuf/repository.hpp"

namespace mup::cli {

// The role that holds (or will hold) `component`'s targets, without changing anything.
std::string component_role_name(const std::string& component);

// The bin a component new to the repository is delegated from ("_bin-" and a hex digit).
std::string component_bin_name(const std::string& component);

// Where a component's targets are: `role`, delegated by `delegator` ("targets" for a
// component delegated before bins, or kept in top-level targets; else its bin).
struct ComponentRole {
  std::string role;
  std::string delegator;
  bool created = false;  // the delegation is new (staged by ensure_component_role)
};

// The role for `component`, delegated now (staged; written by publish()) when missing,
// from its bin (created when missing), with the component's targets moved out of
// top-level targets if an older publisher put them there. The roles above it (top-level
// targets, its bin), rewritten only when a component joins them, are renewed (staged)
// when they expire within kRenewWithin of `now`: a publish keeps its own chain valid.
[[nodiscard]] Result<ComponentRole> ensure_component_role(tuf::Repository& repo,
                                                          const std::string& component,
                                                          int64_t now);

// Half the lifetime of a targets role (45 days).
inline constexpr int64_t kRenewWithin = tuf::ExpiryPolicy{}.targets_s / 2;

// The targets of `component` as the repository holds them now (its role, or top-level
// targets for a component never published or kept there); never null.
[[nodiscard]] Result<const tuf::Targets*> component_targets(tuf::Repository& repo,
                                                            const std::string& component);

// Every published version of each of `components`, read from their roles only.
[[nodiscard]] Result<std::map<std::string, std::vector<package::Version>>> offered_versions(
    tuf::Repository& repo, const std::vector<std::string>& components);

}  // namespace mup::cli
