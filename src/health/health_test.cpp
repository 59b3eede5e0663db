// The health score, alerts, trend, windows and thresholds on synthetic inputs, and the
// Monitor fed synthetic proxy statistics and instances (a FakeClock; no processes).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "health/errors.hpp"
#include "health/monitor.hpp"
#include "health/score.hpp"
#include "health/thresholds.hpp"
#include "health/window.hpp"
#include "test_util.hpp"
#include "traffic/stats.hpp"

namespace mup::health {
namespace {

using nlohmann::json;

// A version with plenty of healthy traffic and two ready, idle instances.
HealthMetrics healthy() {
  HealthMetrics m;
  m.component = "web";
  m.version = "2.0.0";
  m.weight = 100;
  m.window_s = 60;
  m.requests = 1000;
  m.failed = 0;
  m.has_latency = true;
  m.response_time_ms = {10, 8, 20, 40};
  m.instances = m.instances_ready = 2;
  m.cpu_percent = 5;
  m.memory_bytes = 20 << 20;
  m.probes = 2;
  return m;
}

const Alert* alert_of(const Assessment& a, const std::string& metric) {
  for (const auto& al : a.alerts)
    if (al.metric == metric) return &al;
  return nullptr;
}

TEST(HealthScore, AHealthyVersionScores100AndIsOk) {
  Assessment a = assess(healthy(), {});
  ASSERT_TRUE(a.score);
  EXPECT_EQ(*a.score, 100);
  EXPECT_EQ(a.status, "healthy");
  EXPECT_EQ(a.level, Level::ok);
  EXPECT_TRUE(a.alerts.empty());
}

TEST(HealthScore, NoTrafficIsUnknownNeverHealthy) {
  HealthMetrics m = healthy();
  m.requests = 0;
  m.has_latency = false;
  Assessment a = assess(m, {});
  EXPECT_FALSE(a.score) << "a version nobody uses must not score 100";
  EXPECT_EQ(a.status, "unknown");
  m.requests = 9;  // under min_requests (10)
  EXPECT_FALSE(assess(m, {}).score);
  m.requests = 10;
  EXPECT_TRUE(assess(m, {}).score);
  // Nothing at all known (no instances, no weight, no traffic): unknown too.
  EXPECT_EQ(assess(HealthMetrics{}, {}).status, "unknown");
}

TEST(HealthScore, EachThresholdWarnsThenGoesCritical) {
  Thresholds t;  // error 5%, p99 500 ms, cpu 90%, memory 512 MiB
  struct Case {
    const char* metric;
    std::function<void(HealthMetrics&, double)> set;
    double threshold, weight;
  };
  std::vector<Case> cases = {
      {"error_rate",
       [](HealthMetrics& m, double v) {
         m.failed = static_cast<uint64_t>(v * 1000);
         m.error_rate = v;
       },
       0.05, 40},
      {"p99_ms", [](HealthMetrics& m, double v) { m.response_time_ms.p99 = v; }, 500, 25},
      {"cpu_percent", [](HealthMetrics& m, double v) { m.cpu_percent = v; }, 90, 10},
      {"memory_bytes",
       [](HealthMetrics& m, double v) { m.memory_bytes = static_cast<uint64_t>(v); },
       512.0 * 1048576, 10},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.metric);
    HealthMetrics m = healthy();
    c.set(m, c.threshold);  // at the threshold: fine
    EXPECT_EQ(*assess(m, t).score, 100);
    EXPECT_FALSE(alert_of(assess(m, t), c.metric));
    c.set(m, c.threshold * 1.5);  // over: warning, penalty weight * 0.75
    Assessment a = assess(m, t);
    ASSERT_TRUE(alert_of(a, c.metric));
    EXPECT_EQ(alert_of(a, c.metric)->level, Level::warning);
    EXPECT_EQ(a.status, "degraded");
    EXPECT_NEAR(*a.score, 100 - c.weight * 0.75, 0.05);
    c.set(m, c.threshold * 2);  // twice: critical, the whole weight
    a = assess(m, t);
    EXPECT_EQ(alert_of(a, c.metric)->level, Level::critical);
    EXPECT_EQ(a.status, "unhealthy");
    EXPECT_NEAR(*a.score, 100 - c.weight, 0.05);
  }
}

TEST(HealthScore, ThresholdsAreTheComponentsOwn) {
  HealthMetrics m = healthy();
  m.response_time_ms.p99 = 40;
  Thresholds strict;
  strict.p99_ms = 30;
  EXPECT_EQ(assess(m, strict).level, Level::warning);
  EXPECT_EQ(assess(m, {}).level, Level::ok);
}

TEST(HealthScore, InstancesNotReadyAndFailedProbes) {
  HealthMetrics m = healthy();
  m.instances_ready = 1;
  Assessment a = assess(m, {});
  EXPECT_EQ(alert_of(a, "ready")->level, Level::warning);
  EXPECT_NEAR(*a.score, 85, 0.05);  // 30 * 1/2
  m.instances_ready = 0;
  EXPECT_EQ(assess(m, {}).level, Level::critical);
  // Weight but no instance at all: none ready, even without traffic.
  HealthMetrics gone;
  gone.weight = 100;
  a = assess(gone, {});
  EXPECT_EQ(a.status, "unhealthy");
  EXPECT_FALSE(a.score);
  // A warm version without weight and without instances says nothing about readiness.
  EXPECT_EQ(assess(HealthMetrics{}, {}).level, Level::ok);

  m = healthy();
  m.probes_failed = 1;
  a = assess(m, {});
  EXPECT_EQ(alert_of(a, "probes")->level, Level::warning);
  EXPECT_NEAR(*a.score, 92.5, 0.05);
  m.probes_failed = 2;
  EXPECT_EQ(assess(m, {}).level, Level::critical);
}

TEST(HealthScore, PenaltiesAddUpAndTheScoreStaysInRange) {
  HealthMetrics m = healthy();
  m.error_rate = 1;
  m.failed = m.requests;
  m.response_time_ms.p99 = 1e6;
  m.cpu_percent = 1000;
  m.memory_bytes = 1ull << 40;
  m.instances_ready = 0;
  m.probes_failed = 2;
  EXPECT_EQ(*assess(m, {}).score, 0);
  EXPECT_EQ(severity(1, 0), 0) << "a zero threshold never divides by zero";
}

json per_second(int64_t now_s, const std::function<std::pair<int, int>(int)>& req_failed,
                double p99_ms = 10) {
  json ps = json::array();
  for (int64_t t = now_s - 119; t <= now_s; ++t) {
    auto [r, f] = req_failed(static_cast<int>(now_s - t));
    ps.push_back({{"t", t}, {"requests", r}, {"failed", f}, {"p99_ms", p99_ms}});
  }
  return ps;
}

TEST(HealthTrend, DirectionAndSlopeFromPerSecondScores) {
  const int64_t now = 1'700'000'000;
  // Steady and clean: stable, slope 0.
  Trend tr = trend_of(per_second(now, [](int) { return std::pair{100, 0}; }), {}, now);
  EXPECT_EQ(tr.direction, "stable");
  EXPECT_EQ(tr.slope_per_min, 0);
  EXPECT_EQ(tr.samples, 60);
  // Errors growing towards now (age 60 s: 0 %, now: 30 %): degrading.
  tr = trend_of(per_second(now,
                           [](int age) {
                             return std::pair{100, std::max(0, 30 - age / 2)};
                           }),
                {}, now);
  EXPECT_EQ(tr.direction, "degrading");
  EXPECT_LT(tr.slope_per_min, -5);
  // Errors fading: improving.
  tr = trend_of(per_second(now,
                           [](int age) {
                             return std::pair{100, std::max(0, age / 2 - 1)};
                           }),
                {}, now);
  EXPECT_EQ(tr.direction, "improving");
  EXPECT_GT(tr.slope_per_min, 5);
  // No traffic: unknown (not "stable").
  tr = trend_of(per_second(now, [](int) { return std::pair{0, 0}; }), {}, now);
  EXPECT_EQ(tr.direction, "unknown");
  EXPECT_EQ(tr.samples, 0);
  EXPECT_EQ(trend_of(json(), {}, now).direction, "unknown");
}

json version_stats(int64_t now_s, int per_sec_requests, int per_sec_failed,
                   std::vector<uint64_t> counts, uint64_t sum_us) {
  counts.resize(traffic::kLatencyBounds + 1, 0);
  return {{"requests", 0},
          {"connections", 3},
          {"in_flight", 1},
          {"latency_ms", {{"max", 10.0}}},
          {"histogram", {{"counts", counts}, {"sum_us", sum_us}}},
          {"per_second", per_second(now_s, [&](int) {
             return std::pair{per_sec_requests, per_sec_failed};
           })}};
}

TEST(HealthWindow, ErrorRateOverTheWindowAndLatencyBetweenSnapshots) {
  const int64_t now = 1'700'000'000;
  HealthMetrics m;
  traffic_window(version_stats(now, 10, 1, {}, 0), now, 60, m);
  EXPECT_EQ(m.requests, 600u);
  EXPECT_EQ(m.failed, 60u);
  EXPECT_DOUBLE_EQ(m.error_rate, 0.1);
  EXPECT_EQ(m.active_connections, 3);
  EXPECT_EQ(m.in_flight, 1);

  // 100 samples at <= 25 µs then, 60 s later, 100 more in bucket 10 (<= 800 µs).
  std::vector<uint64_t> c0(traffic::kLatencyBounds + 1, 0), c1;
  c0[0] = 100;
  c1 = c0;
  c1[10] = 100;
  auto older = latency_snapshot(version_stats(now, 0, 0, c0, 2000), 0);
  auto newer = latency_snapshot(version_stats(now, 0, 0, c1, 2000 + 100 * 700), 60'000);
  latency_window(&older, newer, m);
  ASSERT_TRUE(m.has_latency);
  EXPECT_DOUBLE_EQ(m.response_time_ms.mean, 0.7) << "only the window's samples";
  EXPECT_GT(m.response_time_ms.p50, 0.5);
  EXPECT_LE(m.response_time_ms.p99, traffic::latency_bounds_us()[10] / 1000.0);
  // A single snapshot: everything since the proxy started.
  latency_window(nullptr, newer, m);
  EXPECT_NEAR(m.response_time_ms.mean, (2000 + 70000) / 200.0 / 1000, 1e-3);
  // Counters that went down (the proxy restarted): counted from zero.
  latency_window(&newer, older, m);
  EXPECT_NEAR(m.response_time_ms.mean, 0.02, 1e-3);
  // Nothing new in the window: no latency, not zero latency.
  latency_window(&newer, newer, m);
  EXPECT_FALSE(m.has_latency);
}

TEST(HealthThresholds, ParseMergePersistAndRefuseBadFields) {
  EXPECT_EQ(*parse_bytes("512M"), 512ull << 20);
  EXPECT_EQ(*parse_bytes("1GiB"), 1ull << 30);
  EXPECT_EQ(*parse_bytes("800k"), 800ull << 10);
  EXPECT_EQ(*parse_bytes("4096"), 4096u);
  EXPECT_FALSE(parse_bytes("12X"));
  EXPECT_FALSE(parse_bytes("M"));
  EXPECT_FALSE(parse_bytes("0"));

  Thresholds base;
  auto t = thresholds_from_json({{"p99_ms", 250}, {"memory_bytes", "1G"}}, base);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->p99_ms, 250);
  EXPECT_EQ(t->memory_bytes, 1ull << 30);
  EXPECT_EQ(t->error_rate, base.error_rate) << "absent fields keep their value";
  auto bad = thresholds_from_json({{"error_rate", 2}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message().rfind("error_rate:", 0), 0u) << bad.error().message();
  EXPECT_TRUE(bad.error().is(Code::bad_threshold));
  EXPECT_EQ(bad.error().code_string(), "health.bad_threshold");
  EXPECT_FALSE(thresholds_from_json({{"colour", 1}}));
  EXPECT_FALSE(thresholds_from_json({{"cpu_percent", "high"}}));

  test::ScratchDir d;
  const auto file = d.path() / "health/thresholds.json";
  {
    auto store = ThresholdStore::open(file);
    ASSERT_TRUE(store);
    EXPECT_FALSE(store->has("web"));
    ASSERT_TRUE(store->set("web", *t));
  }
  auto again = ThresholdStore::open(file);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->get("web"), *t);
  EXPECT_EQ(again->get("db"), Thresholds{});
  ASSERT_TRUE(again->reset("web"));
  EXPECT_FALSE(ThresholdStore::open(file)->has("web"));
  test::write_file(file, std::string("not json"));
  EXPECT_FALSE(ThresholdStore::open(file)) << "a corrupt file is an error, not the defaults";
}

TEST(HealthMonitor, ReportsPerComponentAndVersionFromItsSources) {
  FakeClock clock;
  test::ScratchDir d;
  json stats, services;
  Sources src;
  src.stats = [&]() -> Result<json> { return stats; };
  src.services = [&] { return services; };
  MonitorOptions o;
  o.thresholds_file = d.path() / "thresholds.json";
  o.clock = &clock;
  auto mon = Monitor::open(o, src);
  ASSERT_TRUE(mon);
  const int64_t now = clock.wall_s();
  std::vector<uint64_t> counts(traffic::kLatencyBounds + 1, 0);
  counts[5] = 600;
  stats = {{"services",
            {{"web",
              {{"versions",
                {{"2.0.0", version_stats(now, 10, 0, counts, 600 * 100)},
                 {"1.0.0", version_stats(now, 0, 0, {}, 0)},
                 {"-", version_stats(now, 1, 1, {}, 0)}}}}}}}};
  auto inst = [](const std::string& id, const std::string& state) {
    return json{{"id", id}, {"state", state}, {"cpu_percent", 1.5}, {"rss_bytes", 1 << 20}};
  };
  services = {
      {"services",
       {{{"name", "web"},
         {"versions",
          {{{"version", "1.0.0"}, {"weight", 0}, {"instances", {inst("web@1.0.0#0", "ready")}}},
           {{"version", "2.0.0"},
            {"weight", 100},
            {"instances", {inst("web@2.0.0#0", "ready"), inst("web@2.0.0#1", "ready")}}}}}}}}};
  (*mon)->sample();
  auto web = (*mon)->report("web");
  ASSERT_TRUE(web) << web.error().message();
  std::map<std::string, json> by;
  for (const auto& v : (*web)["versions"]) by[v["version"]] = v;
  ASSERT_EQ(by.size(), 3u) << web->dump(1);
  EXPECT_EQ(by["2.0.0"]["status"], "healthy");
  EXPECT_EQ(by["2.0.0"]["score"], 100);
  EXPECT_EQ(by["2.0.0"]["metrics"]["requests"], 600);
  EXPECT_EQ(by["2.0.0"]["metrics"]["instances_ready"], 2);
  EXPECT_TRUE(by["2.0.0"]["metrics"]["response_time_ms"]["p99"].is_number());
  EXPECT_EQ(by["1.0.0"]["status"], "unknown") << "warm, without traffic";
  EXPECT_TRUE(by["1.0.0"]["score"].is_null());
  EXPECT_EQ(by["-"]["status"], "unhealthy") << "users got 503s: no routable backend";
  EXPECT_EQ((*web)["alert"], "critical");
  EXPECT_EQ((*web)["score"], 60) << "the lowest known score: '-' loses the error weight";
  EXPECT_TRUE((*mon)->report("nope").error().is(Code::not_found));

  // Thresholds set through the monitor are used at once and persisted.
  Thresholds strict;
  strict.cpu_percent = 1;
  ASSERT_TRUE((*mon)->set_thresholds("web", strict));
  web = (*mon)->report("web");
  EXPECT_EQ((*web)["versions"][2]["alert"], "warning") << web->dump(1);
  EXPECT_EQ((*web)["custom_thresholds"], true);
  EXPECT_TRUE(std::filesystem::exists(o.thresholds_file));

  // The proxy went away: its error is reported, traffic becomes unknown.
  src.stats = []() -> Result<json> { return fail(Errc::io, "no proxy"); };
  auto mon2 = Monitor::open(o, src);
  ASSERT_TRUE(mon2);
  (*mon2)->sample();
  json all = (*mon2)->report();
  EXPECT_EQ(all["proxy_error"], "no proxy");
  ASSERT_EQ(all["components"][0]["versions"].size(), 2u) << all.dump(1);
  for (const auto& v : all["components"][0]["versions"]) {
    EXPECT_EQ(v["status"], "degraded") << "the strict CPU threshold was persisted";
    EXPECT_TRUE(v["score"].is_null()) << "no traffic data: no score";
  }
}

// A loopback TCP socket; listening, or closed again (so a connect is refused).
int loopback_port(bool listening, int* fd_out) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (listening) {
    ::listen(fd, 4);
    *fd_out = fd;
  } else {
    ::close(fd);
  }
  return ntohs(a.sin_port);
}

