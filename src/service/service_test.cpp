// Tests of the service module with real processes: /bin/sh scripts, and this test binary
// itself re-executed as a tiny TCP/HTTP server (`--mup-test-server`, handled before main).
// No timing assertions: waits poll with generous failure timeouts.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "service/errors.hpp"
#include "service/procfs.hpp"
#include "service/service_def.hpp"
#include "service/supervisor.hpp"
#include "test_util.hpp"

namespace mup::service {
namespace {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

// --- the re-executed server -------------------------------------------------------------

// `<exe> --mup-test-server tcp|http|http503 PORT`: listens on 127.0.0.1:PORT; http modes
// answer every request with that status. Runs before gtest's main and never returns.
[[noreturn]] void run_test_server(const std::string& mode, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) {
    std::printf("bind 127.0.0.1:%d: %s\n", port, std::strerror(errno));
    std::fflush(stdout);
    ::_exit(2);
  }
  std::printf("listening on %d (%s)\n", port, mode.c_str());
  std::fflush(stdout);
  for (;;) {
    int c = ::accept(fd, nullptr, nullptr);
    if (c < 0) continue;
    if (mode != "tcp") {
      std::string req;
      char buf[1024];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      std::string status = mode == "http503" ? "503 Service Unavailable" : "200 OK";
      std::string resp = "HTTP/1.0 " + status + "\r\nContent-Length: 2\r\n\r\nok";
      ssize_t w = ::write(c, resp.data(), resp.size());
      (void)w;
    }
    ::close(c);
  }
}

struct ServerMode {
  ServerMode() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::vector<std::string> args;
    std::string a;
    while (std::getline(in, a, '\0')) args.push_back(a);
    if (args.size() >= 4 && args[1] == "--mup-test-server")
      run_test_server(args[2], std::stoi(args[3]));
  }
} server_mode;

std::string self_exe() {
  return stdfs::read_symlink("/proc/self/exe").string();
}

// --- helpers ------------------------------------------------------------------------------

bool wait_until(const std::function<bool()>& pred, std::chrono::seconds limit = 30s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

std::string slurp(const stdfs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool pid_gone(pid_t pid) {
  auto st = procfs::read_stat(pid);
  return !st || st->state == 'Z';
}

ServiceDef parse_ok(const std::string& text) {
  auto d = parse_service_def(text, "mup-service.toml");
  EXPECT_TRUE(d) << (d ? "" : d.error().message());
  return d ? *d : ServiceDef{};
}

// A definition running `/bin/sh -c script`.
ServiceDef sh_def(const std::string& script, const std::string& extra = "") {
  nlohmann::json argv = {"/bin/sh", "-c", script};
  return parse_ok("[service]\nexec = " + argv.dump() + "\nlisten = \"127.0.0.1:8080\"\n" + extra);
}

ServiceDef server_def(const std::string& mode, const std::string& extra) {
  nlohmann::json argv = {self_exe(), "--mup-test-server", mode, "{port}"};
  return parse_ok("[service]\nexec = " + argv.dump() + "\nlisten = \"127.0.0.1:8080\"\n" + extra);
}

struct Events {
  std::mutex mu;
  std::vector<nlohmann::json> all;
  std::function<void(const nlohmann::json&)> sink() {
    return [this](const nlohmann::json& e) {
      std::lock_guard lock(mu);
      all.push_back(e);
    };
  }
  std::vector<nlohmann::json> named(const std::string& name) {
    std::lock_guard lock(mu);
    std::vector<nlohmann::json> out;
    for (const auto& e : all)
      if (e["event"] == name) out.push_back(e);
    return out;
  }
};

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tree_ = dir_ / "tree";
    stdfs::create_directories(tree_);
    sup_ = open_sup();
  }
  void TearDown() override {
    if (!sup_) return;
    for (const auto& i : sup_->list()) EXPECT_TRUE(sup_->stop(i.id));
  }
  std::unique_ptr<Supervisor> open_sup() {
    SupervisorOptions o;
    o.root = dir_ / "root";
    o.on_event = events_.sink();
    o.tick = 20ms;
    o.sample_interval = 200ms;
    auto s = Supervisor::open(o);
    EXPECT_TRUE(s) << (s ? "" : s.error().message());
    return s ? std::move(*s) : nullptr;
  }
  InstanceInfo start(const ServiceDef& def, bool restart = true, int index = 0) {
    auto r = sup_->start(def, tree_, {"web", "1.0.0", index}, restart);
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return r ? *r : InstanceInfo{};
  }
  InstanceInfo get(const std::string& id) {
    auto r = sup_->get(id);
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return r ? *r : InstanceInfo{};
  }
  stdfs::path state_dir() const { return dir_ / "root" / "state" / "web"; }

  test::ScratchDir dir_;
  stdfs::path tree_;
  Events events_;
  std::unique_ptr<Supervisor> sup_;
};

