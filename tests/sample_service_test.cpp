// mup-sample-service and mup-loadgen, as real processes on 127.0.0.1: what they answer,
// how they misbehave on request, graceful SIGTERM, and the load generator's counts.
// Only wide bounds on anything that depends on timing.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;

// The service as a child process; its port is read from the "listening on" line it logs,
// so tests ask for port 0 and never race for a free one.
class Service {
 public:
  explicit Service(std::vector<std::string> args,
                   std::vector<std::pair<std::string, std::string>> env = {}) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDERR_FILENO);
      close(fds[0]);
      close(fds[1]);
      for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv;
      std::string bin = MUP_SAMPLE_SERVICE;
      argv.push_back(bin.data());
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    close(fds[1]);
    err_fd_ = fds[0];
    // Until the listening line, or EOF (the service exited first), or 10 s.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto pos = log_.find("listening on 127.0.0.1:");
      if (pos != std::string::npos && log_.find('\n', pos) != std::string::npos) {
        port_ = static_cast<uint16_t>(std::stoi(log_.substr(pos + 23)));
        break;
      }
      if (!read_log(100)) break;
    }
  }
  ~Service() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (err_fd_ >= 0) close(err_fd_);
  }
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& log() const { return log_; }
  // The exit code, or -1 if it did not exit within `timeout` (or died of a signal).
  int wait_exit(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        while (read_log(0)) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      read_log(20);
    }
    return -1;
  }

 private:
  // False at EOF or on timeout.
  bool read_log(int timeout_ms) {
    pollfd p{err_fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    ssize_t n = read(err_fd_, buf, sizeof buf);
    if (n <= 0) return false;
    log_.append(buf, static_cast<size_t>(n));
    return true;
  }
  pid_t pid_ = -1;
  int err_fd_ = -1;
  uint16_t port_ = 0;
  bool exited_ = false;
  std::string log_;
};

struct Response {
  int status = 0;                              // 0: no answer
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// One request on its own connection (Connection: close; read to EOF).
Response http_get(uint16_t port, const std::string& target) {
  Response r;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return r;
  }
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return r;
  }
  std::string in;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) in.append(buf, static_cast<size_t>(n));
  close(fd);
  auto end = in.find("\r\n\r\n");
  if (end == std::string::npos || in.size() < 12) return r;
  r.status = std::stoi(in.substr(9, 3));
  size_t pos = in.find("\r\n") + 2;
  while (pos < end) {
    size_t eol = in.find("\r\n", pos);
    std::string line = in.substr(pos, eol - pos);
    pos = eol + 2;
    auto colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  r.body = in.substr(end + 4);
  return r;
}

TEST(SampleService, AnswersVersionInstanceAndPid) {
  Service s({"--port", "0", "--version", "1.2.3", "--instance", "4"});
  ASSERT_NE(s.port(), 0) << s.log();
  Response r = http_get(s.port(), "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["x-mup-version"], "1.2.3");
  auto body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["version"], "1.2.3");
  EXPECT_EQ(body["instance"], "4");
  EXPECT_EQ(body["pid"], s.pid());

  EXPECT_EQ(http_get(s.port(), "/healthz").status, 200);
  EXPECT_EQ(http_get(s.port(), "/nowhere").status, 404);
  Response slow = http_get(s.port(), "/slow?ms=50");
  EXPECT_EQ(slow.status, 200);
  Response bytes = http_get(s.port(), "/bytes?n=300000");
  EXPECT_EQ(bytes.status, 200);
  EXPECT_EQ(bytes.body.size(), 300000u);
  EXPECT_EQ(bytes.headers["content-length"], "300000");
}

TEST(SampleService, TakesPortAndVersionFromTheEnvironment) {
  Service s({}, {{"PORT", "0"}, {"MUP_VERSION", "9.9.9"}, {"MUP_INSTANCE", "2"}});
  ASSERT_NE(s.port(), 0) << s.log();
  Response r = http_get(s.port(), "/");
  EXPECT_EQ(r.headers["x-mup-version"], "9.9.9");
  EXPECT_EQ(nlohmann::json::parse(r.body)["instance"], "2");
}

TEST(SampleService, ErrorRateFailsAboutThatFraction) {
  Service s({"--port", "0", "--version", "1", "--error-rate", "0.5"});
  ASSERT_NE(s.port(), 0) << s.log();
  int errors = 0;
  for (int i = 0; i < 200; ++i) {
    Response r = http_get(s.port(), "/");
    ASSERT_TRUE(r.status == 200 || r.status == 500) << r.status;
    errors += r.status == 500;
  }
  EXPECT_GT(errors, 60);
  EXPECT_LT(errors, 140);
}

