#include "traffic/daemon.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

#include "api/server.hpp"
#include "core/fs.hpp"

namespace mup::traffic {

namespace stdfs = std::filesystem;
using nlohmann::json;

struct ProxyDaemon::Impl {
  DaemonOptions opts;
  int lock_fd = -1;
  int64_t started_at = 0;
  Proxy proxy;
  std::mutex save_mu;  // one routes.json writer at a time, in API order
  std::unique_ptr<api::Server> server;

  explicit Impl(DaemonOptions o) : opts(std::move(o)), proxy(opts.proxy) {}
  ~Impl() {
    if (server) server->stop();
    if (lock_fd >= 0) ::close(lock_fd);
  }
  stdfs::path dir() const { return opts.root / "proxy"; }
  void say(const std::string& line) const {
    if (opts.log) {
      opts.log(line);
    } else {
      std::fprintf(stderr, "mup proxy: %s\n", line.c_str());
    }
  }
  // The table as it is now, written whole (the caller holds save_mu).
  Status save() {
    json routes = json::array();
    for (const auto& r : proxy.routes()) {
      json j = to_json(r.spec);
      j["name"] = r.name;
      routes.push_back(std::move(j));
    }
    std::string text = json({{"routes", routes}}).dump(2) + "\n";
    return fs::write_file_atomic(
        dir() / "routes.json", {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, 0600);
  }
  void load() {
    auto bytes = fs::read_file(dir() / "routes.json", 16 << 20);
    if (!bytes) return;  // none yet
    json j = json::parse(bytes->begin(), bytes->end(), nullptr, false);
    if (!j.is_object() || !j.contains("routes") || !j["routes"].is_array()) {
      say("warning: " + (dir() / "routes.json").string() + " is not a route table: ignored");
      return;
    }
    for (const auto& r : j["routes"]) {
      const std::string name = r.is_object() ? r.value("name", "") : "";
      json spec = r;
      if (spec.is_object()) spec.erase("name");
      auto parsed = parse_route_spec(spec);
      if (!parsed || !bad_route_name(name).empty()) {
        say("warning: a saved route could not be read back: skipped");
        continue;
      }
      auto set = proxy.set_route(name, *parsed);
      if (!set) {
        say("warning: route " + name + " could not be restored: " + set.error().message());
      } else {
        say("route " + name + " restored on " + set->bound);
      }
    }
  }
};

namespace {

api::Response error_response(const Error& e, const std::string& field = "") {
  int status = e.code() == Errc::busy               ? 409
               : e.code() == Errc::not_found        ? 404
               : e.code() == Errc::invalid_argument ? 400
                                                    : 500;
  return api::Response::error(status, e.code_string(), e.message(), field);
}

Status register_api(ProxyDaemon::Impl& d) {
  api::Server& s = *d.server;
  MUP_TRY(s.route("GET", "/v1/health", [&d](const api::Request&) {
    return api::Response::ok({{"pid", static_cast<int64_t>(::getpid())},
                              {"started_at", d.started_at},
                              {"routes", d.proxy.routes().size()}});
  }));
  MUP_TRY(s.route("GET", "/v1/routes", [&d](const api::Request&) {
    json out = json::array();
    for (const auto& r : d.proxy.routes()) out.push_back(to_json(r));
    return api::Response::ok({{"routes", out}});
  }));
  MUP_TRY(s.route("GET", "/v1/routes/{service}", [&d](const api::Request& r) {
    auto route = d.proxy.route(r.params.at("service"));
    if (!route) return api::Response::error(404, "not_found", "no route " + r.params.at("service"));
    return api::Response::ok(to_json(*route));
  }));
  MUP_TRY(s.route("PUT", "/v1/routes/{service}", [&d](const api::Request& r) {
    const std::string& name = r.params.at("service");
    if (auto why = bad_route_name(name); !why.empty())
      return api::Response::error(400, "bad_request", why, "service");
    std::string field;
    auto spec = parse_route_spec(r.body, &field);
    if (!spec) return error_response(spec.error(), field);
    std::lock_guard lk(d.save_mu);
    auto route = d.proxy.set_route(name, *spec);
    if (!route) return error_response(route.error());
    if (auto st = d.save(); !st) d.say("warning: saving routes.json: " + st.error().message());
    return api::Response::ok(to_json(*route));
  }));
  MUP_TRY(s.route("DELETE", "/v1/routes/{service}", [&d](const api::Request& r) {
    std::lock_guard lk(d.save_mu);
    auto st = d.proxy.remove_route(r.params.at("service"));
    if (!st) return error_response(st.error());
    if (auto sv = d.save(); !sv) d.say("warning: saving routes.json: " + sv.error().message());
    return api::Response::ok();
  }));
  MUP_TRY(s.route("GET", "/v1/stats",
                  [&d](const api::Request&) { return api::Response::ok(d.proxy.stats()); }));
  return {};
}

}  // namespace

ProxyDaemon::ProxyDaemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProxyDaemon::~ProxyDaemon() = default;

Proxy& ProxyDaemon::proxy() {
  return impl_->proxy;
}

void ProxyDaemon::stop() {
  if (impl_->server) impl_->server->stop();
}

Result<std::unique_ptr<ProxyDaemon>> ProxyDaemon::start(DaemonOptions options) {
  auto d = std::make_unique<Impl>(std::move(options));
  MUP_TRY(fs::create_dirs(d->dir()));
  const stdfs::path lock = d->dir() / "proxy.lock";
  d->lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (d->lock_fd < 0) return fail(Errc::io, "opening " + lock.string() + " failed");
  if (::flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0)
    return fail(Errc::busy, "another proxy serves " + d->opts.root.string() + " (it holds " +
                                lock.string() + ")");
  const std::string pid = std::to_string(::getpid()) + "\n";
  MUP_TRY(fs::write_file_atomic(d->dir() / "proxy.pid",
                                {reinterpret_cast<const uint8_t*>(pid.data()), pid.size()}, 0644));
  d->started_at = (d->opts.proxy.clock ? *d->opts.proxy.clock : system_clock()).wall_ms();
  d->load();
  api::ServerOptions so;
  so.unix_socket = d->opts.root / "proxy.sock";
  so.threads = 2;
  so.log = [p = d.get()](std::string_view l) { p->say(std::string(l)); };
  auto server = api::Server::start(std::move(so));
  if (!server) return tl::unexpected(server.error().context("serving the proxy's control API"));
  d->server = std::move(*server);
  MUP_TRY(register_api(*d));
  return std::unique_ptr<ProxyDaemon>(new ProxyDaemon(std::move(d)));
}

}  // namespace mup::traffic
