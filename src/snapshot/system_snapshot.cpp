// System snapshots: one record, `<root>/system/<id>.json`, naming a snapshot per component
// and the state directory it restores to:
//   {"format":1, "id", "label", "created_at_ms",
//    "members": [{"id", "component", "state_dir" (absolute)}]}
// The record is written atomically after all its members exist, and removed (renamed to a
// temp name) before any member is deleted, so a record never names a missing member unless
// someone deleted one behind the store's back.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <set>

#include "core/fs.hpp"
#include "snapshot/snapshot_store.hpp"
#include "snapshot/store_internal.hpp"
#include "snapshot/tree_ops.hpp"

namespace mup::snapshot {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kSystemFormat = 1;

struct Member {
  std::string id;
  std::string component;
  stdfs::path state_dir;
};

struct SystemRecord {
  std::string id;
  std::string label;
  int64_t created_at_ms = 0;
  std::vector<Member> members;
};

Error bad(const stdfs::path& file, const std::string& what) {
  return Error(Errc::corrupt, "system snapshot record " + file.string() + ": " + what);
}

Result<SystemRecord> read_record(const stdfs::path& file, std::string_view id) {
  auto bytes = fs::read_file(file, 64 << 20);
  if (!bytes) return tl::unexpected(bytes.error());
  json j = json::parse(bytes->begin(), bytes->end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return tl::unexpected(bad(file, "not a JSON object"));
  try {
    if (!j.contains("format") || !j["format"].is_number_integer() ||
        j["format"].get<int64_t>() != kSystemFormat)
      return fail(Errc::unsupported, "system snapshot record " + file.string() +
                                         ": format is not " + std::to_string(kSystemFormat) +
                                         "; upgrade mup");
    SystemRecord r;
    if (!j.contains("id") || !j["id"].is_string() || j["id"].get<std::string>() != id)
      return tl::unexpected(bad(file, "its id is not " + std::string(id)));
    r.id = id;
    if (j.contains("label") && j["label"].is_string()) r.label = j["label"].get<std::string>();
    if (!j.contains("created_at_ms") || !j["created_at_ms"].is_number_integer())
      return tl::unexpected(bad(file, "\"created_at_ms\" is missing"));
    r.created_at_ms = j["created_at_ms"].get<int64_t>();
    if (!j.contains("members") || !j["members"].is_array() || j["members"].empty())
      return tl::unexpected(bad(file, "\"members\" is missing or empty"));
    for (const json& jm : j["members"]) {
      if (!jm.is_object() || !jm.contains("id") || !jm["id"].is_string() ||
          !jm.contains("component") || !jm["component"].is_string() || !jm.contains("state_dir") ||
          !jm["state_dir"].is_string())
        return tl::unexpected(bad(file, "a member lacks id, component or state_dir"));
      Member m{jm["id"].get<std::string>(), jm["component"].get<std::string>(),
               jm["state_dir"].get<std::string>()};
      auto parts = parse_id(m.id);
      if (!parts || parts->component != m.component || m.component == kSystemDir ||
          !m.state_dir.is_absolute())
        return tl::unexpected(bad(file, "member \"" + m.id + "\" is malformed"));
      r.members.push_back(std::move(m));
    }
    return r;
  } catch (const json::exception& e) {
    return tl::unexpected(bad(file, e.what()));
  }
}

Result<stdfs::path> record_path(const stdfs::path& root, std::string_view id) {
  auto parts = parse_id(id);
  if (!parts || parts->component != kSystemDir)
    return fail(Errc::invalid_argument, "\"" + std::string(id.substr(0, 200)) +
                                            "\" is not a system snapshot id "
                                            "(system-<yyyymmddThhmmss>-<6 hex>)");
  return root / kSystemDir / (std::string(id) + ".json");
}

// Ids of the records under `<root>/system/`, skipping temp files.
Result<std::vector<std::string>> record_ids(const stdfs::path& root) {
  auto names = detail::list_names(root / kSystemDir);
  if (!names) return tl::unexpected(names.error());
  std::vector<std::string> ids;
  constexpr std::string_view kExt = ".json";
  for (const std::string& name : *names) {
    if (name.size() <= kExt.size() || name.compare(name.size() - kExt.size(), kExt.size(), kExt))
      continue;
    std::string id = name.substr(0, name.size() - kExt.size());
    if (auto p = parse_id(id); p && p->component == kSystemDir) ids.push_back(std::move(id));
  }
  return ids;
}

}  // namespace

Result<std::vector<std::string>> SnapshotStore::system_groups_naming(std::string_view id) const {
  auto ids = record_ids(root_);
  if (!ids) return tl::unexpected(ids.error());
  std::vector<std::string> groups;
  for (const std::string& g : *ids) {
    const stdfs::path file = root_ / kSystemDir / (g + ".json");
    auto r = read_record(file, g);
    if (!r)
      return tl::unexpected(r.error().context("checking which system snapshots use " +
                                              std::string(id) + " (remove_system " + g +
                                              " if it cannot be repaired)"));
    for (const Member& m : r->members)
      if (m.id == id) groups.push_back(g);
  }
  return groups;
}

Result<SystemSnapshot> SnapshotStore::create_system(const std::vector<ComponentState>& members,
                                                    std::string_view label) {
  if (members.empty())
    return fail(Errc::invalid_argument, "a system snapshot needs at least one component");
  std::set<std::string_view> seen;
  for (const ComponentState& c : members)
    if (!seen.insert(c.component).second)
      return fail(Errc::invalid_argument,
                  "component " + c.component + " appears twice in the system snapshot");
  SystemSnapshot s;
  s.created_at_ms = now_();
  s.id = new_id(kSystemDir, s.created_at_ms);
  s.label = label;
  const std::string where = "system snapshot " + s.id;
  auto undo = [&] {
    for (const SnapshotInfo& i : s.members) (void)remove(i.id);
  };
  json list = json::array();
  for (const ComponentState& c : members) {
    std::error_code ec;
    stdfs::path dir = stdfs::absolute(c.state_dir, ec).lexically_normal();
    if (ec) {
      undo();
      return fail_errno("resolve", c.state_dir.string(), ec.value());
    }
    auto info = create(c.component, dir, c.version, label);
    if (!info) {
      undo();
      return tl::unexpected(info.error().context(where));
    }
    list.push_back({{"id", info->id}, {"component", c.component}, {"state_dir", dir.string()}});
    s.members.push_back(std::move(*info));
    s.state_dirs.push_back(std::move(dir));
  }
  json record = {{"format", kSystemFormat},
                 {"id", s.id},
                 {"label", s.label},
                 {"created_at_ms", s.created_at_ms},
                 {"members", std::move(list)}};
  const std::string text = record.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
  const stdfs::path sys_dir = root_ / kSystemDir;
  const bool new_dir = !detail::path_exists(sys_dir);
  Status st = fs::create_dirs(sys_dir);
  if (st && new_dir) st = fs::fsync_dir(root_);
  if (st)
    st = fs::write_file_atomic(sys_dir / (s.id + ".json"),
                               {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, 0444);
  if (!st) {
    undo();
    return tl::unexpected(st.error().context(where));
  }
  return s;
}

Result<SystemSnapshot> SnapshotStore::get_system(std::string_view id) const {
  auto file = record_path(root_, id);
  if (!file) return tl::unexpected(file.error());
  struct stat st {};
  if (::lstat(file->c_str(), &st) != 0)
    return errno == ENOENT ? fail(Errc::not_found,
                                  "no system snapshot " + std::string(id) + " in " + root_.string())
                           : fail_errno("stat", file->string(), errno);
  auto r = read_record(*file, id);
  if (!r) return tl::unexpected(r.error());
  SystemSnapshot s;
  s.id = r->id;
  s.label = r->label;
  s.created_at_ms = r->created_at_ms;
  for (const Member& m : r->members) {
    auto info = get(m.id);
    if (!info)
      return tl::unexpected(info.error().context("member " + m.id + " of system snapshot " + s.id));
    s.members.push_back(std::move(*info));
    s.state_dirs.push_back(m.state_dir);
  }
  return s;
}

Result<std::vector<SystemSnapshot>> SnapshotStore::list_system() const {
  auto ids = record_ids(root_);
  if (!ids) return tl::unexpected(ids.error());
  std::vector<SystemSnapshot> out;
  for (const std::string& id : *ids) {
    auto s = get_system(id);
    if (!s) return tl::unexpected(s.error());
    out.push_back(std::move(*s));
  }
  std::sort(out.begin(), out.end(), [](const SystemSnapshot& a, const SystemSnapshot& b) {
    return std::pair(a.created_at_ms, a.id) < std::pair(b.created_at_ms, b.id);
  });
  return out;
}

Status SnapshotStore::restore_system(std::string_view id) const {
  auto s = get_system(id);
  if (!s) return tl::unexpected(s.error());
  const std::string where = "restoring system snapshot " + s->id;
  for (const SnapshotInfo& m : s->members) {
    auto report = verify(m.id);
    if (!report) return tl::unexpected(report.error().context(where));
    if (!report->ok())
      return fail(Errc::corrupt,
                  where + ": " + report->summary() + "; restored none of its members");
  }
  for (size_t i = 0; i < s->members.size(); ++i) {
    if (auto r = restore(s->members[i].id, s->state_dirs[i]); !r)
      return tl::unexpected(r.error().context(where + " (" + std::to_string(i) + " of " +
                                              std::to_string(s->members.size()) +
                                              " members restored before this one; run it again)"));
  }
  return {};
}

Status SnapshotStore::remove_system(std::string_view id) {
  auto file = record_path(root_, id);
  if (!file) return tl::unexpected(file.error());
  struct stat st {};
  if (::lstat(file->c_str(), &st) != 0)
    return errno == ENOENT ? fail(Errc::not_found,
                                  "no system snapshot " + std::string(id) + " in " + root_.string())
                           : fail_errno("stat", file->string(), errno);
  // A damaged record is still removed; its members then stay as ordinary snapshots.
  auto record = read_record(*file, id);
  const stdfs::path tmp = fs::temp_sibling(*file);
  if (::rename(file->c_str(), tmp.c_str()) != 0)
    return fail_errno("move aside", file->string(), errno);
  MUP_TRY(fs::fsync_dir(file->parent_path()));
  if (record) {
    for (const Member& m : record->members) {
      auto r = remove(m.id);
      if (!r && r.error().code() != Errc::not_found)
        return tl::unexpected(r.error().context("removing system snapshot " + std::string(id)));
    }
  }
  ::unlink(tmp.c_str());
  return {};
}

}  // namespace mup::snapshot
