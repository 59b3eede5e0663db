// Monitor: the agent's health monitor. In the background, once per `interval` (5 s), it
// snapshots each version's latency histogram from the proxy's per-version statistics and
// probes each ready instance with its readiness check (http or tcp; exec checks are not
// repeated here). A report reads the statistics and the supervisor's instances (CPU %,
// RSS, state, from /proc) fresh, and answers, per component and version, the metrics,
// score, alert level and trend of score.hpp against the component's thresholds
// (thresholds.hpp): the error rate and the trend from the proxy's per-second ring, the
// response times from the histogram since the snapshot that starts the window (window.hpp).
// So an idle node pays one statistics read per interval, and `mup health --watch` sees each
// second's numbers.
//
// It reads through Sources (functions the agent binds to its Runtime), so it depends on
// neither the agent nor the proxy process, and tests feed it synthetic JSON.
//
// Report (GET /v1/health; docs/agent.md "Health"):
//   {"at","window_s","proxy_error"?,"components":[{"name","score","status","alert",
//     "thresholds","custom_thresholds","versions":[{"version","weight","score","status",
//     "alert","alerts","trend","metrics","instances":[{"id","state","cpu_percent",
//     "rss_bytes","probe":{"ok","message","at"}?}]}]}]}
// A component's score is the lowest known score of its versions (null when none is known),
// its alert the worst of its versions'. Versions listed: those the agent runs or routes,
// and those the proxy saw requests for in the window (the version "-": requests answered
// 503 for want of a routable backend).
//
// Thread-safe. start() runs the sampling thread; the destructor stops and joins it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "core/clock.hpp"
#include "core/error.hpp"
#include "health/score.hpp"
#include "health/thresholds.hpp"
#include "health/window.hpp"
#include "service/service_def.hpp"

namespace mup::health {

struct Sources {
  // The proxy's GET /v1/stats: {"services":{name:{"versions":{version:VersionStats}}}}.
  std::function<Result<nlohmann::json>()> stats;
  // The agent's GET /v1/services: {"services":[{name, versions:[{version, weight,
  // instances:[InstanceInfo JSON]}]}]}.
  std::function<nlohmann::json()> services;
  // The readiness check of component@version, to probe its instances; nullopt: none.
  std::function<std::optional<service::ReadyCheck>(const std::string&, const std::string&)>
      ready_check;
};

struct MonitorOptions {
  std::filesystem::path thresholds_file;  // <root>/health/thresholds.json
  const Clock* clock = nullptr;           // null: the system clock
  std::chrono::milliseconds interval{5000};
  std::chrono::milliseconds probe_interval{5000};
  int64_t probe_timeout_ms = 1000;
  int window_s = 60;
  // Where the sampling thread reports what it could not do (empty: dropped).
  std::function<void(std::string_view)> log;
};

class Monitor {
 public:
  // Reads the thresholds file (an unreadable one is an error naming it).
  [[nodiscard]] static Result<std::unique_ptr<Monitor>> open(MonitorOptions options,
                                                             Sources sources);
  ~Monitor();
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  void start();   // samples now, then every interval, on its own thread
  void sample();  // one sample (and the probes when due), on the calling thread

  // Reads the sources now.
  nlohmann::json report() const;
  // One component's part of report(); Errc::not_found when nothing is known of it.
  [[nodiscard]] Result<nlohmann::json> report(const std::string& component) const;
  // report() from statistics and services the caller read already (`stats` null and
  // `proxy_error` set when the proxy did not answer): /metrics reads them once.
  nlohmann::json report_of(const nlohmann::json& stats, const std::string& proxy_error,
                           const nlohmann::json& services) const;

  Thresholds thresholds(const std::string& component) const;
  // Replaced and persisted; reset_thresholds() goes back to the defaults.
  [[nodiscard]] Status set_thresholds(const std::string& component, const Thresholds& t);
  [[nodiscard]] Status reset_thresholds(const std::string& component);
  bool custom_thresholds(const std::string& component) const;

 private:
  std::pair<nlohmann::json, std::string> read_stats() const;
  struct Probe {
    bool ok = false;
    std::string message;
    int64_t at_ms = 0;
  };
  Monitor(MonitorOptions options, Sources sources, ThresholdStore store);
  void probe_all(const nlohmann::json& services);
  nlohmann::json component_json(const std::string& name, const nlohmann::json& svc,
                                const nlohmann::json& stats) const;

  MonitorOptions options_;
  Sources sources_;
  const Clock& clock_;
  ThresholdStore store_;

  mutable std::mutex mu_;
  // Per "component\nversion": latency snapshots spanning the window, oldest first.
  std::map<std::string, std::deque<LatencySnapshot>> latency_;
  std::map<std::string, Probe> probes_;  // by instance id
  std::chrono::steady_clock::time_point next_probe_{};

  std::mutex run_mu_;
  std::condition_variable run_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mup::health
