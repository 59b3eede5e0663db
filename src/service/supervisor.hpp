// Supervisor: runs a service's instances as detached processes, and finds them again.
//
// Why it is shaped like this (docs/agent.md, "Why the data plane is its own process"): the
// agent may be SIGKILLed at any moment and must come back without stopping anything. So:
//   - An instance is spawned in its own session (setsid; pgid == pid), stdin /dev/null,
//     stdout+stderr appended (O_APPEND) to `<root>/logs/<component>/<id-safe>.log` — a
//     file, never a pipe to the agent — and every other descriptor closed (spawn.hpp).
//     Its environment: PORT, MUP_COMPONENT, MUP_VERSION, MUP_INSTANCE, MUP_STATE_DIR
//     (`<root>/state/<component>/`, created 0700), then the definition's env; {port}
//     {version} {instance} {state_dir} are substituted in exec and env. cwd is the workdir
//     in the tree. Its port is a free loopback port (bind 127.0.0.1:0, read, close); if
//     another process takes it first the instance dies with "address in use" in its log,
//     and that is what wait_ready() reports.
//   - Each instance is recorded in `<root>/run/instances/<id-safe>.json` (atomic replace):
//     id, component, version, index, tree, pid, port, start_ticks (field 22 of
//     /proc/<pid>/stat), boot_id, started_at, restart flag, restarts, and the definition.
//   - open() adopts a recorded instance whose pid is alive with the same start_ticks and
//     boot_id (so a recycled pid is never taken for it). The others are reported exited
//     and restarted if their restart flag is on; with it off they are listed as exited
//     until stop() removes them.
//   - Tracking uses pidfd_open (Linux >= 5.3), so signals never reach a recycled pid;
//     without it, kill(pid, 0) plus a start_ticks check. Our own children are reaped with
//     waitpid (exit status known); adopted ones were reparented to init and are watched by
//     their pidfd ("exited (adopted; status unknown)").
//   - Destroying a Supervisor (or detach()) stops its monitor thread and leaves every
//     instance running and recorded: that is the point. Only stop() stops an instance.
//   - A monitor thread wakes every `tick` (100 ms): reaps exits, restarts crashed
//     instances whose restart is on after an exponential backoff (restart.backoff_ms,
//     doubling per consecutive crash up to max_backoff_ms; reset once an instance stayed up
//     for max_backoff_ms), on the same port when still free, else a new one; samples CPU%
//     (utime+stime delta of the instance's main process over wall time; children are not
//     counted) and RSS (/proc/<pid>/statm) every `sample_interval`; rotates a log larger
//     than log.max_bytes (copied to `.1`, then the live file truncated to 0: writers use
//     O_APPEND and carry on at the new end; lines written between copy and truncate are
//     lost).
//   - cgroup v2 limits where the machine delegates a cgroup to us (cgroup.hpp); otherwise
//     InstanceInfo.limits reads "unavailable: <reason>" and the start goes on.
//   - `user` is honoured only when running as root (spawn.hpp, resolve_user).
//   - The environment is not inherited from the agent (its secrets stay with it): PATH
//     (a fixed system default), HOME, the MUP_* variables and PORT, then the definition's.
//
// Instance id: `<component>@<version>#<index>`. Events (on_event) are JSON objects
// {"event", "id", "at" (Unix ms), ...}: started {pid, port}, ready {pid, port}, exited
// {pid, status}, restarted {pid, port, restarts}, stopped {pid, how}, log-rotated {bytes |
// error}, adopted {pid, port}, and record-ignored {file, error} (no id) / record-failed
// {error} when a record cannot be read or written. They are delivered on the calling or monitor
// thread, never under the supervisor's lock, so a handler may call back into the Supervisor; they
// are serialised (one at a time).
//
// Thread-safety: every public member may be called from any thread. Readiness deadlines,
// restart backoff and CPU sampling read the injected Clock's monotonic(); started_at and
// event times its wall_ms(). stop()'s wait and each probe attempt block in poll() for real
// time (so a FakeClock that never moves makes wait_ready wait until ready or cancelled).
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "service/service_def.hpp"

