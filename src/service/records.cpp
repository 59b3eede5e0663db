// Instance records (<root>/run/instances/<id-safe>.json) and adoption at open().
//
// A record is rewritten (atomically) whenever what a later agent needs changes: a spawn,
// readiness, an exit, a restart, the restart flag. It holds the definition itself, so an
// adopted instance can be stopped and restarted even if its tree changed.
#include <signal.h>

#include <fstream>
#include <set>

#include "core/fs.hpp"
#include "service/errors.hpp"
#include "service/procfs.hpp"
#include "service/supervisor_internal.hpp"

namespace mup::service::detail {

namespace {

constexpr int kRecordVersion = 1;

nlohmann::json record_json(const Instance& in, const std::string& boot_id) {
  return {{"record_version", kRecordVersion},
          {"id", in.id},
          {"component", in.key.component},
          {"version", in.key.version},
          {"index", in.key.index},
          {"tree", in.tree.string()},
          {"pid", in.pid},
          {"port", in.port},
          {"start_ticks", in.start_ticks},
          {"boot_id", boot_id},
          {"started_at", in.started_at},
          {"state", in.state},
          {"restart", in.restart},
          {"restarts", in.restarts},
          {"last_exit", in.last_exit},
          {"log", in.log.string()},
          {"state_dir", in.state_dir.string()},
          {"cgroup", in.cgroup.string()},
          {"limits", in.limits},
          {"definition", in.def.to_json()}};
}

Result<std::shared_ptr<Instance>> instance_from_record(const nlohmann::json& j) {
  try {
    auto in = std::make_shared<Instance>();
    in->key.component = j.at("component").get<std::string>();
    in->key.version = j.at("version").get<std::string>();
    in->key.index = j.at("index").get<int>();
    in->id = in->key.id();
    in->safe = id_safe(in->id);
    in->tree = j.at("tree").get<std::string>();
    in->pid = j.at("pid").get<pid_t>();
    in->port = j.at("port").get<int>();
    in->start_ticks = j.at("start_ticks").get<uint64_t>();
    in->started_at = j.at("started_at").get<int64_t>();
    in->state = j.at("state").get<std::string>();
    in->restart = j.at("restart").get<bool>();
    in->restarts = j.at("restarts").get<int>();
    in->last_exit = j.value("last_exit", std::string());
    in->log = j.at("log").get<std::string>();
    in->state_dir = j.at("state_dir").get<std::string>();
    in->cgroup = j.value("cgroup", std::string());
    in->limits = j.value("limits", std::string("none"));
    auto def = service_def_from_json(j.at("definition"));
    if (!def) return tl::unexpected(def.error());
    in->def = std::move(*def);
    return in;
  } catch (const std::exception& e) {
    return fail(Code::bad_definition, std::string("malformed instance record: ") + e.what());
  }
}

}  // namespace

Status Impl::write_record_locked(const Instance& in) const {
  std::string text = record_json(in, boot_id).dump(2) + "\n";
  return fs::write_file_atomic(
      record_path(in), std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), 0600);
}

void Impl::remove_record_locked(const Instance& in) const {
  std::error_code ec;
  stdfs::remove(record_path(in), ec);
}

Status Impl::adopt_records() {
  std::error_code ec;
  std::vector<stdfs::path> files;
  for (const auto& e : stdfs::directory_iterator(records_dir(), ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || e.path().extension() != ".json") continue;
    files.push_back(e.path());
  }
  if (ec) return fail_errno("list", records_dir().string(), ec.value());
  std::lock_guard lock(mu);
  for (const auto& file : files) {
    fs::sweep_stale_temps(file);
    auto bytes = fs::read_file(file, 1 << 20);
    nlohmann::json j = bytes ? nlohmann::json::parse(bytes->begin(), bytes->end(), nullptr, false)
                             : nlohmann::json();
    auto in = j.is_discarded() || j.is_null()
                  ? Result<std::shared_ptr<Instance>>(fail(Code::bad_definition, "unreadable"))
                  : instance_from_record(j);
    if (!in) {
      pending_events.push_back({{"event", "record-ignored"},
                                {"file", file.string()},
                                {"error", in.error().message()},
                                {"at", opts.clock->wall_ms()}});
      continue;
    }
    Instance& inst = **in;
    bool same_boot = j.value("boot_id", std::string()) == boot_id && !boot_id.empty();
    bool alive =
        inst.pid > 0 && same_boot && procfs::same_process_alive(inst.pid, inst.start_ticks);
    if (alive) {
      inst.pidfd = procfs::pidfd_open(inst.pid);
      // The pidfd was opened after the check: make sure it names the same process.
      if (!procfs::same_process_alive(inst.pid, inst.start_ticks)) {
        if (inst.pidfd >= 0) ::close(inst.pidfd);
        inst.pidfd = -1;
        alive = false;
      }
    }
    inst.started_mono = now();
    if (alive) {
      inst.adopted = true;
      if (inst.state != "ready") inst.state = "starting";
      event_locked(inst, "adopted", {{"pid", inst.pid}, {"port", inst.port}});
    } else {
      pid_t was = inst.pid;
      if (was > 0)
        inst.last_exit = same_boot ? "not running when the supervisor opened (recorded pid " +
                                         std::to_string(was) + ")"
                                   : "gone with a previous boot";
      inst.pid = 0;
      inst.start_ticks = 0;
      inst.exits++;
      if (was > 0) event_locked(inst, "exited", {{"pid", was}, {"status", inst.last_exit}});
      if (inst.restart) {
        inst.state = "backoff";
        inst.restart_at = now();
      } else {
        inst.state = "exited";
      }
      MUP_TRY(write_record_locked(inst));
    }
    instances[inst.id] = *in;
  }
  return {};
}

void Impl::reap_orphans() {
  const std::string prefix = "MUP_STATE_DIR=" + (opts.root / "state").string() + "/";
  std::set<pid_t> known;
  {
    std::lock_guard lock(mu);
    for (const auto& [id, in] : instances)
      if (in->pid > 0) known.insert(in->pid);
  }
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.size() > 9 ||
        name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (known.count(pid)) continue;
    // Only the leader of its own session: an instance's children share its environment.
    auto st = procfs::read_stat(pid);
    if (!st || st->session != pid || known.count(st->pgrp)) continue;
    std::ifstream env(e.path() / "environ", std::ios::binary);
    std::string var;
    bool ours = false;
    while (std::getline(env, var, '\0'))
      if (var.rfind(prefix, 0) == 0) {
        ours = true;
        break;
      }
    if (!ours) continue;
    ::kill(-pid, SIGKILL);
    std::lock_guard lock(mu);
    pending_events.push_back(
        {{"event", "orphan-killed"}, {"pid", pid}, {"at", opts.clock->wall_ms()}});
  }
}

}  // namespace mup::service::detail