TEST(SampleService, ErrorRateFromEnvironment) {
  Service s({"--port", "0"}, {{"MUP_SAMPLE_ERROR_RATE", "1"}});
  ASSERT_NE(s.port(), 0) << s.log();
  EXPECT_EQ(http_get(s.port(), "/").status, 500);
  EXPECT_EQ(http_get(s.port(), "/healthz").status, 200);
}

TEST(SampleService, CrashAtStartExitsThree) {
  Service s({"--crash-at-start", "--version", "2"});
  EXPECT_EQ(s.wait_exit(10s), 3);
  EXPECT_NE(s.log().find("crashing at start"), std::string::npos) << s.log();
}

TEST(SampleService, CrashAfterMsExitsFour) {
  Service s({"--port", "0", "--crash-after-ms", "200"});
  EXPECT_EQ(s.wait_exit(10s), 4) << s.log();
}

TEST(SampleService, CrashAfterRequestsExitsFive) {
  Service s({"--port", "0", "--crash-after-requests", "3"});
  ASSERT_NE(s.port(), 0) << s.log();
  for (int i = 0; i < 3; ++i) http_get(s.port(), "/");
  EXPECT_EQ(s.wait_exit(10s), 5) << s.log();
}

TEST(SampleService, NeverReadyAnswersHealthz503) {
  Service s({"--port", "0", "--never-ready"});
  ASSERT_NE(s.port(), 0) << s.log();
  EXPECT_EQ(http_get(s.port(), "/healthz").status, 503);
  EXPECT_EQ(http_get(s.port(), "/").status, 200);
}

TEST(SampleService, ReadyAfterMsBecomesReady) {
  Service s({"--port", "0", "--ready-after-ms", "300"});
  ASSERT_NE(s.port(), 0) << s.log();
  int status = 0;
  for (int i = 0; i < 200 && status != 200; ++i) {
    status = http_get(s.port(), "/healthz").status;
    if (status != 200) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(status, 200);
}

TEST(SampleService, SigtermFinishesInFlightThenExitsZero) {
  Service s({"--port", "0", "--version", "1"});
  ASSERT_NE(s.port(), 0) << s.log();
  auto slow = std::async(std::launch::async, [&] { return http_get(s.port(), "/slow?ms=500"); });
  std::this_thread::sleep_for(150ms);  // the request is in (a wide margin below 500 ms)
  ASSERT_EQ(kill(s.pid(), SIGTERM), 0);
  Response r = slow.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(s.wait_exit(15s), 0) << s.log();
  EXPECT_NE(s.log().find("stopped"), std::string::npos) << s.log();
}

#ifdef MUP_LOADGEN
TEST(Loadgen, CountsEveryRequestAtTheAskedRate) {
  mup::test::ScratchDir dir;
  Service s({"--port", "0", "--version", "v7"});
  ASSERT_NE(s.port(), 0) << s.log();
  std::string json_path = (dir / "out.json").string();
  std::string events_path = (dir / "events.csv").string();
  std::string cmd =
      std::string(MUP_LOADGEN) + " --url http://127.0.0.1:" + std::to_string(s.port()) +
      "/ --rate 200 --duration 2 --json " + json_path + " --events " + events_path + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  nlohmann::json out = nlohmann::json::parse(std::ifstream(json_path));
  EXPECT_GE(out["sent"].get<int>(), 380);
  EXPECT_LE(out["sent"].get<int>(), 420);
  EXPECT_EQ(out["completed"], out["sent"]);
  EXPECT_EQ(out["non_2xx"], 0);
  EXPECT_EQ(out["connect_errors"], 0);
  EXPECT_EQ(out["timeouts"], 0);
  EXPECT_EQ(out["other_errors"], 0);
  EXPECT_EQ(out["versions"]["v7"], out["sent"]);
  EXPECT_EQ(out["status"]["200"], out["sent"]);
  EXPECT_FALSE(out["per_second"].empty());
  std::ifstream events(events_path);
  std::string line;
  int lines = 0;
  while (std::getline(events, line)) ++lines;
  EXPECT_EQ(lines, out["sent"].get<int>() + 1);  // plus the header
}

TEST(Loadgen, CountsConnectErrorsWhenNothingListens) {
  mup::test::ScratchDir dir;
  // A port that was free a moment ago: bound by a service that then exited.
  uint16_t port;
  {
    Service s({"--port", "0"});
    port = s.port();
  }
  ASSERT_NE(port, 0);
  std::string json_path = (dir / "out.json").string();
  std::string cmd = std::string(MUP_LOADGEN) + " --url http://127.0.0.1:" + std::to_string(port) +
                    "/ --rate 100 --duration 1 --json " + json_path + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  nlohmann::json out = nlohmann::json::parse(std::ifstream(json_path));
  EXPECT_GT(out["sent"].get<int>(), 0);
  EXPECT_EQ(out["connect_errors"], out["sent"]);
  EXPECT_EQ(out["completed"], 0);
}
#endif

}  // namespace
