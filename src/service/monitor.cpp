// The monitor thread: every tick it notices exits, restarts what is due, samples /proc and
// rotates logs. Exit detection is shared with wait_ready() and stop() (check_exit_locked).
//
// How an exit is noticed: waitid(P_PIDFD, WNOHANG) reaps the process when it is our child
// and gives its status; for an adopted process (someone else's child: ECHILD) a readable
// pidfd means it exited, status unknown. Without pidfds, our children are reaped with
// waitpid(pid) and adopted ones are checked by start_ticks.
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "service/cgroup.hpp"
#include "service/procfs.hpp"
#include "service/supervisor_internal.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace mup::service::detail {

namespace {

// A waitpid-style status from a waitid siginfo.
int status_of(const siginfo_t& si) {
  if (si.si_code == CLD_EXITED) return (si.si_status & 0xff) << 8;
  return si.si_status & 0x7f;  // killed or dumped: the signal
}

// Has `in`'s process exited? Sets `how` when it has.
bool exited(const Instance& in, std::string& how) {
  if (in.pidfd >= 0) {
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(in.pidfd), &si,
                 WEXITED | WNOHANG) == 0) {
      if (si.si_pid == 0) return false;  // our child, still running
      how = describe_wait_status(status_of(si));
      return true;
    }
    if (errno != ECHILD && errno != EINVAL) return false;
    pollfd p{in.pidfd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    how = "exited (adopted; status unknown)";
    return true;
  }
  if (!in.adopted) {
    int status = 0;
    pid_t r = ::waitpid(in.pid, &status, WNOHANG);
    if (r == 0) return false;
    if (r == in.pid) {
      how = describe_wait_status(status);
      return true;
    }
  }
  if (procfs::same_process_alive(in.pid, in.start_ticks)) return false;
  how = in.adopted ? "exited (adopted; status unknown)" : "exited (status unknown)";
  return true;
}

int64_t ms_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

}  // namespace

void Impl::check_exit_locked(Instance& in) {
  if (in.pid <= 0) return;
  std::string how;
  if (!exited(in, how)) return;
  pid_t pid = in.pid;
  // Whatever the leader left in its group (a shell's children) goes with it; the group id
  // stays reserved while members exist, so this cannot reach another process's group.
  if (!in.stopping) ::kill(-pid, SIGKILL);
  if (!in.stopping && in.pidfd >= 0) {
    ::close(in.pidfd);
    in.pidfd = -1;
  }
  in.pid = 0;
  in.exits++;
  in.last_exit = how;
  in.cpu_percent = 0;
  in.rss_bytes = 0;
  if (!in.stopping) remove_cgroup(in.cgroup);
  event_locked(in, "exited", {{"pid", pid}, {"status", how}});
  if (in.stopping) return;
  if (in.restart) {
    int64_t up = ms_between(in.started_mono, now());
    if (up >= in.def.restart.max_backoff_ms) in.crash_streak = 0;
    int64_t delay = in.def.restart.backoff_ms;
    for (int i = 0; i < in.crash_streak && delay < in.def.restart.max_backoff_ms; ++i) delay *= 2;
    delay = std::min(delay, in.def.restart.max_backoff_ms);
    in.crash_streak++;
    in.state = "backoff";
    in.restart_at = now() + std::chrono::milliseconds(delay);
  } else {
    in.state = "exited";
  }
  if (auto w = write_record_locked(in); !w)
    event_locked(in, "record-failed", {{"error", w.error().message()}});
}

void Impl::restart_locked(Instance& in) {
  if (!loopback_port_free(in.port)) {
    if (auto p = free_loopback_port()) in.port = *p;
  }
  Status s = spawn_locked(in);
  if (!s) {
    // Counts as a crash: try again after a longer backoff.
    in.last_exit = s.error().message();
    in.started_mono = now();
    in.exits++;
    int64_t delay = in.def.restart.backoff_ms;
    for (int i = 0; i < in.crash_streak && delay < in.def.restart.max_backoff_ms; ++i) delay *= 2;
    in.crash_streak++;
    in.restart_at =
        now() + std::chrono::milliseconds(std::min(delay, in.def.restart.max_backoff_ms));
    event_locked(in, "exited", {{"pid", 0}, {"status", in.last_exit}});
    return;
  }
  in.restarts++;
  if (auto w = write_record_locked(in); !w)
    event_locked(in, "record-failed", {{"error", w.error().message()}});
  event_locked(in, "restarted", {{"pid", in.pid}, {"port", in.port}, {"restarts", in.restarts}});
}

void Impl::sample_locked(Instance& in) {
  if (in.pid <= 0) return;
  auto t = now();
  auto st = procfs::read_stat(in.pid);
  if (!st || st->start_ticks != in.start_ticks) return;
  // In its own cgroup the instance's children count too (cpu.stat is in microseconds);
  // otherwise only its main process, in clock ticks.
  std::optional<uint64_t> cg_usec = in.cgroup.empty() ? std::nullopt : cgroup_cpu_usec(in.cgroup);
  uint64_t usage = cg_usec ? *cg_usec
                           : (st->utime_ticks + st->stime_ticks) * 1'000'000ULL /
                                 static_cast<uint64_t>(procfs::clock_ticks_per_second());
  if (in.sampled) {
    double wall_s = std::chrono::duration<double>(t - in.sampled_at).count();
    if (wall_s > 0 && usage >= in.cpu_ticks)
      in.cpu_percent = 100.0 * static_cast<double>(usage - in.cpu_ticks) / 1e6 / wall_s;
  }
  in.cpu_ticks = usage;
  in.sampled_at = t;
  in.sampled = true;
  std::optional<uint64_t> rss = in.cgroup.empty() ? std::nullopt : cgroup_memory_bytes(in.cgroup);
  if (!rss) rss = procfs::read_rss_bytes(in.pid);
  if (rss) in.rss_bytes = *rss;
}

void Impl::rotate_log_locked(Instance& in) {
  struct stat st {};
  if (::stat(in.log.c_str(), &st) != 0 || st.st_size <= in.def.log.max_bytes) return;
  stdfs::path old = in.log;
  old += ".1";
  std::error_code ec;
  stdfs::copy_file(in.log, old, stdfs::copy_options::overwrite_existing, ec);
  if (ec) {
    event_locked(in, "log-rotated", {{"error", "copy to " + old.string() + ": " + ec.message()}});
    return;
  }
  if (::truncate(in.log.c_str(), 0) != 0) {
    event_locked(in, "log-rotated", {{"error", "truncate " + in.log.string()}});
    return;
  }
  event_locked(in, "log-rotated", {{"log", in.log.string()}, {"bytes", st.st_size}});
}

void Impl::monitor_loop() {
  auto next_sample = now();
  for (;;) {
    {
      std::unique_lock lock(quit_mu);
      if (quit_cv.wait_for(lock, opts.tick, [this] { return quit; })) return;
    }
    {
      std::lock_guard lock(mu);
      auto t = now();
      bool sample = t >= next_sample;
      if (sample) next_sample = t + opts.sample_interval;
      for (auto& [id, in] : instances) {
        if (in->stopping) continue;
        check_exit_locked(*in);
        if (in->state == "backoff" && in->restart && now() >= in->restart_at) restart_locked(*in);
        if (sample) sample_locked(*in);
        rotate_log_locked(*in);
      }
    }
    flush_events();
  }
}

}  // namespace mup::service::detail
