// HttpFetcher against real servers on 127.0.0.1: our FileServer, and raw sockets that
// misbehave (endless data, stalls).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <thread>
#include <vector>

#include "test_util.hpp"
#include "transfer/fetcher.hpp"
#include "transfer/file_server.hpp"

namespace mup::transfer {
namespace {

// Sends `request` raw to 127.0.0.1:port and returns the whole answer.
std::string raw_request(uint16_t port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "";
  }
  timeval tv{3, 0};  // a server that never answers fails the test, not hangs it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)!::write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// A one-connection server that answers with `head` then `body_bytes` of 'x' (forever when
// 0 and `endless`), or then stalls.
class BadServer {
 public:
  BadServer(std::string head, bool endless, int stall_ms) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 4);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, head, endless, stall_ms] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      (void)!::read(c, buf, sizeof buf);
      (void)!::write(c, head.data(), head.size());
      std::string chunk(65536, 'x');
      for (int i = 0; endless && i < 2000 && !stop_; ++i)
        if (::write(c, chunk.data(), chunk.size()) < 0) break;
      for (int waited = 0; waited < stall_ms && !stop_; waited += 10) ::usleep(10000);
      ::close(c);
    });
  }
  ~BadServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/x"; }

 private:
  int fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class Transfer : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_file(dir_ / "root/a/file.bin", test::random_bytes(100000, 1));
    test::write_file(dir_ / "secret", std::string("outside the root"));
    std::filesystem::create_symlink(dir_ / "secret", dir_ / "root/escape");
    auto s = FileServer::start(dir_ / "root", "127.0.0.1:0");
    ASSERT_TRUE(s) << s.error().message();
    server_ = std::move(*s);
  }
  test::ScratchDir dir_;
  std::unique_ptr<FileServer> server_;
};

TEST_F(Transfer, FetchesWholeFiles) {
  HttpFetcher f;
  auto r = f.fetch(server_->base_url() + "/a/file.bin", 1 << 20);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, test::random_bytes(100000, 1));
  auto again = f.fetch(server_->base_url() + "/a/file.bin", 1 << 20);  // keep-alive reuse
  ASSERT_TRUE(again);
}

TEST_F(Transfer, MissingIsNotFound) {
  HttpFetcher f;
  auto r = f.fetch(server_->base_url() + "/nope", 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::not_found);
  auto d = f.fetch(server_->base_url() + "/a", 100);  // a directory
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), Errc::not_found);
}

TEST_F(Transfer, AMissingFileUrlIsNotFound) {
  // A file:// remote answers TUF's probe for the next root like a server's 404.
  HttpFetcher f;
  auto r = f.fetch("file://" + (dir_ / "root/a/nope.json").string(), 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::not_found) << r.error().message();
  auto ok = f.fetch("file://" + (dir_ / "root/a/file.bin").string(), 1 << 20);
  ASSERT_TRUE(ok) << ok.error().message();
}

