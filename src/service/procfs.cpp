#include "service/procfs.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace mup::service::procfs {

namespace {

std::optional<std::string> slurp(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace

std::optional<ProcStat> read_stat(pid_t pid) {
  auto text = slurp("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return std::nullopt;
  size_t close = text->rfind(')');
  if (close == std::string::npos || close + 2 > text->size()) return std::nullopt;
  std::istringstream in(text->substr(close + 2));
  // Fields from 3 (state) on; index i here is field i + 3.
  std::vector<std::string> f;
  std::string tok;
  while (in >> tok && f.size() < 20) f.push_back(tok);
  if (f.size() < 20 || f[0].empty()) return std::nullopt;
  try {
    ProcStat s;
    s.state = f[0][0];
    s.pgrp = static_cast<pid_t>(std::stol(f[2]));
    s.session = static_cast<pid_t>(std::stol(f[3]));
    s.utime_ticks = std::stoull(f[11]);
    s.stime_ticks = std::stoull(f[12]);
    s.start_ticks = std::stoull(f[19]);
    return s;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<uint64_t> read_rss_bytes(pid_t pid) {
  auto text = slurp("/proc/" + std::to_string(pid) + "/statm");
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  uint64_t size = 0, resident = 0;
  if (!(in >> size >> resident)) return std::nullopt;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::string boot_id() {
  auto text = slurp("/proc/sys/kernel/random/boot_id");
  if (!text) return "";
  while (!text->empty() && (text->back() == '\n' || text->back() == ' ')) text->pop_back();
  return *text;
}

long clock_ticks_per_second() {
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  return ticks > 0 ? ticks : 100;
}

bool same_process_alive(pid_t pid, uint64_t start_ticks) {
  if (pid <= 0) return false;
  auto st = read_stat(pid);
  return st && st->start_ticks == start_ticks && st->state != 'Z' && st->state != 'X';
}

int pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

int send_signal(int pidfd, pid_t pid, int sig) {
#ifdef SYS_pidfd_send_signal
  if (pidfd >= 0) {
    if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0) return 0;
    return errno;
  }
#endif
  if (pid <= 0) return ESRCH;
  return ::kill(pid, sig) == 0 ? 0 : errno;
}

bool wait_exit(int pidfd, pid_t pid, uint64_t start_ticks, int64_t timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(left, 1000))));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return !same_process_alive(pid, start_ticks);
    } else {
      if (!same_process_alive(pid, start_ticks)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (left <= 0) return false;
  }
}

}  // namespace mup::service::procfs
