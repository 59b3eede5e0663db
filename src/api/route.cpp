#include "api/route.hpp"

#include <set>

#include "core/hex.hpp"

namespace mup::api {

namespace {

// Splits "/a/b/c" into {"a","b","c"}; "/" gives {""}. The leading '/' is required by the
// callers and not looked at here.
std::vector<std::string_view> split_segments(std::string_view path) {
  std::vector<std::string_view> out;
  path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

}  // namespace

size_t RoutePattern::literals() const {
  size_t n = 0;
  for (const auto& s : segments) n += s.param ? 0 : 1;
  return n;
}

Result<RoutePattern> parse_pattern(std::string_view pattern) {
  if (pattern.empty() || pattern[0] != '/')
    return fail(Errc::invalid_argument,
                "route pattern \"" + std::string(pattern) + "\" must start with '/'");
  RoutePattern out;
  out.source = std::string(pattern);
  std::set<std::string> names;
  for (std::string_view seg : split_segments(pattern)) {
    bool open = seg.find('{') != std::string_view::npos;
    bool close = seg.find('}') != std::string_view::npos;
    if (!open && !close) {
      out.segments.push_back({std::string(seg), false});
      continue;
    }
    if (seg.size() < 3 || seg.front() != '{' || seg.back() != '}' ||
        seg.substr(1, seg.size() - 2).find_first_of("{}/") != std::string_view::npos)
      return fail(Errc::invalid_argument, "route pattern \"" + out.source +
                                              "\": a parameter must be a whole segment {name}");
    std::string name(seg.substr(1, seg.size() - 2));
    if (!names.insert(name).second)
      return fail(Errc::invalid_argument,
                  "route pattern \"" + out.source + "\" names {" + name + "} twice");
    out.segments.push_back({std::move(name), true});
  }
  return out;
}

std::optional<std::map<std::string, std::string>> match_path(const RoutePattern& pattern,
                                                             std::string_view path) {
  if (path.empty() || path[0] != '/') return std::nullopt;
  auto segs = split_segments(path);
  if (segs.size() != pattern.segments.size()) return std::nullopt;
  std::map<std::string, std::string> params;
  for (size_t i = 0; i < segs.size(); ++i) {
    const auto& p = pattern.segments[i];
    if (!p.param) {
      // Literal segments compare undecoded: our patterns hold no characters that need
      // escaping, and "%76%31" should not sneak past as "v1".
      if (segs[i] != p.text) return std::nullopt;
      continue;
    }
    if (segs[i].empty()) return std::nullopt;
    auto value = percent_decode(segs[i], false);
    if (!value) return std::nullopt;
    params[p.text] = std::move(*value);
  }
  return params;
}

std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    auto value = percent_decode(
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
    if (!key || !value || key->empty()) continue;
    out[std::move(*key)] = std::move(*value);
  }
  return out;
}

Target split_target(std::string_view target) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return {target, {}};
  return {target.substr(0, q), target.substr(q + 1)};
}

}  // namespace mup::api
