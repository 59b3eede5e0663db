#include "package/manifest.hpp"

#include <algorithm>
#include <set>

namespace mup::package {

using nlohmann::json;

namespace {
constexpr std::pair<PackageType, std::string_view> kTypes[] = {
    {PackageType::kernel, "kernel"},     {PackageType::service, "service"},
    {PackageType::ai_model, "ai-model"}, {PackageType::application, "application"},
    {PackageType::config, "config"},     {PackageType::security, "security"}};
constexpr std::pair<Priority, std::string_view> kPriorities[] = {{Priority::critical, "critical"},
                                                                 {Priority::high, "high"},
                                                                 {Priority::normal, "normal"},
                                                                 {Priority::low, "low"}};

Error bad(const std::string& what) {
  return Error(Errc::corrupt, "package manifest: " + what);
}

bool lower_hex(const json& v, size_t len) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  return s.size() == len && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// The "encryption" field: null, or exactly the shape Manifest documents.
Status validate_encryption(const json& e) {
  if (e.is_null()) return {};
  if (!e.is_object() || e.size() != 2 || !e.contains("scheme") || !e.contains("recipients"))
    return tl::unexpected(bad("\"encryption\" must be {\"scheme\", \"recipients\"}"));
  if (!e["scheme"].is_string() || e["scheme"].get<std::string>() != kSealedScheme)
    return fail(Errc::unsupported, "package manifest: unknown encryption scheme " +
                                       e["scheme"].dump().substr(0, 64) + "; upgrade mup");
  const json& rs = e["recipients"];
  if (!rs.is_array() || rs.empty() || rs.size() > kMaxRecipients)
    return tl::unexpected(bad("\"recipients\" must be a list of 1 to " +
                              std::to_string(kMaxRecipients) + " devices"));
  std::set<std::string> ids;
  // 92-byte wrapped key (crypto::wrap_key) in hex.
  constexpr size_t kWrappedHex = 2 * (32 + 12 + 32 + 16);
  for (const json& r : rs) {
    if (!r.is_object() || r.size() != 2 || !r.contains("key_id") || !r.contains("wrapped") ||
        !lower_hex(r["key_id"], 16) || !lower_hex(r["wrapped"], kWrappedHex))
      return tl::unexpected(bad("a recipient must be {\"key_id\": 16 hex, \"wrapped\": " +
                                std::to_string(kWrappedHex) + " hex}"));
    if (!ids.insert(r["key_id"].get<std::string>()).second)
      return tl::unexpected(
          bad("recipient " + r["key_id"].get<std::string>() + " is listed twice"));
  }
  return {};
}
}  // namespace

std::string_view type_name(PackageType t) {
  for (auto& [k, n] : kTypes)
    if (k == t) return n;
  return "?";
}

Result<PackageType> parse_type(std::string_view s) {
  for (auto& [k, n] : kTypes)
    if (n == s) return k;
  return fail(Errc::invalid_argument,
              "unknown package type \"" + std::string(s) +
                  "\" (kernel|service|ai-model|application|config|security)");
}

std::string_view priority_name(Priority p) {
  for (auto& [k, n] : kPriorities)
    if (k == p) return n;
  return "?";
}

Result<Priority> parse_priority(std::string_view s) {
  for (auto& [k, n] : kPriorities)
    if (n == s) return k;
  return fail(Errc::invalid_argument,
              "unknown priority \"" + std::string(s) + "\" (critical|high|normal|low)");
}

std::string_view default_strategy(PackageType t) {
  switch (t) {
    case PackageType::service: return "rolling";
    case PackageType::ai_model: return "canary";
    case PackageType::kernel: return "scheduled";
    default: return "immediate";
  }
}

Status validate_component_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && std::isalnum(static_cast<unsigned char>(name[0]));
  for (char c : name)
    ok = ok &&
         ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.');
  if (!ok)
    return fail(Errc::invalid_argument,
                "component name \"" + std::string(name) +
                    "\" must be 1-64 of [a-z0-9._-], starting with a letter or digit");
  return {};
}

