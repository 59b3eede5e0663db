// What the supervisor reads from /proc about a process, and pidfds. Linux only.
//
// Contract: every reader returns nullopt (or an error) when the process is gone or the
// file is unreadable; none throws. A process identity is (pid, start_ticks, boot_id):
// pids are recycled, the start time in clock ticks since boot (field 22 of
// /proc/<pid>/stat) and the boot id are not, so a record matches a live process only
// when all three do. Thread-safe (no shared state).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace mup::service::procfs {

struct ProcStat {
  char state = '?';          // field 3: R S D Z T ...
  pid_t pgrp = 0;            // field 5
  pid_t session = 0;         // field 6
  uint64_t utime_ticks = 0;  // field 14
  uint64_t stime_ticks = 0;  // field 15
  uint64_t start_ticks = 0;  // field 22
};

// /proc/<pid>/stat, parsed past the parenthesised command name (which may hold spaces).
std::optional<ProcStat> read_stat(pid_t pid);
// Resident set size in bytes, from /proc/<pid>/statm.
std::optional<uint64_t> read_rss_bytes(pid_t pid);
// /proc/sys/kernel/random/boot_id, without the newline ("" if unreadable).
std::string boot_id();
long clock_ticks_per_second();

// True when `pid` runs (not a zombie) and started at `start_ticks`.
bool same_process_alive(pid_t pid, uint64_t start_ticks);

// pidfd_open(2) via syscall; -1 with errno set when the kernel lacks it (< 5.3) or the
// process is gone. The descriptor is close-on-exec.
int pidfd_open(pid_t pid);
// Sends `sig` through the pidfd (never to a recycled pid); falls back to kill(pid) when
// pidfd is -1. Returns 0 or an errno value.
int send_signal(int pidfd, pid_t pid, int sig);
// Waits up to timeout_ms for the process behind `pidfd` to exit: true when it has.
// With pidfd == -1, polls same_process_alive every 10 ms instead.
bool wait_exit(int pidfd, pid_t pid, uint64_t start_ticks, int64_t timeout_ms);

}  // namespace mup::service::procfs
