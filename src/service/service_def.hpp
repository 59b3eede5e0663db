// ServiceDef: what a version's `mup-service.toml` says about running it (docs/agent.md,
// "service"). parse_service_def() is strict: an unknown key, a wrong type or a bad value is
// a Code::bad_definition error reading "<file>:<line>: <key>: <what is wrong>", so an author
// can fix it without guessing. Nothing here throws; toml++'s exceptions are caught inside.
//
// The file holds the table [service] and, optionally, [rollback] (the version's rollback
// policy: keys of rollback::policy_from_json, e.g. alpha = 0.001, [[rollback.triggers]]):
//
//   key                 type / values                      default
//   exec                array of strings, non-empty        (required)
//   listen              "host:port" the proxy owns          (required)
//   protocol            "http" | "tcp"                      "http"
//   instances           integer 1..64                       1
//   env                 table of strings                    {}
//   workdir             path relative to the tree           "." (the tree)
//   user                user name to run as                 (none: the agent's user)
//   [service.ready]     at most one of http = "/path" | tcp = true | exec = [argv]
//                                                           tcp = true
//     timeout_ms        integer 1..3600000                  10000
//     interval_ms       integer 1..60000                    100
//   [service.stop]      signal "TERM" (or "SIGTERM"; TERM INT QUIT HUP USR1 USR2 KILL)
//                                                           "TERM"
//     drain_ms          integer 0..3600000 (for the proxy)  10000
//     timeout_ms        integer 0..3600000, then SIGKILL    10000
//   [service.restart]   backoff_ms 1..3600000               200
//                       max_backoff_ms >= backoff_ms        10000
//   [service.log]       max_bytes >= 1024                   1048576
//   [service.limits]    memory_max "512M" (K/M/G/T, 1024-based) or integer bytes; cpu_max
//                       "150%" (of one CPU) ; pids_max integer >= 1    (all unset)
//   [[service.check]]   synthetic checks a blue-green deployment runs on every instance of
//                       the new version (and of the old, for reference) before the switch;
//                       any number of them, each one of http = "/path" | tcp = true |
//                       exec = [argv] as in [service.ready] (exec: exit 0 passes)
//     count             integer 1..1000, attempts on each instance  10
//     max_failures      integer 0..100000, failed attempts tolerated
//                       over all instances                          0
//     timeout_ms        integer 1..60000, per attempt               2000
//
// Paths: exec[0] and ready.exec[0] that are relative resolve in the version's tree and must
// not contain "." or ".." components (they may not escape the tree); absolute ones (e.g.
// "/bin/sh") are taken as they are; a bare name ("python3") is the tree's file of that name
// when there is one, else found on the instances' PATH. workdir must be relative and stay in
// the tree.
// Placeholders {port} {version} {instance} {state_dir} may appear in exec, ready.exec and
// env values; any other {name} of lowercase letters and '_' is an error. substitute()
// replaces them when an instance starts.
// `user` is honoured only when the agent runs as root; otherwise naming a user other than
// the agent's own is an error at start (Supervisor::start), not at parse time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mup::service {

enum class Protocol { http, tcp };

struct ReadyCheck {
  enum class Kind { http, tcp, exec };
  Kind kind = Kind::tcp;
  std::string http_path;          // Kind::http: "/healthz"
  std::vector<std::string> exec;  // Kind::exec: argv, exit 0 means ready
  int64_t timeout_ms = 10000;
  int64_t interval_ms = 100;
};

// One [[service.check]]: `probe` is tried `count` times on each instance.
struct SmokeCheck {
  ReadyCheck probe;  // its timeout_ms is per attempt (default 2000); interval_ms unused
  int count = 10;
  int max_failures = 0;
  // What it does, for messages: "GET /api/x", "tcp connect", "exec bin/smoke".
  std::string name() const;
};

struct StopPolicy {
  std::string signal_name = "TERM";
  int signal = 15;  // SIGTERM
  int64_t drain_ms = 10000;
  int64_t timeout_ms = 10000;
};

struct RestartPolicy {
  int64_t backoff_ms = 200;
  int64_t max_backoff_ms = 10000;
};

struct LogPolicy {
  int64_t max_bytes = 1048576;
};

struct Limits {
  std::optional<uint64_t> memory_max;  // bytes
  std::optional<int64_t> cpu_max;      // percent of one CPU
  std::optional<int64_t> pids_max;
  bool any() const { return memory_max || cpu_max || pids_max; }
};

struct ServiceDef {
  std::vector<std::string> exec;
  std::string listen;  // "host:port"
  Protocol protocol = Protocol::http;
  int instances = 1;
  std::map<std::string, std::string> env;
  std::string workdir = ".";
  std::optional<std::string> user;
  ReadyCheck ready;
  std::vector<SmokeCheck> checks;
  StopPolicy stop;
  RestartPolicy restart;
  LogPolicy log;
  Limits limits;
  std::string source;  // where it was read from, for messages
  // The file's [rollback] table as JSON (null when absent): the version's rollback policy,
  // checked by the rollback module when a deployment starts (rollback/judge.hpp).
  nlohmann::json rollback;

  // A lossless JSON form (kept in instance records so a later agent can stop and restart
  // an adopted instance without the tree's file).
  nlohmann::json to_json() const;
};

[[nodiscard]] Result<ServiceDef> service_def_from_json(const nlohmann::json& j);

// `source` names the text in messages (usually the file's path).
[[nodiscard]] Result<ServiceDef> parse_service_def(std::string_view text,
                                                   const std::string& source);
// Reads and parses `path` (a tree's mup-service.toml).
[[nodiscard]] Result<ServiceDef> load_service_def(const std::filesystem::path& path);

inline constexpr std::string_view kServiceFileName = "mup-service.toml";

struct Placeholders {
  std::string port;
  std::string version;
  std::string instance;
  std::string state_dir;
};
// `text` with every {port} {version} {instance} {state_dir} replaced.
std::string substitute(std::string_view text, const Placeholders& values);

std::string_view protocol_name(Protocol p);
// "TERM" / "SIGTERM" -> 15; nullopt for a name this module does not accept.
std::optional<int> signal_number(std::string_view name);

}  // namespace mup::service
