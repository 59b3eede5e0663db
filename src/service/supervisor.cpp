// The Supervisor's public calls: open, start, wait_ready, stop, and the views. The monitor
// thread lives in monitor.cpp, records and adoption in records.cpp.
#include "service/supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "core/fs.hpp"
#include "service/cgroup.hpp"
#include "service/errors.hpp"
#include "service/probe.hpp"
#include "service/procfs.hpp"
#include "service/supervisor_internal.hpp"

namespace mup::service {

using detail::Impl;
using detail::Instance;
using detail::steady;
namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

int64_t ms_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

// exec[0]: an absolute path as it is; a path with a slash in the version's tree; a bare
// name in the tree when the tree has it, else on the instances' PATH (as a shell would:
// `exec = ["python3", ...]` runs the system's python3).
std::string resolve_program(const stdfs::path& tree, const std::string& program) {
  if (!program.empty() && program.front() == '/') return program;
  const stdfs::path in_tree = tree / program;
  if (program.find('/') != std::string::npos) return in_tree.string();
  if (::access(in_tree.c_str(), X_OK) == 0) return in_tree.string();
  std::string_view path = kDefaultPath;
  while (!path.empty()) {
    const size_t colon = path.find(':');
    const stdfs::path candidate = stdfs::path(std::string(path.substr(0, colon))) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return in_tree.string();  // not found anywhere: the spawn error names the tree's path
}

}  // namespace

std::string InstanceKey::id() const {
  return component + "@" + version + "#" + std::to_string(index);
}

std::string id_safe(const std::string& id) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < id.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(id[i]);
    bool keep =
        std::isalnum(c) || c == '.' || c == '_' || c == '@' || c == '#' || c == '+' || c == '-';
    if (i == 0 && c == '.') keep = false;
    if (keep) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

nlohmann::json InstanceInfo::to_json() const {
  return {{"id", id},
          {"component", component},
          {"version", version},
          {"index", index},
          {"pid", pid},
          {"port", port},
          {"state", state},
          {"restarts", restarts},
          {"last_exit", last_exit},
          {"started_at", started_at},
          {"cpu_percent", cpu_percent},
          {"rss_bytes", rss_bytes},
          {"log", log},
          {"adopted", adopted},
          {"limits", limits}};
}

namespace detail {

InstanceInfo Instance::info() const {
  InstanceInfo i;
  i.id = id;
  i.component = key.component;
  i.version = key.version;
  i.index = key.index;
  i.pid = pid;
  i.port = port;
  i.state = state;
  i.restarts = restarts;
  i.last_exit = last_exit;
  i.started_at = started_at;
  i.cpu_percent = cpu_percent;
  i.rss_bytes = rss_bytes;
  i.log = log.string();
  i.adopted = adopted;
  i.limits = limits;
  return i;
}

std::string log_tail(const stdfs::path& log, int lines) {
  std::ifstream in(log, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff from = std::max<std::streamoff>(0, size - 8192);
  in.seekg(from);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!text.empty() && text.back() == '\n') text.pop_back();
  size_t start = text.size();
  for (int n = 0; n < lines && start > 0; ++n) {
    size_t nl = text.rfind('\n', start - 1);
    start = nl == std::string::npos ? 0 : nl;
  }
  if (start > 0) ++start;  // past the newline that ends the line before
  return text.substr(start);
}

void Impl::event_locked(const Instance& in, std::string_view name, nlohmann::json extra) {
  nlohmann::json e = {{"event", name}, {"id", in.id}, {"at", opts.clock->wall_ms()}};
  if (extra.is_object())
    for (auto& [k, v] : extra.items()) e[k] = v;
  pending_events.push_back(std::move(e));
}

void Impl::flush_events() {
  // A handler may call back into the supervisor, which flushes again on this thread: that
  // inner flush leaves the delivery to the loop below instead of deadlocking on events_mu.
  thread_local const Impl* delivering = nullptr;
  if (delivering == this) return;
  std::lock_guard deliver(events_mu);
  delivering = this;
  for (;;) {
    std::vector<nlohmann::json> events;
    {
      std::lock_guard lock(mu);
      events.swap(pending_events);
    }
    if (events.empty()) break;
    if (!opts.on_event) continue;
    for (const auto& e : events) {
      try {
        opts.on_event(e);
      } catch (const std::exception&) {
        // A handler's failure is its own; the supervisor goes on.
      }
    }
  }
  delivering = nullptr;
}

Result<SpawnSpec> Impl::spec_for_locked(const Instance& in,
                                        const std::vector<std::string>& argv) const {
  auto run_as = resolve_user(in.def.user);
  if (!run_as) return tl::unexpected(run_as.error());
  Placeholders ph{std::to_string(in.port), in.key.version, std::to_string(in.key.index),
                  in.state_dir.string()};
  SpawnSpec spec;
  for (const auto& a : argv) spec.argv.push_back(substitute(a, ph));
  spec.program = resolve_program(in.tree, spec.argv.at(0));
  std::string home = *run_as ? (*run_as)->home.string() : "";
  if (home.empty()) {
    const char* h = std::getenv("HOME");
    home = h ? h : "/";
  }
  spec.env = {"PATH=" + std::string(kDefaultPath),
              "HOME=" + home,
              "PORT=" + ph.port,
              "MUP_COMPONENT=" + in.key.component,
              "MUP_VERSION=" + in.key.version,
              "MUP_INSTANCE=" + ph.instance,
              "MUP_STATE_DIR=" + ph.state_dir};
  for (const auto& [k, v] : in.def.env) spec.env.push_back(k + "=" + substitute(v, ph));
  spec.cwd = in.def.workdir == "." ? in.tree : in.tree / in.def.workdir;
  spec.log_path = in.log;
  spec.run_as = *run_as;
  spec.cgroup_dir = in.cgroup;
  return spec;
}

Status Impl::spawn_locked(Instance& in) {
  std::error_code ec;
  stdfs::create_directories(in.state_dir, ec);
  if (ec) return fail_errno("create state dir", in.state_dir.string(), ec.value());
  ::chmod(in.state_dir.c_str(), 0700);
  MUP_TRY(fs::create_dirs(in.log.parent_path()));
  auto spec = spec_for_locked(in, in.def.exec);
  if (!spec) return tl::unexpected(spec.error().context("starting " + in.id));
  if (spec->run_as && ::chown(in.state_dir.c_str(), spec->run_as->uid, spec->run_as->gid) != 0)
    return fail_errno("chown", in.state_dir.string(), errno);
  CgroupSetup cg = prepare_cgroup(in.safe, in.def.limits);
  in.cgroup = cg.dir;
  in.limits = cg.status;
  spec->cgroup_dir = cg.dir;
  auto child = spawn_process(*spec);
  if (!child) {
    remove_cgroup(in.cgroup);
    return tl::unexpected(child.error().context("starting " + in.id));
  }
  if (!child->warning.empty()) in.limits = "unavailable: " + child->warning;
  in.pid = child->pid;
  in.pidfd = child->pidfd;
  in.start_ticks = child->start_ticks;
  in.started_at = opts.clock->wall_ms();
  in.started_mono = now();
  in.adopted = false;
  in.state = "starting";
  in.sampled = false;
  in.cpu_percent = 0;
  in.rss_bytes = 0;
  return {};
}

}  // namespace detail

Supervisor::Supervisor(SupervisorOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

Result<std::unique_ptr<Supervisor>> Supervisor::open(SupervisorOptions options) {
  if (options.root.empty()) return fail(Errc::invalid_argument, "supervisor root is empty");
  if (!options.clock) options.clock = &system_clock();
  std::unique_ptr<Supervisor> s(new Supervisor(std::move(options)));
  Impl& impl = *s->impl_;
  for (const char* sub : {"run/instances", "logs", "state"})
    MUP_TRY(fs::create_dirs(impl.opts.root / sub));
  stdfs::path lock = impl.opts.root / "run" / "supervisor.lock";
  impl.lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (impl.lock_fd < 0) return fail_errno("open", lock.string(), errno);
  if (::flock(impl.lock_fd, LOCK_EX | LOCK_NB) != 0)
    return fail(Code::busy, "another supervisor runs on " + impl.opts.root.string() + " (" +
                                lock.string() + " is locked); stop it first");
  impl.boot_id = procfs::boot_id();
  MUP_TRY(impl.adopt_records());
  impl.reap_orphans();
  impl.flush_events();
  impl.monitor = std::thread([&impl] { impl.monitor_loop(); });
  return s;
}

Supervisor::~Supervisor() {
  detach();
  std::lock_guard lock(impl_->mu);
  for (auto& [id, in] : impl_->instances)
    if (in->pidfd >= 0) ::close(in->pidfd);
  if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
}

void Supervisor::detach() {
  {
    std::lock_guard lock(impl_->quit_mu);
    impl_->quit = true;
  }
  impl_->quit_cv.notify_all();
  if (impl_->monitor.joinable()) impl_->monitor.join();
}

Result<InstanceInfo> Supervisor::start(const ServiceDef& def, const stdfs::path& tree,
                                       const InstanceKey& key, bool restart) {
  if (key.component.empty() || key.version.empty() || key.index < 0)
    return fail(Errc::invalid_argument, "instance key needs a component, a version and index >= 0");
  auto in = std::make_shared<Instance>();
  in->key = key;
  in->id = key.id();
  in->safe = id_safe(in->id);
  in->def = def;
  std::error_code ec;
  in->tree = stdfs::absolute(tree, ec);
  in->log = impl_->opts.root / "logs" / id_safe(key.component) / (in->safe + ".log");
  in->state_dir = impl_->opts.root / "state" / id_safe(key.component);
  in->restart = restart;
  auto port = free_loopback_port();
  if (!port) return tl::unexpected(port.error().context("starting " + in->id));
  in->port = *port;
  InstanceInfo info;
  {
    std::lock_guard lock(impl_->mu);
    if (auto it = impl_->instances.find(in->id); it != impl_->instances.end())
      return fail(Errc::already_exists, "instance " + in->id + " is already supervised (state " +
                                            it->second->state + "); stop it first");
    MUP_TRY(impl_->spawn_locked(*in));
    if (auto w = impl_->write_record_locked(*in); !w) {
      // Unrecorded, a later agent could not find it: do not leave it running.
      ::kill(-in->pid, SIGKILL);
      int status = 0;
      while (::waitpid(in->pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (in->pidfd >= 0) ::close(in->pidfd);
      remove_cgroup(in->cgroup);
      return tl::unexpected(w.error().context("recording " + in->id + " (it was killed)"));
    }
    impl_->instances[in->id] = in;
    impl_->event_locked(*in, "started", {{"pid", in->pid}, {"port", in->port}});
    info = in->info();
  }
  impl_->flush_events();
  return info;
}

Result<std::string> Supervisor::probe(const std::string& id, const ReadyCheck& check) {
  int port = 0;
  std::optional<SpawnSpec> exec_spec;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->instances.find(id);
    if (it == impl_->instances.end()) return fail(Code::not_found, "no instance " + id);
    Instance& in = *it->second;
    if (in.pid == 0) return fail(Code::crashed, "instance " + id + " " + in.last_exit);
    port = in.port;
    if (check.kind == ReadyCheck::Kind::exec) {
      auto spec = impl_->spec_for_locked(in, check.exec);
      if (!spec) return tl::unexpected(spec.error());
      spec->cgroup_dir.clear();
      exec_spec = std::move(*spec);
    }
  }
  switch (check.kind) {
    case ReadyCheck::Kind::http: return probe_http(port, check.http_path, check.timeout_ms);
    case ReadyCheck::Kind::tcp: return probe_tcp(port, check.timeout_ms);
    case ReadyCheck::Kind::exec: return probe_exec(*exec_spec, check.timeout_ms);
  }
  return std::string("unknown check");
}

Status Supervisor::wait_ready(const std::string& id, std::chrono::milliseconds timeout,
                              const std::atomic<bool>* cancel) {
  ReadyCheck ready;
  uint64_t exits = 0;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->instances.find(id);
    if (it == impl_->instances.end()) return fail(Code::not_found, "no instance " + id);
    ready = it->second->def.ready;
    exits = it->second->exits;
    // Already dead when we are asked: count that exit as the one we report.
    if (it->second->pid == 0) exits = exits == 0 ? 0 : exits - 1;
  }
  int64_t limit = timeout.count() > 0 ? timeout.count() : ready.timeout_ms;
  auto begin = impl_->now();
  std::string why = "not probed yet";
  for (;;) {
    if (cancel && cancel->load()) return fail(Code::cancelled, "waiting for " + id + " cancelled");
    int port = 0;
    std::optional<SpawnSpec> exec_spec;
    {
      std::lock_guard lock(impl_->mu);
      auto it = impl_->instances.find(id);
      if (it == impl_->instances.end())
        return fail(Code::not_found, "instance " + id + " was stopped while waiting for it");
      Instance& in = *it->second;
      impl_->check_exit_locked(in);
      if (in.exits != exits || in.pid == 0) {
        std::string tail = detail::log_tail(in.log, 10);
        return fail(Code::crashed, "instance " + id + " " + in.last_exit +
                                       " before it was ready; last log lines:\n" + tail);
      }
      port = in.port;
      if (ready.kind == ReadyCheck::Kind::exec) {
        auto spec = impl_->spec_for_locked(in, ready.exec);
        if (!spec) return tl::unexpected(spec.error());
        spec->cgroup_dir.clear();  // the probe's cost is not the instance's
        exec_spec = std::move(*spec);
      }
    }
    impl_->flush_events();
    int64_t left = limit - ms_between(begin, impl_->now());
    // A probe gets at least 250 ms, so the last one before the deadline can still say why
    // (a status, a refusal) instead of "no answer in time"; at most 5 s.
    int64_t attempt = std::clamp<int64_t>(left, 250, 5000);
    switch (ready.kind) {
      case ReadyCheck::Kind::http: why = probe_http(port, ready.http_path, attempt); break;
      case ReadyCheck::Kind::tcp: why = probe_tcp(port, attempt); break;
      case ReadyCheck::Kind::exec: why = probe_exec(*exec_spec, attempt); break;
    }
    if (why.empty()) {
      std::unique_lock lock(impl_->mu);
      auto it = impl_->instances.find(id);
      if (it != impl_->instances.end() && it->second->exits == exits) {
        it->second->state = "ready";
        impl_->event_locked(*it->second, "ready", {{"pid", it->second->pid}, {"port", port}});
        Status w = impl_->write_record_locked(*it->second);
        lock.unlock();
        impl_->flush_events();
        return w;
      }
      continue;  // it exited meanwhile: the next round reports it
    }
    left = limit - ms_between(begin, impl_->now());
    if (left <= 0) {
      std::string tail;
      {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->instances.find(id);
        if (it != impl_->instances.end()) tail = detail::log_tail(it->second->log, 10);
      }
      return fail(Code::timeout, "instance " + id + " was not ready after " +
                                     std::to_string(limit) + " ms (" + why +
                                     "); last log lines:\n" + tail);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(left, ready.interval_ms)));
  }
}

Status Supervisor::stop(const std::string& id) {
  std::shared_ptr<Instance> in;
  pid_t pid = 0;
  int pidfd = -1;
  uint64_t ticks = 0;
  StopPolicy policy;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->instances.find(id);
    if (it == impl_->instances.end()) {
      std::error_code ec;
      stdfs::remove(impl_->records_dir() / (id_safe(id) + ".json"), ec);
      return {};
    }
    in = it->second;
    if (in->stopping) return {};  // another stop() is at it
    in->stopping = true;
    in->state = "stopping";
    impl_->check_exit_locked(*in);
    pid = in->pid;
    pidfd = in->pidfd;
    ticks = in->start_ticks;
    policy = in->def.stop;
  }
  std::string how = "was not running";
  if (pid > 0) {
    if (::kill(-pid, policy.signal) != 0) procfs::send_signal(pidfd, pid, policy.signal);
    how = "stopped by SIG" + policy.signal_name;
    if (!procfs::wait_exit(pidfd, pid, ticks, policy.timeout_ms)) {
      ::kill(-pid, SIGKILL);
      procfs::send_signal(pidfd, pid, SIGKILL);
      how = "killed (SIGKILL) after ignoring SIG" + policy.signal_name + " for " +
            std::to_string(policy.timeout_ms) + " ms";
      if (!procfs::wait_exit(pidfd, pid, ticks, 10000))
        return fail(Code::timeout, "instance " + id + " (pid " + std::to_string(pid) +
                                       ") survived SIGKILL for 10 s; is it in uninterruptible "
                                       "sleep (state D)?");
    }
  }
  {
    std::lock_guard lock(impl_->mu);
    for (int i = 0; i < 200 && in->pid != 0; ++i) {  // reap it (status is known for children)
      impl_->check_exit_locked(*in);
      if (in->pid != 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (in->pidfd >= 0) ::close(in->pidfd);
    in->pidfd = -1;
    remove_cgroup(in->cgroup);
    impl_->remove_record_locked(*in);
    impl_->instances.erase(id);
    impl_->event_locked(*in, "stopped", {{"pid", pid}, {"how", how}});
  }
  impl_->flush_events();
  return {};
}

Status Supervisor::stop_all_for(const std::string& component, const std::string& version) {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& [id, in] : impl_->instances)
      if (in->key.component == component && (version.empty() || in->key.version == version))
        ids.push_back(id);
  }
  Status first;
  for (const auto& id : ids) {
    Status s = stop(id);
    if (!s && first)
      first = s;
    else if (!s)
      first = tl::unexpected(first.error().followed_by(s.error()));
  }
  return first;
}

Status Supervisor::set_restart(const std::string& id, bool restart) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->instances.find(id);
  if (it == impl_->instances.end()) return fail(Code::not_found, "no instance " + id);
  it->second->restart = restart;
  if (restart && it->second->state == "exited" && !it->second->stopping) {
    it->second->state = "backoff";
    it->second->restart_at = impl_->now();
  }
  return impl_->write_record_locked(*it->second);
}

std::vector<InstanceInfo> Supervisor::list() const {
  std::lock_guard lock(impl_->mu);
  std::vector<InstanceInfo> out;
  for (const auto& [id, in] : impl_->instances) out.push_back(in->info());
  return out;
}

Result<InstanceInfo> Supervisor::get(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->instances.find(id);
  if (it == impl_->instances.end()) return fail(Code::not_found, "no instance " + id);
  return it->second->info();
}

}  // namespace mup::service
