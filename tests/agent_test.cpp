// The agent end to end: a repository with versions of the sample service, a node with an
// agent (a real `mup agent` process), its proxy and instances; deployments driven through
// the CLI, traffic checked through the proxy's listener, the agent SIGKILLed at every
// deployment state. No timing assertions: timeouts here only stop a hung test.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "api/client.hpp"
#include "core/clock.hpp"
#include "test_util.hpp"
#include "transfer/file_server.hpp"

extern char** environ;

namespace mup::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct Http {
  int status = 0;  // 0: the connection failed
  std::string version, body;
  std::string headers;  // lowercased
};

// One request on a new connection (HTTP/1.0 semantics: the server closes).
Http http_get(uint16_t port, const std::string& path, int timeout_ms = 10000) {
  Http h;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return h;
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return h;
  }
  std::string resp;
  char buf[8192];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.size() < 12) return h;
  h.status = std::atoi(resp.c_str() + 9);
  auto hdr_end = resp.find("\r\n\r\n");
  std::string headers = resp.substr(0, hdr_end);
  for (auto& c : headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  h.headers = headers;
  auto v = headers.find("x-mup-version:");
  if (v != std::string::npos) {
    auto e = headers.find("\r\n", v);
    h.version = resp.substr(v + 14, e - v - 14);
    while (!h.version.empty() && h.version.front() == ' ') h.version.erase(0, 1);
  }
  if (hdr_end != std::string::npos) h.body = resp.substr(hdr_end + 4);
  return h;
}

// Requests through the proxy, one after another, counting what failed and which versions
// answered, until stopped.
class Load {
 public:
  explicit Load(uint16_t port) : port_(port), t_([this] { loop(); }) {}
  ~Load() { stop(); }
  void stop() {
    stop_ = true;
    if (t_.joinable()) t_.join();
  }
  int ok() const { return ok_; }
  int failed() const { return failed_; }
  std::string failures() {
    std::lock_guard lk(mu_);
    return why_;
  }
  std::map<std::string, int> versions() {
    std::lock_guard lk(mu_);
    return versions_;
  }

