// Starting one detached process: the seam between the Supervisor and fork/exec.
//
// Contract: spawn_process() forks and execs `program` so that the child outlives us: a
// new session (setsid: it leads its own process group, pgid == pid), stdin /dev/null,
// stdout and stderr appended (O_APPEND) to `log_path` — a file, not a pipe, so our death
// breaks nothing — every other descriptor closed at exec (close_range), default signal
// dispositions and an empty signal mask, cwd, environment exactly `env`, and optionally a
// cgroup to join and a user to become. A failure before exec (chdir, setuid, exec itself)
// is reported through a close-on-exec pipe, so the caller gets "exec of X failed: ENOENT"
// rather than a child that exits 127. The child is ours: the caller reaps it (waitpid).
// Only async-signal-safe calls run between fork and exec; everything is prepared before.
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace mup::service {

struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string name;
  std::filesystem::path home;
};

// The identity to run `user` as: nullopt means "as we are". When we are not root, naming
// any user but our own is a Code::spawn_failed error (we could not switch to it).
[[nodiscard]] Result<std::optional<RunAs>> resolve_user(const std::optional<std::string>& user);

struct SpawnSpec {
  std::string program;  // absolute path; no PATH search
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "NAME=value"
  std::filesystem::path cwd;
  std::filesystem::path log_path;  // created 0640 if missing, appended to
  std::optional<RunAs> run_as;
  std::filesystem::path cgroup_dir;  // empty: stay in ours
};

struct Spawned {
  pid_t pid = -1;
  int pidfd = -1;  // -1 when pidfd_open is unavailable
  uint64_t start_ticks = 0;
  std::string warning;  // e.g. the cgroup could not be joined
};

[[nodiscard]] Result<Spawned> spawn_process(const SpawnSpec& spec);

// A loopback port free right now: bind 127.0.0.1:0, read it, close. Another process may
// take it before the instance binds it; the instance then fails, and that is reported.
[[nodiscard]] Result<int> free_loopback_port();
bool loopback_port_free(int port);

// "exited with status 3" / "killed by signal 9 (SIGKILL)" for a waitpid status.
std::string describe_wait_status(int status);

}  // namespace mup::service