// --- start, ready, stop --------------------------------------------------------------------

TEST_F(SupervisorTest, TcpReadyThenStopWithTerm) {
  auto info = start(server_def("tcp", "[service.ready]\ntcp = true\n"));
  ASSERT_GT(info.pid, 0);
  EXPECT_EQ(info.id, "web@1.0.0#0");
  EXPECT_TRUE(stdfs::exists(dir_ / "root" / "run" / "instances" / "web@1.0.0#0.json"));
  auto ready = sup_->wait_ready(info.id);
  ASSERT_TRUE(ready) << ready.error().message();
  EXPECT_EQ(get(info.id).state, "ready");
  // Its own session: it leads it.
  auto st = procfs::read_stat(info.pid);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->session, info.pid);
  EXPECT_EQ(st->pgrp, info.pid);

  ASSERT_TRUE(sup_->stop(info.id));
  EXPECT_TRUE(pid_gone(info.pid));
  EXPECT_FALSE(stdfs::exists(dir_ / "root" / "run" / "instances" / "web@1.0.0#0.json"));
  EXPECT_FALSE(sup_->get(info.id));
  EXPECT_TRUE(sup_->stop(info.id));  // idempotent
  auto stopped = events_.named("stopped");
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_EQ(stopped[0]["how"], "stopped by SIGTERM");
  EXPECT_EQ(events_.named("started").size(), 1u);
  EXPECT_EQ(events_.named("ready").size(), 1u);
}

TEST_F(SupervisorTest, HttpReadyAndNon2xxTimesOut) {
  auto ok = start(server_def("http", "[service.ready]\nhttp = \"/healthz\"\n"), true, 0);
  auto r = sup_->wait_ready(ok.id);
  EXPECT_TRUE(r) << r.error().message();

  auto bad = start(
      server_def("http503", "[service.ready]\nhttp = \"/healthz\"\ntimeout_ms = 500\n"), true, 1);
  r = sup_->wait_ready(bad.id);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::timeout)) << r.error().code_string();
  EXPECT_NE(r.error().message().find("status 503"), std::string::npos) << r.error().message();
}

TEST_F(SupervisorTest, ExecReadiness) {
  auto def = sh_def("sleep 0.2; touch \"$MUP_STATE_DIR/up\"; exec sleep 1000",
                    "[service.ready]\nexec = [\"/bin/sh\", \"-c\", \"test -f {state_dir}/up\"]\n");
  auto info = start(def);
  auto r = sup_->wait_ready(info.id);
  EXPECT_TRUE(r) << r.error().message();
  EXPECT_TRUE(stdfs::exists(state_dir() / "up"));
}

TEST_F(SupervisorTest, ABareProgramNameIsTheTreesElseFoundOnPath) {
  // Not in the tree: found on PATH, as a shell would.
  auto def = parse_ok(
      "[service]\nexec = [\"sh\", \"-c\", \"touch $MUP_STATE_DIR/ran; exec sleep 1000\"]\n"
      "listen = \"127.0.0.1:8080\"\n[service.ready]\nexec = [\"test\", \"-f\", "
      "\"{state_dir}/ran\"]\n");
  auto info = start(def);
  auto r = sup_->wait_ready(info.id);
  EXPECT_TRUE(r) << r.error().message();
  // In the tree: the tree's file wins over the system's.
  test::write_file(tree_ / "sh", "#!/bin/sh\ntouch \"$MUP_STATE_DIR/tree-sh\"; exec sleep 1000\n");
  stdfs::permissions(tree_ / "sh", stdfs::perms::owner_all);
  auto def2 = parse_ok(
      "[service]\nexec = [\"sh\"]\nlisten = \"127.0.0.1:8080\"\n[service.ready]\n"
      "exec = [\"test\", \"-f\", \"{state_dir}/tree-sh\"]\n");
  auto info2 = start(def2, true, 1);
  auto r2 = sup_->wait_ready(info2.id);
  EXPECT_TRUE(r2) << r2.error().message();
}

