// The package manifest: what a published update is (the seed's update_package_t).
//
// A manifest travels as the `custom` field of the package's TUF target (the tree index),
// so it is covered by the repository's signatures. It names the component, its kind
// (kernel, service, ai-model, application, config, security), its semantic version, the
// components it depends on with version constraints, a priority, sizes and checksums,
// the default deployment strategy and a rollback policy, and, for an encrypted package,
// its data key wrapped for each recipient device (see package/sealed.hpp). from_json()
// validates everything it reads (it parses repository data). Values; thread-compatible.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chunk/cold_pack.hpp"
#include "core/error.hpp"
#include "package/semver.hpp"

namespace mup::package {

enum class PackageType { kernel, service, ai_model, application, config, security };
enum class Priority { critical, high, normal, low };

std::string_view type_name(PackageType t);
[[nodiscard]] Result<PackageType> parse_type(std::string_view s);
std::string_view priority_name(Priority p);
[[nodiscard]] Result<Priority> parse_priority(std::string_view s);

// Strategies the deploy module knows; a package names its default.
inline constexpr std::string_view kStrategies[] = {"immediate", "rolling", "blue-green", "canary",
                                                   "scheduled"};
std::string_view default_strategy(PackageType t);

// The one encryption scheme this build knows (package/sealed.hpp).
inline constexpr std::string_view kSealedScheme = "mup-sealed-v1";
inline constexpr size_t kMaxRecipients = 10'000;

// An update bundle (package/bundle.hpp): the pieces a node holding `from` needs, in segments
// whose .chunks counts the pieces each holds.
struct Bundle {
  std::string from;
  std::vector<chunk::PackSegment> segments;
  uint64_t bytes() const;  // sum of the segments' sizes
  bool operator==(const Bundle&) const = default;
};

struct Manifest {
  static constexpr int kFormat = 1;

  std::string component;  // [a-z0-9][a-z0-9._-]*
  PackageType type = PackageType::application;
  Version version;
  std::string description;
  std::vector<Dependency> depends;
  Priority priority = Priority::normal;
  uint64_t size = 0;         // bytes of the installed tree
  std::string index_sha256;  // checksum: SHA-256 of the tree index (hex)
  std::string index_target;  // TUF target path of the tree index
  // Uncompressed size of the tree index's body ("index_body_size"; 0 when a publisher before
  // it did not sign one): the bound on an index delta's output. Without it a node fetches
  // the full index.
  uint64_t index_body_size = 0;
  std::string strategy;  // one of kStrategies
  nlohmann::json rollback_policy = nlohmann::json::object();
  std::vector<std::string> delta_from;  // versions a node can update from by delta
  // The cold pack's segments ("pack": [{"chunks", "size", "sha256"}, ...], chunk/cold_pack.hpp):
  // empty when the publisher made none (encrypted packages, --no-cold-pack, older publishers).
  std::vector<chunk::PackSegment> pack;
  // Update bundles ("bundles": [{"from": VERSION, "segments": [...]}, ...]), one per
  // delta_from version at most; empty for encrypted packages and older publishers.
  std::vector<Bundle> bundles;
  // null (a plain package), or {"scheme": "mup-sealed-v1", "recipients": [{"key_id":
  // <16 lowercase hex>, "wrapped": <184 lowercase hex>}, ...]}: 1..kMaxRecipients
  // recipients with distinct key ids, no other fields.
  nlohmann::json encryption;

  // "<component>@<version>", the seed's package id.
  std::string id() const { return component + "@" + version.str(); }
  nlohmann::json to_json() const;
  [[nodiscard]] static Result<Manifest> from_json(const nlohmann::json& j);
};

[[nodiscard]] Status validate_component_name(std::string_view name);

// Checks `m`'s dependencies against the versions at hand (installed, or to be installed in
// the same plan). The error lists every unmet dependency and what is there instead.
[[nodiscard]] Status check_dependencies(const Manifest& m,
                                        const std::map<std::string, Version>& have);

}  // namespace mup::package
