#include "service/cgroup.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string_view>

namespace mup::service {

namespace {

namespace stdfs = std::filesystem;
constexpr std::string_view kRoot = "/sys/fs/cgroup";

// Writes `value` to a cgroup file; "" or why not.
std::string write_knob(const stdfs::path& file, const std::string& value) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return file.string() + ": " + std::strerror(errno);
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size()))
    return "writing \"" + value + "\" to " + file.string() + ": " + std::strerror(err);
  return "";
}

// The agent's own cgroup v2 directory, from the "0::" line of /proc/self/cgroup.
std::string own_cgroup_dir(std::string& why) {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) return std::string(kRoot) + line.substr(3);
  }
  why = "no cgroup v2 entry in /proc/self/cgroup";
  return "";
}

}  // namespace

CgroupSetup prepare_cgroup(const std::string& safe_name, const Limits& limits) {
  if (!limits.any()) return {{}, "none"};
  std::error_code ec;
  if (!stdfs::exists(stdfs::path(kRoot) / "cgroup.controllers", ec))
    return {{}, "unavailable: cgroup v2 is not mounted at /sys/fs/cgroup"};
  std::string why;
  std::string own = own_cgroup_dir(why);
  if (own.empty()) return {{}, "unavailable: " + why};
  if (::access(own.c_str(), W_OK) != 0)
    return {{}, "unavailable: the agent's cgroup " + own + " is not delegated (not writable)"};
  std::string enable;
  if (limits.memory_max) enable += "+memory ";
  if (limits.cpu_max) enable += "+cpu ";
  if (limits.pids_max) enable += "+pids ";
  enable.pop_back();
  if (auto e = write_knob(stdfs::path(own) / "cgroup.subtree_control", enable); !e.empty())
    return {{}, "unavailable: " + e};
  stdfs::path dir = stdfs::path(own) / ("mup-" + safe_name);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return {{}, "unavailable: mkdir " + dir.string() + ": " + std::strerror(errno)};
  std::string err;
  if (limits.memory_max) err = write_knob(dir / "memory.max", std::to_string(*limits.memory_max));
  if (err.empty() && limits.cpu_max)
    err = write_knob(dir / "cpu.max", std::to_string(*limits.cpu_max * 1000) + " 100000");
  if (err.empty() && limits.pids_max)
    err = write_knob(dir / "pids.max", std::to_string(*limits.pids_max));
  if (!err.empty()) {
    ::rmdir(dir.c_str());
    return {{}, "unavailable: " + err};
  }
  return {dir, "applied"};
}

std::optional<uint64_t> cgroup_cpu_usec(const stdfs::path& dir) {
  std::ifstream in(dir / "cpu.stat");
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value)
    if (key == "usage_usec") return value;
  return std::nullopt;
}

std::optional<uint64_t> cgroup_memory_bytes(const stdfs::path& dir) {
  std::ifstream in(dir / "memory.current");
  uint64_t value = 0;
  if (in >> value) return value;
  return std::nullopt;
}

void remove_cgroup(const stdfs::path& dir) {
  if (!dir.empty()) ::rmdir(dir.c_str());
}

}  // namespace mup::service
