// Runtime: the data plane as the deployer sees it (deploy::DataPlane), made of the
// supervisor's instances and the proxy's routes; and EngineNode, the engine as a deployment
// sees it (deploy::Node).
//
// The proxy is the truth for traffic: its routes carry each backend's version and weight, and
// survive the agent. The Runtime keeps, per service, the weight of each version (read back
// from the proxy at start) and derives the backends from the supervisor's ready instances of
// those versions, so reconcile() re-routes an instance that was restarted on another port,
// and an instance only gets traffic once it passed its readiness check.
//
// Thread-safe: a mutex guards the weights; the supervisor and the proxy client are
// thread-safe themselves. A route change for one service is serialised with reconcile().
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "deploy/deployer.hpp"
#include "engine/engine.hpp"
#include "service/service_def.hpp"
#include "service/supervisor.hpp"
#include "traffic/daemon.hpp"

namespace mup::agent {

class Runtime : public deploy::DataPlane {
 public:
  Runtime(engine::Engine& engine, service::Supervisor& supervisor, traffic::ProxyClient proxy);

  // Reads the proxy's routes back (which versions carry traffic, with which weights).
  [[nodiscard]] Status load_routes();
  // Re-routes services whose ready instances changed (restart on another port, an instance
  // that became ready again); probes restarted instances of routed versions. Cheap when
  // nothing changed.
  void reconcile();
  // Services whose active version has a service definition but no route yet (installed
  // while no agent ran, or a node that booted): started and routed. Skips `busy` ones.
  void start_unrouted(const std::function<bool(const std::string&)>& busy);

  // The service definition of component@version (its tree's mup-service.toml).
  [[nodiscard]] Result<service::ServiceDef> definition(const std::string& component,
                                                       const std::string& version);
  // GET /v1/services (docs/agent.md).
  nlohmann::json services_json();
  [[nodiscard]] Result<nlohmann::json> proxy_stats();
  bool proxy_alive();

  // deploy::DataPlane
  [[nodiscard]] Status start(const std::string& component, const std::string& version) override;
  [[nodiscard]] Status wait_ready(const std::string& component, const std::string& version,
                                  const deploy::Cancel& cancel) override;
  [[nodiscard]] Status check_alive(const std::string& component,
                                   const std::string& version) override;
  [[nodiscard]] Status route(const std::string& component,
                             const std::map<std::string, int>& weights) override;
  std::map<std::string, int> weights(const std::string& component) override;
  [[nodiscard]] Status wait_drained(const std::string& component, const std::string& version,
                                    const deploy::Cancel& cancel) override;
  [[nodiscard]] Status stop(const std::string& component, const std::string& version) override;
  void set_restart(const std::string& component, const std::string& version, bool on) override;
  [[nodiscard]] Status scale(const std::string& component, const std::string& version,
                             int count) override;
  int instances(const std::string& component, const std::string& version) override;
  [[nodiscard]] Result<std::map<std::string, rollback::Counts>> counts(
      const std::string& component) override;
  nlohmann::json rollback_policy(const std::string& component, const std::string& version) override;
  [[nodiscard]] Result<std::vector<CheckResult>> run_checks(const std::string& component,
                                                            const std::string& defined_by,
                                                            const std::string& on,
                                                            const deploy::Cancel& cancel) override;

 private:
  struct Service {
    std::map<std::string, int> weights;
    std::string listen, protocol;
    int64_t drain_ms = 10000;
    std::vector<traffic::BackendSpec> pushed;  // last sent, to skip PUTs that change nothing
    bool pushed_once = false;
  };
  std::vector<service::InstanceInfo> instances_of(const std::string& component,
                                                  const std::string& version) const;
  // Sends the route when its backends changed (or `force`); `all` is the supervisor's list
  // when the caller has one already.
  [[nodiscard]] Status push(const std::string& component, Service& s, bool force,
                            const std::vector<service::InstanceInfo>* all = nullptr);

  engine::Engine& engine_;
  service::Supervisor& supervisor_;
  traffic::ProxyClient proxy_;
  std::mutex mu_;
  std::map<std::string, Service> services_;
};

class EngineNode : public deploy::Node {
 public:
  explicit EngineNode(engine::Engine& engine) : engine_(engine) {}
  [[nodiscard]] Result<Installed> install(const std::string& component, const std::string& version,
                                          const deploy::Cancel& cancel, bool force) override;
  [[nodiscard]] Status commit(const std::string& component) override;
  [[nodiscard]] Status rollback(const std::string& component, const std::string& version,
                                bool restore_state) override;
  std::optional<std::string> active(const std::string& component) override;
  std::optional<std::string> previous(const std::string& component) override;
  [[nodiscard]] Result<package::Manifest> offer(const std::string& component,
                                                const std::string& version) override;
  [[nodiscard]] std::vector<Result<package::Manifest>> offers(
      const std::vector<std::pair<std::string, std::string>>& wanted) override;
  std::map<std::string, package::Version> active_versions() override;
  bool installed(const std::string& component, const std::string& version) override;
  // The engine's disk_space(): free bytes and the reserve (5%, at most 1 GiB).
  [[nodiscard]] Result<Space> space() override;

 private:
  engine::Engine& engine_;
};

}  // namespace mup::agent
