// Parsing mup-service.toml. Every table is read through TableReader, which first refuses
// keys it does not know (so a typo is reported at its own line before anything else), then
// hands out typed values with the line they came from.
#include "service/service_def.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <set>
#include <sstream>

#include "core/fs.hpp"
#include "service/errors.hpp"

namespace mup::service {

namespace {

struct SignalName {
  std::string_view name;
  int number;
};
constexpr std::array<SignalName, 7> kSignals{
    {{"TERM", 15}, {"INT", 2}, {"QUIT", 3}, {"HUP", 1}, {"USR1", 10}, {"USR2", 12}, {"KILL", 9}}};

constexpr std::array<std::string_view, 4> kPlaceholders{"port", "version", "instance", "state_dir"};

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: return "a date/time";
    default: return "nothing";
  }
}

// One TOML table being read: `path` is its dotted name ("service.ready").
class TableReader {
 public:
  TableReader(const toml::table& t, std::string path, const std::string& source)
      : table_(t), path_(std::move(path)), source_(source) {}

  // Refuses any key not in `allowed`, naming its line.
  Status check_keys(std::initializer_list<std::string_view> allowed) const {
    for (auto&& [k, v] : table_) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end())
        return tl::unexpected(fail_at(line_of(k, v), k.str(), "unknown key"));
    }
    return {};
  }

  const toml::node* get(std::string_view key) const { return table_.get(key); }

  Error fail_at(int64_t line, std::string_view key, std::string_view what) const {
    std::string where = source_;
    if (line > 0) where += ":" + std::to_string(line);
    return error(Code::bad_definition, where + ": " + qualified(key) + ": " + std::string(what));
  }
  Error fail_node(std::string_view key, std::string_view what) const {
    const toml::node* n = get(key);
    int64_t line = n ? static_cast<int64_t>(n->source().begin.line) : table_line();
    return fail_at(line, key, what);
  }
  Error wrong_type(std::string_view key, std::string_view expected) const {
    return fail_node(
        key, "expected " + std::string(expected) + ", got " + std::string(type_name(*get(key))));
  }

  Result<std::optional<std::string>> opt_string(std::string_view key) const {
    const toml::node* n = get(key);
    if (!n) return std::optional<std::string>{};
    if (!n->is_string()) return tl::unexpected(wrong_type(key, "a string"));
    return std::optional<std::string>{n->as_string()->get()};
  }

  Result<std::optional<int64_t>> opt_int(std::string_view key, int64_t min, int64_t max) const {
    const toml::node* n = get(key);
    if (!n) return std::optional<int64_t>{};
    if (!n->is_integer()) return tl::unexpected(wrong_type(key, "an integer"));
    int64_t v = n->as_integer()->get();
    if (v < min || v > max)
      return tl::unexpected(fail_node(key, "must be between " + std::to_string(min) + " and " +
                                               std::to_string(max) + ", got " + std::to_string(v)));
    return std::optional<int64_t>{v};
  }

  Result<std::optional<std::vector<std::string>>> opt_strings(std::string_view key) const {
    const toml::node* n = get(key);
    if (!n) return std::optional<std::vector<std::string>>{};
    if (!n->is_array()) return tl::unexpected(wrong_type(key, "an array of strings"));
    std::vector<std::string> out;
    for (const toml::node& e : *n->as_array()) {
      if (!e.is_string())
        return tl::unexpected(
            fail_at(static_cast<int64_t>(e.source().begin.line), key,
                    "expected an array of strings, found " + std::string(type_name(e)) + " in it"));
      out.push_back(e.as_string()->get());
    }
    return std::optional<std::vector<std::string>>{std::move(out)};
  }

  // A sub-table, or nullopt when absent.
  Result<std::optional<TableReader>> opt_table(std::string_view key) const {
    const toml::node* n = get(key);
    if (!n) return std::optional<TableReader>{};
    if (!n->is_table()) return tl::unexpected(wrong_type(key, "a table"));
    return std::optional<TableReader>{TableReader(*n->as_table(), qualified(key), source_)};
  }

  const std::string& source() const { return source_; }
  int64_t table_line() const { return static_cast<int64_t>(table_.source().begin.line); }
  std::string qualified(std::string_view key) const {
    if (key.empty()) return path_;
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

 private:
  static int64_t line_of(const toml::key& k, const toml::node& v) {
    auto line = k.source().begin.line;
    if (line == 0) line = v.source().begin.line;
    return static_cast<int64_t>(line);
  }

  const toml::table& table_;
  std::string path_;
  const std::string& source_;
};