namespace mup::service {

namespace detail {
struct Impl;
}

struct InstanceKey {
  std::string component;
  std::string version;
  int index = 0;
  std::string id() const;  // "web@2.0.0#0"
};

// The instance id made safe as a file name: bytes outside [A-Za-z0-9._@#+-] (and a leading
// '.') become %XX, so distinct ids give distinct names.
std::string id_safe(const std::string& id);

struct InstanceInfo {
  std::string id;
  std::string component;
  std::string version;
  int index = 0;
  int pid = 0;  // 0 while waiting to be restarted or after it exited
  int port = 0;
  // "starting" (spawned, not yet proven ready), "ready", "backoff" (crashed, restart
  // pending), "exited" (crashed, restart off), "stopping".
  std::string state;
  int restarts = 0;
  std::string last_exit;   // "" or "exited with status 3", "killed by signal 9 (SIGKILL)"...
  int64_t started_at = 0;  // Unix ms of the current process's start
  double cpu_percent = 0;  // of one CPU, over the last sample interval
  uint64_t rss_bytes = 0;
  std::string log;  // path of its log file
  bool adopted = false;
  std::string limits;  // "none" | "applied" | "unavailable: <reason>"

  nlohmann::json to_json() const;
};

struct SupervisorOptions {
  std::filesystem::path root;
  const Clock* clock = &system_clock();
  std::function<void(const nlohmann::json&)> on_event;
  std::chrono::milliseconds tick{100};
  std::chrono::milliseconds sample_interval{1000};
};

class Supervisor {
 public:
  // Creates <root>/run/instances, <root>/logs, <root>/state as needed, takes
  // <root>/run/supervisor.lock (Code::busy if another live supervisor holds it), adopts
  // what is recorded and starts the monitor thread.
  [[nodiscard]] static Result<std::unique_ptr<Supervisor>> open(SupervisorOptions options);

  // Leaves instances running (see the top of this file).
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Spawns instance `key` of `def` from `tree` (the version's root). An id already running
  // is an error (Errc::already_exists). Returns once the process exec'd.
  [[nodiscard]] Result<InstanceInfo> start(const ServiceDef& def, const std::filesystem::path& tree,
                                           const InstanceKey& key, bool restart = true);

  // Probes readiness (the definition's ready check) every ready.interval_ms until it
  // succeeds (state becomes "ready"), `timeout` passes (Code::timeout; timeout <= 0 means
  // ready.timeout_ms), the instance exits (Code::crashed, with its exit status and the last
  // 10 lines of its log), or *cancel turns true (Code::cancelled).
  [[nodiscard]] Status wait_ready(const std::string& id,
                                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                                  const std::atomic<bool>* cancel = nullptr);

  // One attempt of `check` on instance `id` (a deployment's [[service.check]]): "" when it
  // passed, else why not (as the probes of probe.hpp say it). An exec check runs as the
  // instance's readiness exec does (its environment, workdir and log).
  [[nodiscard]] Result<std::string> probe(const std::string& id, const ReadyCheck& check);

  // Sends stop.signal to the instance's process group, waits up to stop.timeout_ms, then
  // SIGKILLs the group; removes the record. Stopping an unknown id succeeds (idempotent).
  [[nodiscard]] Status stop(const std::string& id);
  // stop() for every instance of component@version (all versions if `version` is empty).
  [[nodiscard]] Status stop_all_for(const std::string& component, const std::string& version);

  [[nodiscard]] Status set_restart(const std::string& id, bool restart);
  std::vector<InstanceInfo> list() const;
  [[nodiscard]] Result<InstanceInfo> get(const std::string& id) const;

  // Stops the monitor thread now, leaving instances running; later calls still work but
  // nothing reaps, restarts, samples or rotates. The destructor does this.
  void detach();

 private:
  explicit Supervisor(SupervisorOptions options);
  std::unique_ptr<detail::Impl> impl_;
};

}  // namespace mup::service