TEST_F(SupervisorTest, CrashAtStartReportsStatusAndLogTail) {
  auto info = start(sh_def("echo first line; echo boom >&2; exit 3"));
  auto r = sup_->wait_ready(info.id);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::crashed)) << r.error().code_string();
  const std::string& m = r.error().message();
  EXPECT_NE(m.find("instance web@1.0.0#0 exited with status 3 before it was ready"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("boom"), std::string::npos) << m;
  EXPECT_NE(m.find("first line"), std::string::npos) << m;
}

TEST_F(SupervisorTest, NeverReadyTimesOut) {
  auto info = start(sh_def("exec sleep 1000", "[service.ready]\ntimeout_ms = 300\n"));
  auto r = sup_->wait_ready(info.id);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::timeout)) << r.error().code_string();
  EXPECT_NE(r.error().message().find("Connection refused"), std::string::npos)
      << r.error().message();
}

TEST_F(SupervisorTest, CancelStopsWaiting) {
  auto info = start(sh_def("exec sleep 1000"));
  std::atomic<bool> cancel{true};
  auto r = sup_->wait_ready(info.id, 0ms, &cancel);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::cancelled));
  EXPECT_TRUE(sup_->wait_ready("nope@1#0").error().is(Code::not_found));
}

TEST_F(SupervisorTest, IgnoringTermGetsKilled) {
  auto info = start(sh_def("trap '' TERM; echo trapped; while :; do sleep 0.05; done",
                           "[service.stop]\ntimeout_ms = 300\n"));
  ASSERT_TRUE(wait_until([&] { return slurp(info.log).find("trapped") != std::string::npos; }));
  ASSERT_TRUE(sup_->stop(info.id));
  EXPECT_TRUE(pid_gone(info.pid));
  auto stopped = events_.named("stopped");
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_NE(stopped[0]["how"].get<std::string>().find("SIGKILL"), std::string::npos)
      << stopped[0].dump();
}

TEST_F(SupervisorTest, EventHandlerMayCallBackIn) {
  sup_.reset();
  SupervisorOptions o;
  o.root = dir_ / "root";
  std::atomic<int> seen{0};
  Supervisor* self = nullptr;
  o.on_event = [&](const nlohmann::json& e) {
    if (e["event"] == "started" && self) {
      EXPECT_EQ(self->list().size(), 1u);
      EXPECT_TRUE(self->set_restart(e["id"], false));
    }
    seen++;
  };
  auto sup = Supervisor::open(o);
  ASSERT_TRUE(sup);
  self = sup->get();
  auto info = (*sup)->start(sh_def("exec sleep 1000"), tree_, {"web", "1.0.0", 0});
  ASSERT_TRUE(info);
  EXPECT_GE(seen.load(), 1);
  ASSERT_TRUE((*sup)->stop(info->id));
}

TEST_F(SupervisorTest, SpawnFailureIsAnError) {
  auto def = parse_ok("[service]\nexec = [\"bin/missing\"]\nlisten = \"127.0.0.1:80\"\n");
  auto r = sup_->start(def, tree_, {"web", "1.0.0", 0});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::spawn_failed)) << r.error().code_string();
  EXPECT_NE(r.error().message().find("No such file"), std::string::npos) << r.error().message();
  EXPECT_TRUE(sup_->list().empty());
}

TEST_F(SupervisorTest, SecondSupervisorOnTheSameRootIsBusy) {
  SupervisorOptions o;
  o.root = dir_ / "root";
  auto other = Supervisor::open(o);
  ASSERT_FALSE(other);
  EXPECT_TRUE(other.error().is(Code::busy));
}

