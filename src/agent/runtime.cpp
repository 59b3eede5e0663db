#include "agent/runtime.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#include "deploy/deployer.hpp"
#include "state/state_db.hpp"

namespace mup::agent {

namespace {

using namespace std::chrono_literals;

bool serving(const service::InstanceInfo& i) {
  return i.state == "ready" && i.pid > 0 && i.port > 0;
}

}  // namespace

Runtime::Runtime(engine::Engine& engine, service::Supervisor& supervisor,
                 traffic::ProxyClient proxy)
    : engine_(engine), supervisor_(supervisor), proxy_(std::move(proxy)) {}

Result<service::ServiceDef> Runtime::definition(const std::string& c, const std::string& v) {
  const auto tree = engine_.store().version_dir(c, v);
  const auto file = tree / std::string(service::kServiceFileName);
  std::error_code ec;
  if (!std::filesystem::exists(file, ec))
    return fail(deploy::Code::not_a_service,
                c + " " + v + " carries no " + std::string(service::kServiceFileName) +
                    " at the root of its tree (" + tree.string() + "): it is not a service");
  return service::load_service_def(file);
}

std::vector<service::InstanceInfo> Runtime::instances_of(const std::string& c,
                                                         const std::string& v) const {
  std::vector<service::InstanceInfo> out;
  for (auto& i : supervisor_.list())
    if (i.component == c && (v.empty() || i.version == v)) out.push_back(std::move(i));
  return out;
}

namespace {
// Backend weights are a version's weight times this, divided among its backends.
constexpr uint64_t kWeightScale = 1000;
}  // namespace

Status Runtime::load_routes() {
  auto routes = proxy_.routes();
  if (!routes) return tl::unexpected(routes.error().context("reading the proxy's routes"));
  std::lock_guard lk(mu_);
  for (const auto& route : *routes) {
    Service& s = services_[route.name];
    s.listen = route.spec.listen;
    s.protocol = std::string(traffic::protocol_name(route.spec.protocol));
    s.drain_ms = route.spec.drain_ms;
    // A version's weight is spread over its backends (push()): summed back.
    s.weights.clear();
    std::map<std::string, uint64_t> sum;
    for (const auto& b : route.spec.backends) sum[b.version] += b.weight;
    for (const auto& [v, total] : sum)
      s.weights[v] = static_cast<int>((total + kWeightScale / 2) / kWeightScale);
  }
  return {};
}

Status Runtime::push(const std::string& c, Service& s, bool force,
                     const std::vector<service::InstanceInfo>* all) {
  traffic::RouteSpec spec;
  spec.listen = s.listen;
  spec.protocol = s.protocol == "tcp" ? traffic::Protocol::tcp : traffic::Protocol::http;
  spec.drain_ms = static_cast<uint32_t>(std::clamp<int64_t>(s.drain_ms, 0, traffic::kMaxDrainMs));
  std::vector<service::InstanceInfo> fresh;
  if (!all) {
    fresh = supervisor_.list();
    all = &fresh;
  }
  // A version's weight is its share of the traffic whatever its number of instances: it is
  // spread evenly over its serving backends (scaled by kWeightScale to stay an integer).
  for (const auto& [v, w] : s.weights) {
    size_t n = 0;
    for (const auto& i : *all)
      if (i.component == c && i.version == v && serving(i)) ++n;
    for (const auto& i : *all)
      if (i.component == c && i.version == v && serving(i))
        spec.backends.push_back(
            {i.id, v, "127.0.0.1:" + std::to_string(i.port),
             static_cast<uint32_t>(static_cast<uint64_t>(std::max(w, 0)) * kWeightScale / n)});
  }
  if (!force && s.pushed_once && spec.backends == s.pushed) return {};
  auto r = proxy_.put_route(c, spec);
  if (!r) return tl::unexpected(r.error().context("routing " + c + " through the proxy"));
  s.pushed = std::move(spec.backends);
  s.pushed_once = true;
  return {};
}

Status Runtime::start(const std::string& c, const std::string& v) {
  return scale(c, v, -1);
}

int Runtime::instances(const std::string& c, const std::string& v) {
  auto def = definition(c, v);
  return def ? def->instances : 1;
}

// count < 0: as many as the definition asks for.
Status Runtime::scale(const std::string& c, const std::string& v, int count) {
  auto def = definition(c, v);
  if (!def) return tl::unexpected(def.error());
  {
    std::lock_guard lk(mu_);
    Service& s = services_[c];
    if (s.listen.empty()) {
      s.listen = def->listen;
      s.protocol = std::string(service::protocol_name(def->protocol));
    } else if (s.listen != def->listen) {
      return fail(Errc::invalid_argument,
                  c + " " + v + " listens on " + def->listen + " but the service is served on " +
                      s.listen + ": a version cannot move its address during a deployment");
    }
    s.drain_ms = def->stop.drain_ms;
  }
  const auto tree = engine_.store().version_dir(c, v);
  const int want = count < 0 ? def->instances : std::min(count, def->instances);
  for (int i = 0; i < want; ++i) {
    service::InstanceKey key{c, v, i};
    auto cur = supervisor_.get(key.id());
    if (cur && cur->state != "exited") continue;  // running (adopted, or started before)
    if (cur) MUP_TRY(supervisor_.stop(key.id()));
    auto started = supervisor_.start(*def, tree, key, false);
    if (!started) return tl::unexpected(started.error().context("starting " + key.id()));
  }
  // Fewer instances than before (a rolling batch, a resumed deployment, an edited
  // definition): the extra stop.
  for (const auto& i : instances_of(c, v))
    if (i.index >= want) MUP_TRY(supervisor_.stop(i.id));
  return {};
}

Status Runtime::wait_ready(const std::string& c, const std::string& v,
                           const deploy::Cancel& cancel) {
  auto list = instances_of(c, v);
  if (list.empty()) return fail(Errc::not_found, "no instance of " + c + " " + v + " is running");
  for (const auto& i : list) MUP_TRY(supervisor_.wait_ready(i.id, 0ms, &cancel));
  return {};
}

Status Runtime::check_alive(const std::string& c, const std::string& v) {
  for (const auto& i : instances_of(c, v))
    if (i.state == "exited" || i.state == "backoff" || i.pid == 0)
      return fail(Errc::io, "instance " + i.id + " " +
                                (i.last_exit.empty() ? std::string("stopped") : i.last_exit));
  return {};
}

Status Runtime::route(const std::string& c, const std::map<std::string, int>& weights) {
  std::lock_guard lk(mu_);
  Service& s = services_[c];
  if (s.listen.empty()) {
    for (const auto& [v, w] : weights) {
      auto def = definition(c, v);
      if (!def) continue;
      s.listen = def->listen;
      s.protocol = std::string(service::protocol_name(def->protocol));
      s.drain_ms = def->stop.drain_ms;
      break;
    }
    if (s.listen.empty()) return fail(Errc::invalid_argument, c + ": no address to serve on");
  }
  s.weights = weights;
  return push(c, s, true);
}

std::map<std::string, int> Runtime::weights(const std::string& c) {
  std::lock_guard lk(mu_);
  auto it = services_.find(c);
  return it == services_.end() ? std::map<std::string, int>() : it->second.weights;
}

Status Runtime::wait_drained(const std::string& c, const std::string& v,
                             const deploy::Cancel& cancel) {
  int64_t drain_ms;
  {
    std::lock_guard lk(mu_);
    drain_ms = services_[c].drain_ms;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_ms) + 2s;
  for (;;) {
    auto routes = proxy_.routes();
    if (!routes) return tl::unexpected(routes.error());
    bool left = false;
    for (const auto& r : *routes)
      if (r.name == c)
        for (const auto& b : r.backends)
          if (b.spec.version == v && (b.draining || b.in_flight > 0)) left = true;
    if (!left) return {};
    if (cancel) return fail(Errc::io, "cancelled");
    if (std::chrono::steady_clock::now() > deadline)
      return fail(Errc::io, c + " " + v + " still had requests in flight after drain_ms (" +
                                std::to_string(drain_ms) + " ms): the proxy closed them");
    std::this_thread::sleep_for(20ms);
  }
}

Status Runtime::stop(const std::string& c, const std::string& v) {
  return supervisor_.stop_all_for(c, v);
}

void Runtime::set_restart(const std::string& c, const std::string& v, bool on) {
  for (const auto& i : instances_of(c, v)) (void)supervisor_.set_restart(i.id, on);
}

void Runtime::reconcile() {
  std::lock_guard lk(mu_);
  // One look at the instances for every service (this runs five times a second).
  auto all = supervisor_.list();
  bool probed = false;
  for (const auto& i : all) {
    auto svc = services_.find(i.component);
    if (i.state != "starting" || i.pid <= 0 || svc == services_.end() ||
        !svc->second.weights.count(i.version))
      continue;
    (void)supervisor_.wait_ready(i.id, 1ms);  // one probe: a restarted instance rejoins
    probed = true;
  }
  if (probed) all = supervisor_.list();
  for (auto& [c, s] : services_) (void)push(c, s, false, &all);  // failures: retried next tick
}

void Runtime::start_unrouted(const std::function<bool(const std::string&)>& busy) {
  auto comps = engine_.store().components();
  if (!comps) return;
  for (const auto& c : *comps) {
    if (busy(c)) continue;
    auto active = engine_.store().active(c);
    if (!active) continue;
    {
      std::lock_guard lk(mu_);
      auto it = services_.find(c);
      if (it != services_.end() && !it->second.weights.empty()) {
        // Routed already: make sure what carries traffic runs (after a reboot nothing does).
        for (const auto& [v, w] : it->second.weights) {
          if (!instances_of(c, v).empty()) continue;
          if (start(c, v)) set_restart(c, v, true);
        }
        continue;
      }
    }
    if (!definition(c, *active)) continue;  // not a service
    deploy::Cancel never{false};
    if (!start(c, *active)) continue;
    set_restart(c, *active, true);
    if (!wait_ready(c, *active, never)) continue;
    (void)route(c, {{*active, 100}});
  }
}

nlohmann::json Runtime::services_json() {
  nlohmann::json out = nlohmann::json::array();
  std::map<std::string, Service> copy;
  {
    std::lock_guard lk(mu_);
    copy = services_;
  }
  auto all = supervisor_.list();
  std::map<std::string, std::map<std::string, nlohmann::json>> by;  // component -> version
  for (const auto& i : all) {
    auto& v = by[i.component][i.version];
    if (v.is_null()) v = {{"version", i.version}, {"instances", nlohmann::json::array()}};
    v["instances"].push_back(i.to_json());
  }
  std::set<std::string> names;
  for (const auto& [c, s] : copy) names.insert(c);
  for (const auto& [c, v] : by) names.insert(c);
  for (const auto& c : names) {
    nlohmann::json svc = {{"name", c}, {"active", engine_.store().active(c).value_or("")}};
    auto sit = copy.find(c);
    svc["listen"] = sit != copy.end() ? sit->second.listen : "";
    svc["protocol"] = sit != copy.end() ? sit->second.protocol : "";
    nlohmann::json versions = nlohmann::json::array();
    auto& vs = by[c];
    if (sit != copy.end())
      for (const auto& [v, w] : sit->second.weights)
        if (!vs.count(v)) vs[v] = {{"version", v}, {"instances", nlohmann::json::array()}};
    for (auto& [v, j] : vs) {
      int w = 0;
      bool routed = false;
      if (sit != copy.end()) {
        auto wit = sit->second.weights.find(v);
        if (wit != sit->second.weights.end()) {
          w = wit->second;
          routed = true;
        }
      }
      j["weight"] = w;
      j["routed"] = routed;
      versions.push_back(j);
    }
    svc["versions"] = std::move(versions);
    out.push_back(std::move(svc));
  }
  return {{"services", out}};
}

Result<nlohmann::json> Runtime::proxy_stats() {
  return proxy_.stats();
}

Result<std::map<std::string, rollback::Counts>> Runtime::counts(const std::string& component) {
  auto stats = proxy_.stats();
  if (!stats) return tl::unexpected(stats.error().context("reading the proxy's statistics"));
  std::map<std::string, rollback::Counts> out;
  auto services = stats->find("services");
  if (services == stats->end() || !services->is_object()) return out;
  auto it = services->find(component);
  if (it == services->end() || !it->is_object()) return out;
  auto versions = it->find("versions");
  if (versions == it->end() || !versions->is_object()) return out;
  for (auto v = versions->begin(); v != versions->end(); ++v)
    out[v.key()] = rollback::counts_from_stats(v.value());
  return out;
}

// The signed manifest's policy (mup publish --rollback-policy), with the tree's
// mup-service.toml [rollback] over it. A manifest that cannot be read now (remote away) or
// whose policy is not one the judge knows (published before it was checked) adds nothing.
nlohmann::json Runtime::rollback_policy(const std::string& component, const std::string& version) {
  nlohmann::json policy = nlohmann::json::object();
  // The manifest recorded at install (no network); the remote's offer only when there is none.
  auto m = engine_.installed_manifest(component, version);
  if (!m) m = engine_.offer(component, version);
  if (m && m->rollback_policy.is_object() && !m->rollback_policy.empty() &&
      rollback::policy_from_json(m->rollback_policy))
    policy = m->rollback_policy;
  auto def = definition(component, version);
  if (def && def->rollback.is_object()) policy.merge_patch(def->rollback);
  return policy;
}

Result<std::vector<deploy::DataPlane::CheckResult>> Runtime::run_checks(
    const std::string& c, const std::string& defined_by, const std::string& on,
    const deploy::Cancel& cancel) {
  auto def = definition(c, defined_by);
  if (!def) return tl::unexpected(def.error());
  std::vector<CheckResult> out;
  if (def->checks.empty()) return out;
  const auto list = instances_of(c, on);
  if (list.empty()) return fail(Errc::not_found, "no instance of " + c + " " + on + " to check");
  for (const auto& check : def->checks) {
    CheckResult r;
    r.name = check.name();
    r.max_failures = static_cast<uint64_t>(check.max_failures);
    for (const auto& inst : list)
      for (int k = 0; k < check.count; ++k) {
        if (cancel) return fail(Errc::io, "cancelled");
        auto why = supervisor_.probe(inst.id, check.probe);
        ++r.attempts;
        if (!why || !why->empty()) {
          ++r.failures;
          r.last_error = inst.id + ": " + (why ? *why : why.error().message());
        }
      }
    out.push_back(std::move(r));
  }
  return out;
}

bool Runtime::proxy_alive() {
  return proxy_.health().has_value();
}

// --- EngineNode ------------------------------------------------------------------------

Result<deploy::Node::Installed> EngineNode::install(const std::string& c, const std::string& v,
                                                    const deploy::Cancel& cancel, bool force) {
  engine::InstallOptions o;
  o.version = v;
  o.trial = true;
  o.force = force;
  o.cancel = &cancel;
  auto r = engine_.install(c, o);
  if (!r) return tl::unexpected(r.error());
  Installed out;
  out.from_version = r->from_version;
  out.to_version = r->to_version;
  if (out.from_version == out.to_version) {
    // Active already: if it is on trial, an earlier agent installed it for this deployment
    // and died before journaling that (the engine's recovery finished the install).
    auto db = engine_.connect_state();
    if (!db) return tl::unexpected(db.error());
    auto row = db->component(c);
    if (row && *row && (**row).trial_version == out.to_version)
      out.from_version = engine_.store().previous(c).value_or("");
  }
  return out;
}

Status EngineNode::commit(const std::string& c) {
  auto r = engine_.commit(c);
  if (!r) return tl::unexpected(r.error());
  return {};
}

Status EngineNode::rollback(const std::string& c, const std::string& v, bool restore_state) {
  if (engine_.store().active(c).value_or("") == v) return {};
  auto r = engine_.rollback(c, v, restore_state);
  if (!r) return tl::unexpected(r.error());
  return {};
}

std::optional<std::string> EngineNode::active(const std::string& c) {
  return engine_.store().active(c);
}

Result<package::Manifest> EngineNode::offer(const std::string& c, const std::string& v) {
  return engine_.offer(c, v);
}

std::vector<Result<package::Manifest>> EngineNode::offers(
    const std::vector<std::pair<std::string, std::string>>& wanted) {
  return engine_.offers(wanted);
}

std::map<std::string, package::Version> EngineNode::active_versions() {
  return engine_.active_versions();
}

bool EngineNode::installed(const std::string& c, const std::string& v) {
  return engine_.store().has_version(c, v);
}

Result<deploy::Node::Space> EngineNode::space() {
  auto d = engine_.disk_space();
  if (!d) return tl::unexpected(d.error());
  return Space{d->free, d->reserve};
}

std::optional<std::string> EngineNode::previous(const std::string& c) {
  return engine_.store().previous(c);
}

}  // namespace mup::agent
