#include "traffic/proxy.hpp"

#include <map>
#include <mutex>
#include <thread>

#include "traffic/backend.hpp"
#include "traffic/listener.hpp"

namespace mup::traffic {

namespace {

struct RouteState {
  RouteSpec spec;
  std::shared_ptr<RouteRuntime> rt;
  std::shared_ptr<Listener> listener;
  std::vector<std::shared_ptr<Backend>> draining;
};

bool same_backend(const Backend& b, const BackendSpec& s) {
  return b.spec().id == s.id && b.spec().address == s.address && b.spec().version == s.version;
}

}  // namespace

struct Proxy::Impl {
  explicit Impl(const ProxyOptions& o) : clock(o.clock ? *o.clock : system_clock()), stats(clock) {
    limits.client_idle = std::chrono::milliseconds(o.client_idle_ms);
    limits.connect_timeout = std::chrono::milliseconds(o.connect_timeout_ms);
    limits.max_header_bytes = o.max_header_bytes;
    unsigned n = std::max(1u, o.threads);
    for (unsigned i = 0; i < n; ++i) {
      workers.push_back(std::make_unique<Worker>(i));
      worker_ptrs.push_back(workers.back().get());
      guards.emplace_back(asio::make_work_guard(workers.back()->ioc));
    }
    for (auto& w : workers) threads.emplace_back([w = w.get()] { w->ioc.run(); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mu);
      for (auto& [name, r] : routes) r.listener->close();
    }
    guards.clear();
    for (auto& w : workers) w->ioc.stop();
    for (auto& t : threads) t.join();
    // The workers are stopped: close pooled connections while their io_contexts exist.
    for (auto& [name, r] : routes) {
      for (const auto& e : r.rt->table.load()->entries())
        for (size_t w = 0; w < workers.size(); ++w) e.backend->close_idle(static_cast<unsigned>(w));
      for (const auto& b : r.draining)
        for (size_t w = 0; w < workers.size(); ++w) b->close_idle(static_cast<unsigned>(w));
    }
    for (const auto& weak : retired)
      if (auto b = weak.lock())
        for (size_t w = 0; w < workers.size(); ++w) b->close_idle(static_cast<unsigned>(w));
    routes.clear();
    workers.clear();  // destroys what the sessions left suspended
  }

  std::shared_ptr<const Table> make_table(const std::string& name, const RouteSpec& spec,
                                          std::vector<Table::Entry> entries) {
    return std::make_shared<const Table>(spec.protocol, spec.drain_ms, std::move(entries),
                                         stats.get(name, kNoVersion), workers.size());
  }

  // No new requests; idle pooled connections close now; in-flight ones are cut at the
  // deadline unless the backend is put back in service first.
  void drain(const std::shared_ptr<Backend>& b, uint32_t drain_ms) {
    uint64_t gen = b->set_draining(true);
    for (Worker* w : worker_ptrs) asio::post(w->ioc, [b, i = w->index] { b->close_idle(i); });
    auto timer =
        std::make_shared<asio::steady_timer>(workers[0]->ioc, std::chrono::milliseconds(drain_ms));
    timer->async_wait([b, gen, timer, ws = worker_ptrs](const beast::error_code& ec) {
      if (ec || b->drain_generation() != gen) return;
      for (Worker* w : ws)
        asio::post(w->ioc, [b, i = w->index] {
          b->force_close_leases(i);
          b->close_idle(i);
        });
    });
  }

  Route snapshot(const std::string& name, RouteState& r) const {
    // Drained backends leave the listing here, lazily.
    std::erase_if(r.draining,
                  [](const auto& b) { return b->in_flight() == 0 && b->connections() == 0; });
    Route out;
    out.name = name;
    out.spec = r.spec;
    out.bound = r.listener->bound();
    auto table = r.rt->table.load();
    for (const auto& e : table->entries()) {
      BackendSpec s = e.backend->spec();
      s.weight = e.weight;
      out.backends.push_back({s, false, e.backend->in_flight(), e.backend->connections()});
    }
    for (const auto& b : r.draining) {
      BackendSpec s = b->spec();
      s.weight = 0;
      out.backends.push_back({s, true, b->in_flight(), b->connections()});
    }
    return out;
  }

