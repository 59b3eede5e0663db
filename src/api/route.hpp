// Pure pieces of request routing, kept apart from the sockets so they can be unit-tested
// and fuzzed: splitting a request target into path and query, percent-decoding (core/hex.hpp), and
// matching a path against a pattern such as "/v1/deployments/{id}/abort".
//
// Contract: nothing here throws or allocates unboundedly beyond its input; every function
// accepts arbitrary bytes. Thread-safe (no shared state).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mup::api {

// One segment of a pattern: a literal ("deployments") or a parameter ("{id}" -> name "id").
struct PatternSegment {
  std::string text;
  bool param = false;
};

// A parsed route pattern. Patterns start with '/', segments are separated by '/', and a
// segment is either literal text or a whole "{name}" (names unique within the pattern).
struct RoutePattern {
  std::string source;
  std::vector<PatternSegment> segments;
  // How many literal segments: a path matching several patterns takes the most literal
  // one, so "/v1/routes/stats" beats "/v1/routes/{service}".
  size_t literals() const;
};

[[nodiscard]] Result<RoutePattern> parse_pattern(std::string_view pattern);

// The decoded parameters when `path` (undecoded, without the query) matches `pattern`;
// nullopt otherwise. A parameter matches one non-empty segment; its value is
// percent-decoded. A path with a bad percent escape matches nothing.
std::optional<std::map<std::string, std::string>> match_path(const RoutePattern& pattern,
                                                             std::string_view path);

// "a=1&b=x%20y&flag" -> {a:1, b:"x y", flag:""}; the last of repeated keys wins; pairs
// with bad escapes are skipped.
std::map<std::string, std::string> parse_query(std::string_view query);

// Splits a request target "/p/q?x=1" into path "/p/q" and query "x=1".
struct Target {
  std::string_view path;
  std::string_view query;
};
Target split_target(std::string_view target);

}  // namespace mup::api