// --- restart, adoption --------------------------------------------------------------------

TEST_F(SupervisorTest, CrashedInstanceRestartsWithBackoff) {
  auto info = start(sh_def("echo run; sleep 0.1; exit 1",
                           "[service.restart]\nbackoff_ms = 20\nmax_backoff_ms = 200\n"));
  // Events are delivered after the counter moves (outside the supervisor's lock): wait for both.
  ASSERT_TRUE(wait_until([&] {
    return get(info.id).restarts >= 3 && events_.named("restarted").size() >= 3 &&
           events_.named("exited").size() >= 3;
  })) << get(info.id).to_json();
  auto now = get(info.id);
  EXPECT_EQ(now.last_exit, "exited with status 1");
  // The record follows.
  auto rec = nlohmann::json::parse(slurp(dir_ / "root/run/instances/web@1.0.0#0.json"));
  EXPECT_GE(rec["restarts"].get<int>(), 3);

  // With restart off, the next exit stays exited.
  ASSERT_TRUE(sup_->set_restart(info.id, false));
  ASSERT_TRUE(wait_until([&] { return get(info.id).state == "exited"; })) << get(info.id).to_json();
  EXPECT_EQ(get(info.id).pid, 0);
}

TEST_F(SupervisorTest, DestroyedSupervisorLeavesInstancesAndTheNextAdoptsThem) {
  auto info = start(server_def("tcp", ""));
  ASSERT_TRUE(sup_->wait_ready(info.id));
  sup_.reset();  // not stopped: that is the point
  auto st = procfs::read_stat(info.pid);
  ASSERT_TRUE(st);
  EXPECT_NE(st->state, 'Z');

  sup_ = open_sup();
  ASSERT_TRUE(sup_);
  auto again = get(info.id);
  EXPECT_TRUE(again.adopted);
  EXPECT_EQ(again.pid, info.pid);
  EXPECT_EQ(again.port, info.port);
  EXPECT_EQ(again.state, "ready");
  EXPECT_EQ(events_.named("adopted").size(), 1u);
  ASSERT_TRUE(sup_->stop(info.id));
  EXPECT_TRUE(pid_gone(info.pid));
  EXPECT_TRUE(sup_->list().empty());
}

TEST_F(SupervisorTest, AnInstanceThatRunsWithoutARecordIsKilledAtOpen) {
  // As a supervisor killed between spawn and the record's write leaves it: a session leader
  // with this root's MUP_STATE_DIR and no record. Another root's process is left alone.
  auto spawn_orphan = [](const std::string& state_dir) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setsid();
      std::string env = "MUP_STATE_DIR=" + state_dir;
      char* envp[] = {env.data(), nullptr};
      ::execle("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr), envp);
      ::_exit(127);
    }
    return pid;
  };
  sup_.reset();
  const pid_t ours = spawn_orphan((dir_ / "root" / "state" / "web").string());
  const pid_t theirs = spawn_orphan((dir_ / "other-root" / "state" / "web").string());
  for (int i = 0; i < 200; ++i) {  // until both exec'd (their environ is the new one)
    std::ifstream a("/proc/" + std::to_string(ours) + "/cmdline");
    std::ifstream b("/proc/" + std::to_string(theirs) + "/cmdline");
    std::string ca, cb;
    std::getline(a, ca, '\0');
    std::getline(b, cb, '\0');
    if (ca == "sleep" && cb == "sleep") break;
    std::this_thread::sleep_for(5ms);
  }
  sup_ = open_sup();
  int st = 0;
  EXPECT_EQ(::waitpid(ours, &st, 0), ours);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  EXPECT_FALSE(events_.named("orphan-killed").empty());
  EXPECT_EQ(::waitpid(theirs, &st, WNOHANG), 0) << "not this root's: still running";
  ::kill(theirs, SIGKILL);
  ::waitpid(theirs, &st, 0);
}

