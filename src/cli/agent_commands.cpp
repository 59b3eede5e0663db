// The agent and the commands that talk to it: agent, deploy, deployments, services,
// promote, abort (and rollback, when an agent runs: see install_commands.cpp).
#include <signal.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>

#include "agent/agent.hpp"
#include "api/client.hpp"
#include "api/errors.hpp"
#include "cli/agent_client.hpp"
#include "cli/commands.hpp"
#include "cli/node_args.hpp"
#include "deploy/deployer.hpp"
#include "state/state_db.hpp"

namespace mup::cli {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::atomic<bool> g_stop{false};

void on_stop_signal(int) {
  g_stop = true;
}

std::filesystem::path self_binary() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : p;
}

// A client of the agent of `root`, or nullopt when none answers there.
// The liveness probe is GET /v1/services; its body goes to `services` when asked for.
std::optional<api::Client> running_agent(const std::filesystem::path& root,
                                         json* services = nullptr) {
  auto c = api::Client::unix_socket(root / "agent.sock");
  std::error_code ec;
  if (!std::filesystem::exists(root / "agent.sock", ec)) return std::nullopt;
  auto r = c.request("GET", "/v1/services", nullptr, 5s);
  if (!r) return std::nullopt;
  if (services) *services = r->status == 200 ? r->body : json();
  return c;
}

api::Client agent_or_die(const std::filesystem::path& root) {
  auto c = running_agent(root);
  if (!c)
    die(make_error(api::Code::unavailable,
                   "no agent running on " + root.string() + " (" + (root / "agent.sock").string() +
                       " does not answer): start one with `mup agent --root " + root.string() +
                       "`"));
  return std::move(*c);
}

// The body of a successful reply, or die() with the API's error.
json call(api::Client& c, const std::string& method, const std::string& path,
          const json& body = nullptr, std::chrono::milliseconds timeout = 30s) {
  auto r = c.request(method, path, body, timeout);
  if (!r) die(r.error());
  if (r->status >= 400) {
    std::string code = "agent.error", message = r->body.dump();
    if (r->body.is_object() && r->body.contains("error") && r->body["error"].is_object()) {
      code = r->body["error"].value("code", code);
      message = r->body["error"].value("message", message);
    }
    Errc errc = r->status == 404   ? Errc::not_found
                : r->status == 409 ? Errc::busy
                : r->status == 400 ? Errc::invalid_argument
                                   : Errc::io;
    if (json_requested()) {
      std::printf("%s\n",
                  json({{"error", {{"code", code}, {"message", message}, {"status", r->status}}}})
                      .dump(2)
                      .c_str());
      throw CliExit{1};
    }
    die(Error(errc, message));
  }
  return r->body;
}

std::string traffic_text(const json& t) {
  std::string out;
  if (!t.is_object()) return out;
  for (const auto& [v, w] : t.items()) {
    if (!out.empty()) out += ", ";
    out += v + " " + w.dump() + "%";
  }
  return out;
}

