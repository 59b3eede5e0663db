// Semantic versions (semver.org 2.0.0) and version constraints for dependencies.
//
// Version::parse accepts MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] (no leading zeros in
// numeric parts, as the spec says); ordering follows the spec, build metadata ignored.
// A Constraint is a comma-separated conjunction of comparisons: ">=2.0,<3",
// "=1.4.2", "!=2.1.0", ">1", "<=3.0.0-rc.1"; a missing minor/patch counts as 0. An
// empty constraint matches every version. Values; thread-compatible.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mup::package {

class Version {
 public:
  [[nodiscard]] static Result<Version> parse(std::string_view s);
  // Like parse, but "2" and "2.1" are read as 2.0.0 and 2.1.0 (for constraints).
  [[nodiscard]] static Result<Version> parse_loose(std::string_view s);

  uint64_t major() const { return major_; }
  uint64_t minor() const { return minor_; }
  uint64_t patch() const { return patch_; }
  const std::string& prerelease() const { return pre_; }
  std::string str() const;

  std::strong_ordering operator<=>(const Version& o) const;
  bool operator==(const Version& o) const { return (*this <=> o) == 0; }

 private:
  [[nodiscard]] static Result<Version> parse_impl(std::string_view s, bool loose);
  uint64_t major_ = 0, minor_ = 0, patch_ = 0;
  std::string pre_, build_;
};

enum class Op { eq, ne, lt, le, gt, ge };

class Constraint {
 public:
  [[nodiscard]] static Result<Constraint> parse(std::string_view s);
  bool matches(const Version& v) const;
  const std::string& str() const { return text_; }

 private:
  std::vector<std::pair<Op, Version>> terms_;
  std::string text_;
};

// A dependency "name>=2.0,<3" (or just "name"): a component name and a constraint.
struct Dependency {
  std::string name;
  Constraint constraint;
  [[nodiscard]] static Result<Dependency> parse(std::string_view s);
  std::string str() const { return name + constraint.str(); }
};

}  // namespace mup::package