  const Clock& clock;
  ProxyLimits limits;
  StatsRegistry stats;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<Worker*> worker_ptrs;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  mutable std::mutex mu;
  mutable std::map<std::string, RouteState> routes;
  // Backends of removed routes, still draining maybe: their pooled connections must close
  // before the io_contexts go, whoever holds them last.
  std::vector<std::weak_ptr<Backend>> retired;
};

Proxy::Proxy(ProxyOptions options) : impl_(std::make_unique<Impl>(options)) {}

Proxy::~Proxy() = default;

Result<Route> Proxy::set_route(const std::string& name, const RouteSpec& spec) {
  if (auto why = bad_route_name(name); !why.empty())
    return fail(Errc::invalid_argument, "route \"" + name + "\": " + why);
  if (spec.drain_ms > kMaxDrainMs)
    return fail(Errc::invalid_argument, "drain_ms: must be at most " + std::to_string(kMaxDrainMs));
  std::vector<tcp::endpoint> endpoints;
  for (size_t i = 0; i < spec.backends.size(); ++i) {
    const auto& b = spec.backends[i];
    std::string host;
    uint16_t port = 0;
    beast::error_code ec;
    asio::ip::address addr;
    if (split_host_port(b.address, host, port)) addr = asio::ip::make_address(host, ec);
    if (!split_host_port(b.address, host, port) || ec || port == 0 || b.weight > kMaxWeight)
      return fail(Errc::invalid_argument,
                  "backends[" + std::to_string(i) + "]: bad address or weight for " + b.id);
    endpoints.emplace_back(addr, port);
  }

  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  auto it = d.routes.find(name);
  std::shared_ptr<Listener> fresh;
  // A listen equal to what the route is bound to (e.g. the port 0 first asked for was
  // given as 127.0.0.1:41234) keeps the socket too.
  if (it == d.routes.end() ||
      (it->second.spec.listen != spec.listen && it->second.listener->bound() != spec.listen)) {
    auto l = Listener::open(spec.listen, *d.workers[0]);
    if (!l) return tl::unexpected(l.error().context("route " + name));
    fresh = *l;
  }

  // Reuse the Backend objects (pools, gauges) of backends that stay or come back.
  std::vector<std::shared_ptr<Backend>> old;
  if (it != d.routes.end()) {
    for (const auto& e : it->second.rt->table.load()->entries()) old.push_back(e.backend);
    for (const auto& b : it->second.draining) old.push_back(b);
  }
  std::vector<Table::Entry> entries;
  for (size_t i = 0; i < spec.backends.size(); ++i) {
    const auto& s = spec.backends[i];
    std::shared_ptr<Backend> b;
    for (auto& o : old)
      if (o && same_backend(*o, s)) {
        b = std::move(o);
        break;
      }
    if (b) {
      if (b->draining()) b->set_draining(false);
    } else {
      b = std::make_shared<Backend>(s, endpoints[i], d.stats.get(name, s.version), d.workers.size(),
                                    d.limits.pool_per_worker);
    }
    entries.push_back({std::move(b), s.weight});
  }
  auto table = d.make_table(name, spec, std::move(entries));

  if (it == d.routes.end()) {
    RouteState r;
    r.spec = spec;
    r.rt = std::make_shared<RouteRuntime>();
    r.rt->name = name;
    r.rt->table.store(table);
    r.rt->workers = d.worker_ptrs;
    r.rt->limits = &d.limits;
    r.listener = fresh;
    r.listener->start(r.rt);
    it = d.routes.emplace(name, std::move(r)).first;
  } else {
    RouteState& r = it->second;
    r.rt->table.store(table, std::memory_order_release);
    if (fresh) {
      r.listener->close();
      r.listener = fresh;
      r.listener->start(r.rt);
    }
    r.spec = spec;
    std::vector<std::shared_ptr<Backend>> still;
    for (auto& o : old) {
      if (!o) continue;  // reused
      if (!o->draining()) d.drain(o, spec.drain_ms);
      still.push_back(std::move(o));
    }
    r.draining = std::move(still);
  }
  return d.snapshot(name, it->second);
}

Status Proxy::remove_route(const std::string& name) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  auto it = d.routes.find(name);
  if (it == d.routes.end()) return fail(Errc::not_found, "no route named \"" + name + "\"");
  RouteState& r = it->second;
  r.listener->close();
  auto old = r.rt->table.load();
  // Clients still connected get 503 for their next request.
  r.rt->table.store(d.make_table(name, r.spec, {}), std::memory_order_release);
  std::erase_if(d.retired, [](const auto& w) { return w.expired(); });
  for (const auto& e : old->entries()) {
    d.drain(e.backend, old->drain_ms());
    d.retired.push_back(e.backend);
  }
  for (const auto& b : r.draining) d.retired.push_back(b);
  d.routes.erase(it);
  d.stats.drop(name);
  return {};
}

std::vector<Route> Proxy::routes() const {
  std::lock_guard lock(impl_->mu);
  std::vector<Route> out;
  for (auto& [name, r] : impl_->routes) out.push_back(impl_->snapshot(name, r));
  return out;
}

std::optional<Route> Proxy::route(const std::string& name) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->routes.find(name);
  if (it == impl_->routes.end()) return std::nullopt;
  return impl_->snapshot(name, it->second);
}

nlohmann::json Proxy::stats() const {
  return impl_->stats.to_json();
}

}  // namespace mup::traffic