void print_deployment(const json& d) {
  std::printf("deployment %lld: %s %s -> %s (%s): %s\n", static_cast<long long>(d.value("id", 0)),
              d.value("component", "").c_str(), d.value("from_version", "").c_str(),
              d.value("to_version", "").c_str(), d.value("strategy", "").c_str(),
              d.value("state", "").c_str());
  if (!d.value("reason", "").empty()) std::printf("  reason: %s\n", d.value("reason", "").c_str());
  std::printf("  traffic: %s\n", traffic_text(d.value("traffic", json::object())).c_str());
  if (d.contains("scheduled_for"))
    std::printf("  scheduled for %s\n", d.value("scheduled_for", "").c_str());
  std::printf("  started %s, %s\n",
              d["started_at"].is_string() ? d["started_at"].get<std::string>().c_str() : "not yet",
              d["finished_at"].is_string()
                  ? ("finished " + d["finished_at"].get<std::string>()).c_str()
                  : "running");
  if (d.contains("decision") && d["decision"].is_object()) {
    const json& j = d["decision"];
    std::printf("  decision: %s", j.value("verdict", "").c_str());
    if (j.contains("metric"))
      std::printf(
          " on %s (%s: statistic %.2f, threshold %.2f; new %llu requests %llu errors, "
          "%s %llu requests %llu errors)",
          j.value("metric", "").c_str(), j.value("algorithm", "").c_str(),
          j.value("statistic", 0.0), j.value("threshold", 0.0),
          static_cast<unsigned long long>(j["new"].value("requests", uint64_t{0})),
          static_cast<unsigned long long>(j["new"].value("errors", uint64_t{0})),
          j.value("against", "old").c_str(),
          static_cast<unsigned long long>(j["old"].value("requests", uint64_t{0})),
          static_cast<unsigned long long>(j["old"].value("errors", uint64_t{0})));
    std::printf("\n");
    if (!j.value("reason", "").empty()) std::printf("    %s\n", j.value("reason", "").c_str());
  }
  if (d.contains("rolled_back_at"))
    std::printf("  all traffic back on %s at %s\n", d.value("from_version", "").c_str(),
                d.value("rolled_back_at", "").c_str());
  if (d["keep_old_until"].is_string() && d.value("window_open", false))
    std::printf("  old version warm until %s (mup rollback %s flips back)\n",
                d["keep_old_until"].get<std::string>().c_str(), d.value("component", "").c_str());
}

// How often a follower asks again: soon after a change (a state often follows another within
// milliseconds), then less and less often while nothing changes, up to 4 times a second.
class PollDelay {
 public:
  void changed() { delay_ = std::chrono::milliseconds(10); }
  void sleep() {
    std::this_thread::sleep_for(delay_);
    delay_ = std::min<std::chrono::milliseconds>(delay_ * 3 / 2, std::chrono::milliseconds(250));
  }

 private:
  std::chrono::milliseconds delay_{10};
};

// Follows a deployment until it is final, printing its states as they change.
json wait_final(api::Client& c, int64_t id, bool quiet, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  PollDelay delay;
  for (;;) {
    json d = call(c, "GET", "/v1/deployments/" + std::to_string(id));
    if (d.value("state", "") != last) {
      last = d.value("state", "");
      delay.changed();
      if (!quiet) std::fprintf(stderr, "  %s\n", last.c_str());
    }
    if (d.value("final", false)) return d;
    if (std::chrono::steady_clock::now() > deadline)
      die(Error(Errc::io, "deployment " + std::to_string(id) + " is still " + last + " after " +
                              std::to_string(timeout.count() / 1000) + " s (mup deployments " +
                              std::to_string(id) + ")"));
    delay.sleep();
  }
}

// An id, or the component whose running (else latest) deployment is meant.
int64_t resolve_deployment(api::Client& c, const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("0123456789") == std::string::npos)
    return std::stoll(arg);
  json list = call(c, "GET", "/v1/deployments?component=" + arg + "&limit=1");
  auto& ds = list["deployments"];
  if (!ds.is_array() || ds.empty())
    die(Error(Errc::not_found, "no deployment of " + arg + " (mup deployments)"));
  return ds[0].value("id", int64_t{0});
}

// The deployments as the agent's API shows them, read from state.db (no agent running).
json offline_deployments(const NodeArgs& n, const std::string& component, int limit) {
  auto node = open_node(n);
  auto db = must(node->connect_state());
  auto rows = must(db.deployments(component, limit > 0 ? static_cast<size_t>(limit) : 0));
  json out = json::array();
  for (const auto& r : rows) out.push_back(deploy::deployment_json(r));
  return {{"deployments", out}};
}

json offline_deployment(const NodeArgs& n, const std::string& id_text) {
  if (id_text.empty() || id_text.find_first_not_of("0123456789") != std::string::npos)
    die(Error(Errc::invalid_argument,
              "a deployment id is a positive integer, not '" + id_text + "'"));
  const int64_t id = std::stoll(id_text);
  auto node = open_node(n);
  auto db = must(node->connect_state());
  auto row = must(db.deployment(id));
  if (!row) die(make_error(deploy::Code::not_found, "no deployment " + id_text));
  return deploy::deployment_json(*row, must(db.deployment_steps(id)));
}

