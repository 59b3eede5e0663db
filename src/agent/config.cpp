// agent.toml and durations.
#include <toml++/toml.h>

#include <charconv>

#include "agent/agent.hpp"
#include "deploy/deployment.hpp"

namespace mup::agent {

Result<int64_t> parse_duration_ms(std::string_view text) {
  if (text.empty()) return fail(Errc::invalid_argument, "empty duration (use e.g. 30s, 10m, 1h)");
  int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || n < 0)
    return fail(Errc::invalid_argument,
                "'" + std::string(text) + "' is not a duration (use e.g. 500ms, 30s, 10m, 1h)");
  std::string_view unit(p, text.data() + text.size() - p);
  int64_t mul = 0;
  if (unit == "ms")
    mul = 1;
  else if (unit.empty() || unit == "s")
    mul = 1000;
  else if (unit == "m")
    mul = 60'000;
  else if (unit == "h")
    mul = 3'600'000;
  if (mul == 0 || n > INT64_MAX / mul)
    return fail(Errc::invalid_argument,
                "'" + std::string(text) + "' is not a duration (use e.g. 500ms, 30s, 10m, 1h)");
  return n * mul;
}

Result<AgentConfig> parse_config(const std::filesystem::path& file) {
  AgentConfig cfg;
  toml::table t;
  try {
    t = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    return fail(Errc::invalid_argument, file.string() + ":" +
                                            std::to_string(e.source().begin.line) + ": " +
                                            std::string(e.description()));
  } catch (const std::exception& e) {
    return fail(Errc::io, "reading " + file.string() + ": " + e.what());
  }
  auto where = [&](const toml::node& n, const std::string& key) {
    return file.string() + ":" + std::to_string(n.source().begin.line) + ": " + key;
  };
  for (const auto& [section, node] : t) {
    const std::string s(section.str());
    const toml::table* tab = node.as_table();
    if (!tab || (s != "agent" && s != "deploy"))
      return fail(Errc::invalid_argument, where(node, s) + ": unknown section (agent, deploy)");
    for (const auto& [key, value] : *tab) {
      const std::string k(key.str());
      const std::string name = s + "." + k;
      auto str = value.value<std::string>();
      if (!str) return fail(Errc::invalid_argument, where(value, name) + ": must be a string");
      if (s == "agent" && k == "listen") {
        cfg.listen = *str;
      } else if (s == "deploy" && k == "strategy") {
        auto st = deploy::parse_strategy(*str);
        if (!st || *st == deploy::Strategy::rollback)
          return fail(Errc::invalid_argument,
                      where(value, name) + ": '" + *str + "' is not one of immediate, blue-green");
        cfg.strategy = *str;
      } else if (s == "deploy" && (k == "keep_old" || k == "soak")) {
        auto d = parse_duration_ms(*str);
        if (!d)
          return fail(Errc::invalid_argument, where(value, name) + ": " + d.error().message());
        (k == "soak" ? cfg.soak_ms : cfg.keep_old_ms) = *d;
      } else {
        return fail(Errc::invalid_argument, where(value, name) + ": unknown key");
      }
    }
  }
  return cfg;
}

}  // namespace mup::agent