TEST_F(SupervisorTest, AdoptedInstanceThatDiedIsRestarted) {
  auto info = start(server_def("tcp", "[service.restart]\nbackoff_ms = 20\n"));
  ASSERT_TRUE(sup_->wait_ready(info.id));
  sup_.reset();
  ::kill(info.pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(info.pid, &status, 0), info.pid);  // we are still its parent

  sup_ = open_sup();
  ASSERT_TRUE(sup_);
  auto again = get(info.id);
  EXPECT_FALSE(again.adopted);
  EXPECT_NE(again.last_exit.find("not running when the supervisor opened"), std::string::npos)
      << again.last_exit;
  ASSERT_TRUE(wait_until([&] { return get(info.id).pid > 0; }));
  EXPECT_NE(get(info.id).pid, info.pid);
  EXPECT_EQ(get(info.id).restarts, 1);
  EXPECT_TRUE(sup_->wait_ready(info.id));
}

// The real case: the agent process is SIGKILLed; its instance is reparented (no longer our
// child), and the next supervisor adopts it, notices its death through the pidfd alone, and
// restarts it.
TEST_F(SupervisorTest, AgentKilledWithSigkillInstanceSurvivesAndIsAdopted) {
  sup_.reset();  // no monitor thread while we fork
  ServiceDef def = server_def("tcp", "[service.restart]\nbackoff_ms = 20\n");
  stdfs::path pid_file = dir_ / "instance.pid";
  pid_t agent = ::fork();
  if (agent == 0) {
    SupervisorOptions o;
    o.root = dir_ / "root";
    auto sup = Supervisor::open(o);
    if (!sup) ::_exit(10);
    auto info = (*sup)->start(def, tree_, {"web", "1.0.0", 0});
    if (!info || !(*sup)->wait_ready(info->id)) ::_exit(11);
    std::ofstream(pid_file) << info->pid;
    ::raise(SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(agent, &status, 0), agent);
  ASSERT_TRUE(WIFSIGNALED(status)) << "agent exited with " << WEXITSTATUS(status);
  pid_t pid = std::stoi(slurp(pid_file));
  ASSERT_TRUE(wait_until([&] {
    auto st = procfs::read_stat(pid);
    return st && st->state != 'Z';
  }));

  sup_ = open_sup();
  ASSERT_TRUE(sup_);
  auto info = get("web@1.0.0#0");
  EXPECT_TRUE(info.adopted);
  EXPECT_EQ(info.pid, pid);
  EXPECT_EQ(info.state, "ready");
  EXPECT_TRUE(sup_->wait_ready(info.id));

  ::kill(pid, SIGKILL);
  ASSERT_TRUE(wait_until([&] { return get(info.id).restarts == 1; })) << get(info.id).to_json();
  auto after = get(info.id);
  EXPECT_EQ(after.last_exit, "exited (adopted; status unknown)");
  EXPECT_FALSE(after.adopted);
  EXPECT_NE(after.pid, pid);
  EXPECT_TRUE(sup_->wait_ready(info.id));
}

TEST_F(SupervisorTest, StopAllForOneVersion) {
  auto def = sh_def("exec sleep 1000");
  for (int i = 0; i < 3; ++i) start(def, true, i);
  auto other = sup_->start(def, tree_, {"web", "2.0.0", 0});
  ASSERT_TRUE(other);
  ASSERT_TRUE(sup_->stop_all_for("web", "1.0.0"));
  auto left = sup_->list();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].id, "web@2.0.0#0");
}

// A record the supervisor writes, with the fields open() checks replaced.
void write_record(const stdfs::path& root, pid_t pid, uint64_t start_ticks, bool restart) {
  ServiceDef def = sh_def("exec sleep 1000");
  nlohmann::json rec = {{"record_version", 1},
                        {"id", "web@1.0.0#0"},
                        {"component", "web"},
                        {"version", "1.0.0"},
                        {"index", 0},
                        {"tree", root.string()},
                        {"pid", pid},
                        {"port", 1},
                        {"start_ticks", start_ticks},
                        {"boot_id", procfs::boot_id()},
                        {"started_at", 0},
                        {"state", "ready"},
                        {"restart", restart},
                        {"restarts", 0},
                        {"log", (root / "logs/web/web@1.0.0#0.log").string()},
                        {"state_dir", (root / "state/web").string()},
                        {"definition", def.to_json()}};
  stdfs::create_directories(root / "run/instances");
  test::write_file(root / "run/instances/web@1.0.0#0.json", rec.dump());
}