TEST_F(Transfer, LongerThanAllowedIsRefused) {
  HttpFetcher f;
  auto r = f.fetch(server_->base_url() + "/a/file.bin", 1000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
}

TEST_F(Transfer, ServerKeepsRequestsInsideTheRoot) {
  for (std::string path :
       {"/../secret", "/a/../../secret", "/%2e%2e/secret", "/escape", "/a/file.bin%00"}) {
    auto answer = raw_request(server_->port(),
                              "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_NE(answer.find(" 404 "), std::string::npos) << path << ": " << answer.substr(0, 40);
    EXPECT_EQ(answer.find("outside the root"), std::string::npos) << path;
  }
}

TEST_F(Transfer, ServerAnswersRanges) {
  auto answer = raw_request(
      server_->port(),
      "GET /a/file.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\nConnection: close\r\n\r\n");
  EXPECT_NE(answer.find(" 206 "), std::string::npos);
  EXPECT_NE(answer.find("Content-Range: bytes 10-19/100000"), std::string::npos)
      << answer.substr(0, 200);
  auto data = test::random_bytes(100000, 1);
  EXPECT_EQ(answer.substr(answer.size() - 10), std::string(data.begin() + 10, data.begin() + 20));
  auto bad = raw_request(
      server_->port(),
      "GET /a/file.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=200000-\r\nConnection: close\r\n\r\n");
  EXPECT_NE(bad.find(" 416 "), std::string::npos);
  // An open range over several 64 KiB chunks comes whole.
  auto tail = raw_request(
      server_->port(),
      "GET /a/file.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-\r\nConnection: close\r\n\r\n");
  ASSERT_NE(tail.find("\r\n\r\n"), std::string::npos);
  EXPECT_EQ(tail.substr(tail.find("\r\n\r\n") + 4), std::string(data.begin() + 1000, data.end()));
}

TEST_F(Transfer, ServerAnswers414And431AndGoesOnServing) {
  auto long_target = raw_request(
      server_->port(), "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(long_target.find(" 414 "), std::string::npos) << long_target.substr(0, 60);
  auto target_9k = raw_request(server_->port(),
                               "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(target_9k.find(" 414 "), std::string::npos) << target_9k.substr(0, 60);
  auto big_headers = raw_request(server_->port(), "GET /a/file.bin HTTP/1.1\r\nHost: x\r\nX-Pad: " +
                                                      std::string(20000, 'b') + "\r\n\r\n");
  EXPECT_NE(big_headers.find(" 431 "), std::string::npos) << big_headers.substr(0, 60);
  auto fine = raw_request(server_->port(),
                          "GET /a/file.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(fine.find(" 200 "), std::string::npos);
  EXPECT_EQ(fine.size() - fine.find("\r\n\r\n") - 4, 100000u) << "the whole file, streamed";
}

TEST_F(Transfer, ServerRefusesConnectionsOverItsLimitWith503) {
  server_->set_max_connections(2);
  std::vector<int> idle;
  for (int i = 0; i < 2; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(server_->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    idle.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // both accepted
  auto third = raw_request(server_->port(), "GET /a/file.bin HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(third.find(" 503 "), std::string::npos) << third.substr(0, 60);
  for (int fd : idle) ::close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto after = raw_request(server_->port(),
                           "GET /a/file.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(after.find(" 200 "), std::string::npos) << "served again once they left";
}

// A connection flood that exhausts the server's file descriptors (RLIMIT_NOFILE 64 in a
// child process) must not stop it for good: once the flood ends, it answers again.
TEST(TransferServer, KeepsAcceptingAfterRunningOutOfDescriptors) {
#if defined(__SANITIZE_ADDRESS__)
  // UBSan checks an object's dynamic type through a pipe (to see that its memory is
  // readable); with no descriptor left it reports a false "invalid vptr" inside Asio and
  // aborts. The release build runs this test.
  GTEST_SKIP() << "the sanitizer runtime itself needs file descriptors";
#endif
  test::ScratchDir dir;
  test::write_file(dir / "root/f", std::string("hello"));
  int pfd[2];
  ASSERT_EQ(::pipe(pfd), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    rlimit rl{64, 64};
    ::setrlimit(RLIMIT_NOFILE, &rl);
    auto s = FileServer::start(dir / "root", "127.0.0.1:0");
    uint16_t port = s ? (*s)->port() : 0;
    (void)!::write(pfd[1], &port, sizeof port);
    if (s) (*s)->wait();
    ::_exit(0);
  }
  uint16_t port = 0;
  ASSERT_EQ(::read(pfd[0], &port, sizeof port), static_cast<ssize_t>(sizeof port));
  ASSERT_NE(port, 0);
  std::vector<int> flood;
  for (int i = 0; i < 200; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0)
      flood.push_back(fd);
    else
      ::close(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the server hits EMFILE
  for (int fd : flood) ::close(fd);
  std::string answer;
  for (int i = 0; i < 50 && answer.find(" 200 ") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    answer = raw_request(port, "GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(pfd[0]);
  ::close(pfd[1]);
  EXPECT_NE(answer.find(" 200 "), std::string::npos)
      << "flood of " << flood.size() << " connections; then: " << answer.substr(0, 60);
}

TEST(TransferBadServers, EndlessDataStopsAtTheLimit) {
  BadServer s("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", /*endless=*/true, 0);
  HttpFetcher f;
  auto r = f.fetch(s.url(), 1 << 20);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
}

TEST(TransferBadServers, StatedLengthAboveTheLimitIsRefused) {
  BadServer s("HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n", false, 3000);
  HttpFetcher f;
  auto r = f.fetch(s.url(), 1000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
}

TEST(TransferBadServers, StalledTransferTimesOut) {
  BadServer s("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nxxxx", false, 10000);
  HttpFetcher f({.connect_timeout_s = 2, .low_speed_bytes_per_s = 100, .low_speed_time_s = 1});
  auto r = f.fetch(s.url(), 1 << 20);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::io);
  EXPECT_NE(r.error().message().find("stalled"), std::string::npos) << r.error().message();
}

// Slow retrieval above the low-speed floor: 20 bytes a second of a 2,000-byte body. The
// floor (1 byte/s here) never fires; the deadline from the minimum average rate does.
TEST(TransferBadServers, ATrickleAboveTheFloorMeetsTheDeadline) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::listen(fd, 4);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  std::atomic<bool> stop{false};
  std::thread server([&] {
    int c = ::accept(fd, nullptr, nullptr);
    if (c < 0) return;
    char buf[4096];
    (void)!::read(c, buf, sizeof buf);
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n";
    (void)!::write(c, head.data(), head.size());
    for (int i = 0; i < 2000 && !stop; ++i) {
      if (::write(c, "x", 1) < 0) break;
      ::usleep(50000);
    }
    ::close(c);
  });
  HttpOptions o;
  o.connect_timeout_s = 1;
  o.low_speed_bytes_per_s = 1;
  o.low_speed_time_s = 30;
  o.min_average_bytes_per_s = 2000;  // 2,000 bytes: a deadline of 1 s + 0.5 s + 1 s
  o.deadline_grace_ms = 500;
  HttpFetcher f(o);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = f.fetch("http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/x", 2000);
  const auto took = std::chrono::steady_clock::now() - t0;
  stop = true;
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  server.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::io);
  EXPECT_NE(r.error().message().find("too slow"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("MUP_MIN_RATE"), std::string::npos);
  EXPECT_LT(took, std::chrono::seconds(20)) << "not the 100 s the trickle would take";
}

TEST(TransferBadServers, ASubstitutedLongerPieceIsNamedSo) {
  BadServer s("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'y'), false, 0);
  HttpFetcher f;
  auto r = f.fetch(s.url(), 1000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
  EXPECT_NE(r.error().message().find("substituted"), std::string::npos) << r.error().message();
}

TEST(HttpOptions, TheMinimumRateComesFromTheEnvironment) {
  ::setenv("MUP_MIN_RATE", "12345", 1);
  EXPECT_EQ(http_options_from_env().min_average_bytes_per_s, 12345u);
  ::setenv("MUP_MIN_RATE", "fast", 1);
  EXPECT_EQ(http_options_from_env().min_average_bytes_per_s, HttpOptions{}.min_average_bytes_per_s)
      << "not a number: the default";
  ::unsetenv("MUP_MIN_RATE");
}

TEST(TransferBadServers, ConnectionRefusedIsIo) {
  HttpFetcher f({.connect_timeout_s = 2});
  auto r = f.fetch("http://127.0.0.1:1/x", 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::io);
}

TEST(PercentEncode, EncodesAllButUnreserved) {
  EXPECT_EQ(percent_encode("a/b c?"), "a%2Fb%20c%3F");
  EXPECT_EQ(percent_encode("role-1_x.~"), "role-1_x.~");
}

}  // namespace
}  // namespace mup::transfer
