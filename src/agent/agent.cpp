#include "agent/agent.hpp"

#include <systemd/sd-daemon.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "agent/internal.hpp"
#include "core/fs.hpp"
#include "core/hex.hpp"
#include "crypto/crypto.hpp"
#include "state/state_db.hpp"

namespace mup::agent {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// The bearer token of the TCP listener: made at first start (32 random bytes, hex), 0600.
Result<std::string> load_or_make_token(const stdfs::path& root) {
  const stdfs::path p = root / "agent.token";
  std::error_code ec;
  if (stdfs::exists(p, ec)) {
    auto bytes = fs::read_file(p, 4096);
    if (!bytes) return tl::unexpected(bytes.error());
    std::string t(bytes->begin(), bytes->end());
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    if (t.size() < 32)
      return fail(Errc::corrupt, p.string() +
                                     " holds no usable token (remove it: a new one is "
                                     "made at the next start)");
    return t;
  }
  auto raw = crypto::random_bytes(32);
  if (!raw) return tl::unexpected(raw.error().context("making the agent token"));
  std::string token = to_hex(*raw);
  const std::string line = token + "\n";
  MUP_TRY(
      fs::write_file_atomic(p, {reinterpret_cast<const uint8_t*>(line.data()), line.size()}, 0600));
  return token;
}

// The proxy of `root`, started (detached) when none answers; a client of it.
Result<traffic::ProxyClient> ensure_proxy(const stdfs::path& root, const stdfs::path& binary,
                                          const std::function<void(std::string_view)>& log) {
  traffic::ProxyClient client(root);
  if (auto h = client.health()) {
    log("proxy running (pid " + std::to_string(h->value("pid", 0)) + "): adopted");
    return client;
  }
  if (binary.empty()) return fail(Errc::not_found, "no proxy runs and no mup binary to start one");
  MUP_TRY(traffic::ProxyClient::ensure_running(root, binary));
  if (auto h = client.health())
    log("proxy started (pid " + std::to_string(h->value("pid", 0)) + ")");
  return client;
}

}  // namespace

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Agent::~Agent() {
  if (!impl_) return;
  if (impl_->server) impl_->server->stop();
  impl_->deployer.reset();  // deployments in progress stay journaled: the next agent resumes
  if (impl_->supervisor) impl_->supervisor->detach();  // instances keep running
}

uint16_t Agent::tcp_port() const {
  return impl_->server ? impl_->server->port() : 0;
}

void Agent::Impl::say(const std::string& line) const {
  if (opts.log) {
    opts.log(line);
  } else {
    std::fprintf(stderr, "mup agent: %s\n", line.c_str());
  }
}