TEST_F(SupervisorTest, RecordOfAnotherProcessIsNotAdopted) {
  sup_.reset();
  // Our own pid is alive, but started at other ticks: a recycled pid. Never signalled.
  auto me = procfs::read_stat(::getpid());
  ASSERT_TRUE(me);
  write_record(dir_ / "root", ::getpid(), me->start_ticks + 1, false);
  sup_ = open_sup();
  ASSERT_TRUE(sup_);
  auto info = get("web@1.0.0#0");
  EXPECT_FALSE(info.adopted);
  EXPECT_EQ(info.state, "exited");
  EXPECT_EQ(info.pid, 0);
  ASSERT_TRUE(sup_->stop(info.id));  // removes the record, signals nothing (we are alive)
  EXPECT_FALSE(stdfs::exists(dir_ / "root/run/instances/web@1.0.0#0.json"));
}

TEST_F(SupervisorTest, RecordOfADeadPidIsNotAdopted) {
  sup_.reset();
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  auto st = procfs::read_stat(dead);
  uint64_t ticks = st ? st->start_ticks : 0;
  int status = 0;
  ::waitpid(dead, &status, 0);
  write_record(dir_ / "root", dead, ticks, false);
  sup_ = open_sup();
  ASSERT_TRUE(sup_);
  auto info = get("web@1.0.0#0");
  EXPECT_FALSE(info.adopted);
  EXPECT_EQ(info.state, "exited");
  // Restart it on request: the recorded definition is enough.
  ASSERT_TRUE(sup_->set_restart(info.id, true));
  ASSERT_TRUE(wait_until([&] { return get(info.id).pid > 0; }));
  EXPECT_EQ(get(info.id).restarts, 1);
}

// --- environment, logs, sampling, limits -----------------------------------------------------

