// Readiness probes, one attempt each. Every probe returns "" when the instance is ready and
// otherwise says why not ("connect 127.0.0.1:41234: Connection refused", "GET /healthz:
// status 503"); none blocks longer than its timeout. Thread-safe.
//
// The HTTP probe is a tiny blocking HTTP/1.0 client (GET, Connection: close) that reads
// only the status line: a 2xx answer is ready. The exec probe runs a command the way the
// instance runs (same environment, workdir and log) and waits for exit status 0; on
// timeout its process group is killed.
#pragma once

#include <cstdint>
#include <string>

#include "service/spawn.hpp"

namespace mup::service {

std::string probe_tcp(int port, int64_t timeout_ms);
std::string probe_http(int port, const std::string& path, int64_t timeout_ms);
std::string probe_exec(const SpawnSpec& spec, int64_t timeout_ms);

}  // namespace mup::service
