#include "snapshot/manifest.hpp"

#include <time.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/fs.hpp"
#include "package/manifest.hpp"

namespace mup::snapshot {

using nlohmann::json;

namespace {

Error bad(const std::string& what) {
  return Error(Errc::corrupt, "snapshot manifest: " + what);
}

Result<uint32_t> parse_mode(const json& j, const std::string& where) {
  if (!j.is_string()) return tl::unexpected(bad("mode of " + where + " is not a string"));
  const std::string& s = j.get_ref<const std::string&>();
  if (s.size() != 4) return tl::unexpected(bad("mode of " + where + " is not 4 octal digits"));
  uint32_t m = 0;
  for (char c : s) {
    if (c < '0' || c > '7')
      return tl::unexpected(bad("mode of " + where + " is not 4 octal digits"));
    m = m * 8 + static_cast<uint32_t>(c - '0');
  }
  return m;
}

// Reads j[key] as an unsigned integer no larger than `max`.
Result<uint64_t> get_uint(const json& j, const char* key, const std::string& where,
                          uint64_t max = UINT64_MAX) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned() || it->get<uint64_t>() > max)
    return tl::unexpected(bad(std::string("\"") + key + "\" of " + where +
                              " is missing or not an unsigned integer in range"));
  return it->get<uint64_t>();
}

Result<std::string> get_str(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    return tl::unexpected(
        bad(std::string("\"") + key + "\" of " + where + " is missing or not a string"));
  return it->get<std::string>();
}

Result<ManifestEntry> parse_entry(const json& j) {
  if (!j.is_object()) return tl::unexpected(bad("an entry is not an object"));
  ManifestEntry e;
  auto path = get_str(j, "path", "an entry");
  if (!path) return tl::unexpected(path.error());
  e.path = std::move(*path);
  if (auto s = validate_rel_path(e.path); !s) return tl::unexpected(s.error());
  const std::string where = "\"" + e.path + "\"";
  auto type = get_str(j, "type", where);
  if (!type) return tl::unexpected(type.error());
  if (*type == "file") {
    e.type = EntryType::file;
  } else if (*type == "dir") {
    e.type = EntryType::dir;
  } else if (*type == "symlink") {
    e.type = EntryType::symlink;
  } else {
    return tl::unexpected(bad("unknown type \"" + *type + "\" for " + where));
  }
  auto uid = get_uint(j, "uid", where, UINT32_MAX);
  if (!uid) return tl::unexpected(uid.error());
  auto gid = get_uint(j, "gid", where, UINT32_MAX);
  if (!gid) return tl::unexpected(gid.error());
  e.uid = static_cast<uint32_t>(*uid);
  e.gid = static_cast<uint32_t>(*gid);
  if (e.type == EntryType::symlink) {
    e.mode = 0777;
    auto target = get_str(j, "target", where);
    if (!target) return tl::unexpected(target.error());
    if (target->empty() || target->size() > Manifest::kMaxPath ||
        target->find('\0') != std::string::npos)
      return tl::unexpected(bad("bad symlink target for " + where));
    e.target = std::move(*target);
    return e;
  }
  auto mode_it = j.find("mode");
  if (mode_it == j.end()) return tl::unexpected(bad("missing mode for " + where));
  auto mode = parse_mode(*mode_it, where);
  if (!mode) return tl::unexpected(mode.error());
  e.mode = *mode;
  if (e.type == EntryType::file) {
    auto size = get_uint(j, "size", where);
    if (!size) return tl::unexpected(size.error());
    e.size = *size;
    auto sha = get_str(j, "sha256", where);
    if (!sha) return tl::unexpected(sha.error());
    auto d = Digest::from_hex(*sha);
    if (!d || sha->size() != 64) return tl::unexpected(bad("bad sha256 for " + where));
    e.sha256 = *d;
  }
  return e;
}

}  // namespace