namespace {
// [{"chunks": 1..2^32-1, "size": >0, "sha256": 64 hex}, ...], at most one segment per chunk a
// tree index can hold ("pack", and each bundle's "segments").
Result<std::vector<chunk::PackSegment>> parse_segments(const json& j, const std::string& what) {
  if (!j.is_array() || j.empty() || j.size() > chunk::TreeIndex::kMaxEntries)
    return tl::unexpected(bad("\"" + what + "\" is not a non-empty array of segments"));
  std::vector<chunk::PackSegment> out;
  out.reserve(j.size());
  for (const auto& s : j) {
    const bool shape = s.is_object() && s.size() == 3 && s.contains("chunks") &&
                       s.contains("size") && s.contains("sha256");
    if (!shape || !s["chunks"].is_number_unsigned() || !s["size"].is_number_unsigned() ||
        !s["sha256"].is_string() || s["chunks"].get<uint64_t>() == 0 ||
        s["chunks"].get<uint64_t>() > UINT32_MAX || s["size"].get<uint64_t>() == 0)
      return tl::unexpected(bad("a \"" + what + "\" segment is not {chunks, size, sha256}"));
    const auto count = s["chunks"], size = s["size"], sha = s["sha256"];
    auto d = Digest::from_hex(sha.get<std::string>());
    if (!d) return tl::unexpected(bad("a \"" + what + "\" segment's sha256 is not 64 hex digits"));
    out.push_back({static_cast<uint32_t>(count.get<uint64_t>()), size.get<uint64_t>(), *d});
  }
  return out;
}

json segments_json(const std::vector<chunk::PackSegment>& segments) {
  json out = json::array();
  for (const auto& seg : segments)
    out.push_back({{"chunks", seg.chunks}, {"size", seg.size}, {"sha256", seg.sha256.hex()}});
  return out;
}

// "bundles": [{"from": VERSION, "segments": [...]}, ...], each version once.
Result<std::vector<Bundle>> parse_bundles(const json& j) {
  if (!j.is_array() || j.size() > 1000)
    return tl::unexpected(bad("\"bundles\" is not an array of at most 1000 bundles"));
  std::vector<Bundle> out;
  for (const auto& b : j) {
    if (!b.is_object() || b.size() != 2 || !b.contains("from") || !b["from"].is_string() ||
        !Version::parse(b["from"].get<std::string>()) || !b.contains("segments"))
      return tl::unexpected(bad("a bundle is not {from: VERSION, segments}"));
    auto segs = parse_segments(b["segments"], "segments");
    if (!segs) return tl::unexpected(segs.error());
    for (const auto& o : out)
      if (o.from == b["from"].get<std::string>())
        return tl::unexpected(bad("two bundles from " + o.from));
    out.push_back({b["from"].get<std::string>(), std::move(*segs)});
  }
  return out;
}
}  // namespace

uint64_t Bundle::bytes() const {
  return chunk::segments_size(segments);
}

json Manifest::to_json() const {
  json deps = json::array();
  for (const auto& d : depends) deps.push_back(d.str());
  json j = {{"format", kFormat},
            {"id", id()},
            {"component", component},
            {"type", type_name(type)},
            {"version", version.str()},
            {"description", description},
            {"depends", deps},
            {"priority", priority_name(priority)},
            {"size", size},
            {"checksum", "sha256:" + index_sha256},
            {"index", index_target},
            {"strategy", strategy},
            {"rollback_policy", rollback_policy},
            {"delta_from", delta_from}};
  if (index_body_size > 0) j["index_body_size"] = index_body_size;
  if (!pack.empty()) j["pack"] = segments_json(pack);
  if (!bundles.empty()) {
    json bs = json::array();
    for (const auto& b : bundles)
      bs.push_back({{"from", b.from}, {"segments", segments_json(b.segments)}});
    j["bundles"] = std::move(bs);
  }
  if (!encryption.is_null()) j["encryption"] = encryption;
  return j;
}

