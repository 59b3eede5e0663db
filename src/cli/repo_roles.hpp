// Where a repository keeps each component's targets: one delegated targets role per
// component, so that a publish rewrites metadata whose size depends on that component's
// history only, and a node asking about one component fetches that role only.
//
// Layout: top-level "targets" delegates role C (file N.C.json) for the paths "C/*/*" (the
// tree indexes "C/<version>/tree.idx"), terminating, signed by the top-level targets keys at
// their threshold. The role is created by the first publish of C; a repository written
// before (C's targets in top-level targets) has them moved into the new role by that
// publish, once. A component named like a top-level role (root, targets, snapshot,
// timestamp) keeps its targets in top-level targets: its role name would be taken.
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

// The role for `component`, delegated now (staged; written by publish()) when missing,
// with the component's targets moved out of top-level targets if an older publisher put
// them there. `created` says whether the delegation is new.
[[nodiscard]] Result<std::string> ensure_component_role(tuf::Repository& repo,
                                                        const std::string& component,
                                                        bool* created = nullptr);

// The targets of `component` as the repository holds them now (its role, or top-level
// targets for a component never published or kept there); never null.
[[nodiscard]] Result<const tuf::Targets*> component_targets(tuf::Repository& repo,
                                                            const std::string& component);

// Every published version of each of `components`, read from their roles only.
[[nodiscard]] Result<std::map<std::string, std::vector<package::Version>>> offered_versions(
    tuf::Repository& repo, const std::vector<std::string>& components);

}  // namespace mup::cli
