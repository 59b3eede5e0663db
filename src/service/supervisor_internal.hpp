// Inside the Supervisor: one Instance per id, all guarded by Impl::mu. Shared by
// supervisor.cpp (public calls), monitor.cpp (the monitor thread) and records.cpp
// (instance records and adoption). Not part of the module's interface.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "service/spawn.hpp"
#include "service/supervisor.hpp"

namespace mup::service::detail {

namespace stdfs = std::filesystem;
using steady = std::chrono::steady_clock;

struct Instance {
  InstanceKey key;
  std::string id;
  std::string safe;  // id_safe(id)
  ServiceDef def;
  stdfs::path tree;
  stdfs::path log;
  stdfs::path state_dir;

  // The current process; pid 0 when there is none (backoff, exited).
  pid_t pid = 0;
  int pidfd = -1;
  uint64_t start_ticks = 0;
  int64_t started_at = 0;
  steady::time_point started_mono{};
  int port = 0;
  bool adopted = false;
  stdfs::path cgroup;
  std::string limits = "none";

  std::string state = "starting";
  bool restart = true;
  bool stopping = false;  // stop() owns it now: no restart, pidfd kept until stop closes it
  int restarts = 0;
  uint64_t exits = 0;  // exits observed, so a waiter can tell that one happened
  std::string last_exit;
  int crash_streak = 0;
  steady::time_point restart_at{};

  double cpu_percent = 0;
  uint64_t rss_bytes = 0;
  uint64_t cpu_ticks = 0;  // CPU time at the last sample, in microseconds
  steady::time_point sampled_at{};
  bool sampled = false;

  InstanceInfo info() const;
};

struct Impl {
  explicit Impl(SupervisorOptions o) : opts(std::move(o)) {}

  SupervisorOptions opts;
  std::string boot_id;
  int lock_fd = -1;

  mutable std::mutex mu;
  std::map<std::string, std::shared_ptr<Instance>> instances;  // guarded by mu
  std::vector<nlohmann::json> pending_events;                  // guarded by mu
  std::mutex events_mu;                                        // serialises delivery

  std::mutex quit_mu;
  std::condition_variable quit_cv;
  bool quit = false;  // guarded by quit_mu
  std::thread monitor;

  stdfs::path records_dir() const { return opts.root / "run" / "instances"; }
  stdfs::path record_path(const Instance& in) const { return records_dir() / (in.safe + ".json"); }
  steady::time_point now() const { return opts.clock->monotonic(); }

  // --- under mu ---
  void event_locked(const Instance& in, std::string_view name, nlohmann::json extra = {});
  // Spawns in's process from its definition (port already chosen).
  [[nodiscard]] Status spawn_locked(Instance& in);
  // Builds what to exec for `argv` (exec or ready.exec) with in's environment.
  [[nodiscard]] Result<SpawnSpec> spec_for_locked(const Instance& in,
                                                  const std::vector<std::string>& argv) const;
  // Notices whether in's process exited; if so records how and schedules a restart.
  void check_exit_locked(Instance& in);
  void restart_locked(Instance& in);
  void sample_locked(Instance& in);
  void rotate_log_locked(Instance& in);
  [[nodiscard]] Status write_record_locked(const Instance& in) const;
  void remove_record_locked(const Instance& in) const;

  // --- without mu ---
  void flush_events();
  [[nodiscard]] Status adopt_records();
  // Instances of this root that run without a record (a supervisor killed between spawn and
  // the record's write): found by the MUP_STATE_DIR their environment carries, killed.
  void reap_orphans();
  void monitor_loop();
};

// The last `lines` lines of a log file ("" if unreadable).
std::string log_tail(const stdfs::path& log, int lines);

}  // namespace mup::service::detail
