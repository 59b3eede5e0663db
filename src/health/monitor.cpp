#include "health/monitor.hpp"

#include <algorithm>
#include <set>

#include "health/errors.hpp"
#include "health/json_read.hpp"
#include "service/probe.hpp"

namespace mup::health {

using nlohmann::json;

namespace {

int64_t mono_ms(const Clock& c) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(c.monotonic().time_since_epoch())
      .count();
}

std::string key_of(const std::string& component, const std::string& version) {
  return component + "\n" + version;
}

}  // namespace

Monitor::Monitor(MonitorOptions options, Sources sources, ThresholdStore store)
    : options_(std::move(options)),
      sources_(std::move(sources)),
      clock_(options_.clock ? *options_.clock : system_clock()),
      store_(std::move(store)) {}

Result<std::unique_ptr<Monitor>> Monitor::open(MonitorOptions options, Sources sources) {
  auto store = ThresholdStore::open(options.thresholds_file);
  if (!store) return tl::unexpected(store.error().context("opening the health thresholds"));
  return std::unique_ptr<Monitor>(
      new Monitor(std::move(options), std::move(sources), std::move(*store)));
}

Monitor::~Monitor() {
  {
    std::lock_guard lk(run_mu_);
    stop_ = true;
  }
  run_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Monitor::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    std::unique_lock lk(run_mu_);
    while (!stop_) {
      lk.unlock();
      // Nothing here throws by design; should something (an allocation), the sample is
      // lost, not the agent.
      try {
        sample();
      } catch (const std::exception& e) {
        if (options_.log) options_.log(std::string("health sample failed: ") + e.what());
      }
      lk.lock();
      run_cv_.wait_for(lk, options_.interval, [this] { return stop_; });
    }
  });
}

void Monitor::probe_all(const json& services) {
  std::map<std::string, Probe> results;
  for (const auto& svc : field(services, "services")) {
    const std::string name = str_of(svc, "name");
    for (const auto& v : field(svc, "versions")) {
      const std::string version = str_of(v, "version");
      std::optional<service::ReadyCheck> check;
      bool asked = false;
      for (const auto& i : field(v, "instances")) {
        if (str_of(i, "state") != "ready" || int_of(i, "port") <= 0) continue;
        if (!asked) {
          check = sources_.ready_check ? sources_.ready_check(name, version) : std::nullopt;
          asked = true;
        }
        if (!check || check->kind == service::ReadyCheck::Kind::exec) continue;
        const int port = int_of(i, "port");
        const int64_t t = std::min(options_.probe_timeout_ms, check->timeout_ms);
        std::string why = check->kind == service::ReadyCheck::Kind::http
                              ? service::probe_http(port, check->http_path, t)
                              : service::probe_tcp(port, t);
        results[str_of(i, "id")] = {why.empty(), why, clock_.wall_ms()};
      }
    }
  }
  std::lock_guard lk(mu_);
  probes_ = std::move(results);
}

// The proxy's statistics, or the reason they could not be read.
std::pair<json, std::string> Monitor::read_stats() const {
  if (!sources_.stats) return {nullptr, ""};
  auto s = sources_.stats();
  if (!s) return {nullptr, s.error().message()};
  return {std::move(*s), ""};
}

void Monitor::sample() {
  auto [stats, perr] = read_stats();
  json services = sources_.services ? sources_.services() : json::object();
  const auto now = clock_.monotonic();
  bool probe_due = false;
  {
    std::lock_guard lk(mu_);
    if (now >= next_probe_) {
      probe_due = true;
      next_probe_ = now + options_.probe_interval;
    }
  }
  if (probe_due) probe_all(services);

  const int64_t at = mono_ms(clock_);
  std::lock_guard lk(mu_);
  std::set<std::string> seen;
  for (const auto& [name, svc] : field(stats, "services").items()) {
    for (const auto& [version, vs] : field(svc, "versions").items()) {
      const std::string k = key_of(name, version);
      seen.insert(k);
      auto& d = latency_[k];
      d.push_back(latency_snapshot(vs, at));
      // Keep the newest snapshot at least window_s old as the window's start.
      while (d.size() >= 2 && d[1].at_ms <= at - options_.window_s * 1000LL) d.pop_front();
    }
  }
  if (stats.is_object())
    for (auto it = latency_.begin(); it != latency_.end();)
      it = seen.count(it->first) ? std::next(it) : latency_.erase(it);
}