// Why `text` has a placeholder we do not know, or "".
std::string bad_placeholder(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '{') continue;
    size_t j = i + 1;
    while (j < text.size() && (std::islower(static_cast<unsigned char>(text[j])) || text[j] == '_'))
      ++j;
    if (j == i + 1 || j >= text.size() || text[j] != '}') continue;  // not a placeholder
    std::string_view name = text.substr(i + 1, j - i - 1);
    if (std::find(kPlaceholders.begin(), kPlaceholders.end(), name) == kPlaceholders.end())
      return "unknown placeholder {" + std::string(name) +
             "} (known: {port} {version} {instance} {state_dir})";
  }
  return "";
}

// Why `p` is not an acceptable program path, or "".
std::string bad_program(const std::string& p) {
  if (p.empty()) return "the program (first element) is empty";
  if (p.front() == '/') return "";
  std::string why = fs::unsafe_path_reason(p, 4096);
  if (!why.empty()) return "relative program path \"" + p + "\" must stay in the tree: " + why;
  return "";
}

// Why `listen` is not host:port, or "".
std::string bad_listen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return "expected host:port, got \"" + listen + "\"";
  std::string host = listen.substr(0, colon);
  std::string port = listen.substr(colon + 1);
  if (host.empty()) return "expected host:port, the host is empty in \"" + listen + "\"";
  bool bracketed = host.front() == '[';
  if (bracketed && (host.size() < 3 || host.back() != ']'))
    return "an IPv6 host must be in brackets, as [::1]:8080";
  for (char c : host) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
              (bracketed && (c == ':' || c == '[' || c == ']'));
    if (!ok) return "bad character '" + std::string(1, c) + "' in host \"" + host + "\"";
  }
  int value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value < 1 ||
      value > 65535)
    return "the port must be a number from 1 to 65535, got \"" + port + "\"";
  return "";
}

