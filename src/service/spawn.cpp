#include "service/spawn.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "service/errors.hpp"
#include "service/procfs.hpp"

namespace mup::service {

namespace {

// What the child reports through the pipe before it dies (or warns and goes on).
enum class Stage : int { setsid = 1, cgroup, stdio, chdir, groups, setgid, setuid, exec };

struct ChildReport {
  Stage stage;
  int err;
  int fatal;
};

std::string_view stage_name(Stage s) {
  switch (s) {
    case Stage::setsid: return "setsid";
    case Stage::cgroup: return "joining its cgroup";
    case Stage::stdio: return "redirecting stdio";
    case Stage::chdir: return "chdir to the workdir";
    case Stage::groups: return "setgroups";
    case Stage::setgid: return "setgid";
    case Stage::setuid: return "setuid";
    case Stage::exec: return "exec";
  }
  return "?";
}

void report(int fd, Stage stage, int err, bool fatal) {
  ChildReport r{stage, err, fatal ? 1 : 0};
  ssize_t n = ::write(fd, &r, sizeof r);
  (void)n;  // nothing more a dying child can do
  if (fatal) ::_exit(127);
}

// Runs in the child: only async-signal-safe calls.
[[noreturn]] void exec_child(const SpawnSpec& spec, char* const* argv, char* const* envp,
                             int null_fd, int log_fd, int cgroup_fd, int report_fd) {
  if (::setsid() < 0) report(report_fd, Stage::setsid, errno, true);
  if (cgroup_fd >= 0 && ::write(cgroup_fd, "0", 1) != 1)
    report(report_fd, Stage::cgroup, errno, false);
  if (::dup2(null_fd, 0) < 0 || ::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0)
    report(report_fd, Stage::stdio, errno, true);
  if (spec.run_as) {
    if (::setgroups(spec.run_as->groups.size(), spec.run_as->groups.data()) != 0)
      report(report_fd, Stage::groups, errno, true);
    if (::setgid(spec.run_as->gid) != 0) report(report_fd, Stage::setgid, errno, true);
    if (::setuid(spec.run_as->uid) != 0) report(report_fd, Stage::setuid, errno, true);
  }
  // After setuid, so a workdir the user cannot enter fails the start here.
  if (::chdir(spec.cwd.c_str()) != 0) report(report_fd, Stage::chdir, errno, true);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // EINVAL ignored
  // Everything above 2 closes at exec; the report pipe stays usable until then.
  ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  ::execve(spec.program.c_str(), argv, envp);
  report(report_fd, Stage::exec, errno, true);
  ::_exit(127);
}

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<std::optional<RunAs>> resolve_user(const std::optional<std::string>& user) {
  if (!user) return std::optional<RunAs>{};
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc = ::getpwnam_r(user->c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr)
    return fail(Code::spawn_failed, "user \"" + *user + "\" does not exist on this machine");
  if (::geteuid() != 0) {
    if (found->pw_uid == ::geteuid()) return std::optional<RunAs>{};
    return fail(Code::spawn_failed, "the definition runs as user \"" + *user +
                                        "\" but the agent is not root and cannot switch to it; "
                                        "run the agent as root or remove `user`");
  }
  RunAs as;
  as.uid = found->pw_uid;
  as.gid = found->pw_gid;
  as.name = found->pw_name;
  as.home = found->pw_dir;
  int n = 64;
  as.groups.resize(static_cast<size_t>(n));
  if (::getgrouplist(found->pw_name, found->pw_gid, as.groups.data(), &n) < 0) {
    as.groups.resize(static_cast<size_t>(n));
    ::getgrouplist(found->pw_name, found->pw_gid, as.groups.data(), &n);
  }
  as.groups.resize(static_cast<size_t>(std::max(n, 0)));
  return std::optional<RunAs>{std::move(as)};
}

Result<Spawned> spawn_process(const SpawnSpec& spec) {
  int log_fd = ::open(spec.log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (log_fd < 0) return fail_errno("open log", spec.log_path.string(), errno);
  if (spec.run_as && ::fchown(log_fd, spec.run_as->uid, spec.run_as->gid) != 0) {
    int err = errno;
    ::close(log_fd);
    return fail_errno("chown log", spec.log_path.string(), err);
  }
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int cgroup_fd = -1;
  if (!spec.cgroup_dir.empty())
    cgroup_fd = ::open((spec.cgroup_dir / "cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  int pipe_fds[2];
  if (null_fd < 0 || ::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    int err = errno;
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    if (cgroup_fd >= 0) ::close(cgroup_fd);
    return fail_errno("pipe", "spawn", err);
  }
  auto argv = c_strings(spec.argv);
  auto envp = c_strings(spec.env);
  pid_t pid = ::fork();
  if (pid == 0) exec_child(spec, argv.data(), envp.data(), null_fd, log_fd, cgroup_fd, pipe_fds[1]);
  int fork_err = errno;
  ::close(pipe_fds[1]);
  ::close(log_fd);
  ::close(null_fd);
  if (cgroup_fd >= 0) ::close(cgroup_fd);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    return fail(Code::spawn_failed, "fork for " + spec.program + ": " + std::strerror(fork_err));
  }
  Spawned out;
  out.pid = pid;
  ChildReport r{};
  std::string fatal;
  for (;;) {
    ssize_t n = ::read(pipe_fds[0], &r, sizeof r);
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof r)) break;  // EOF: exec succeeded (or child died)
    std::string what = std::string(stage_name(r.stage)) + " failed: " + std::strerror(r.err);
    if (r.fatal)
      fatal = what;
    else
      out.warning = what;
  }
  ::close(pipe_fds[0]);
  if (!fatal.empty()) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return fail(Code::spawn_failed,
                "starting " + spec.program + " (in " + spec.cwd.string() + "): " + fatal);
  }
  out.pidfd = procfs::pidfd_open(pid);
  if (auto st = procfs::read_stat(pid)) out.start_ticks = st->start_ticks;
  return out;
}

Result<int> free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_errno("socket", "free port", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    return fail_errno("bind", "127.0.0.1:0", err);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool loopback_port_free(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* abbrev = ::sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) +
           (abbrev ? std::string(" (SIG") + abbrev + ")" : std::string());
  }
  return "stopped (status " + std::to_string(status) + ")";
}

}  // namespace mup::service
