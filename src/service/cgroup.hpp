// cgroup v2 limits for one instance, where the machine allows them.
//
// Contract: prepare_cgroup() never fails a start. It creates `<own cgroup>/mup-<name>` and
// writes memory.max / cpu.max / pids.max only when /sys/fs/cgroup is cgroup v2
// (cgroup.controllers exists) and the agent's own cgroup directory is writable (delegated
// to it); the child moves itself in (writes 0 to cgroup.procs) before exec. Otherwise the
// result has no directory and a status "unavailable: <reason>" that InstanceInfo reports.
// Status is "none" when the definition sets no limits. Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "service/service_def.hpp"

namespace mup::service {

struct CgroupSetup {
  std::filesystem::path dir;  // empty: not used
  std::string status;         // "none" | "applied" | "unavailable: <reason>"
};

CgroupSetup prepare_cgroup(const std::string& safe_name, const Limits& limits);
// CPU time of everything in the cgroup (cpu.stat usage_usec), and its memory
// (memory.current, which counts page cache too); nullopt when unreadable.
std::optional<uint64_t> cgroup_cpu_usec(const std::filesystem::path& dir);
std::optional<uint64_t> cgroup_memory_bytes(const std::filesystem::path& dir);
// Removes the (empty) cgroup directory; silent when it is gone or still busy.
void remove_cgroup(const std::filesystem::path& dir);

}  // namespace mup::service
