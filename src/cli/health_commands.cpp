// mup health [NAME] [--watch] [--json] and mup health thresholds NAME [...]: the agent's
// health monitor (GET /v1/health[/NAME], PUT/DELETE /v1/health/NAME/thresholds). Parses,
// calls the agent, prints; the monitor does the rest.
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>

#include "cli/agent_client.hpp"
#include "cli/commands.hpp"
#include "cli/node_args.hpp"

namespace mup::cli {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string score_text(const json& s) {
  if (!s.is_number()) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", s.get<double>());
  return b;
}

std::string mib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", bytes / 1048576);
  return b;
}

void print_component(const json& c) {
  const json& t = c["thresholds"];
  std::printf(
      "%s  %s  score %s  alert %s  (thresholds%s: error rate %.1f%%, p99 %.0f ms, cpu "
      "%.0f%%, memory %s, min %llu requests)\n",
      c.value("name", "").c_str(), c.value("status", "").c_str(), score_text(c["score"]).c_str(),
      c.value("alert", "").c_str(), c.value("custom_thresholds", false) ? "" : " (defaults)",
      t.value("error_rate", 0.0) * 100, t.value("p99_ms", 0.0), t.value("cpu_percent", 0.0),
      mib(t.value("memory_bytes", 0.0)).c_str(),
      static_cast<unsigned long long>(t.value("min_requests", 0)));
  for (const auto& v : c["versions"]) {
    const json& m = v["metrics"];
    const json& tr = v["trend"];
    std::printf("  %-12s weight %3d  %-9s score %-5s  trend %s (%+.1f/min over %d s)\n",
                v.value("version", "").c_str(), v.value("weight", 0), v.value("status", "").c_str(),
                score_text(v["score"]).c_str(), tr.value("direction", "").c_str(),
                tr.value("slope_per_min", 0.0), tr.value("samples", 0));
    std::printf("      %llu requests in %.0f s, error rate %.2f%%",
                static_cast<unsigned long long>(m.value("requests", 0)), m.value("window_s", 0.0),
                m.value("error_rate", 0.0) * 100);
    if (m["response_time_ms"].is_object()) {
      const json& rt = m["response_time_ms"];
      std::printf(", mean %.1f ms, p50 %.1f, p95 %.1f, p99 %.1f", rt.value("mean", 0.0),
                  rt.value("p50", 0.0), rt.value("p95", 0.0), rt.value("p99", 0.0));
    }
    std::printf(", %lld connections, %lld in flight\n",
                static_cast<long long>(m.value("active_connections", 0)),
                static_cast<long long>(m.value("in_flight", 0)));
    std::printf("      instances %d/%d ready, cpu %.1f%%, memory %s (busiest)\n",
                m.value("instances_ready", 0), m.value("instances", 0), m.value("cpu_percent", 0.0),
                mib(m.value("memory_bytes", 0.0)).c_str());
    for (const auto& a : v["alerts"])
      std::printf("      %s: %s\n", a.value("level", "").c_str(), a.value("message", "").c_str());
  }
}

void print_report(const json& r, bool one) {
  if (r.contains("proxy_error"))
    std::printf("warning: the proxy does not answer (%s): traffic health unknown\n",
                r.value("proxy_error", "").c_str());
  if (one) return print_component(r);
  if (r["components"].empty()) std::printf("no services run on this node (mup deploy NAME)\n");
  for (const auto& c : r["components"]) print_component(c);
}

}  // namespace

void register_health_commands(CLI::App& app) {
  struct A {
    NodeArgs n;
    std::string name;
    bool watch = false;
  };
  auto a = std::make_shared<A>();
  auto* cmd = app.add_subcommand(
      "health", "Health of the services the agent runs: score, alerts, trend, metrics");
  cmd->add_option("name", a->name, "Only this component");
  cmd->add_flag("--watch", a->watch, "Redraw every second until Ctrl-C");
  add_node_options(cmd, a->n);

  struct T {
    NodeArgs n;
    std::string name, memory;
    std::optional<double> error_rate, p99_ms, cpu;
    std::optional<uint64_t> min_requests;
    bool reset = false;
  };
  auto t = std::make_shared<T>();
  auto* th = cmd->add_subcommand("thresholds",
                                 "Show or set a component's health thresholds (kept by the agent)");
  th->add_option("name", t->name, "Component")->required();
  th->add_option("--error-rate", t->error_rate, "Failed share of requests, 0-1 (default 0.05)");
  th->add_option("--p99-ms", t->p99_ms, "p99 response time in ms (default 500)");
  th->add_option("--cpu", t->cpu, "CPU % of one CPU, busiest instance (default 90)");
  th->add_option("--memory", t->memory, "RSS of the largest instance, e.g. 512M (default 512M)");
  th->add_option("--min-requests", t->min_requests,
                 "Fewer requests in the window: traffic health unknown (default 10)");
  th->add_flag("--reset", t->reset, "Back to the defaults");
  add_node_options(th, t->n);
  th->callback([t] {
    auto c = agent_client(t->n.root());
    const std::string path = "/v1/health/" + t->name + "/thresholds";
    json body = json::object();
    if (t->error_rate) body["error_rate"] = *t->error_rate;
    if (t->p99_ms) body["p99_ms"] = *t->p99_ms;
    if (t->cpu) body["cpu_percent"] = *t->cpu;
    if (!t->memory.empty()) body["memory_bytes"] = t->memory;
    if (t->min_requests) body["min_requests"] = *t->min_requests;
    if (t->reset && !body.empty())
      die(Error(Errc::invalid_argument, "--reset takes no other threshold options"));
    json r = t->reset       ? agent_call(c, "DELETE", path)
             : body.empty() ? agent_call(c, "GET", path)
                            : agent_call(c, "PUT", path, body);
    if (t->n.json()) return print_json(r);
    const json& v = r["thresholds"];
    std::printf("%s%s: error rate %g, p99 %g ms, cpu %g%%, memory %llu bytes, min %llu requests\n",
                r.value("component", "").c_str(), r.value("custom", false) ? "" : " (defaults)",
                v.value("error_rate", 0.0), v.value("p99_ms", 0.0), v.value("cpu_percent", 0.0),
                static_cast<unsigned long long>(v.value("memory_bytes", uint64_t{0})),
                static_cast<unsigned long long>(v.value("min_requests", uint64_t{0})));
  });

  cmd->callback([a, th] {
    if (th->parsed()) return;
    auto c = agent_client(a->n.root());
    const std::string path = a->name.empty() ? "/v1/health" : "/v1/health/" + a->name;
    for (;;) {
      json r = agent_call(c, "GET", path);
      if (a->n.json()) {
        // One JSON document per line while watching, so it can be piped.
        std::printf("%s\n", a->watch ? r.dump().c_str() : r.dump(2).c_str());
      } else {
        if (a->watch) std::printf("\033[H\033[2J%s\n", r.value("at", "").c_str());
        print_report(r, !a->name.empty());
      }
      std::fflush(stdout);
      if (!a->watch) return;
      std::this_thread::sleep_for(1s);
    }
  });
}

}  // namespace mup::cli