 private:
  void loop() {
    while (!stop_) {
      Http h = http_get(port_, "/");
      std::lock_guard lk(mu_);
      if (h.status == 200) {
        ++ok_;
        ++versions_[h.version];
      } else {
        ++failed_;
        if (why_.size() < 500) why_ += "status " + std::to_string(h.status) + "; ";
      }
    }
  }
  uint16_t port_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
  std::mutex mu_;
  std::string why_;
  std::map<std::string, int> versions_;
  std::thread t_;
};

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = free_port();
    ok({"repo", "init", s("repo"), "--keys", s("keys")});
    publish("1.0.0", {});
    publish("2.0.0", {});
    auto server = transfer::FileServer::start(d_ / "repo", "127.0.0.1:0");
    ASSERT_TRUE(server);
    server_ = std::move(*server);
    ok({"remote", "add", "origin", server_->base_url(), "--trusted-root",
        s("repo/metadata/1.root.json"), "--root", s("node")});
  }
  void TearDown() override {
    kill_agent(SIGTERM);
    // The data plane outlives the agent by design: the test stops it.
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(d_ / "node/run/instances", ec)) {
      std::ifstream in(e.path());
      json rec = json::parse(in, nullptr, false);
      if (rec.is_object() && rec.value("pid", 0) > 0) ::kill(-rec.value("pid", 0), SIGKILL);
    }
    std::ifstream pid(d_ / "node/proxy/proxy.pid");
    int p = 0;
    if (pid >> p && p > 0) ::kill(p, SIGKILL);
  }

  // A service tree of the sample service: `flags` make it misbehave; `toml_extra` lines go
  // into [service] (before its sub-tables).
  stdfs::path make_tree(const std::string& version, const std::vector<std::string>& flags,
                        const std::string& toml_extra = "", int ready_timeout_ms = 10000) {
    const std::string protocol = protocol_, drain = std::to_string(drain_ms_);
    stdfs::path t = d_ / ("tree-" + version);
    stdfs::create_directories(t / "bin");
    stdfs::copy_file(MUP_SAMPLE_SERVICE, t / "bin/mup-sample-service",
                     stdfs::copy_options::overwrite_existing);
    write_file(t / "VERSION", version + "\n");
    std::string exec = R"("bin/mup-sample-service", "--port", "{port}", "--version", "{version}")";
    for (const auto& f : flags) exec += ", \"" + f + "\"";
    write_file(t / "mup-service.toml",
               "[service]\nexec = [" + exec + "]\nlisten = \"127.0.0.1:" + std::to_string(port_) +
                   "\"\nprotocol = \"" + protocol + "\"\ninstances = 2\n" + toml_extra +
                   "[service.ready]\nhttp = \"/healthz\"\ntimeout_ms = " +
                   std::to_string(ready_timeout_ms) +
                   "\n[service.stop]\nsignal = \"TERM\"\ndrain_ms = " + drain +
                   "\ntimeout_ms = 5000\n");
    return t;
  }
  void publish(const std::string& version, const std::vector<std::string>& flags,
               const std::string& toml_extra = "", int ready_timeout_ms = 10000) {
    auto t = make_tree(version, flags, toml_extra, ready_timeout_ms);
    ok({"publish", s("repo"), t.string(), "--keys", s("keys"), "--component", "web", "--version",
        version, "--type", "service"});
  }

  void start_agent(const std::vector<std::string>& env = {},
                   const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {MUP_BINARY, "agent", "--root", s("node")};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) envs.emplace_back(*e);
    for (const auto& e : env) envs.push_back(e);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const std::string log = s("agent-" + std::to_string(++agents_) + ".log");
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    ASSERT_EQ(posix_spawn(&agent_, MUP_BINARY, &fa, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 300; ++i) {
      if (mup({"services", "--json"}).exit_code == 0) return;
      int st = 0;
      if (::waitpid(agent_, &st, WNOHANG) == agent_) {
        agent_ = 0;
        FAIL() << "the agent exited at start: " << slurp(log);
      }
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "the agent never answered: " << slurp(log);
  }
  // Ends the agent; with SIGKILL as a crash would.
  int kill_agent(int sig) {
    if (agent_ <= 0) return -1;
    ::kill(agent_, sig);
    int st = 0;
    ::waitpid(agent_, &st, 0);
    agent_ = 0;
    return st;
  }
  // Waits for the agent to die by itself (a fault point's kill).
  bool agent_died(std::chrono::seconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int st = 0;
      if (::waitpid(agent_, &st, WNOHANG) == agent_) {
        agent_ = 0;
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  json deploy(const std::vector<std::string>& extra, int expect_exit = 0) {
    std::vector<std::string> args = {"deploy", "web", "--wait", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = mup(args);
    EXPECT_EQ(r.exit_code, expect_exit) << r.err << r.out;
    return json::parse(r.out, nullptr, false);
  }
  // One `mup deployments watch` (it polls the agent itself), not a CLI process every few
  // milliseconds: under a sanitizer those cost a core, and a load that starts with the
  // analysis is what a latency baseline cannot tell from a slower version.
  json wait_final(int64_t id) {
    for (int i = 0; i < 60; ++i) {
      auto r = mup({"deployments", "watch", std::to_string(id), "--json"});
      json d = json::parse(r.out, nullptr, false);
      if (d.is_object() && d.value("final", false)) return d;
      std::this_thread::sleep_for(500ms);  // the agent is not up (yet): ask again
    }
    ADD_FAILURE() << "deployment " << id << " never ended";
    return {};
  }
  std::string served_version() { return http_get(port_, "/").version; }
  // Publishes `component` (a sample service on `port`) with these dependencies.
  void publish_as(const std::string& component, const std::string& version, uint16_t port,
                  const std::vector<std::string>& flags, const std::vector<std::string>& depends,
                  bool unmet_ok = false) {
    auto t = make_tree(version + "-" + component, flags);
    std::string def = slurp((t / "mup-service.toml").string());
    const std::string from = "127.0.0.1:" + std::to_string(port_);
    def.replace(def.find(from), from.size(), "127.0.0.1:" + std::to_string(port));
    write_file(t / "mup-service.toml", def);
    std::vector<std::string> args = {"publish", s("repo"),     t.string(), "--keys",
                                     s("keys"), "--component", component,  "--version",
                                     version,   "--type",      "service"};
    for (const auto& d : depends) args.insert(args.end(), {"--depends", d});
    if (unmet_ok) args.push_back("--allow-unmet-deps");
    ok(args);
  }

  std::string s(const std::string& rel) { return (d_ / rel).string(); }
  static std::string slurp(const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  RunResult ok(const std::vector<std::string>& args) {
    auto r = run_mup(args);
    EXPECT_EQ(r.exit_code, 0) << "mup " << args[0] << ": " << r.err << r.out;
    return r;
  }
  RunResult mup(std::vector<std::string> args) {
    args.push_back("--root");
    args.push_back(s("node"));
    return run_mup(args);
  }

  ScratchDir d_;
  uint16_t port_ = 0;
  std::string protocol_ = "http";
  int drain_ms_ = 5000;
  std::unique_ptr<transfer::FileServer> server_;
  pid_t agent_ = 0;
  int agents_ = 0;
};

TEST_F(AgentTest, DeploysImmediateAndBlueGreenUnderLoadAndRollsBackByAWeightFlip) {
  start_agent();
  json d = deploy({"--version", "1.0.0"});
  EXPECT_EQ(d["state"], "committed") << d.dump();
  EXPECT_EQ(d["from_version"], "");
  EXPECT_EQ(served_version(), "1.0.0");
  for (const char* field : {"id", "component", "from_version", "to_version", "strategy", "state",
                            "reason", "started_at", "finished_at"})
    EXPECT_TRUE(d.contains(field)) << field;

  Load load(port_);
  d = deploy({"--version", "2.0.0", "--strategy", "immediate"});
  EXPECT_EQ(d["state"], "committed") << d.dump();
  EXPECT_EQ(d["from_version"], "1.0.0");
  EXPECT_EQ(served_version(), "2.0.0");

  publish("3.0.0", {});
  d = deploy(
      {"--version", "3.0.0", "--strategy", "blue-green", "--keep-old", "10m", "--soak", "200ms"});
  EXPECT_EQ(d["state"], "committed") << d.dump();
  EXPECT_TRUE(d["keep_old_until"].is_string());
  EXPECT_EQ(served_version(), "3.0.0");
  json svc = json::parse(mup({"services", "--json"}).out, nullptr, false);
  ASSERT_TRUE(svc["services"].is_array());
  std::map<std::string, int> weights, instances;
  for (const auto& v : svc["services"][0]["versions"]) {
    weights[v["version"]] = v["weight"];
    instances[v["version"]] = static_cast<int>(v["instances"].size());
  }
  EXPECT_EQ(weights["3.0.0"], 100);
  EXPECT_EQ(weights["2.0.0"], 0) << "the old set is warm, without traffic";
  EXPECT_EQ(instances["2.0.0"], 2);

  auto rb = mup({"rollback", "web", "--json"});
  ASSERT_EQ(rb.exit_code, 0) << rb.err << rb.out;
  json r = json::parse(rb.out, nullptr, false);
  EXPECT_EQ(r["state"], "rolled-back") << r.dump();
  EXPECT_EQ(r["to_version"], "2.0.0");
  EXPECT_EQ(served_version(), "2.0.0");
  load.stop();
  EXPECT_EQ(load.failed(), 0) << load.failures();
  EXPECT_GT(load.versions()["1.0.0"], 0);
  EXPECT_GT(load.versions()["2.0.0"], 0);
  EXPECT_GT(load.versions()["3.0.0"], 0) << "traffic moved each time";

  auto status = json::parse(mup({"status", "--json"}).out, nullptr, false);
  EXPECT_EQ(status["components"][0]["active"], "2.0.0");
}

TEST_F(AgentTest, ANewVersionThatCrashesAtStartFailsAndTrafficNeverMoves) {
  start_agent();
  deploy({"--version", "1.0.0"});
  publish("2.1.0", {"--crash-at-start"});
  Load load(port_);
  json d = deploy({"--version", "2.1.0"}, 1);
  load.stop();
  EXPECT_EQ(d["state"], "failed");
  EXPECT_NE(d.value("reason", "").find("exited"), std::string::npos) << d.dump();
  EXPECT_EQ(served_version(), "1.0.0");
  EXPECT_EQ(load.failed(), 0) << load.failures();
  EXPECT_EQ(load.versions().count("2.1.0"), 0u);
  auto status = json::parse(mup({"status", "--json"}).out, nullptr, false);
  EXPECT_EQ(status["components"][0]["active"], "1.0.0") << "the engine rolled the trial back";
  auto audit = mup({"audit", "show", "--json"});
  EXPECT_NE(audit.out.find("\"deploy\""), std::string::npos);
  EXPECT_NE(audit.out.find("failed"), std::string::npos);
  // With the agent stopped, the deployments are read from the node's state database.
  kill_agent(SIGTERM);
  auto offline = mup({"deployments", "--json"});
  ASSERT_EQ(offline.exit_code, 0) << offline.err;
  json list = json::parse(offline.out, nullptr, false);
  ASSERT_TRUE(list["deployments"].is_array());
  ASSERT_EQ(list["deployments"].size(), 2u);
  EXPECT_EQ(list["deployments"][0]["state"], "failed");
  EXPECT_EQ(list["deployments"][0]["to_version"], "2.1.0");
  auto one = mup({"deployments", std::to_string(d["id"].get<int64_t>()), "--json"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_FALSE(json::parse(one.out)["steps"].empty());
}

TEST_F(AgentTest, AFailedFirstDeploymentLeavesNothingActive) {
  publish("0.9.0", {"--crash-at-start"});
  start_agent();
  json d = deploy({"--version", "0.9.0"}, 1);
  EXPECT_EQ(d["state"], "failed") << d.dump();
  auto status = json::parse(mup({"status", "--json"}).out, nullptr, false);
  ASSERT_TRUE(status["components"].is_array());
  for (const auto& c : status["components"])
    if (c["name"] == "web") {
      EXPECT_TRUE(c["active"].is_null() || c["active"] == "") << c.dump();
    }
  json ok = deploy({"--version", "1.0.0"});
  EXPECT_EQ(ok["state"], "committed") << ok.dump();
  EXPECT_EQ(served_version(), "1.0.0");
}

TEST_F(AgentTest, ANewVersionNeverReadyTimesOutAndIsStopped) {
  start_agent();
  deploy({"--version", "1.0.0"});
  publish("2.2.0", {"--never-ready"}, "", 1500);
  json d = deploy({"--version", "2.2.0"}, 1);
  EXPECT_EQ(d["state"], "failed");
  EXPECT_NE(d.value("reason", "").find("ready"), std::string::npos) << d.dump();
  json svc = json::parse(mup({"services", "--json"}).out, nullptr, false);
  for (const auto& v : svc["services"][0]["versions"])
    EXPECT_NE(v["version"], "2.2.0") << "its instances were stopped";
  EXPECT_EQ(served_version(), "1.0.0");
}

TEST_F(AgentTest, ABadServiceFileIsRefusedNamingFileLineAndKey) {
  start_agent();
  deploy({"--version", "1.0.0"});
  publish("2.3.0", {}, "colour = \"blue\"\n");
  json d = deploy({"--version", "2.3.0"}, 1);
  EXPECT_EQ(d["state"], "failed");
  EXPECT_NE(d.value("reason", "").find("mup-service.toml"), std::string::npos) << d.dump();
  EXPECT_NE(d.value("reason", "").find("colour"), std::string::npos) << d.dump();
  EXPECT_EQ(served_version(), "1.0.0");
}

TEST_F(AgentTest, AnAddressInUseIsReported) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port_);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  start_agent();
  json d = deploy({"--version", "1.0.0"}, 1);
  ::close(fd);
  EXPECT_EQ(d["state"], "failed");
  EXPECT_NE(d.value("reason", "").find("in use"), std::string::npos) << d.dump();
}

TEST_F(AgentTest, ApiErrorsAreCodedAndTheSocketIsTheOwnersOnly) {
  start_agent();
  struct stat st {};
  ASSERT_EQ(::stat(s("node/agent.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(s("node/agent.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto missing = mup({"deployments", "999", "--json"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.out.find("404"), std::string::npos) << missing.out;

  auto bad = run_mup({"deploy", "web", "--strategy", "shadow", "--root", s("node")});
  EXPECT_NE(bad.exit_code, 0) << "refused by the CLI before the agent";

  deploy({"--version", "1.0.0"});
  publish("2.4.0", {"--never-ready"}, "", 60000);
  auto started = mup({"deploy", "web", "--version", "2.4.0", "--json"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const int64_t id = json::parse(started.out)["id"];
  auto again = mup({"deploy", "web", "--version", "2.0.0", "--json"});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.out.find("409"), std::string::npos) << again.out;
  auto ab = mup({"abort", std::to_string(id), "--wait", "--json"});
  ASSERT_EQ(ab.exit_code, 0) << ab.err;
  EXPECT_EQ(json::parse(ab.out)["state"], "aborted");
  EXPECT_EQ(served_version(), "1.0.0");
}

TEST_F(AgentTest, ARequestInFlightAcrossTheSwitchCompletes) {
  start_agent();
  deploy({"--version", "1.0.0"});
  Http slow;
  std::thread t([&] { slow = http_get(port_, "/slow?ms=1500", 20000); });
  std::this_thread::sleep_for(300ms);
  json d = deploy({"--version", "2.0.0"});
  t.join();
  EXPECT_EQ(d["state"], "committed");
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(slow.version, "1.0.0") << "served to the end by the version it started on";
}

TEST_F(AgentTest, TheApiAnswers400NamingTheFieldAndTcpNeedsTheToken) {
  const uint16_t api_port = free_port();
  start_agent({}, {"--listen", "127.0.0.1:" + std::to_string(api_port)});
  auto unix_client = api::Client::unix_socket(d_ / "node/agent.sock");
  auto bad = unix_client.request("POST", "/v1/deployments",
                                 {{"component", "web"}, {"strategy", "shadow"}});
  ASSERT_TRUE(bad) << bad.error().message();
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(bad->body["error"]["field"], "strategy");
  auto unknown =
      unix_client.request("POST", "/v1/deployments", {{"component", "web"}, {"colour", "blue"}});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 400);
  EXPECT_EQ(unknown->body["error"]["field"], "colour");
  auto none = unix_client.request("POST", "/v1/deployments", nlohmann::json::object());
  ASSERT_TRUE(none);
  EXPECT_EQ(none->body["error"]["field"], "component");
  auto missing = unix_client.request("GET", "/v1/deployments/41");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  std::ifstream tf(d_ / "node/agent.token");
  std::string token;
  tf >> token;
  ASSERT_GE(token.size(), 32u);
  auto anon = api::Client::tcp("127.0.0.1:" + std::to_string(api_port), "wrong-token");
  auto refused = anon.request("GET", "/v1/services");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  auto authed = api::Client::tcp("127.0.0.1:" + std::to_string(api_port), token);
  auto services = authed.request("GET", "/v1/services");
  ASSERT_TRUE(services);
  EXPECT_EQ(services->status, 200);
  EXPECT_TRUE(services->body["services"].is_array());
}

TEST_F(AgentTest, AnInstanceCrashingDuringTheSoakFailsTheDeployment) {
  start_agent();
  deploy({"--version", "1.0.0"});
  publish("2.5.0", {"--crash-after-ms", "300"});
  Load load(port_);
  json d = deploy({"--version", "2.5.0", "--strategy", "blue-green", "--soak", "3s"}, 1);
  load.stop();
  EXPECT_EQ(d["state"], "failed") << d.dump();
  EXPECT_NE(d.value("reason", "").find("soak"), std::string::npos) << d.dump();
  EXPECT_EQ(load.versions().count("2.5.0"), 0u) << "it never got traffic";
  EXPECT_EQ(load.failed(), 0) << load.failures();
  EXPECT_EQ(served_version(), "1.0.0");
}

TEST_F(AgentTest, PromoteEndsTheSoakAndThenTheWindow) {
  start_agent();
  deploy({"--version", "1.0.0"});
  auto started = mup({"deploy", "web", "--version", "2.0.0", "--strategy", "blue-green", "--soak",
                      "10m", "--json"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const int64_t id = json::parse(started.out)["id"];
  for (int i = 0; i < 400; ++i) {
    auto r = mup({"deployments", std::to_string(id), "--json"});
    if (json::parse(r.out, nullptr, false).value("state", "") == "soak") break;
    std::this_thread::sleep_for(25ms);
  }
  auto p = mup({"promote", "web", "--wait", "--json"});
  ASSERT_EQ(p.exit_code, 0) << p.err << p.out;
  json d = json::parse(p.out);
  EXPECT_EQ(d["state"], "committed");
  EXPECT_TRUE(d.value("window_open", false));
  EXPECT_EQ(served_version(), "2.0.0");
  auto closed = mup({"promote", std::to_string(id), "--json"});
  ASSERT_EQ(closed.exit_code, 0) << closed.err << closed.out;
  EXPECT_FALSE(json::parse(closed.out).value("window_open", true)) << "the window closed";
  json svc = json::parse(mup({"services", "--json"}).out, nullptr, false);
  for (const auto& v : svc["services"][0]["versions"])
    EXPECT_NE(v["version"], "1.0.0") << "the old set was stopped";
}

TEST_F(AgentTest, ACrashedInstanceIsRestartedAndRoutedAgain) {
  publish("1.5.0", {"--crash-after-requests", "40"});
  start_agent();
  deploy({"--version", "1.5.0"});
  // Each instance exits after 40 answers; the supervisor restarts it (on its port, or a new
  // one) and the agent routes it again once it is ready.
  int restarts = 0;
  for (int round = 0; round < 200 && restarts < 2; ++round) {
    for (int i = 0; i < 20; ++i) http_get(port_, "/");
    json svc = json::parse(mup({"services", "--json"}).out, nullptr, false);
    restarts = 0;
    for (const auto& v : svc["services"][0]["versions"])
      for (const auto& in : v["instances"]) restarts += in.value("restarts", 0);
  }
  EXPECT_GE(restarts, 2);
  int served = 0;
  for (int i = 0; i < 200 && served == 0; ++i) {
    if (http_get(port_, "/").status == 200) ++served;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(served, 1) << "served again after the restarts";
  // Once both are ready again, the proxy routes both, at the ports they run on now.
  auto proxy = api::Client::unix_socket(d_ / "node/proxy.sock");
  std::set<int> ready_ports, routed_ports;
  for (int i = 0; i < 200; ++i) {
    ready_ports.clear();
    routed_ports.clear();
    json svc = json::parse(mup({"services", "--json"}).out, nullptr, false);
    for (const auto& v : svc["services"][0]["versions"])
      for (const auto& in : v["instances"])
        if (in.value("state", "") == "ready") ready_ports.insert(in.value("port", 0));
    auto r = proxy.request("GET", "/v1/routes/web");
    if (r && r->status == 200)
      for (const auto& b : r->body["backends"]) {
        std::string a = b.value("address", "");
        if (b.value("state", "") == "active")
          routed_ports.insert(std::atoi(a.substr(a.rfind(':') + 1).c_str()));
      }
    if (ready_ports.size() == 2 && ready_ports == routed_ports) break;
    std::this_thread::sleep_for(25ms);
  }
  EXPECT_EQ(ready_ports.size(), 2u);
  EXPECT_EQ(ready_ports, routed_ports);
}

TEST_F(AgentTest, TcpModeDrainsALongConnectionWithinDrainMs) {
  protocol_ = "tcp";
  drain_ms_ = 1000;
  publish("1.1.0", {});
  publish("2.1.0", {});
  start_agent();
  deploy({"--version", "1.1.0"});
  EXPECT_EQ(served_version(), "1.1.0") << "L4 forwarding carries HTTP as bytes";
  // A connection held open (idle) on the old version across the switch.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port_);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  json d = deploy({"--version", "2.1.0"});
  EXPECT_EQ(d["state"], "committed") << d.dump();
  EXPECT_EQ(served_version(), "2.1.0");
  char c;
  EXPECT_EQ(::recv(fd, &c, 1, 0), 0) << "the proxy closed it once drain_ms passed";
  ::close(fd);
  int64_t drain_start = 0, stop_at = 0;
  for (const auto& st : d.value("steps", json::array())) {
    if (st["state"] == "drain-old") drain_start = st["at_ms"];
    if (st["state"] == "stop-old") stop_at = st["at_ms"];
  }
  EXPECT_GE(stop_at - drain_start, 900) << "the drain waited for the open connection";
}

TEST_F(AgentTest, AnOfflineInstallOfAServedComponentWarnsThatTrafficStays) {
  start_agent();
  deploy({"--version", "1.0.0"});
  auto r = mup({"install", "web", "--version", "2.0.0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: the agent serves web"), std::string::npos) << r.err;
  EXPECT_EQ(served_version(), "1.0.0") << "the traffic did not move";
}

TEST_F(AgentTest, AComponentTheAgentDoesNotServeRollsBackOffline) {
  for (const std::string v : {"1.0.0", "2.0.0"}) {
    write_file(d_ / ("app-" + v) / "etc/app.conf", "version " + v + "\n");
    ok({"publish", s("repo"), s("app-" + v), "--keys", s("keys"), "--component", "app", "--version",
        v, "--type", "application"});
  }
  start_agent();
  ASSERT_EQ(mup({"install", "app", "--version", "1.0.0"}).exit_code, 0);
  auto second = mup({"install", "app", "--version", "2.0.0"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.err.find("warning"), std::string::npos) << "not a service: no warning";
  auto rb = mup({"rollback", "app", "--json"});
  ASSERT_EQ(rb.exit_code, 0) << rb.err << rb.out;
  auto status = json::parse(mup({"status", "--json"}).out, nullptr, false);
  for (const auto& c : status["components"])
    if (c["name"] == "app") {
      EXPECT_EQ(c["active"], "1.0.0");
    }
}

// The health monitor end to end: real load through the proxy on a real agent; mup health
// and its thresholds through the CLI; /metrics scraped over TCP without the token and fed to
// promtool (skipped, at the end, when the Debian package `prometheus` is not installed).
TEST_F(AgentTest, HealthAndPrometheusMetricsUnderRealLoad) {
  const uint16_t api_port = free_port();
  start_agent({}, {"--listen", "127.0.0.1:" + std::to_string(api_port)});
  auto none = mup({"health", "--json"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_TRUE(json::parse(none.out, nullptr, false)["components"].empty()) << none.out;
  deploy({"--version", "1.0.0"});
  {
    Load load(port_);
    // Enough for the rollback judge's baseline (min_requests 200) below.
    for (int i = 0; i < 3000 && load.ok() < 250; ++i) std::this_thread::sleep_for(10ms);
    load.stop();
    ASSERT_GE(load.ok(), 250) << load.failures();
  }
  // The monitor samples once a second: wait for it to see the traffic.
  json v;
  for (int i = 0; i < 100; ++i) {
    json h = json::parse(mup({"health", "web", "--json"}).out, nullptr, false);
    if (h.is_object() && h["versions"].is_array())
      for (const auto& x : h["versions"])
        if (x.value("version", "") == "1.0.0" && x["metrics"].value("requests", 0) >= 50 &&
            x["metrics"].value("instances_ready", 0) == 2)
          v = x;
    if (!v.is_null()) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(v.is_object()) << "the monitor never saw the load";
  EXPECT_EQ(v["status"], "healthy") << v.dump(1);
  EXPECT_EQ(v["score"], 100) << v.dump(1);
  EXPECT_EQ(v["weight"], 100);
  EXPECT_EQ(v["metrics"]["failed"], 0);
  EXPECT_TRUE(v["metrics"]["response_time_ms"]["p99"].is_number());
  EXPECT_TRUE(v["trend"]["direction"].is_string());

  // Thresholds: persisted by the agent, used at once; a bad value names its field.
  auto set = mup({"health", "thresholds", "web", "--p99-ms", "0.001", "--memory", "1G", "--json"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  json th = json::parse(set.out, nullptr, false);
  EXPECT_EQ(th["thresholds"]["p99_ms"], 0.001);
  EXPECT_EQ(th["thresholds"]["memory_bytes"], 1 << 30);
  EXPECT_EQ(th["custom"], true);
  EXPECT_TRUE(stdfs::exists(d_ / "node/health/thresholds.json"));
  json h = json::parse(mup({"health", "web", "--json"}).out, nullptr, false);
  EXPECT_EQ(h["alert"], "critical") << h.dump(1);
  auto bad = mup({"health", "thresholds", "web", "--error-rate", "7"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("error_rate"), std::string::npos) << bad.err;
  auto text = mup({"health"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("web  unhealthy"), std::string::npos) << text.out;

  // /metrics over TCP without the token; the rest of the API still wants it.
  Http m = http_get(api_port, "/metrics");
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_NE(m.headers.find("content-type: text/plain; version=0.0.4"), std::string::npos)
      << m.headers;
  for (const char* want :
       {"mup_requests_total{component=\"web\",version=\"1.0.0\",code=\"2xx\"} ",
        "mup_request_failures_total{component=\"web\",version=\"1.0.0\"} 0",
        "mup_request_duration_seconds_bucket{component=\"web\",version=\"1.0.0\",le=\"+Inf\"} ",
        "mup_request_duration_seconds_sum{component=\"web\",version=\"1.0.0\"} ",
        "mup_traffic_weight{component=\"web\",version=\"1.0.0\"} 100",
        "mup_instance_memory_bytes{component=\"web\",version=\"1.0.0\",instance=\"web@1.0.0#0\"} ",
        "mup_health_score{component=\"web\",version=\"1.0.0\"} ",
        "mup_deployment_info{component=\"web\",id=\"1\",strategy=\"immediate\",state=\"committed\"}"
        " 1",
        "mup_rollbacks_total{component=\"web\"} 0"})
    EXPECT_NE(m.body.find(want), std::string::npos) << want << "\n" << m.body;
  EXPECT_EQ(http_get(api_port, "/v1/health").status, 401);

  // A version that fails half its requests, deployed under load: the judge rolls it back
  // (its decision shows in /metrics), and its health while it served is unhealthy, alerted on
  // its error rate (the window still holds its seconds).
  ASSERT_EQ(mup({"health", "thresholds", "web", "--reset"}).exit_code, 0);
  publish("3.0.0", {"--error-rate", "0.5"});
  json rolled;
  {
    Load load(port_);
    auto r = mup({"deploy", "web", "--wait", "--json", "--version", "3.0.0"});
    rolled = json::parse(r.out, nullptr, false);
  }
  EXPECT_EQ(rolled["state"], "rolled-back") << rolled.dump(1);
  json bad_v;
  for (int i = 0; i < 100 && bad_v.is_null(); ++i) {
    json hh = json::parse(mup({"health", "web", "--json"}).out, nullptr, false);
    if (hh.is_object() && hh["versions"].is_array())
      for (const auto& x : hh["versions"])
        if (x.value("version", "") == "3.0.0" && x["metrics"].value("failed", 0) >= 10) bad_v = x;
    if (bad_v.is_null()) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(bad_v.is_object()) << "the monitor never saw the failures";
  EXPECT_EQ(bad_v["status"], "unhealthy") << bad_v.dump(1);
  EXPECT_EQ(bad_v["alerts"][0]["metric"], "error_rate") << bad_v.dump(1);
  EXPECT_LT(bad_v["score"].get<double>(), 70);
  m = http_get(api_port, "/metrics");
  EXPECT_NE(m.body.find("mup_requests_total{component=\"web\",version=\"3.0.0\",code=\"5xx\"} "),
            std::string::npos);
  EXPECT_EQ(m.body.find("mup_request_failures_total{component=\"web\",version=\"3.0.0\"} 0\n"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("mup_rollbacks_total{component=\"web\"} 1\n"), std::string::npos) << m.body;
  const std::string id = std::to_string(rolled.value("id", 0));
  EXPECT_NE(m.body.find("mup_deployment_info{component=\"web\",id=\"" + id +
                        "\",strategy=\"immediate\",state=\"rolled-back\"} 1"),
            std::string::npos)
      << m.body;
  ASSERT_TRUE(rolled["decision"]["statistic"].is_number()) << rolled.dump(1);
  EXPECT_NE(m.body.find("mup_rollback_decision_statistic{component=\"web\",deployment=\"" + id +
                        "\",metric=\"" + rolled["decision"].value("metric", "") + "\"} "),
            std::string::npos)
      << m.body;

  // No agent: a clear error, like mup services.
  kill_agent(SIGTERM);
  auto gone = mup({"health"});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.err.find("no agent running"), std::string::npos) << gone.err;

  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "promtool not installed (Debian package `prometheus`)";
  write_file(d_ / "metrics.txt", m.body);
  const std::string cmd =
      "promtool check metrics < " + s("metrics.txt") + " > " + s("promtool.txt") + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << slurp(s("promtool.txt")) << "\n" << m.body;
}

// The agent SIGKILLed right after it journaled each deployment state: the proxy and the
// instances keep serving, the next agent resumes the deployment to its end.

TEST_F(AgentTest, AScheduledDeploymentStartsOnTimeAcrossAnAgentRestart) {
  start_agent();
  deploy({"--version", "1.0.0"});
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const std::string at = iso_utc((now / 1000 + 4) * 1000);
  auto r = mup({"deploy", "web", "--version", "2.0.0", "--at", at, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  json d = json::parse(r.out);
  EXPECT_EQ(d["state"], "scheduled");
  EXPECT_EQ(d["scheduled_for"], at);
  EXPECT_TRUE(d["started_at"].is_null());
  auto busy = mup({"deploy", "web", "--version", "2.0.0", "--json"});
  EXPECT_NE(busy.exit_code, 0) << "the component is taken by the scheduled deployment";
  kill_agent(SIGKILL);
  start_agent();
  json fin = wait_final(d["id"]);
  EXPECT_EQ(fin["state"], "committed") << fin.dump();
  const int64_t late = fin["started_at_ms"].get<int64_t>() - fin["scheduled_for_ms"].get<int64_t>();
  EXPECT_GE(late, 0);
  EXPECT_LT(late, 1000) << "started within a second of its time";
  EXPECT_EQ(served_version(), "2.0.0");
  auto past = mup({"deploy", "web", "--version", "1.0.0", "--at", "2020-01-01T00:00:00Z"});
  EXPECT_NE(past.exit_code, 0);
  EXPECT_NE(past.err.find("in the past"), std::string::npos) << past.err;
}

TEST_F(AgentTest, APlanDeploysAChainInOrderAndAFailureStopsItsDependents) {
  start_agent();
  deploy({"--version", "1.0.0"});
  // db: a second service on its own port; web 2.8.0 needs db >= 2, api 1.0.0 needs web >= 2.8.
  const uint16_t db_port = free_port();
  publish_as("db", "2.0.0", db_port, {}, {});
  publish_as("web", "2.8.0", port_, {}, {"db>=2"});
  auto r = mup({"deploy", "web@2.8.0", "db", "--wait", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  json plan = json::parse(r.out);
  EXPECT_EQ(plan["state"], "committed") << plan.dump();
  ASSERT_EQ(plan["items"].size(), 2u);
  EXPECT_EQ(plan["items"][0]["component"], "db") << "dependencies first";
  EXPECT_EQ(plan["items"][1]["after"], json::array({"db"}));
  // Followed live (here: already over) by plan id and by deployment id.
  auto watched = mup({"deployments", "watch", "--plan", plan["id"].dump(), "--json"});
  EXPECT_EQ(watched.exit_code, 0) << watched.err;
  EXPECT_EQ(json::parse(watched.out, nullptr, false)["state"], "committed");
  auto one = mup({"deployments", "watch", plan["items"][0]["deployment"].dump(), "--json"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(json::parse(one.out, nullptr, false)["component"], "db");
  EXPECT_EQ(served_version(), "2.8.0");

  // A cycle is refused before anything starts, naming it.
  publish_as("db", "3.0.0", db_port, {}, {"web>=3"}, true);
  publish_as("web", "3.0.0", port_, {}, {"db>=3"});
  auto cyc = mup({"deploy", "web@3.0.0", "db@3.0.0"});
  EXPECT_NE(cyc.exit_code, 0);
  EXPECT_NE((cyc.err + cyc.out).find("cycle"), std::string::npos) << cyc.err << cyc.out;

  // db 3.1.0 crashes at start: web (which needs it) is skipped; atomic: nothing else moves.
  publish_as("db", "3.1.0", db_port, {"--crash-at-start"}, {});
  publish_as("web", "3.1.0", port_, {}, {"db>=3.1"});
  auto bad = mup({"deploy", "web@3.1.0", "db@3.1.0", "--atomic", "--wait", "--json"});
  EXPECT_NE(bad.exit_code, 0);
  json b = json::parse(bad.out, nullptr, false);
  EXPECT_NE(b["state"], "committed") << bad.out;
  EXPECT_EQ(b["items"][0]["state"], "failed") << bad.out;
  EXPECT_EQ(b["items"][1]["state"], "skipped") << bad.out;
  EXPECT_EQ(served_version(), "2.8.0");
}

TEST_F(AgentTest, APlanGoesOnAfterTheAgentIsKilledMidPlan) {
  start_agent();
  deploy({"--version", "1.0.0"});
  const uint16_t db_port = free_port();
  // db takes 1.5 s to be ready: the agent is killed while it waits; web needs it.
  publish_as("db", "2.0.0", db_port, {"--ready-after-ms", "1500"}, {});
  publish_as("web", "2.8.0", port_, {}, {"db>=2"});
  auto r = mup({"deploy", "web@2.8.0", "db", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const json started = json::parse(r.out);
  const std::string id = started["id"].dump();
  std::this_thread::sleep_for(400ms);
  kill_agent(SIGKILL);
  start_agent();
  auto watched = mup({"deployments", "watch", "--plan", id, "--json"});
  EXPECT_EQ(watched.exit_code, 0) << watched.err << watched.out;
  json plan = json::parse(watched.out, nullptr, false);
  EXPECT_EQ(plan["state"], "committed") << watched.out;
  EXPECT_EQ(plan["items"][1]["component"], "web");
  EXPECT_EQ(plan["items"][1]["state"], "committed") << "started by the restarted agent";
  EXPECT_EQ(served_version(), "2.8.0");
}

// --- The rollback judge, end to end: a real agent, proxy, sample service and load ---------

// The old version serves long enough under load for a baseline the judge can use.
void wait_for_requests(const Load& load, int n) {
  for (int i = 0; i < 600 && load.ok() < n; ++i) std::this_thread::sleep_for(10ms);
}

TEST_F(AgentTest, TheJudgeRollsBackABadVersionByItselfWithTheDecisionRecorded) {
  start_agent();
  deploy({"--version", "1.0.0"});
  Load load(port_);
  wait_for_requests(load, 1000);
  // 2.0.0 fails 30% of its requests; its [rollback] policy asks for alpha 0.01.
  publish("2.6.0", {"--error-rate", "0.3"}, "[rollback]\nalpha = 0.01\n");
  json d = deploy({"--version", "2.6.0", "--analysis", "60s"}, 1);
  load.stop();
  EXPECT_EQ(d["state"], "rolled-back") << d.dump();
  ASSERT_TRUE(d.contains("decision")) << d.dump();
  const json& j = d["decision"];
  EXPECT_EQ(j["verdict"], "rollback");
  EXPECT_EQ(j["algorithm"], "sequential");
  EXPECT_EQ(j["metric"], "error_rate");
  EXPECT_EQ(j["against"], "baseline");
  EXPECT_GE(j["statistic"].get<double>(), j["threshold"].get<double>());
  EXPECT_GT(j["old"]["requests"].get<int>(), 900);
  EXPECT_GT(j["new"]["errors"].get<int>(), 0);
  EXPECT_NEAR(j["alpha"].get<double>(), 0.01 * 0.8 * 0.75, 1e-9) << "the manifest's alpha";
  ASSERT_TRUE(d["rolled_back_at"].is_string());
  EXPECT_LT(d["rolled_back_at_ms"].get<int64_t>() - d["started_at_ms"].get<int64_t>(), 30000)
      << "well inside the analysis";
  EXPECT_EQ(served_version(), "1.0.0");
  EXPECT_NE(d["reason"].get<std::string>().find("rollback judge"), std::string::npos);
}

TEST_F(AgentTest, BlueGreenChecksStopABadVersionBeforeAnyUserRequestReachesIt) {
  start_agent();
  deploy({"--version", "1.0.0"});
  Load load(port_);
  wait_for_requests(load, 300);
  // 2.7.0 fails half of its requests; its synthetic check asks for "/" ten times per instance.
  publish("2.7.0", {"--error-rate", "0.5"}, "[[service.check]]\nhttp = \"/\"\ncount = 10\n");
  json d = deploy({"--version", "2.7.0", "--strategy", "blue-green", "--soak", "200ms"}, 1);
  EXPECT_EQ(d["state"], "rolled-back") << d.dump();
  EXPECT_EQ(d["decision"]["algorithm"], "checks") << d.dump();
  EXPECT_EQ(d["decision"]["new"]["requests"], 20) << "10 attempts on each of 2 instances";
  EXPECT_GT(d["decision"]["new"]["errors"].get<int>(), 0);
  EXPECT_EQ(d["decision"]["old"]["errors"], 0) << "1.0.0 passes the same check";
  EXPECT_EQ(d["checks"][0]["check"], "GET /");
  EXPECT_EQ(load.failed(), 0) << "no user request reached 2.7.0: " << load.failures();
  EXPECT_EQ(load.versions().count("2.7.0"), 0u);
  EXPECT_EQ(served_version(), "1.0.0");
  // Marked bad: refused by name, and --force installs it again (here with the judge off).
  auto refused = mup({"deploy", "web", "--version", "2.7.0", "--wait", "--json"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE((refused.err + refused.out).find("marked bad"), std::string::npos) << refused.err;
  json forced = deploy({"--version", "2.7.0", "--strategy", "blue-green", "--soak", "0s", "--force",
                        "--auto-rollback", "off", "--analysis", "0s"});
  load.stop();
  EXPECT_EQ(forced["state"], "committed") << forced.dump();
  EXPECT_EQ(forced["decision"]["verdict"], "rollback-suppressed") << forced.dump();
}

TEST_F(AgentTest, ACanaryWalksItsStepsUnderLoadAndCommitsWithoutAFailedRequest) {
  start_agent();
  deploy({"--version", "1.0.0"});
  Load load(port_);
  wait_for_requests(load, 500);
  // Weights and step time such that even a loaded sanitizer build (~100 requests/s from this
  // closed-loop client) gives the canary the judge's 200-request minimum at every step.
  json d = deploy({"--version", "2.0.0", "--strategy", "canary", "--steps", "50,80,100",
                   "--step-seconds", "2"});
  load.stop();
  EXPECT_EQ(d["state"], "committed") << d.dump();
  EXPECT_EQ(d["strategy"], "canary");
  EXPECT_EQ(d["canary"]["steps"], json::array({50, 80, 100}));
  EXPECT_EQ(d["decision"]["verdict"], "pass") << d.dump();
  EXPECT_EQ(d["decision"]["against"], "old") << "compared on the same traffic";
  EXPECT_EQ(load.failed(), 0) << load.failures();
  EXPECT_GT(load.versions()["2.0.0"], 0);
  EXPECT_EQ(served_version(), "2.0.0");
}

TEST_F(AgentTest, ARollingDeploymentReplacesInstancesInBatchesUnderLoad) {
  start_agent();
  deploy({"--version", "1.0.0"});
  Load load(port_);
  wait_for_requests(load, 500);
  json d = deploy({"--version", "2.0.0", "--strategy", "rolling", "--batch-size", "1",
                   "--batch-interval", "1s"});
  load.stop();
  EXPECT_EQ(d["state"], "committed") << d.dump();
  EXPECT_EQ(d["strategy"], "rolling");
  EXPECT_EQ(d["rolling"]["batch_size"], 1);
  EXPECT_EQ(d["decision"]["against"], "old") << d.dump();
  EXPECT_EQ(load.failed(), 0) << load.failures();
  json svc = json::parse(mup({"services", "--json"}).out, nullptr, false);
  size_t new_instances = 0;
  for (const auto& v : svc["services"][0]["versions"])
    if (v["version"] == "2.0.0") new_instances = v["instances"].size();
  EXPECT_EQ(new_instances, 2u) << "every new instance runs";

  EXPECT_EQ(served_version(), "2.0.0");
}

TEST_F(AgentTest, AnAgentKilledMidCanaryResumesAtTheSameStep) {
  start_agent();
  deploy({"--version", "1.0.0"});
  Load load(port_);
  wait_for_requests(load, 500);
  // Steps of 50% and 80%: even under a loaded sanitizer build (~100 requests/s from this
  // closed-loop client) the canary reaches the judge's 200-request minimum within the step
  // and its data wait; at 10% it did not, and "no data" rolled it back.
  auto started = mup({"deploy", "web", "--version", "2.0.0", "--strategy", "canary", "--steps",
                      "50,80,100", "--step-seconds", "3", "--json"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const int64_t id = json::parse(started.out)["id"];
  // Wait for the second step, then SIGKILL the agent.
  json d;
  for (int i = 0; i < 60; ++i) {
    d = json::parse(mup({"deployments", std::to_string(id), "--json"}).out, nullptr, false);
    if (d.value("final", false) || (d.contains("canary") && d["canary"]["step"] == 1)) break;
    std::this_thread::sleep_for(250ms);
  }
  ASSERT_EQ(d["canary"]["step"], 1) << d.dump();
  kill_agent(SIGKILL);
  // The proxy keeps the step's split while no agent runs.
  json offline =
      json::parse(mup({"deployments", std::to_string(id), "--json"}).out, nullptr, false);
  EXPECT_EQ(offline["traffic"]["2.0.0"], 80) << offline.dump();
  start_agent();
  json again = json::parse(mup({"deployments", std::to_string(id), "--json"}).out, nullptr, false);
  EXPECT_GE(again["canary"]["step"].get<int>(), 1) << "resumed at the step it was in";
  json fin = wait_final(id);
  load.stop();
  EXPECT_EQ(fin["state"], "committed") << fin.dump();
  EXPECT_EQ(load.failed(), 0) << load.failures();
}

class AgentCrashTest : public AgentTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(AgentCrashTest, KilledAtAStateTheNextAgentFinishesTheDeployment) {
  const std::string point = GetParam();
  const bool blue_green = point.rfind("bg:", 0) == 0;
  // On the undo path: a version that crashes at start, the agent killed while undoing it.
  const bool failing = point.rfind("fail:", 0) == 0;
  const std::string state = point.substr(point.find(':') + 1);
  const std::string target = failing ? "2.9.0" : "2.0.0";
  if (failing) publish(target, {"--crash-at-start"});
  start_agent();
  deploy({"--version", "1.0.0"});
  Load load(port_);
  kill_agent(SIGTERM);
  start_agent({"MUP_FAULT_AT=deploy.state." + state, "MUP_FAULT_ACTION=kill"});
  std::vector<std::string> args = {"deploy", "web", "--version", target, "--json"};
  if (blue_green) {
    args.push_back("--strategy");
    args.push_back("blue-green");
    args.push_back("--soak");
    args.push_back("100ms");
  }
  auto r = mup(args);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const int64_t id = json::parse(r.out)["id"];
  ASSERT_TRUE(agent_died(60s)) << "the fault point deploy.state." << state << " was not reached";
  std::this_thread::sleep_for(200ms);  // traffic goes on with no agent at all
  start_agent();
  json d = wait_final(id);
  load.stop();
  EXPECT_EQ(load.failed(), 0) << load.failures();
  if (failing) {
    EXPECT_EQ(d["state"], "failed") << d.dump();
    EXPECT_EQ(served_version(), "1.0.0");
    auto status = json::parse(mup({"status", "--json"}).out, nullptr, false);
    EXPECT_EQ(status["components"][0]["active"], "1.0.0");
    return;
  }
  EXPECT_EQ(d["state"], "committed") << d.dump();
  EXPECT_EQ(served_version(), "2.0.0");
  json svc = json::parse(mup({"services", "--json"}).out, nullptr, false);
  int v1_instances = 0;
  for (const auto& v : svc["services"][0]["versions"])
    if (v["version"] == "1.0.0") v1_instances = static_cast<int>(v["instances"].size());
  EXPECT_EQ(v1_instances, blue_green ? 2 : 0) << svc.dump();
}

INSTANTIATE_TEST_SUITE_P(States, AgentCrashTest,
                         ::testing::Values("install", "start-new", "wait-ready", "soak", "switch",
                                           "drain-old", "stop-old", "commit", "bg:soak",
                                           "bg:switch", "bg:commit", "fail:stop-new",
                                           "fail:undo-install"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace mup::test
