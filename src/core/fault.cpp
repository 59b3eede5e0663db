// Fault points. The configuration is read lazily at the first hit rather than at static
// initialisation, because points are hit from other translation units' static
// initialisers (test binaries that re-execute themselves as a crash child). After that
// first hit, g_mode says whether anything is armed; when nothing is, a point is one
// relaxed load. When something is, every hit takes g_mu: counting, writing the list line
// and deciding happen under it, the action itself outside it (a power-cut hook may write
// files, and so hit points).
#include "core/fault.hpp"

#if defined(MUP_FAULT_POINTS) && MUP_FAULT_POINTS

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace mup::fault {

namespace {

enum Mode : int { kUnread = 0, kIdle = 1, kArmed = 2 };

enum class Action { enospc, kill, powercut, invalid };

struct Config {
  std::string at;  // empty: no point acts
  long after = 0;
  Action action = Action::enospc;
  std::string config_error;  // set with Action::invalid
  std::string list_path;
  int list_fd = -1;
  int list_errno = 0;  // why list_path could not be opened
  std::map<std::string, long, std::less<>> hits;
};

// Constant-initialised, so usable from any static initialiser.
std::atomic<int> g_mode{kUnread};
std::mutex g_mu;

Config& config() {  // guarded by g_mu
  static Config c;
  return c;
}

std::mutex g_hooks_mu;
std::vector<std::function<void()>>& hooks() {  // guarded by g_hooks_mu
  static std::vector<std::function<void()>> h;
  return h;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Reads the environment into `c` (under g_mu) and publishes the mode.
void load(Config& c) {
  if (c.list_fd >= 0) ::close(c.list_fd);
  c = Config();
  c.at = env("MUP_FAULT_AT");
  const std::string after = env("MUP_FAULT_AFTER");
  const std::string action = env("MUP_FAULT_ACTION");
  c.list_path = env("MUP_FAULT_LIST");
  if (action.empty() || action == "enospc") {
    c.action = Action::enospc;
  } else if (action == "kill") {
    c.action = Action::kill;
  } else if (action == "powercut") {
    c.action = Action::powercut;
  } else {
    c.action = Action::invalid;
    c.config_error = "MUP_FAULT_ACTION=" + action + " is not enospc, kill or powercut";
  }
  if (!after.empty()) {
    auto [end, ec] = std::from_chars(after.data(), after.data() + after.size(), c.after);
    if (ec != std::errc() || end != after.data() + after.size() || c.after < 0) {
      c.action = Action::invalid;
      c.config_error = "MUP_FAULT_AFTER=" + after + " is not a hit number (0, 1, ...)";
    }
  }
  if (!c.list_path.empty()) {
    c.list_fd = ::open(c.list_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (c.list_fd < 0) c.list_errno = errno;
  }
  const bool armed = !c.at.empty() || !c.list_path.empty();
  g_mode.store(armed ? kArmed : kIdle, std::memory_order_release);
}

// One write(2), so lines from concurrent threads and processes never interleave.
void append_line(int fd, std::string_view name, long hit) {
  std::string line;
  line.reserve(name.size() + 24);
  line.append(name).append(" ").append(std::to_string(hit)).append("\n");
  while (::write(fd, line.data(), line.size()) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void kill_self() {
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();  // SIGKILL cannot be caught; this thread just waits for it
}

[[noreturn]] void cut_power() {
  std::vector<std::function<void()>> copy;
  {
    std::lock_guard lock(g_hooks_mu);
    copy = hooks();
  }
  for (auto& hook : copy) hook();
  kill_self();
}

Status hit(std::string_view name) {
  long n = 0;
  Action action = Action::enospc;
  {
    std::lock_guard lock(g_mu);
    Config& c = config();
    if (g_mode.load(std::memory_order_relaxed) == kUnread) load(c);
    if (g_mode.load(std::memory_order_relaxed) == kIdle) return {};
    auto it = c.hits.find(name);
    if (it == c.hits.end()) it = c.hits.emplace(std::string(name), 0).first;
    n = it->second++;
    if (!c.list_path.empty()) {
      if (c.list_fd < 0)
        return fail_errno("open the fault list (MUP_FAULT_LIST)", c.list_path, c.list_errno);
      append_line(c.list_fd, name, n);
    }
    if (name != c.at || n != c.after) return {};
    if (c.action == Action::invalid)
      return fail(Errc::invalid_argument, "fault point " + std::string(name) + ": " +
                                              c.config_error + "; fix the test's environment");
    action = c.action;
  }
  switch (action) {
    case Action::kill: kill_self();
    case Action::powercut: cut_power();
    case Action::enospc:
    case Action::invalid: break;
  }
  return fail(Errc::no_space, "injected fault at " + std::string(name) + " hit " +
                                  std::to_string(n) + ": no space left on device");
}

}  // namespace

Status point(std::string_view name) {
  if (g_mode.load(std::memory_order_relaxed) == kIdle) return {};
  return hit(name);
}

void on_power_cut(std::function<void()> hook) {
  std::lock_guard lock(g_hooks_mu);
  hooks().push_back(std::move(hook));
}

void reload_config_for_testing() {
  std::lock_guard lock(g_mu);
  load(config());
}

}  // namespace mup::fault

#endif  // MUP_FAULT_POINTS
