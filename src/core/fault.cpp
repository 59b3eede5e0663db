#include "core/fault.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace mup::fault {

namespace {
struct Config {
  std::string at;
  std::string action;
  long after = 0;
  Config() {
    if (const char* a = std::getenv("MUP_FAULT_AT")) at = a;
    if (const char* a = std::getenv("MUP_FAULT_ACTION")) action = a;
    if (const char* a = std::getenv("MUP_FAULT_AFTER")) after = std::atol(a);
  }
};
const Config& config() {
  static const Config c;
  return c;
}
std::atomic<long> g_hits{0};
}  // namespace

Status point(std::string_view name) {
  const Config& c = config();
  if (c.at.empty() || c.at != name) return {};
  if (g_hits.fetch_add(1) < c.after) return {};
  if (c.action == "kill") ::kill(::getpid(), SIGKILL);
  return fail(Errc::no_space, "injected fault at " + std::string(name) +
                                  ": no space left on device (free some space and retry)");
}

}  // namespace mup::fault
