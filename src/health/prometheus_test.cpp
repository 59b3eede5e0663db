// The exposition writer (escaping, cumulative histogram buckets, +Inf) and the node's
// metrics built from synthetic inputs, checked by Debian's promtool when it is installed.
#include "health/prometheus.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "health/node_metrics.hpp"
#include "test_util.hpp"
#include "traffic/stats.hpp"

namespace mup::health {
namespace {

using nlohmann::json;

TEST(Prometheus, EscapesLabelsAndHelp) {
  EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(escape_help("one\\two\nthree \"q\""), "one\\\\two\\nthree \"q\"");
  Exposition e;
  e.family("x_total", "counter", "Line one\nline two");
  e.add("x_total", {{"component", "we\"b"}, {"version", "1\\0"}}, 3);
  EXPECT_EQ(e.text(),
            "# HELP x_total Line one\\nline two\n# TYPE x_total counter\n"
            "x_total{component=\"we\\\"b\",version=\"1\\\\0\"} 3\n");
}

TEST(Prometheus, FormatsValues) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(12345678901.0), "12345678901");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(2.5e-05), "2.5e-05");
  EXPECT_EQ(format_value(1.0 / 0.0), "+Inf");
  EXPECT_EQ(format_value(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(format_value(0.0 / 0.0), "NaN");
}

TEST(Prometheus, HistogramBucketsAreCumulativeAndEndAtInf) {
  Exposition e;
  e.family("d_seconds", "histogram", "d");
  e.histogram("d_seconds", {{"v", "1"}}, {0.1, 0.5}, {2, 0, 3}, 1.75);
  EXPECT_EQ(e.text(),
            "# HELP d_seconds d\n# TYPE d_seconds histogram\n"
            "d_seconds_bucket{v=\"1\",le=\"0.1\"} 2\n"
            "d_seconds_bucket{v=\"1\",le=\"0.5\"} 2\n"
            "d_seconds_bucket{v=\"1\",le=\"+Inf\"} 5\n"
            "d_seconds_sum{v=\"1\"} 1.75\n"
            "d_seconds_count{v=\"1\"} 5\n");
}

NodeMetricsInput sample_input() {
  std::vector<uint64_t> counts(traffic::kLatencyBounds + 1, 0);
  counts[3] = 5;
  counts[traffic::kLatencyBounds] = 1;
  json vs = {{"requests", 7},
             {"responses", {{"1xx", 0}, {"2xx", 5}, {"3xx", 0}, {"4xx", 0}, {"5xx", 1}}},
             {"failed", 2},
             {"retries", 0},
             {"in_flight", 1},
             {"connections", 2},
             {"latency_ms", {{"max", 400000.0}}},
             {"histogram", {{"counts", counts}}}};  // no sum_us: an older proxy
  NodeMetricsInput in;
  in.stats = {{"services", {{"web", {{"versions", {{"2.0.0", vs}, {"-", vs}}}}}}}};
  in.services = {{"services",
                  {{{"name", "web"},
                    {"versions",
                     {{{"version", "2.0.0"},
                       {"weight", 100},
                       {"instances",
                        {{{"id", "web@2.0.0#0"},
                          {"state", "ready"},
                          {"cpu_percent", 2.5},
                          {"rss_bytes", 1048576}}}}}}}}}}};
  in.health = {{"components",
                {{{"name", "web"},
                  {"versions",
                   {{{"version", "2.0.0"}, {"score", 87.5}, {"alert", "warning"}},
                    {{"version", "-"}, {"score", nullptr}, {"alert", "ok"}}}}}}}};
  in.deployments = {
      {3,
       "web",
       "immediate",
       "rolled-back",
       {{"algorithm", "sprt"}, {"metric", "error_rate"}, {"statistic", 4.2}, {"threshold", 2.9}}},
      {2, "web", "blue-green", "rolled-back", nullptr},
      {1, "web", "immediate", "committed", nullptr}};
  return in;
}

TEST(NodeMetrics, NamesLabelsAndValues) {
  const std::string t = render_node_metrics(sample_input());
  auto has = [&](const std::string& line) {
    EXPECT_NE(t.find(line + "\n"), std::string::npos) << line << "\n" << t;
  };
  has("mup_requests_total{component=\"web\",version=\"2.0.0\",code=\"2xx\"} 5");
  has("mup_requests_total{component=\"web\",version=\"2.0.0\",code=\"5xx\"} 1");
  has("mup_requests_total{component=\"web\",version=\"2.0.0\",code=\"none\"} 1");
  has("mup_request_failures_total{component=\"web\",version=\"2.0.0\"} 2");
  has("mup_request_duration_seconds_bucket{component=\"web\",version=\"2.0.0\",le=\"+Inf\"} 6");
  has("mup_request_duration_seconds_count{component=\"web\",version=\"2.0.0\"} 6");
  has("mup_connections{component=\"web\",version=\"2.0.0\"} 2");
  has("mup_in_flight_requests{component=\"web\",version=\"2.0.0\"} 1");
  has("mup_traffic_weight{component=\"web\",version=\"2.0.0\"} 100");
  has("mup_instance_cpu_percent{component=\"web\",version=\"2.0.0\",instance=\"web@2.0.0#0\"} 2.5");
  has("mup_instance_memory_bytes{component=\"web\",version=\"2.0.0\",instance=\"web@2.0.0#0\"} "
      "1048576");
  has("mup_health_score{component=\"web\",version=\"2.0.0\"} 87.5");
  has("mup_health_alert_level{component=\"web\",version=\"2.0.0\"} 1");
  has("mup_deployment_info{component=\"web\",id=\"3\",strategy=\"immediate\",state=\"rolled-back\"}"
      " 1");
  has("mup_rollbacks_total{component=\"web\"} 2");
  has("mup_rollback_decision_statistic{component=\"web\",deployment=\"3\",metric=\"error_rate\"} "
      "4.2");
  EXPECT_EQ(t.find("mup_health_score{component=\"web\",version=\"-\"}"), std::string::npos)
      << "an unknown score is absent, not 0 or 100";
  EXPECT_EQ(t.find("id=\"1\""), std::string::npos) << "only the latest deployment's info";
  // No sum from the proxy: estimated from the buckets, so never 0 with samples.
  EXPECT_EQ(t.find("mup_request_duration_seconds_sum{component=\"web\",version=\"2.0.0\"} 0\n"),
            std::string::npos);
}

// Whether `promtool check metrics` accepts `text`; skips when promtool is not installed.
void expect_promtool_accepts(const std::string& text) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "promtool not installed (Debian package `prometheus`; "
                    "scripts/install-deps.sh installs it)";
  test::ScratchDir d;
  test::write_file(d / "metrics.txt", text);
  const std::string cmd = "promtool check metrics < " + (d / "metrics.txt").string() + " > " +
                          (d / "out.txt").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(d / "out.txt");
  std::string out(std::istreambuf_iterator<char>(in), {});
  EXPECT_EQ(rc, 0) << out << "\n--- metrics:\n" << text;
}

TEST(NodeMetrics, PromtoolAcceptsThem) {
  expect_promtool_accepts(render_node_metrics(sample_input()));
}

TEST(NodeMetrics, PromtoolAcceptsThemWithNothingToReport) {
  expect_promtool_accepts(render_node_metrics({}));
}

}  // namespace
}  // namespace mup::health