bool valid_env_name(const std::string& k) {
  if (k.empty() || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// "512M" / 536870912 -> bytes.
Result<uint64_t> parse_memory(const TableReader& r) {
  const toml::node* n = r.get("memory_max");
  if (n->is_integer()) {
    if (n->as_integer()->get() < 1)
      return tl::unexpected(r.fail_node("memory_max", "must be >= 1"));
    return static_cast<uint64_t>(n->as_integer()->get());
  }
  if (!n->is_string())
    return tl::unexpected(r.wrong_type("memory_max", "a size such as \"512M\" or bytes"));
  const std::string& s = n->as_string()->get();
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  std::string_view unit(end, static_cast<size_t>(s.data() + s.size() - end));
  uint64_t mult = 0;
  if (unit.empty())
    mult = 1;
  else if (unit == "K")
    mult = 1ULL << 10;
  else if (unit == "M")
    mult = 1ULL << 20;
  else if (unit == "G")
    mult = 1ULL << 30;
  else if (unit == "T")
    mult = 1ULL << 40;
  if (ec != std::errc() || end == s.data() || mult == 0 || value == 0 || value > UINT64_MAX / mult)
    return tl::unexpected(r.fail_node(
        "memory_max", "expected a size such as \"512M\" (K, M, G, T), got \"" + s + "\""));
  return value * mult;
}

Result<int64_t> parse_percent(const TableReader& r) {
  const toml::node* n = r.get("cpu_max");
  if (!n->is_string())
    return tl::unexpected(r.wrong_type("cpu_max", "a percentage such as \"50%\""));
  const std::string& s = n->as_string()->get();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end == s.data() || std::string_view(end) != "%" || value < 1 ||
      value > 100000)
    return tl::unexpected(r.fail_node(
        "cpu_max", "expected a percentage of one CPU such as \"50%\", got \"" + s + "\""));
  return value;
}

Status read_ready(const TableReader& r, ReadyCheck& ready,
                  std::initializer_list<std::string_view> keys = {"http", "tcp", "exec",
                                                                  "timeout_ms", "interval_ms"}) {
  MUP_TRY(r.check_keys(keys));
  int kinds = (r.get("http") ? 1 : 0) + (r.get("tcp") ? 1 : 0) + (r.get("exec") ? 1 : 0);
  if (kinds > 1)
    return tl::unexpected(
        r.fail_at(r.table_line(), "",
                  "give only one of http, tcp and exec (found " + std::to_string(kinds) + ")"));
  auto http = r.opt_string("http");
  if (!http) return tl::unexpected(http.error());
  if (*http) {
    if (http->value().empty() || http->value().front() != '/' ||
        http->value().find_first_of(" \r\n") != std::string::npos)
      return tl::unexpected(r.fail_node("http", "expected a path such as \"/healthz\""));
    ready.kind = ReadyCheck::Kind::http;
    ready.http_path = **http;
  }
  if (const toml::node* tcp = r.get("tcp")) {
    if (!tcp->is_boolean()) return tl::unexpected(r.wrong_type("tcp", "a boolean"));
    if (!tcp->as_boolean()->get())
      return tl::unexpected(r.fail_node("tcp", "only tcp = true means something; leave it out"));
    ready.kind = ReadyCheck::Kind::tcp;
  }
  auto exec = r.opt_strings("exec");
  if (!exec) return tl::unexpected(exec.error());
  if (*exec) {
    if ((*exec)->empty()) return tl::unexpected(r.fail_node("exec", "must not be empty"));
    if (auto why = bad_program((*exec)->front()); !why.empty())
      return tl::unexpected(r.fail_node("exec", why));
    for (const auto& a : **exec)
      if (auto why = bad_placeholder(a); !why.empty())
        return tl::unexpected(r.fail_node("exec", why));
    ready.kind = ReadyCheck::Kind::exec;
    ready.exec = std::move(**exec);
  }
  auto timeout = r.opt_int("timeout_ms", 1, 3'600'000);
  if (!timeout) return tl::unexpected(timeout.error());
  ready.timeout_ms = timeout->value_or(ready.timeout_ms);
  auto interval = r.opt_int("interval_ms", 1, 60'000);
  if (!interval) return tl::unexpected(interval.error());
  ready.interval_ms = interval->value_or(ready.interval_ms);
  return {};
}

Status read_check(const TableReader& r, SmokeCheck& check) {
  if (!r.get("http") && !r.get("tcp") && !r.get("exec"))
    return tl::unexpected(
        r.fail_at(r.table_line(), "", "give one of http, tcp and exec (what to check)"));
  check.probe.timeout_ms = 2000;
  // The probe's keys are [service.ready]'s (timeout_ms there allows up to an hour: not here).
  auto timeout = r.opt_int("timeout_ms", 1, 60'000);
  if (!timeout) return tl::unexpected(timeout.error());
  MUP_TRY(
      read_ready(r, check.probe, {"http", "tcp", "exec", "timeout_ms", "count", "max_failures"}));
  auto count = r.opt_int("count", 1, 1000);
  if (!count) return tl::unexpected(count.error());
  check.count = static_cast<int>(count->value_or(check.count));
  auto max = r.opt_int("max_failures", 0, 100'000);
  if (!max) return tl::unexpected(max.error());
  check.max_failures = static_cast<int>(max->value_or(check.max_failures));
  return {};
}

Status read_stop(const TableReader& r, StopPolicy& stop) {
  MUP_TRY(r.check_keys({"signal", "drain_ms", "timeout_ms"}));
  auto sig = r.opt_string("signal");
  if (!sig) return tl::unexpected(sig.error());
  if (*sig) {
    auto num = signal_number(**sig);
    if (!num)
      return tl::unexpected(r.fail_node(
          "signal",
          "unknown signal \"" + **sig + "\" (use TERM, INT, QUIT, HUP, USR1, USR2 or KILL)"));
    stop.signal = *num;
    stop.signal_name = (*sig)->rfind("SIG", 0) == 0 ? (*sig)->substr(3) : **sig;
  }
  auto drain = r.opt_int("drain_ms", 0, 3'600'000);
  if (!drain) return tl::unexpected(drain.error());
  stop.drain_ms = drain->value_or(stop.drain_ms);
  auto timeout = r.opt_int("timeout_ms", 0, 3'600'000);
  if (!timeout) return tl::unexpected(timeout.error());
  stop.timeout_ms = timeout->value_or(stop.timeout_ms);
  return {};
}

Status read_restart(const TableReader& r, RestartPolicy& restart) {
  MUP_TRY(r.check_keys({"backoff_ms", "max_backoff_ms"}));
  auto backoff = r.opt_int("backoff_ms", 1, 3'600'000);
  if (!backoff) return tl::unexpected(backoff.error());
  restart.backoff_ms = backoff->value_or(restart.backoff_ms);
  auto max = r.opt_int("max_backoff_ms", 1, 3'600'000);
  if (!max) return tl::unexpected(max.error());
  restart.max_backoff_ms = max->value_or(std::max(restart.max_backoff_ms, restart.backoff_ms));
  if (restart.max_backoff_ms < restart.backoff_ms)
    return tl::unexpected(r.fail_node("max_backoff_ms", "must be >= backoff_ms"));
  return {};
}

Status read_limits(const TableReader& r, Limits& limits) {
  MUP_TRY(r.check_keys({"memory_max", "cpu_max", "pids_max"}));
  if (r.get("memory_max")) {
    auto m = parse_memory(r);
    if (!m) return tl::unexpected(m.error());
    limits.memory_max = *m;
  }
  if (r.get("cpu_max")) {
    auto c = parse_percent(r);
    if (!c) return tl::unexpected(c.error());
    limits.cpu_max = *c;
  }
  auto pids = r.opt_int("pids_max", 1, 4'194'304);
  if (!pids) return tl::unexpected(pids.error());
  limits.pids_max = *pids;
  return {};
}

Status read_service(const TableReader& r, ServiceDef& def) {
  MUP_TRY(r.check_keys({"exec", "listen", "protocol", "instances", "env", "workdir", "user",
                        "ready", "check", "stop", "restart", "log", "limits"}));
  auto exec = r.opt_strings("exec");
  if (!exec) return tl::unexpected(exec.error());
  if (!*exec) return tl::unexpected(r.fail_at(r.table_line(), "exec", "missing (required)"));
  if ((*exec)->empty()) return tl::unexpected(r.fail_node("exec", "must not be empty"));
  if (auto why = bad_program((*exec)->front()); !why.empty())
    return tl::unexpected(r.fail_node("exec", why));
  for (const auto& a : **exec)
    if (auto why = bad_placeholder(a); !why.empty())
      return tl::unexpected(r.fail_node("exec", why));
  def.exec = std::move(**exec);

  auto listen = r.opt_string("listen");
  if (!listen) return tl::unexpected(listen.error());
  if (!*listen) return tl::unexpected(r.fail_at(r.table_line(), "listen", "missing (required)"));
  if (auto why = bad_listen(**listen); !why.empty())
    return tl::unexpected(r.fail_node("listen", why));
  def.listen = **listen;

  auto protocol = r.opt_string("protocol");
  if (!protocol) return tl::unexpected(protocol.error());
  if (*protocol) {
    if (**protocol == "http")
      def.protocol = Protocol::http;
    else if (**protocol == "tcp")
      def.protocol = Protocol::tcp;
    else
      return tl::unexpected(
          r.fail_node("protocol", "expected \"http\" or \"tcp\", got \"" + **protocol + "\""));
  }
  auto instances = r.opt_int("instances", 1, 64);
  if (!instances) return tl::unexpected(instances.error());
  def.instances = static_cast<int>(instances->value_or(1));

  auto workdir = r.opt_string("workdir");
  if (!workdir) return tl::unexpected(workdir.error());
  if (*workdir && **workdir != ".") {
    if (auto why = fs::unsafe_path_reason(**workdir, 4096); !why.empty())
      return tl::unexpected(r.fail_node("workdir", "must be a path in the tree: " + why));
    def.workdir = **workdir;
  }
  auto user = r.opt_string("user");
  if (!user) return tl::unexpected(user.error());
  if (*user && (*user)->empty()) return tl::unexpected(r.fail_node("user", "must not be empty"));
  def.user = *user;

  auto env = r.opt_table("env");
  if (!env) return tl::unexpected(env.error());
  if (*env) {
    const toml::table& t = *r.get("env")->as_table();
    for (auto&& [k, v] : t) {
      std::string name(k.str());
      if (!valid_env_name(name))
        return tl::unexpected((*env)->fail_node(name, "not a valid environment variable name"));
      if (name == "PORT" || name.rfind("MUP_", 0) == 0)
        return tl::unexpected((*env)->fail_node(name, "is set by mup; choose another name"));
      if (!v.is_string()) return tl::unexpected((*env)->wrong_type(name, "a string"));
      if (auto why = bad_placeholder(v.as_string()->get()); !why.empty())
        return tl::unexpected((*env)->fail_node(name, why));
      def.env[name] = v.as_string()->get();
    }
  }

  struct Section {
    std::string_view key;
    Status (*read)(const TableReader&, ServiceDef&);
  };
  static constexpr std::array<Section, 5> kSections{{
      {"ready", [](const TableReader& t, ServiceDef& d) { return read_ready(t, d.ready); }},
      {"stop", [](const TableReader& t, ServiceDef& d) { return read_stop(t, d.stop); }},
      {"restart", [](const TableReader& t, ServiceDef& d) { return read_restart(t, d.restart); }},
      {"log",
       [](const TableReader& t, ServiceDef& d) -> Status {
         MUP_TRY(t.check_keys({"max_bytes"}));
         auto max = t.opt_int("max_bytes", 1024, INT64_MAX);
         if (!max) return tl::unexpected(max.error());
         d.log.max_bytes = max->value_or(d.log.max_bytes);
         return {};
       }},
      {"limits", [](const TableReader& t, ServiceDef& d) { return read_limits(t, d.limits); }},
  }};
  for (const Section& s : kSections) {
    auto sub = r.opt_table(s.key);
    if (!sub) return tl::unexpected(sub.error());
    if (*sub) MUP_TRY(s.read(**sub, def));
  }
  if (const toml::node* checks = r.get("check")) {
    if (!checks->is_array_of_tables())
      return tl::unexpected(r.wrong_type("check", "an array of tables ([[service.check]])"));
    size_t i = 0;
    for (const toml::node& t : *checks->as_array()) {
      SmokeCheck c;
      MUP_TRY(read_check(
          TableReader(*t.as_table(), r.qualified("check") + "[" + std::to_string(i++) + "]",
                      r.source()),
          c));
      def.checks.push_back(std::move(c));
    }
  }
  return {};
}

}  // namespace

std::string SmokeCheck::name() const {
  switch (probe.kind) {
    case ReadyCheck::Kind::http: return "GET " + probe.http_path;
    case ReadyCheck::Kind::tcp: return "tcp connect";
    case ReadyCheck::Kind::exec: return "exec " + (probe.exec.empty() ? "" : probe.exec.front());
  }
  return "check";
}

std::string_view protocol_name(Protocol p) {
  return p == Protocol::tcp ? "tcp" : "http";
}

std::optional<int> signal_number(std::string_view name) {
  if (name.rfind("SIG", 0) == 0) name.remove_prefix(3);
  for (const auto& s : kSignals)
    if (s.name == name) return s.number;
  return std::nullopt;
}

std::string substitute(std::string_view text, const Placeholders& values) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    bool replaced = false;
    if (text[i] == '{') {
      const std::pair<std::string_view, const std::string*> table[] = {
          {"{port}", &values.port},
          {"{version}", &values.version},
          {"{instance}", &values.instance},
          {"{state_dir}", &values.state_dir}};
      for (const auto& [pat, value] : table) {
        if (text.substr(i, pat.size()) == pat) {
          out += *value;
          i += pat.size();
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out += text[i++];
  }
  return out;
}

Result<ServiceDef> parse_service_def(std::string_view text, const std::string& source) {
  toml::table doc;
  try {
    doc = toml::parse(text, std::string_view(source));
  } catch (const toml::parse_error& e) {
    return fail(Code::bad_definition, source + ":" + std::to_string(e.source().begin.line) + ": " +
                                          std::string(e.description()));
  } catch (const std::exception& e) {
    return fail(Code::bad_definition, source + ": " + e.what());
  }
  TableReader top(doc, "", source);
  MUP_TRY(top.check_keys({"service", "rollback"}));
  auto service = top.opt_table("service");
  if (!service) return tl::unexpected(service.error());
  if (!*service)
    return fail(Code::bad_definition, source +
                                          ": service: missing (the file needs a [service] "
                                          "table with at least exec and listen)");
  ServiceDef def;
  def.source = source;
  MUP_TRY(read_service(**service, def));
  if (const toml::table* rb = doc["rollback"].as_table()) {
    // Kept as JSON for the rollback judge, which checks it (this module does not know it).
    std::ostringstream out;
    out << toml::json_formatter{*rb};
    def.rollback = nlohmann::json::parse(out.str(), nullptr, false);
    if (def.rollback.is_discarded())
      return fail(Code::bad_definition, source + ": rollback: not representable as JSON");
  } else if (doc.contains("rollback")) {
    return fail(Code::bad_definition, source + ": rollback: must be a table ([rollback])");
  }
  return def;
}

Result<ServiceDef> load_service_def(const std::filesystem::path& path) {
  auto bytes = fs::read_file(path, 1 << 20);
  if (!bytes) return tl::unexpected(bytes.error().context("reading the service definition"));
  return parse_service_def(
      std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()), path.string());
}

}  // namespace mup::service