std::string octal_mode(uint32_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

std::string_view type_name(EntryType t) {
  switch (t) {
    case EntryType::dir: return "dir";
    case EntryType::file: return "file";
    case EntryType::symlink: return "symlink";
  }
  return "?";
}

Status validate_rel_path(std::string_view path) {
  std::string why = fs::unsafe_path_reason(path, Manifest::kMaxPath);
  if (why.empty()) return {};
  return fail(Errc::corrupt, "snapshot manifest: unsafe path \"" +
                                 std::string(path.substr(0, 200)) + "\": " + why);
}

Result<IdParts> parse_id(std::string_view id) {
  auto reject = [&] {
    return fail(Errc::invalid_argument,
                "\"" + std::string(id.substr(0, 200)) +
                    "\" is not a snapshot id (<component>-<yyyymmddThhmmss>-<6 hex>)");
  };
  constexpr size_t kTail = 1 + 15 + 1 + 6;  // -stamp-random
  if (id.size() <= kTail) return reject();
  std::string_view comp = id.substr(0, id.size() - kTail);
  std::string_view tail = id.substr(id.size() - kTail);
  if (tail[0] != '-' || tail[16] != '-' || tail[9] != 'T') return reject();
  for (size_t i = 1; i < 16; ++i)
    if (i != 9 && (tail[i] < '0' || tail[i] > '9')) return reject();
  for (size_t i = 17; i < kTail; ++i)
    if (!((tail[i] >= '0' && tail[i] <= '9') || (tail[i] >= 'a' && tail[i] <= 'f')))
      return reject();
  if (!package::validate_component_name(comp)) return reject();
  return IdParts{comp, tail.substr(1, 15)};
}

std::string format_stamp(int64_t unix_ms) {
  time_t secs = static_cast<time_t>(unix_ms >= 0 ? unix_ms / 1000 : 0);
  struct tm tm {};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02d", (tm.tm_year + 1900) % 10000,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string Manifest::compute_content_hash() const {
  // Fields are NUL-terminated (paths and targets cannot hold NUL) and every entry has the
  // same fields, so distinct entry lists serialise to distinct bytes.
  Sha256 h;
  auto field = [&](std::string_view s) {
    h.update({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
    static const uint8_t kNul = 0;
    h.update({&kNul, 1});
  };
  field("mup-snapshot-content/1");
  if (absent) {
    field("absent");
  } else {
    field("root");
    field(octal_mode(root_mode));
    field(std::to_string(root_uid));
    field(std::to_string(root_gid));
  }
  for (const ManifestEntry& e : entries) {
    field(type_name(e.type));
    field(e.path);
    field(octal_mode(e.mode));
    field(std::to_string(e.uid));
    field(std::to_string(e.gid));
    field(std::to_string(e.size));
    field(e.type == EntryType::file ? e.sha256.hex() : "");
    field(e.target);
  }
  return h.finish().hex();
}

uint64_t Manifest::files() const {
  uint64_t n = 0;
  for (const ManifestEntry& e : entries) n += e.type == EntryType::file;
  return n;
}

uint64_t Manifest::bytes() const {
  uint64_t n = 0;
  for (const ManifestEntry& e : entries) n += e.type == EntryType::file ? e.size : 0;
  return n;
}

std::string Manifest::to_json() const {
  json list = json::array();
  for (const ManifestEntry& e : entries) {
    json j = {{"path", e.path}, {"type", type_name(e.type)}, {"uid", e.uid}, {"gid", e.gid}};
    if (e.type != EntryType::symlink) j["mode"] = octal_mode(e.mode);
    if (e.type == EntryType::file) {
      j["size"] = e.size;
      j["sha256"] = e.sha256.hex();
    }
    if (e.type == EntryType::symlink) j["target"] = e.target;
    list.push_back(std::move(j));
  }
  json j = {{"format", kFormat},
            {"id", id},
            {"component", component},
            {"version", version},
            {"label", label},
            {"created_at_ms", created_at_ms},
            {"absent", absent},
            {"entries", std::move(list)},
            {"files", files()},
            {"bytes", bytes()},
            {"bytes_copied", bytes_copied},
            {"files_linked", files_linked},
            {"content_hash", content_hash}};
  if (!absent) j["root"] = {{"mode", octal_mode(root_mode)}, {"uid", root_uid}, {"gid", root_gid}};
  // Labels and versions are caller text: replace invalid UTF-8 rather than throw.
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<Manifest> Manifest::parse(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return tl::unexpected(bad("not a JSON object"));
  try {
    auto format = j.find("format");
    if (format == j.end() || !format->is_number_integer() || format->get<int64_t>() != kFormat)
      return fail(Errc::unsupported,
                  "snapshot manifest format is not " + std::to_string(kFormat) + "; upgrade mup");
    Manifest m;
    for (auto [key, out] : {std::pair{"id", &m.id}, std::pair{"component", &m.component},
                            std::pair{"version", &m.version}, std::pair{"label", &m.label},
                            std::pair{"content_hash", &m.content_hash}}) {
      auto s = get_str(j, key, "the snapshot");
      if (!s) return tl::unexpected(s.error());
      *out = std::move(*s);
    }
    auto id = parse_id(m.id);
    if (!id || id->component != m.component)
      return tl::unexpected(
          bad("id \"" + m.id + "\" does not name component \"" + m.component + "\""));
    auto created = j.find("created_at_ms");
    if (created == j.end() || !created->is_number_integer())
      return tl::unexpected(bad("\"created_at_ms\" is missing"));
    m.created_at_ms = created->get<int64_t>();
    auto absent = j.find("absent");
    if (absent == j.end() || !absent->is_boolean())
      return tl::unexpected(bad("\"absent\" is missing"));
    m.absent = absent->get<bool>();
    for (auto [key, out] :
         {std::pair{"bytes_copied", &m.bytes_copied}, std::pair{"files_linked", &m.files_linked}}) {
      auto v = get_uint(j, key, "the snapshot");
      if (!v) return tl::unexpected(v.error());
      *out = *v;
    }
    if (!m.absent) {
      auto root = j.find("root");
      if (root == j.end() || !root->is_object()) return tl::unexpected(bad("\"root\" is missing"));
      auto mode = root->find("mode");
      if (mode == root->end()) return tl::unexpected(bad("\"root\" has no mode"));
      auto rm = parse_mode(*mode, "the state directory");
      auto uid = get_uint(*root, "uid", "the state directory", UINT32_MAX);
      auto gid = get_uint(*root, "gid", "the state directory", UINT32_MAX);
      if (!rm) return tl::unexpected(rm.error());
      if (!uid) return tl::unexpected(uid.error());
      if (!gid) return tl::unexpected(gid.error());
      m.root_mode = *rm;
      m.root_uid = static_cast<uint32_t>(*uid);
      m.root_gid = static_cast<uint32_t>(*gid);
    }
    auto entries = j.find("entries");
    if (entries == j.end() || !entries->is_array())
      return tl::unexpected(bad("\"entries\" is missing"));
    if (entries->size() > kMaxEntries) return tl::unexpected(bad("too many entries"));
    if (m.absent && !entries->empty())
      return tl::unexpected(bad("an absent state directory has entries"));
    m.entries.reserve(entries->size());
    std::unordered_set<std::string_view> dirs;
    for (const json& je : *entries) {
      auto e = parse_entry(je);
      if (!e) return tl::unexpected(e.error());
      if (!m.entries.empty() && !(m.entries.back().path < e->path))
        return tl::unexpected(bad(m.entries.back().path == e->path
                                      ? "duplicate path " + e->path
                                      : "paths out of order at " + e->path));
      m.entries.push_back(std::move(*e));
      const ManifestEntry& added = m.entries.back();
      size_t slash = added.path.rfind('/');
      if (slash != std::string::npos && !dirs.count(std::string_view(added.path).substr(0, slash)))
        return tl::unexpected(bad("parent of " + added.path + " is not a directory entry"));
      // Views into m.entries stay valid: reserve() above fixed its capacity.
      if (added.type == EntryType::dir) dirs.insert(added.path);
    }
    return m;
  } catch (const json::exception& e) {
    return tl::unexpected(bad(e.what()));
  }
}

}  // namespace mup::snapshot