Result<Manifest> Manifest::from_json(const json& j) {
  if (!j.is_object()) return tl::unexpected(bad("not a JSON object"));
  auto str = [&](const char* k) -> Result<std::string> {
    auto it = j.find(k);
    if (it == j.end() || !it->is_string())
      return tl::unexpected(bad(std::string("missing string \"") + k + "\""));
    return it->get<std::string>();
  };
  if (!j.contains("format") || !j["format"].is_number_integer() ||
      j["format"].get<int>() != kFormat)
    return fail(Errc::unsupported,
                "package manifest format is not " + std::to_string(kFormat) + "; upgrade mup");
  Manifest m;
  auto component = str("component");
  if (!component) return tl::unexpected(component.error());
  if (auto v = validate_component_name(*component); !v)
    return tl::unexpected(bad(v.error().message()));
  m.component = *component;
  auto type = str("type");
  if (!type) return tl::unexpected(type.error());
  auto t = parse_type(*type);
  if (!t) return tl::unexpected(bad(t.error().message()));
  m.type = *t;
  auto version = str("version");
  if (!version) return tl::unexpected(version.error());
  auto v = Version::parse(*version);
  if (!v) return tl::unexpected(bad(v.error().message()));
  m.version = *v;
  if (auto d = str("description")) m.description = *d;
  if (auto it = j.find("depends"); it != j.end()) {
    if (!it->is_array()) return tl::unexpected(bad("\"depends\" is not an array"));
    for (const auto& d : *it) {
      if (!d.is_string()) return tl::unexpected(bad("a dependency is not a string"));
      auto dep = Dependency::parse(d.get<std::string>());
      if (!dep) return tl::unexpected(bad(dep.error().message()));
      m.depends.push_back(std::move(*dep));
    }
  }
  auto prio = str("priority");
  if (!prio) return tl::unexpected(prio.error());
  auto p = parse_priority(*prio);
  if (!p) return tl::unexpected(bad(p.error().message()));
  m.priority = *p;
  if (!j.contains("size") || !j["size"].is_number_unsigned())
    return tl::unexpected(bad("missing \"size\""));
  m.size = j["size"].get<uint64_t>();
  auto checksum = str("checksum");
  if (!checksum) return tl::unexpected(checksum.error());
  if (checksum->rfind("sha256:", 0) != 0 || checksum->size() != 7 + 64)
    return tl::unexpected(bad("\"checksum\" must be sha256:<64 hex>"));
  m.index_sha256 = checksum->substr(7);
  auto index = str("index");
  if (!index) return tl::unexpected(index.error());
  m.index_target = *index;
  if (auto it = j.find("index_body_size"); it != j.end()) {
    if (!it->is_number_unsigned() || it->get<uint64_t>() == 0)
      return tl::unexpected(bad("\"index_body_size\" is not a positive integer"));
    m.index_body_size = it->get<uint64_t>();
  }
  auto strategy = str("strategy");
  if (!strategy) return tl::unexpected(strategy.error());
  if (std::find(std::begin(kStrategies), std::end(kStrategies), *strategy) == std::end(kStrategies))
    return tl::unexpected(bad("unknown strategy \"" + *strategy + "\""));
  m.strategy = *strategy;
  if (auto it = j.find("rollback_policy"); it != j.end()) {
    if (!it->is_object()) return tl::unexpected(bad("\"rollback_policy\" is not an object"));
    m.rollback_policy = *it;
  }
  if (auto it = j.find("delta_from"); it != j.end()) {
    if (!it->is_array()) return tl::unexpected(bad("\"delta_from\" is not an array"));
    for (const auto& d : *it) {
      if (!d.is_string() || !Version::parse(d.get<std::string>()))
        return tl::unexpected(bad("\"delta_from\" holds a non-version"));
      m.delta_from.push_back(d.get<std::string>());
    }
  }
  if (auto it = j.find("pack"); it != j.end()) {
    auto p = parse_segments(*it, "pack");
    if (!p) return tl::unexpected(p.error());
    m.pack = std::move(*p);
  }
  if (auto it = j.find("bundles"); it != j.end()) {
    auto b = parse_bundles(*it);
    if (!b) return tl::unexpected(b.error());
    m.bundles = std::move(*b);
  }
  if (auto it = j.find("encryption"); it != j.end()) {
    if (auto s = validate_encryption(*it); !s) return tl::unexpected(s.error());
    m.encryption = *it;
  }
  if (auto id = str("id"); !id || *id != m.id())
    return tl::unexpected(bad("\"id\" is not component@version"));
  return m;
}

Status check_dependencies(const Manifest& m, const std::map<std::string, Version>& have) {
  std::string missing;
  for (const auto& d : m.depends) {
    auto it = have.find(d.name);
    if (it != have.end() && d.constraint.matches(it->second)) continue;
    if (!missing.empty()) missing += "; ";
    missing +=
        d.str() + " (" + (it == have.end() ? "not installed" : "have " + it->second.str()) + ")";
  }
  if (missing.empty()) return {};
  return fail(Errc::invalid_argument, m.id() + " has unmet dependencies: " + missing +
                                          "; install them first (or use --with-deps)");
}

}  // namespace mup::package