// 0 when the deployment did what it was for: committed, or (a rollback) rolled back. A
// deployment the judge rolled back is a failure of `mup deploy` (exit 1).
int exit_code_of(const json& d) {
  const std::string s = d.value("state", "");
  if (d.value("strategy", "") == "rollback") return s == "rolled-back" ? 0 : 1;
  return s == "committed" ? 0 : 1;
}

}  // namespace

namespace {

// Whether a GET /v1/services body lists `name`.
bool serves(const json& services, const std::string& name) {
  if (!services.is_object() || !services.contains("services")) return false;
  for (const auto& s : services["services"])
    if (s.is_object() && s.value("name", "") == name) return true;
  return false;
}

// The body of POST /v1/plans: the names given (NAME or NAME@VERSION, each with the common
// fields of `common`), or a plan file's [[deploy]] tables.
json plan_body(const std::vector<std::string>& names, const std::string& file, const json& common) {
  json items = json::array();
  json plan = json::object();
  if (!file.empty()) {
    toml::table t;
    try {
      t = toml::parse_file(file);
    } catch (const toml::parse_error& e) {
      die(make_error(Errc::invalid_argument, file + ":" + std::to_string(e.source().begin.line) +
                                                 ": " + std::string(e.description())));
    }
    std::ostringstream out;
    out << toml::json_formatter{t};
    json j = json::parse(out.str(), nullptr, false);
    for (const auto& [k, v] : j.items())
      if (k != "deploy" && k != "atomic" && k != "start_when")
        die(make_error(Errc::invalid_argument,
                       file + ": " + k + ": unknown key (atomic, start_when, [[deploy]])"));
    if (j.contains("atomic")) plan["atomic"] = j["atomic"];
    if (j.contains("start_when")) plan["start_when"] = j["start_when"];
    if (!j.contains("deploy") || !j["deploy"].is_array())
      die(make_error(Errc::invalid_argument, file + ": no [[deploy]] tables"));
    for (auto item : j["deploy"]) {
      if (item.is_object() && !item.contains("actor")) item["actor"] = common.value("actor", "");
      items.push_back(std::move(item));
    }
  }
  for (const auto& n : names) {
    json item = common;
    const auto at = n.find('@');
    item["component"] = n.substr(0, at);
    if (at != std::string::npos) item["version"] = n.substr(at + 1);
    items.push_back(std::move(item));
  }
  plan["items"] = std::move(items);
  if (common.contains("actor")) plan["actor"] = common["actor"];
  return plan;
}

void print_plan(const json& p) {
  std::printf("plan %lld%s: %s\n", static_cast<long long>(p.value("id", 0)),
              p.value("atomic", false) ? " (atomic)" : "", p.value("state", "").c_str());
  for (const auto& i : p.value("items", json::array())) {
    std::string after;
    for (const auto& x : i.value("after", json::array()))
      after += (after.empty() ? "" : ", ") + x.get<std::string>();
    const std::string dep =
        i.contains("deployment") ? " (deployment " + i["deployment"].dump() + ")" : "";
    if (!after.empty() && i.value("start_when", "committed") == "healthy") after += " (healthy)";
    std::printf("  %-16s %-10s %-12s%s%s\n", i.value("component", "").c_str(),
                i.value("version", "").c_str(), i.value("state", "").c_str(),
                after.empty() ? "" : (" after " + after).c_str(), dep.c_str());
    if (!i.value("reason", "").empty()) std::printf("    %s\n", i.value("reason", "").c_str());
  }
}

void follow_plan(api::Client& c, int64_t id, bool as_json);

// Starts a plan; with `wait`, follows it (a line per change) to its end.
void run_plan(api::Client& c, const json& body, bool wait, bool as_json) {
  json p = call(c, "POST", "/v1/plans", body);
  const int64_t id = p.value("id", int64_t{0});
  if (!wait) {
    if (as_json)
      print_json(p);
    else
      print_plan(p);
    return;
  }
  follow_plan(c, id, as_json);
}

// Follows plan `id` (a line per change) to its end; exit 1 unless every deployment committed.
void follow_plan(api::Client& c, int64_t id, bool as_json) {
  json p;
  std::string last;
  PollDelay delay;
  for (;;) {
    p = call(c, "GET", "/v1/plans/" + std::to_string(id));
    std::string now;
    for (const auto& i : p.value("items", json::array()))
      now += i.value("component", "") + "=" + i.value("state", "") + " ";
    if (now != last) {
      delay.changed();
      if (!as_json) std::printf("plan %lld: %s\n", static_cast<long long>(id), now.c_str());
    }
    last = now;
    if (p.value("state", "") != "running") break;
    delay.sleep();
  }
  if (as_json)
    print_json(p);
  else
    print_plan(p);
  if (p.value("state", "") != "committed") throw CliExit{1};
}

}  // namespace