TEST_F(SupervisorTest, EnvironmentAndStateDir) {
  auto def = sh_def("env > \"$MUP_STATE_DIR/env-$MUP_INSTANCE\"; exec sleep 1000",
                    "env = { GREETING = \"hi-{instance}-{version}\", ARGPORT = \"{port}\" }\n");
  auto info = start(def, true, 1);
  stdfs::path out = state_dir() / "env-1";
  ASSERT_TRUE(wait_until([&] { return slurp(out).find("GREETING") != std::string::npos; }));
  std::string env = slurp(out);
  EXPECT_NE(env.find("PORT=" + std::to_string(info.port) + "\n"), std::string::npos) << env;
  EXPECT_NE(env.find("ARGPORT=" + std::to_string(info.port) + "\n"), std::string::npos) << env;
  EXPECT_NE(env.find("MUP_COMPONENT=web\n"), std::string::npos) << env;
  EXPECT_NE(env.find("MUP_VERSION=1.0.0\n"), std::string::npos) << env;
  EXPECT_NE(env.find("MUP_INSTANCE=1\n"), std::string::npos) << env;
  EXPECT_NE(env.find("MUP_STATE_DIR=" + state_dir().string() + "\n"), std::string::npos) << env;
  EXPECT_NE(env.find("GREETING=hi-1-1.0.0\n"), std::string::npos) << env;
  struct stat st {};
  ASSERT_EQ(::stat(state_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // The working directory is the tree.
  EXPECT_EQ(stdfs::read_symlink("/proc/" + std::to_string(info.pid) + "/cwd"),
            stdfs::absolute(tree_));
}

TEST_F(SupervisorTest, InstanceHoldsNoInheritedDescriptors) {
  int leak = ::open("/dev/null", O_RDONLY);  // not close-on-exec on purpose
  ASSERT_GE(leak, 3);
  auto info = start(sh_def("exec sleep 1000"));
  ::close(leak);
  // The dynamic loader opens descriptors for a moment while the program starts; an
  // inherited one would stay.
  auto fds = [&] {
    std::vector<int> out;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator("/proc/" + std::to_string(info.pid) + "/fd", ec))
      out.push_back(std::stoi(e.path().filename().string()));
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_TRUE(wait_until(
      [&] {
        return fds() == std::vector<int>{0, 1, 2};
      },
      10s))
      << ::testing::PrintToString(fds());
  EXPECT_EQ(stdfs::read_symlink("/proc/" + std::to_string(info.pid) + "/fd/0"), "/dev/null");
  EXPECT_EQ(stdfs::read_symlink("/proc/" + std::to_string(info.pid) + "/fd/1"), info.log);
}

TEST_F(SupervisorTest, LogIsRotatedAndStaysBounded) {
  auto info =
      start(sh_def("while :; do echo 0123456789012345678901234567890123456789; sleep 0.005; done",
                   "[service.log]\nmax_bytes = 2048\n"));
  stdfs::path old = info.log + ".1";
  ASSERT_TRUE(wait_until([&] { return events_.named("log-rotated").size() >= 2; }));
  ASSERT_TRUE(stdfs::exists(old));
  // Generous bounds: a rotation happens within a tick of passing max_bytes.
  EXPECT_GT(stdfs::file_size(old), 2048u);
  EXPECT_LT(stdfs::file_size(old), 256u * 1024);
  EXPECT_LT(stdfs::file_size(info.log), 256u * 1024);
  // Writing goes on in the live file after truncation (O_APPEND).
  ASSERT_TRUE(wait_until([&] { return stdfs::file_size(info.log) > 0; }));
}

TEST_F(SupervisorTest, SamplesCpuAndRss) {
  auto info = start(sh_def("while :; do :; done"));
  ASSERT_TRUE(wait_until([&] {
    auto i = get(info.id);
    return i.cpu_percent > 0 && i.rss_bytes > 0;
  })) << get(info.id).to_json();
  auto j = get(info.id).to_json();
  for (const char* k :
       {"id", "component", "version", "index", "pid", "port", "state", "restarts", "last_exit",
        "started_at", "cpu_percent", "rss_bytes", "log", "adopted", "limits"})
    EXPECT_TRUE(j.contains(k)) << k;
}

TEST_F(SupervisorTest, LimitsAreAppliedOrReportedUnavailable) {
  auto info =
      start(sh_def("exec sleep 1000", "[service.limits]\nmemory_max = \"256M\"\npids_max = 64\n"));
  EXPECT_TRUE(info.limits == "applied" || info.limits.rfind("unavailable: ", 0) == 0)
      << info.limits;
  auto plain = start(sh_def("exec sleep 1000"), true, 1);
  EXPECT_EQ(plain.limits, "none");
}

TEST_F(SupervisorTest, RunsAsTheNamedUserWhenRoot) {
  if (::geteuid() != 0 || ::getpwnam("nobody") == nullptr) GTEST_SKIP() << "needs root";
  ::chmod(dir_.path().c_str(), 0755);  // let nobody reach the tree and the state dir
  auto info =
      start(sh_def("id -u > \"$MUP_STATE_DIR/uid\"; exec sleep 1000", "user = \"nobody\"\n"));
  ASSERT_TRUE(wait_until([&] { return !slurp(state_dir() / "uid").empty(); }));
  EXPECT_EQ(std::stoul(slurp(state_dir() / "uid")), ::getpwnam("nobody")->pw_uid);
}

TEST_F(SupervisorTest, WorkdirTheUserCannotEnterFailsTheStart) {
  if (::geteuid() != 0 || ::getpwnam("nobody") == nullptr) GTEST_SKIP() << "needs root";
  // The scratch dir is 0700 root: nobody cannot enter the tree.
  auto r =
      sup_->start(sh_def("exec sleep 1000", "user = \"nobody\"\n"), tree_, {"web", "1.0.0", 0});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::spawn_failed));
  EXPECT_NE(r.error().message().find("chdir"), std::string::npos) << r.error().message();
}

TEST_F(SupervisorTest, UnknownUserIsASpawnError) {
  auto r = sup_->start(sh_def("exec sleep 1000", "user = \"no-such-user-mup\"\n"), tree_,
                       {"web", "1.0.0", 0});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::spawn_failed));
}

}  // namespace
}  // namespace mup::service
