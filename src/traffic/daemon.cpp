#include "traffic/daemon.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

#include "api/server.hpp"
#include "core/clock.hpp"
#include "core/fs.hpp"

namespace mup::traffic {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t kMaxRoutesFile = 16 << 20;

std::string read_pid(const stdfs::path& p) {
  auto bytes = fs::read_file(p, 64);
  if (!bytes) return "?";
  std::string s(bytes->begin(), bytes->end());
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

api::Response error_response(const Error& e, const std::string& field = "") {
  switch (e.code()) {
    case Errc::invalid_argument:
      return api::Response::error(400, "bad_request", e.message(), field);
    case Errc::not_found: return api::Response::error(404, "not_found", e.message());
    case Errc::busy: return api::Response::error(409, "address_in_use", e.message());
    default: return api::Response::error(500, "internal", e.message());
  }
}

}  // namespace

struct ProxyDaemon::Impl {
  stdfs::path root, dir, routes_file;
  int lock_fd = -1;
  int64_t started_at = 0;
  std::unique_ptr<Proxy> proxy;
  std::unique_ptr<api::Server> server;
  std::mutex mu;  // serialises changes and their persistence

  ~Impl() {
    server.reset();
    proxy.reset();
    if (lock_fd >= 0) {
      std::error_code ec;
      stdfs::remove(dir / "proxy.pid", ec);
      ::close(lock_fd);  // releases the flock
    }
  }

  // What a restart must bring back: each route's spec, with a port 0 replaced by the port
  // it was given, so that clients find it again.
  Status persist() {
    json routes = json::object();
    for (const auto& r : proxy->routes()) {
      RouteSpec s = r.spec;
      std::string host;
      uint16_t port = 1;
      if (split_host_port(s.listen, host, port) && port == 0) s.listen = r.bound;
      routes[r.name] = to_json(s);
    }
    std::string text = json{{"version", 1}, {"routes", std::move(routes)}}.dump(2) + "\n";
    return fs::write_file_atomic(
        routes_file, {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, 0600);
  }

  void reload() {
    std::error_code ec;
    if (!stdfs::exists(routes_file, ec)) return;
    auto bytes = fs::read_file(routes_file, kMaxRoutesFile);
    if (!bytes) {
      std::fprintf(stderr, "mup proxy: cannot read %s: %s\n", routes_file.c_str(),
                   bytes.error().message().c_str());
      return;
    }
    json j = json::parse(bytes->begin(), bytes->end(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("routes") || !j["routes"].is_object()) {
      std::fprintf(stderr, "mup proxy: %s is not a route table; starting with no routes\n",
                   routes_file.c_str());
      return;
    }
    for (const auto& [name, spec_json] : j["routes"].items()) {
      auto spec = parse_route_spec(spec_json);
      Result<Route> r = spec ? proxy->set_route(name, *spec) : tl::unexpected(spec.error());
      if (!r)
        std::fprintf(stderr, "mup proxy: route %s not restored: %s\n", name.c_str(),
                     r.error().message().c_str());
    }
  }

  Status install_routes() {
    MUP_TRY(server->route("GET", "/v1/health", [this](const api::Request&) {
      return api::Response::ok({{"pid", static_cast<int64_t>(::getpid())},
                                {"started_at", started_at},
                                {"routes", proxy->routes().size()}});
    }));
    MUP_TRY(server->route("GET", "/v1/routes", [this](const api::Request&) {
      json out = json::array();
      for (const auto& r : proxy->routes()) out.push_back(to_json(r));
      return api::Response::ok({{"routes", std::move(out)}});
    }));
    MUP_TRY(server->route("GET", "/v1/routes/{service}", [this](const api::Request& req) {
      auto r = proxy->route(req.params.at("service"));
      if (!r)
        return api::Response::error(404, "not_found",
                                    "no route named \"" + req.params.at("service") + "\"");
      return api::Response::ok(to_json(*r));
    }));
    MUP_TRY(server->route("PUT", "/v1/routes/{service}", [this](const api::Request& req) {
      const std::string& name = req.params.at("service");
      if (auto why = bad_route_name(name); !why.empty())
        return api::Response::error(400, "bad_request", why, "service");
      if (req.body.is_null())
        return api::Response::error(400, "bad_request", "body: a RouteSpec is required", "body");
      std::string field;
      auto spec = parse_route_spec(req.body, &field);
      if (!spec) return error_response(spec.error(), field);
      std::lock_guard lock(mu);
      auto r = proxy->set_route(name, *spec);
      if (!r)
        return error_response(r.error(),
                              r.error().code() == Errc::invalid_argument ? "listen" : "");
      if (auto s = persist(); !s)
        return api::Response::error(500, "internal",
                                    "route set but not persisted: " + s.error().message());
      return api::Response::ok(to_json(*r));
    }));
    MUP_TRY(server->route("DELETE", "/v1/routes/{service}", [this](const api::Request& req) {
      std::lock_guard lock(mu);
      if (auto s = proxy->remove_route(req.params.at("service")); !s)
        return error_response(s.error());
      if (auto s = persist(); !s)
        return api::Response::error(500, "internal",
                                    "route removed but not persisted: " + s.error().message());
      return api::Response::ok();
    }));
    MUP_TRY(server->route("GET", "/v1/stats", [this](const api::Request&) {
      return api::Response::ok(proxy->stats());
    }));
    return {};
  }
};

ProxyDaemon::ProxyDaemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProxyDaemon::~ProxyDaemon() = default;

Result<std::unique_ptr<ProxyDaemon>> ProxyDaemon::start(const stdfs::path& root,
                                                        ProxyOptions options) {
  auto d = std::make_unique<Impl>();
  d->root = root;
  d->dir = root / "proxy";
  d->routes_file = d->dir / "routes.json";
  MUP_TRY(fs::create_dirs(d->dir));
  stdfs::path lock_path = d->dir / "proxy.lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fail_errno("open", lock_path.string(), errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK)
      return fail(Errc::busy, "another mup proxy serves " + root.string() + " (pid " +
                                  read_pid(d->dir / "proxy.pid") + "); stop it first");
    return fail_errno("flock", lock_path.string(), err);
  }
  d->lock_fd = fd;
  std::string pid = std::to_string(::getpid()) + "\n";
  MUP_TRY(fs::write_file_atomic(d->dir / "proxy.pid",
                                {reinterpret_cast<const uint8_t*>(pid.data()), pid.size()}));
  const Clock& clock = options.clock ? *options.clock : system_clock();
  d->started_at = clock.wall_s();
  d->proxy = std::make_unique<Proxy>(options);
  d->reload();

  api::ServerOptions so;
  so.unix_socket = root / "proxy.sock";
  auto server = api::Server::start(std::move(so));
  if (!server)
    return tl::unexpected(
        server.error().context("control API on " + (root / "proxy.sock").string()));
  d->server = std::move(*server);
  MUP_TRY(d->install_routes());
  return std::unique_ptr<ProxyDaemon>(new ProxyDaemon(std::move(d)));
}

Proxy& ProxyDaemon::proxy() {
  return *impl_->proxy;
}

void ProxyDaemon::stop() {
  if (impl_->server) impl_->server->stop();
}

}  // namespace mup::traffic