Result<std::unique_ptr<Agent>> Agent::start(AgentOptions opts) {
  auto impl = std::make_unique<Impl>();
  impl->opts = std::move(opts);
  Impl& a = *impl;
  const stdfs::path root = a.opts.root;
  std::error_code ec;
  stdfs::create_directories(root, ec);
  if (!a.opts.config.empty()) {
    auto cfg = parse_config(a.opts.config);
    if (!cfg) return tl::unexpected(cfg.error());
    a.config = *cfg;
  }
  if (a.opts.tcp_listen.empty()) a.opts.tcp_listen = a.config.listen;

  engine::EngineOptions eo;
  eo.actor = "agent";
  eo.clock = a.opts.clock;
  auto engine = engine::Engine::open(root, std::move(eo));
  if (!engine) return tl::unexpected(engine.error().context("opening node " + root.string()));
  a.engine = std::move(*engine);
  for (const auto& line : a.engine->recovery().actions) a.say("recovered: " + line);
  for (const auto& line : a.engine->recovery().problems) a.say("warning: " + line);

  service::SupervisorOptions so;
  so.root = root;
  if (a.opts.clock) so.clock = a.opts.clock;
  so.on_event = [&a](const nlohmann::json& e) { a.on_instance_event(e); };
  auto sup = service::Supervisor::open(so);
  if (!sup)
    return tl::unexpected(sup.error().context("another agent may be running on " + root.string()));
  a.supervisor = std::move(*sup);

  auto proxy =
      ensure_proxy(root, a.opts.mup_binary, [&a](std::string_view l) { a.say(std::string(l)); });
  if (!proxy) return tl::unexpected(proxy.error());
  a.runtime = std::make_unique<Runtime>(*a.engine, *a.supervisor, std::move(*proxy));
  if (auto st = a.runtime->load_routes(); !st) a.say("warning: " + st.error().message());
  a.node = std::make_unique<EngineNode>(*a.engine);

  deploy::DeployerOptions dopt;
  dopt.clock = a.opts.clock;
  engine::Engine* eng = a.engine.get();
  dopt.connect = [eng] { return eng->connect_state(); };
  dopt.on_event = [&a](const nlohmann::json& e) {
    a.say("deployment " + std::to_string(e.value("id", 0)) + " " + e.value("component", "") + " " +
          e.value("from_version", "") + " -> " + e.value("to_version", "") + ": " +
          e.value("state", "") +
          (e.value("reason", "").empty() ? "" : " (" + e.value("reason", "") + ")"));
  };
  auto dep = deploy::Deployer::open(std::move(dopt), *a.node, *a.runtime);
  if (!dep) return tl::unexpected(dep.error());
  a.deployer = std::move(*dep);
  a.deployer->resume_all();

  auto token = load_or_make_token(root);
  if (!token) return tl::unexpected(token.error());
  api::ServerOptions ao;
  ao.unix_socket = root / "agent.sock";
  ao.tcp_listen = a.opts.tcp_listen;
  ao.bearer_token = *token;
  ao.threads = 4;  // a --wait long poll holds one
  ao.log = [&a](std::string_view l) { a.say(std::string(l)); };
  auto server = api::Server::start(std::move(ao));
  if (!server) return tl::unexpected(server.error().context("starting the agent's API"));
  a.server = std::move(*server);
  MUP_TRY(register_routes(a));
  MUP_TRY(start_health(a));
  a.say("serving the API on " + (root / "agent.sock").string() +
        (a.server->port() ? " and 127.0.0.1:" + std::to_string(a.server->port()) : ""));
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

void Agent::Impl::on_instance_event(const nlohmann::json& e) {
  const std::string ev = e.value("event", "");
  if (ev == "exited" || ev == "restarted")
    say("instance " + e.value("id", "") + " " + ev +
        (e.contains("status") ? " (" + e["status"].dump() + ")" : ""));
  wake.notify_all();
}

void Agent::run(const std::atomic<bool>& stop) {
  Impl& a = *impl_;
  // Services installed while no agent ran (or after a reboot) are started and routed.
  std::thread boot([&a] {
    a.runtime->start_unrouted([&a](const std::string& c) { return a.deployer->running(c); });
  });
  sd_notify(0, "READY=1");
  for (unsigned n = 0; !stop; ++n) {
    // The proxy died (a crash, an OOM kill): start it again; it reloads its routes from
    // <root>/proxy/routes.json and the clients reconnect to the same socket.
    if (n % 5 == 4 && !a.runtime->proxy_alive()) {
      a.say("the proxy does not answer: starting it again");
      auto p = ensure_proxy(a.opts.root, a.opts.mup_binary,
                            [&a](std::string_view l) { a.say(std::string(l)); });
      if (!p) a.say("warning: " + p.error().message());
    }
    a.runtime->reconcile();
    if (n % 5 == 0) a.deployer->tick();  // windows are minutes long: once a second is plenty
    std::unique_lock lk(a.wake_mu);
    a.wake.wait_for(lk, 200ms);
  }
  sd_notify(0, "STOPPING=1");
  boot.join();
  a.say("stopping: instances and the proxy keep serving; deployments resume at the next start");
}

}  // namespace mup::agent
