// ServiceDef <-> JSON, for instance records (a later agent restarts an adopted instance
// from its record, not from a tree that may have changed or gone).
#include <exception>

#include "service/errors.hpp"
#include "service/service_def.hpp"

namespace mup::service {

namespace {

std::string_view ready_kind_name(ReadyCheck::Kind k) {
  switch (k) {
    case ReadyCheck::Kind::http: return "http";
    case ReadyCheck::Kind::tcp: return "tcp";
    case ReadyCheck::Kind::exec: return "exec";
  }
  return "tcp";
}

}  // namespace

nlohmann::json ServiceDef::to_json() const {
  nlohmann::json limits_json = nlohmann::json::object();
  if (limits.memory_max) limits_json["memory_max"] = *limits.memory_max;
  if (limits.cpu_max) limits_json["cpu_max"] = *limits.cpu_max;
  if (limits.pids_max) limits_json["pids_max"] = *limits.pids_max;
  nlohmann::json j = {
      {"exec", exec},
      {"listen", listen},
      {"protocol", protocol_name(protocol)},
      {"instances", instances},
      {"env", env},
      {"workdir", workdir},
      {"ready",
       {{"kind", ready_kind_name(ready.kind)},
        {"http", ready.http_path},
        {"exec", ready.exec},
        {"timeout_ms", ready.timeout_ms},
        {"interval_ms", ready.interval_ms}}},
      {"stop",
       {{"signal", stop.signal_name},
        {"drain_ms", stop.drain_ms},
        {"timeout_ms", stop.timeout_ms}}},
      {"restart", {{"backoff_ms", restart.backoff_ms}, {"max_backoff_ms", restart.max_backoff_ms}}},
      {"log", {{"max_bytes", log.max_bytes}}},
      {"limits", limits_json},
      {"source", source},
  };
  nlohmann::json checks_json = nlohmann::json::array();
  for (const auto& c : checks)
    checks_json.push_back({{"kind", ready_kind_name(c.probe.kind)},
                           {"http", c.probe.http_path},
                           {"exec", c.probe.exec},
                           {"timeout_ms", c.probe.timeout_ms},
                           {"count", c.count},
                           {"max_failures", c.max_failures}});
  if (!checks.empty()) j["checks"] = std::move(checks_json);
  if (user) j["user"] = *user;
  if (!rollback.is_null()) j["rollback"] = rollback;
  return j;
}

Result<ServiceDef> service_def_from_json(const nlohmann::json& j) {
  try {
    ServiceDef d;
    d.exec = j.at("exec").get<std::vector<std::string>>();
    d.listen = j.at("listen").get<std::string>();
    d.protocol = j.at("protocol").get<std::string>() == "tcp" ? Protocol::tcp : Protocol::http;
    d.instances = j.at("instances").get<int>();
    d.env = j.at("env").get<std::map<std::string, std::string>>();
    d.workdir = j.at("workdir").get<std::string>();
    if (j.contains("user")) d.user = j.at("user").get<std::string>();
    auto probe_from = [](const nlohmann::json& r, ReadyCheck& p) {
      std::string kind = r.at("kind").get<std::string>();
      p.kind = kind == "http"   ? ReadyCheck::Kind::http
               : kind == "exec" ? ReadyCheck::Kind::exec
                                : ReadyCheck::Kind::tcp;
      p.http_path = r.at("http").get<std::string>();
      p.exec = r.at("exec").get<std::vector<std::string>>();
      p.timeout_ms = r.at("timeout_ms").get<int64_t>();
    };
    probe_from(j.at("ready"), d.ready);
    d.ready.interval_ms = j.at("ready").at("interval_ms").get<int64_t>();
    for (const auto& c : j.value("checks", nlohmann::json::array())) {
      SmokeCheck s;
      probe_from(c, s.probe);
      s.count = c.at("count").get<int>();
      s.max_failures = c.at("max_failures").get<int>();
      d.checks.push_back(std::move(s));
    }
    const auto& s = j.at("stop");
    d.stop.signal_name = s.at("signal").get<std::string>();
    auto sig = signal_number(d.stop.signal_name);
    if (!sig) return fail(Code::bad_definition, "unknown stop signal " + d.stop.signal_name);
    d.stop.signal = *sig;
    d.stop.drain_ms = s.at("drain_ms").get<int64_t>();
    d.stop.timeout_ms = s.at("timeout_ms").get<int64_t>();
    d.restart.backoff_ms = j.at("restart").at("backoff_ms").get<int64_t>();
    d.restart.max_backoff_ms = j.at("restart").at("max_backoff_ms").get<int64_t>();
    d.log.max_bytes = j.at("log").at("max_bytes").get<int64_t>();
    const auto& l = j.at("limits");
    if (l.contains("memory_max")) d.limits.memory_max = l.at("memory_max").get<uint64_t>();
    if (l.contains("cpu_max")) d.limits.cpu_max = l.at("cpu_max").get<int64_t>();
    if (l.contains("pids_max")) d.limits.pids_max = l.at("pids_max").get<int64_t>();
    d.source = j.value("source", std::string());
    if (j.contains("rollback")) d.rollback = j.at("rollback");
    return d;
  } catch (const std::exception& e) {
    return fail(Code::bad_definition,
                std::string("a recorded service definition is malformed: ") + e.what());
  }
}

}  // namespace mup::service