api::Client agent_client(const std::filesystem::path& root) {
  return agent_or_die(root);
}

json agent_call(api::Client& c, const std::string& method, const std::string& path,
                const json& body, std::chrono::milliseconds timeout) {
  return call(c, method, path, body, timeout);
}

bool rollback_via_agent(const NodeArgs& n, const std::string& name, bool has_to_or_state) {
  json services;
  auto c = running_agent(n.root(), &services);
  // A component the agent does not serve (no service definition) rolls back offline.
  if (!c || !serves(services, name)) return false;
  if (has_to_or_state)
    die(Error(Errc::invalid_argument, "an agent runs on " + n.root().string() + ": it rolls " +
                                          name +
                                          " back to the version it came from, with its traffic; "
                                          "--to and --restore-state need the agent stopped"));
  json d = call(*c, "POST", "/v1/services/" + name + "/rollback", json::object());
  d = wait_final(*c, d.value("id", int64_t{0}), n.json(), 10min);
  if (n.json()) {
    print_json(d);
  } else {
    print_deployment(d);
  }
  // Rolled back: the rollback deployment, or the running deployment it undid.
  if (d.value("state", "") != "rolled-back") throw CliExit{1};
  return true;
}

void warn_if_agent_serves(const NodeArgs& n, const std::string& name, const std::string& verb) {
  json services;
  if (!running_agent(n.root(), &services) || !serves(services, name)) return;
  std::fprintf(stderr,
               "mup: warning: the agent serves %s: `mup %s` switches its version pointers but "
               "not its traffic; `mup deploy %s` moves both\n",
               name.c_str(), verb.c_str(), name.c_str());
}