json Monitor::component_json(const std::string& name, const json& svc, const json& stats) const {
  const Thresholds th = store_.get(name);
  const int64_t now_s = clock_.wall_s();
  const json& stat_versions = field(stats, "versions");
  // version -> its /v1/services entry (null: only the proxy knows it)
  std::map<std::string, json> versions;
  for (const auto& v : field(svc, "versions")) versions[str_of(v, "version")] = v;
  for (const auto& [version, vs] : stat_versions.items()) {
    if (versions.count(version)) continue;
    HealthMetrics m;
    traffic_window(vs, now_s, options_.window_s, m);
    if (m.requests > 0) versions[version] = nullptr;
  }

  json out_versions = json::array();
  std::optional<double> worst_score;
  Level worst = Level::ok;
  for (const auto& [version, entry] : versions) {
    HealthMetrics m;
    m.component = name;
    m.version = version;
    m.weight = entry.is_object() ? int_of(entry, "weight") : 0;
    const json& vs = field(stat_versions, version.c_str());
    traffic_window(vs, now_s, options_.window_s, m);
    // From the snapshot that starts the window to now; when nothing was answered since the
    // first snapshot (an agent just started), everything since the proxy started.
    const LatencySnapshot now_hist = latency_snapshot(vs, mono_ms(clock_));
    auto it = latency_.find(key_of(name, version));
    latency_window(it != latency_.end() && !it->second.empty() ? &it->second.front() : nullptr,
                   now_hist, m);
    if (!m.has_latency && m.requests > 0) latency_window(nullptr, now_hist, m);
    json instances = json::array();
    for (const auto& i : field(entry, "instances")) {
      const std::string state = str_of(i, "state");
      if (state == "stopping") continue;  // on its way out
      ++m.instances;
      if (state == "ready") ++m.instances_ready;
      m.cpu_percent = std::max(m.cpu_percent, num_of(i, "cpu_percent"));
      m.memory_bytes = std::max(m.memory_bytes, uint_of(i, "rss_bytes"));
      json ij = {{"id", str_of(i, "id")},
                 {"state", state},
                 {"cpu_percent", num_of(i, "cpu_percent")},
                 {"rss_bytes", uint_of(i, "rss_bytes")}};
      if (auto p = probes_.find(str_of(i, "id")); p != probes_.end()) {
        ++m.probes;
        if (!p->second.ok) ++m.probes_failed;
        ij["probe"] = {
            {"ok", p->second.ok}, {"message", p->second.message}, {"at", iso_utc(p->second.at_ms)}};
      }
      instances.push_back(std::move(ij));
    }
    const Assessment a = assess(m, th);
    json vj = to_json(a);
    vj["version"] = version;
    vj["weight"] = m.weight;
    vj["trend"] = to_json(trend_of(field(vs, "per_second"), th, now_s, options_.window_s));
    vj["metrics"] = to_json(m);
    vj["instances"] = std::move(instances);
    out_versions.push_back(std::move(vj));
    worst = std::max(worst, a.level);
    if (a.score) worst_score = worst_score ? std::min(*worst_score, *a.score) : *a.score;
  }
  return {{"name", name},
          {"score", worst_score ? json(*worst_score) : json(nullptr)},
          {"status", worst == Level::critical  ? "unhealthy"
                     : worst == Level::warning ? "degraded"
                     : worst_score             ? "healthy"
                                               : "unknown"},
          {"alert", level_name(worst)},
          {"thresholds", to_json(th)},
          {"custom_thresholds", store_.has(name)},
          {"versions", std::move(out_versions)}};
}

json Monitor::report() const {
  auto [stats, perr] = read_stats();
  return report_of(stats, perr, sources_.services ? sources_.services() : json::object());
}

json Monitor::report_of(const json& stats, const std::string& proxy_error,
                        const json& services) const {
  std::map<std::string, json> svcs;
  for (const auto& s : field(services, "services")) svcs[str_of(s, "name")] = s;
  std::set<std::string> names;
  for (const auto& [n, s] : svcs) names.insert(n);
  for (const auto& [n, s] : field(stats, "services").items()) names.insert(n);
  json comps = json::array();
  std::lock_guard lk(mu_);
  for (const auto& n : names) {
    auto it = svcs.find(n);
    comps.push_back(component_json(n, it == svcs.end() ? json() : it->second,
                                   field(field(stats, "services"), n.c_str())));
  }
  json out = {{"at", iso_utc(clock_.wall_ms())},
              {"window_s", options_.window_s},
              {"components", std::move(comps)}};
  if (!proxy_error.empty()) out["proxy_error"] = proxy_error;
  return out;
}

Result<json> Monitor::report(const std::string& component) const {
  json all = report();
  for (auto& c : all["components"])
    if (str_of(c, "name") == component) {
      c["at"] = all["at"];
      c["window_s"] = all["window_s"];
      if (all.contains("proxy_error")) c["proxy_error"] = all["proxy_error"];
      return c;
    }
  return fail(Code::not_found, "no health data for " + component +
                                   ": the agent neither runs it nor routes traffic to it "
                                   "(mup services)");
}

Thresholds Monitor::thresholds(const std::string& component) const {
  return store_.get(component);
}

bool Monitor::custom_thresholds(const std::string& component) const {
  return store_.has(component);
}

Status Monitor::set_thresholds(const std::string& component, const Thresholds& t) {
  return store_.set(component, t);
}

Status Monitor::reset_thresholds(const std::string& component) {
  return store_.reset(component);
}

}  // namespace mup::health
