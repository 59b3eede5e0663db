// What api::Server does with a request target before any handler sees it: split off the
// query, match the path against route patterns, decode parameters and the query. The
// target comes from any local process (or a TCP client before its token is checked), so
// any bytes must either match cleanly or not at all. Nothing may throw or crash.
//
// Input: pattern | 0x00 | target. The pattern part is parsed too (patterns come from our
// code, but parse_pattern must refuse malformed ones rather than misbehave); when it does
// not parse, a fixed set of the agent's patterns is used.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "api/route.hpp"
#include "core/hex.hpp"

namespace {

constexpr std::string_view kPatterns[] = {
    "/v1/health", "/v1/routes/{service}", "/v1/deployments/{id}/abort", "/", "/{a}/{b}/{c}",
};

void check(const mup::api::RoutePattern& p, std::string_view path) {
  auto m = mup::api::match_path(p, path);
  if (!m) return;
  size_t params = p.segments.size() - p.literals();
  // Every {name} of a matching pattern has a value, and a non-empty one.
  if (m->size() != params) std::abort();
  for (const auto& [name, value] : *m)
    if (value.empty() && params) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nul = in.find('\0');
  std::string_view pattern = nul == std::string_view::npos ? std::string_view{} : in.substr(0, nul);
  std::string_view target = nul == std::string_view::npos ? in : in.substr(nul + 1);

  auto t = mup::api::split_target(target);
  if (t.path.size() + t.query.size() > target.size()) std::abort();
  (void)mup::api::parse_query(t.query);
  if (auto d = mup::percent_decode(t.path, false); d && d->size() > t.path.size()) std::abort();

  if (auto p = mup::api::parse_pattern(pattern)) {
    if (p->segments.empty()) std::abort();
    check(*p, t.path);
  }
  for (std::string_view s : kPatterns) {
    auto p = mup::api::parse_pattern(s);
    if (!p) std::abort();
    check(*p, t.path);
  }
  return 0;
}