TEST(HealthMonitor, ProbesReadyInstancesWithTheirReadinessCheck) {
  int listener = -1;
  const int up = loopback_port(true, &listener), down = loopback_port(false, nullptr);
  FakeClock clock;
  test::ScratchDir d;
  Sources src;
  src.services = [&] {
    auto inst = [](const std::string& id, int port) {
      return json{{"id", id}, {"state", "ready"}, {"port", port}};
    };
    return json{{"services",
                 {{{"name", "db"},
                   {"versions",
                    {{{"version", "1"},
                      {"weight", 100},
                      {"instances", {inst("db@1#0", up), inst("db@1#1", down)}}}}}}}}};
  };
  int asked = 0;
  src.ready_check = [&](const std::string& c, const std::string& v) {
    ++asked;
    EXPECT_EQ(c + "@" + v, "db@1");
    service::ReadyCheck r;
    r.kind = service::ReadyCheck::Kind::tcp;
    return std::optional(r);
  };
  MonitorOptions o;
  o.thresholds_file = d.path() / "t.json";
  o.clock = &clock;
  auto mon = Monitor::open(o, src);
  ASSERT_TRUE(mon);
  (*mon)->sample();
  ::close(listener);
  auto r = (*mon)->report("db");
  ASSERT_TRUE(r);
  const json& v = (*r)["versions"][0];
  EXPECT_EQ(v["metrics"]["probes"], 2);
  EXPECT_EQ(v["metrics"]["probes_failed"], 1);
  EXPECT_EQ(v["instances"][0]["probe"]["ok"], true);
  EXPECT_EQ(v["instances"][1]["probe"]["ok"], false);
  EXPECT_NE(v["instances"][1]["probe"]["message"].get<std::string>().find("refused"),
            std::string::npos)
      << v.dump(1);
  EXPECT_EQ(v["alert"], "warning");
  EXPECT_EQ(v["status"], "degraded") << "a failed probe is known bad, even without traffic";
  // Not due again before probe_interval: the same results, no new probe.
  (*mon)->sample();
  EXPECT_EQ(asked, 1);
}

}  // namespace
}  // namespace mup::health