void register_agent_commands(CLI::App& app) {
  // agent
  {
    struct A {
      NodeArgs n;
      std::string listen, config;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand(
        "agent", "Run the node's agent in the foreground: services, traffic, deployments, API");
    cmd->add_option("--listen", a->listen,
                    "Also serve the API on this loopback address (127.0.0.1:PORT), with the "
                    "bearer token of <root>/agent.token");
    cmd->add_option("--config", a->config, "agent.toml (default: none)");
    add_node_options(cmd, a->n, false);
    cmd->callback([a] {
      ::signal(SIGPIPE, SIG_IGN);
      struct sigaction sa {};
      sa.sa_handler = on_stop_signal;
      ::sigaction(SIGTERM, &sa, nullptr);
      ::sigaction(SIGINT, &sa, nullptr);
      agent::AgentOptions o;
      o.root = a->n.root();
      o.tcp_listen = a->listen;
      o.config = a->config.empty() ? global_args().config : a->config;
      o.mup_binary = self_binary();
      auto ag = must(agent::Agent::start(std::move(o)), "starting the agent");
      ag->run(g_stop);
    });
  }

  // deploy
  {
    struct A {
      NodeArgs n;
      std::vector<std::string> names;
      std::string version, strategy, keep_old, soak, timeout = "30m", plan_file;
      bool atomic = false;
      std::string start_when;
      int batch_size = 0;
      std::string batch_interval;
      std::string steps, analysis, auto_rollback, at, window, window_tz, window_duration,
          window_close;
      double step_seconds = -1, alpha = -1;
      bool wait = false, force = false;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand(
        "deploy",
        "Install a version on trial and move the service's traffic to it (via the agent)");
    cmd->add_option("names", a->names,
                    "Component (a service); several (NAME or NAME@VERSION) make a plan, deployed "
                    "in dependency order");
    cmd->add_option("--plan", a->plan_file,
                    "A plan file (TOML: atomic = true|false, start_when = ..., [[deploy]] "
                    "component = \"a\", version = \"2.0.0\", strategy = ..., start_when = ..., "
                    "any deploy field)");
    cmd->add_flag("--atomic", a->atomic,
                  "Plan: a failure rolls back every deployment of the plan, not only its own");
    cmd->add_option("--start-when", a->start_when,
                    "Plan: a deployment starts when its dependencies are committed (default), or "
                    "healthy: ready and serving all their traffic (their analysis still running; "
                    "if they then roll back, it is aborted)")
        ->check(CLI::IsMember({"committed", "healthy"}));
    cmd->add_option("--version", a->version, "Version (default: the newest the remote offers)");
    cmd->add_option("--strategy", a->strategy, "immediate (default), blue-green, canary or rolling")
        ->check(CLI::IsMember({"immediate", "blue-green", "canary", "rolling"}));
    cmd->add_option("--batch-size", a->batch_size,
                    "rolling: instances replaced per batch (default 1)");
    cmd->add_option("--batch-interval", a->batch_interval,
                    "rolling: the judge watches each batch this long (default 10s)");
    cmd->add_option("--steps", a->steps,
                    "canary: the new version's weights in percent, e.g. 5,25,50,100 (default); "
                    "a 'p' after one (25p) pauses there until mup promote");
    cmd->add_option("--step-seconds", a->step_seconds,
                    "canary: the analysis of each step, in seconds (default 10)");
    cmd->add_option("--analysis", a->analysis,
                    "immediate, blue-green: the judge watches the new version this long after "
                    "the switch, before commit (default 10s; 0 turns it off)");
    cmd->add_option("--at", a->at,
                    "Start at this RFC 3339 time (e.g. 2026-12-01T21:19:00Z); without --wait, "
                    "returns once it is scheduled (mup abort ID cancels it)");
    cmd->add_option("--window", a->window,
                    "Start in the next maintenance window: a cron expression, e.g. \"0 2 * * *\" "
                    "(now if one is open)");
    cmd->add_option("--window-tz", a->window_tz, "The window's time zone: UTC (default) or +HH:MM");
    cmd->add_option("--window-duration", a->window_duration, "The window's length (default 1h)");
    cmd->add_option("--window-close", a->window_close,
                    "If the window closes mid-deployment: finish (default) or rollback")
        ->check(CLI::IsMember({"finish", "rollback"}));
    cmd->add_option("--alpha", a->alpha,
                    "The judge's false-rollback probability per deployment (default 0.001)");
    cmd->add_option("--auto-rollback", a->auto_rollback,
                    "on (default): a bad version is rolled back by itself; off: decisions are "
                    "recorded only")
        ->check(CLI::IsMember({"on", "off"}));
    cmd->add_option("--keep-old", a->keep_old,
                    "blue-green: keep the old version warm this long (default 10m)");
    cmd->add_option("--soak", a->soak,
                    "blue-green: the new set stays ready this long before traffic (default 2s)");
    cmd->add_flag("--wait", a->wait, "Return at a final state and print the deployment");
    cmd->add_flag("--force", a->force,
                  "Deploy a version even though the judge rolled it back before (marked bad)");
    cmd->add_option("--timeout", a->timeout, "With --wait: give up waiting after this long");
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      if (a->names.empty() && a->plan_file.empty())
        die(make_error(Errc::invalid_argument, "mup deploy: name a component (or --plan FILE)"));
      auto c = agent_or_die(a->n.root());
      json body = {{"actor", state::current_actor()}};
      if (!a->version.empty()) body["version"] = a->version;
      if (!a->strategy.empty()) body["strategy"] = a->strategy;
      if (!a->keep_old.empty()) body["keep_old"] = a->keep_old;
      if (!a->soak.empty()) body["soak"] = a->soak;
      if (!a->analysis.empty()) body["analysis"] = a->analysis;
      if (!a->at.empty()) body["at"] = a->at;
      if (a->force) body["force"] = true;
      if (a->batch_size > 0) body["batch_size"] = a->batch_size;
      if (!a->batch_interval.empty()) body["batch_interval"] = a->batch_interval;
      if (!a->window.empty()) body["window"] = a->window;
      if (!a->window_tz.empty()) body["window_tz"] = a->window_tz;
      if (!a->window_duration.empty()) body["window_duration"] = a->window_duration;
      if (!a->window_close.empty()) body["window_close"] = a->window_close;
      if (a->step_seconds >= 0) body["step_seconds"] = a->step_seconds;
      if (a->alpha >= 0) body["alpha"] = a->alpha;
      if (!a->auto_rollback.empty()) body["auto_rollback"] = a->auto_rollback == "on";
      if (!a->steps.empty()) {
        json steps = json::array(), pauses = json::array();
        std::string_view rest = a->steps;
        while (!rest.empty()) {
          const auto comma = rest.find(',');
          std::string item(rest.substr(0, comma));
          const bool pause = !item.empty() && item.back() == 'p';
          if (pause) item.pop_back();
          int v = 0;
          auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
          if (ec != std::errc() || p != item.data() + item.size())
            die(make_error(Errc::invalid_argument,
                           "--steps: '" + item + "' is not a percentage (e.g. 5,25,50,100)"));
          steps.push_back(v);
          if (pause) pauses.push_back(v);
          rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        }
        body["steps"] = steps;
        if (!pauses.empty()) body["pauses"] = pauses;
      }
      if (a->names.size() > 1 || !a->plan_file.empty()) {
        if (!a->version.empty())
          die(make_error(Errc::invalid_argument,
                         "--version names one version: in a plan write NAME@VERSION"));
        json plan = plan_body(a->names, a->plan_file, body);
        if (a->atomic) plan["atomic"] = true;
        if (!a->start_when.empty()) plan["start_when"] = a->start_when;
        run_plan(c, plan, a->wait, a->n.json());
        return;
      }
      body["component"] = a->names[0];
      json d = call(c, "POST", "/v1/deployments", body);
      const int64_t id = d.value("id", int64_t{0});
      if (!a->wait) {
        if (a->n.json()) {
          print_json(d);
        } else {
          if (d.contains("scheduled_for"))
            std::printf(
                "deployment %lld scheduled for %s (mup deployments %lld; mup abort %lld "
                "cancels it)\n",
                static_cast<long long>(id), d.value("scheduled_for", "").c_str(),
                static_cast<long long>(id), static_cast<long long>(id));
          else
            std::printf("deployment %lld started (mup deployments %lld)\n",
                        static_cast<long long>(id), static_cast<long long>(id));
        }
        return;
      }
      auto t = agent::parse_duration_ms(a->timeout);
      if (!t) die(t.error().context("--timeout"));
      d = wait_final(c, id, a->n.json(), std::chrono::milliseconds(*t));
      if (a->n.json()) {
        print_json(d);
      } else {
        print_deployment(d);
      }
      if (exit_code_of(d) != 0) throw CliExit{1};
    });
  }

  // deployments
  {
    struct A {
      NodeArgs n;
      std::vector<std::string> args;
      std::string id, component;
      int64_t plan = 0;
      int limit = 20;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand("deployments",
                                   "List the agent's deployments, show one (ID), or follow one "
                                   "live (watch ID, watch --plan N)");
    cmd->add_option("id", a->args, "A deployment id; or: watch ID");
    cmd->add_option("--plan", a->plan, "With watch: follow plan N");
    cmd->add_option("--component", a->component, "Only this component's");
    cmd->add_option("--limit", a->limit, "How many (default 20)");
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      if (!a->args.empty() && a->args[0] == "watch") {
        auto c = agent_or_die(a->n.root());
        if (a->plan > 0) {
          follow_plan(c, a->plan, a->n.json());
          return;
        }
        if (a->args.size() != 2)
          die(make_error(Errc::invalid_argument, "mup deployments watch ID (or --plan N)"));
        const std::string& id = a->args[1];
        int64_t n = 0;
        auto [p, ec] = std::from_chars(id.data(), id.data() + id.size(), n);
        if (ec != std::errc() || p != id.data() + id.size() || n <= 0)
          die(make_error(Errc::invalid_argument, "watch: '" + id + "' is not a deployment id"));
        json d = wait_final(c, n, a->n.json(), std::chrono::hours(24));
        if (a->n.json())
          print_json(d);
        else
          print_deployment(d);
        if (exit_code_of(d) != 0) throw CliExit{1};
        return;
      }
      if (a->args.size() > 1)
        die(make_error(Errc::invalid_argument, "mup deployments [ID] (or watch ID)"));
      if (!a->args.empty()) a->id = a->args[0];
      // Through the agent when one runs; without one, read from the node's state database.
      auto c = running_agent(a->n.root());
      if (!a->id.empty()) {
        json d = c ? call(*c, "GET", "/v1/deployments/" + a->id) : offline_deployment(a->n, a->id);
        if (a->n.json()) return print_json(d);
        print_deployment(d);
        for (const auto& s : d.value("steps", json::array()))
          std::printf("    %s  %s\n", s.value("at", "").c_str(), s.value("state", "").c_str());
        return;
      }
      std::string q = "/v1/deployments?limit=" + std::to_string(a->limit);
      if (!a->component.empty()) q += "&component=" + a->component;
      json list = c ? call(*c, "GET", q) : offline_deployments(a->n, a->component, a->limit);
      if (a->n.json()) return print_json(list);
      for (const auto& d : list["deployments"])
        std::printf("%5lld  %-16s %-10s -> %-10s %-10s %-12s %s\n",
                    static_cast<long long>(d.value("id", 0)), d.value("component", "").c_str(),
                    d.value("from_version", "").c_str(), d.value("to_version", "").c_str(),
                    d.value("strategy", "").c_str(), d.value("state", "").c_str(),
                    traffic_text(d.value("traffic", json::object())).c_str());
    });
  }

  // services
  {
    auto n = std::make_shared<NodeArgs>();
    auto* cmd = app.add_subcommand("services",
                                   "The services the agent runs: versions, instances, "
                                   "traffic");
    add_node_options(cmd, *n);
    cmd->callback([n] {
      auto c = agent_or_die(n->root());
      json s = call(c, "GET", "/v1/services");
      if (n->json()) return print_json(s);
      for (const auto& svc : s["services"]) {
        std::printf("%s  listen %s (%s), active %s\n", svc.value("name", "").c_str(),
                    svc.value("listen", "").c_str(), svc.value("protocol", "").c_str(),
                    svc.value("active", "").c_str());
        for (const auto& v : svc["versions"]) {
          std::printf("  %s  weight %d%s\n", v.value("version", "").c_str(), v.value("weight", 0),
                      v.value("routed", false) ? "" : " (not routed)");
          for (const auto& i : v["instances"])
            std::printf("    %-24s pid %-7d port %-5d %-8s restarts %d  cpu %.1f%%  rss %.1f MB\n",
                        i.value("id", "").c_str(), i.value("pid", 0), i.value("port", 0),
                        i.value("state", "").c_str(), i.value("restarts", 0),
                        i.value("cpu_percent", 0.0), i.value("rss_bytes", 0.0) / 1048576.0);
        }
      }
    });
  }

  // promote, abort
  for (const char* verb : {"promote", "abort"}) {
    struct A {
      NodeArgs n;
      std::string target;
      bool wait = false;
    };
    auto a = std::make_shared<A>();
    const std::string v = verb;
    auto* cmd = app.add_subcommand(
        v, v == "abort" ? "Stop a running deployment and undo it (traffic back to the old version)"
                        : "Blue-green: switch now (end the soak), or close the rollback window");
    cmd->add_option("target", a->target, "Deployment id, or component")->required();
    cmd->add_flag("--wait", a->wait, "Return at a final state");
    add_node_options(cmd, a->n);
    cmd->callback([a, v] {
      auto c = agent_or_die(a->n.root());
      const int64_t id = resolve_deployment(c, a->target);
      json d = call(c, "POST", "/v1/deployments/" + std::to_string(id) + "/" + v, json::object());
      if (a->wait) d = wait_final(c, id, a->n.json(), 30min);
      if (a->n.json()) return print_json(d);
      print_deployment(d);
    });
  }
}

}  // namespace mup::cli
