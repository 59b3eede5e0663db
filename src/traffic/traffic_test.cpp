// The proxy against real sockets on 127.0.0.1: tiny upstream servers written here answer
// with their name; clients are synchronous Beast clients. No timing assertions: waits are
// polls with generous limits that only guard against hanging.
#include <gtest/gtest.h>

// clang-format off
#include <utility>  // first: Boost 1.74's awaitable.hpp uses std::exchange without it
// GCC 12 with the sanitizers sees a maybe-uninitialized boost::optional inside Beast's
// parser (a false positive in library code).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/beast/http.hpp>
#pragma GCC diagnostic pop
// clang-format on
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <thread>

#include "api/client.hpp"
#include "core/sha256.hpp"
#include "test_util.hpp"
#include "traffic/daemon.hpp"
#include "traffic/proxy.hpp"
#include "traffic/route.hpp"
#include "traffic/stats.hpp"

namespace mup::traffic {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using nlohmann::json;

// Deterministic bytes for the large-body test: byte i of the stream.
void fill_pattern(char* out, size_t n, uint64_t offset) {
  for (size_t i = 0; i < n; ++i) {
    uint64_t x = offset + i;
    out[i] = static_cast<char>((x * 2654435761u) >> 13);
  }
}

// An upstream HTTP server on its own threads (one per connection). Paths:
//   /slow       answers after 1 s
//   /big?n=N    N pattern bytes (Content-Length), written 64 KiB at a time
//   /status/N   answers with status N
//   /echo       body "<name>|<Host>|<X-Forwarded-For>"
//   /len        body "<name>:<size of the request body>"
//   anything else: body "<name>"
class Upstream {
 public:
  explicit Upstream(std::string name) : name_(std::move(name)), acceptor_(ioc_) {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~Upstream() {
    stop_ = true;
    beast::error_code ec;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes the blocked accept()
    acceptor_.close(ec);
    {
      std::lock_guard lock(mu_);
      for (auto& s : sockets_) s->shutdown(tcp::socket::shutdown_both, ec);
    }
    if (accept_thread_.joinable()) accept_thread_.join();
    for (auto& t : threads_) t.join();
  }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }
  int requests() const { return requests_.load(); }

 private:
  void accept_loop() {
    for (;;) {
      auto sock = std::make_shared<tcp::socket>(ioc_);
      beast::error_code ec;
      acceptor_.accept(*sock, ec);
      if (ec || stop_) return;
      ++connections_;
      std::lock_guard lock(mu_);
      sockets_.push_back(sock);
      threads_.emplace_back([this, sock] { serve(*sock); });
    }
  }

  void serve(tcp::socket& sock) {
    beast::flat_buffer buf;
    for (;;) {
      http::request<http::string_body> req;
      beast::error_code ec;
      http::read(sock, buf, req, ec);
      if (ec) break;
      ++requests_;
      std::string target(req.target());
      if (target.rfind("/big?n=", 0) == 0) {
        uint64_t n = std::stoull(target.substr(7));
        std::string head = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(n) + "\r\n\r\n";
        asio::write(sock, asio::buffer(head), ec);
        std::vector<char> chunk(65536);
        for (uint64_t off = 0; off < n && !ec;) {
          size_t len = static_cast<size_t>(std::min<uint64_t>(chunk.size(), n - off));
          fill_pattern(chunk.data(), len, off);
          asio::write(sock, asio::buffer(chunk.data(), len), ec);
          off += len;
        }
        if (ec) break;
        continue;
      }
      http::response<http::string_body> res{http::status::ok, 11};
      res.body() = name_;
      if (target == "/slow") std::this_thread::sleep_for(1s);
      if (target.rfind("/status/", 0) == 0)
        res.result(static_cast<unsigned>(std::stoi(target.substr(8))));
      if (target == "/len") res.body() = name_ + ":" + std::to_string(req.body().size());
      if (target == "/echo")
        res.body() = name_ + "|" + std::string(req[http::field::host]) + "|" +
                     std::string(req["X-Forwarded-For"]);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      http::write(sock, res, ec);
      if (ec || !req.keep_alive()) break;
    }
    beast::error_code ec;
    sock.shutdown(tcp::socket::shutdown_send, ec);
  }

  std::string name_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0}, requests_{0};
  std::mutex mu_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  std::vector<std::thread> threads_;
  std::thread accept_thread_;
};

// An echo server for TCP mode.
class EchoServer {
 public:
  EchoServer() : acceptor_(ioc_) {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen();
    thread_ = std::thread([this] {
      for (;;) {
        auto sock = std::make_shared<tcp::socket>(ioc_);
        beast::error_code ec;
        acceptor_.accept(*sock, ec);
        if (ec) return;
        std::lock_guard lock(mu_);
        sockets_.push_back(sock);
        threads_.emplace_back([sock] {
          char buf[4096];
          beast::error_code ec;
          for (;;) {
            size_t n = sock->read_some(asio::buffer(buf), ec);
            if (ec) break;
            asio::write(*sock, asio::buffer(buf, n), ec);
            if (ec) break;
          }
          sock->shutdown(tcp::socket::shutdown_send, ec);
        });
      }
    });
  }
  ~EchoServer() {
    beast::error_code ec;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes the blocked accept()
    acceptor_.close(ec);
    {
      std::lock_guard lock(mu_);
      for (auto& s : sockets_) s->shutdown(tcp::socket::shutdown_both, ec);
    }
    thread_.join();
    for (auto& t : threads_) t.join();
  }
  std::string address() const {
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

 private:
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::mutex mu_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  std::vector<std::thread> threads_;
  std::thread thread_;
};

struct Reply {
  int status = 0;  // 0: the request failed
  std::string body;
  http::response<http::string_body> res;
};

// A keep-alive client to one address; reconnects when the server closed.
class Client {
 public:
  explicit Client(std::string bound) {
    auto colon = bound.rfind(':');
    ep_ = tcp::endpoint(asio::ip::make_address(bound.substr(0, colon)),
                        static_cast<uint16_t>(std::stoi(bound.substr(colon + 1))));
  }
  Reply get(const std::string& target, bool keep_alive = true, size_t body_limit = 1 << 20) {
    http::request<http::string_body> req{http::verb::get, target, 11};
    req.keep_alive(keep_alive);
    return send(req, body_limit);
  }
  Reply post(const std::string& target, std::string body, bool chunked, bool expect_continue) {
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.body() = std::move(body);
    if (chunked) {
      req.chunked(true);
    } else {
      req.prepare_payload();
    }
    if (expect_continue) req.set(http::field::expect, "100-continue");
    return send(req, 1 << 20);
  }

 private:
  Reply send(http::request<http::string_body>& req, size_t body_limit) {
    Reply r;
    beast::error_code ec;
    if (!sock_.is_open()) {
      sock_.connect(ep_, ec);
      if (ec) return r;
    }
    req.set(http::field::host, "example.test");
    if (req[http::field::expect] == "100-continue") {
      http::request_serializer<http::string_body> sr(req);
      http::write_header(sock_, sr, ec);
      http::response<http::empty_body> interim;
      http::read(sock_, buf_, interim, ec);
      if (ec || interim.result_int() != 100) return close(r);
      http::write(sock_, sr, ec);
    } else {
      http::write(sock_, req, ec);
    }
    if (ec) return close(r);
    http::response_parser<http::string_body> p;
    p.body_limit(body_limit);
    http::read(sock_, buf_, p, ec);
    if (ec) return close(r);
    r.res = p.release();
    r.status = static_cast<int>(r.res.result_int());
    r.body = r.res.body();
    if (!r.res.keep_alive()) close(r);
    return r;
  }

  Reply close(Reply r) {
    beast::error_code ec;
    sock_.close(ec);
    buf_.clear();
    return r;
  }
  asio::io_context ioc_;
  tcp::endpoint ep_;
  tcp::socket sock_{ioc_};
  beast::flat_buffer buf_;
};

RouteSpec http_route(std::vector<BackendSpec> backends, uint32_t drain_ms = 10000) {
  RouteSpec s;
  s.listen = "127.0.0.1:0";
  s.protocol = Protocol::http;
  s.drain_ms = drain_ms;
  s.backends = std::move(backends);
  return s;
}

BackendSpec backend(const std::string& id, const std::string& version, const Upstream& u,
                    uint32_t weight) {
  return {id, version, u.address(), weight};
}

// Polls `cond` every 10 ms for at most `limit`.
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 10s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

const json& version_stats(const json& stats, const std::string& service, const std::string& v) {
  return stats.at("services").at(service).at("versions").at(v);
}

// The proxy counts a request once its last byte is written, which may be just after the
// client has read it: stats are read once nothing is in flight.
json settled_stats(const Proxy& proxy) {
  json s;
  eventually([&] {
    s = proxy.stats();
    for (const auto& [name, svc] : s["services"].items())
      for (const auto& [version, v] : svc["versions"].items())
        if (v["in_flight"] != 0) return false;
    return true;
  });
  return s;
}

TEST(Proxy, WeightHundredZeroSendsAllToOne) {
  Upstream a("a"), b("b");
  Proxy proxy;
  auto r = proxy.set_route(
      "web", http_route({backend("a#0", "1.0.0", a, 100), backend("b#0", "2.0.0", b, 0)}));
  ASSERT_TRUE(r) << r.error().message();
  Client c(r->bound);
  for (int i = 0; i < 200; ++i) {
    Reply rep = c.get("/");
    ASSERT_EQ(rep.status, 200);
    ASSERT_EQ(rep.body, "a");
  }
  EXPECT_EQ(b.requests(), 0);
}

TEST(Proxy, FiftyFiftySplitsFairly) {
  Upstream a("a"), b("b");
  Proxy proxy;
  auto r = proxy.set_route(
      "web", http_route({backend("a#0", "1.0.0", a, 50), backend("b#0", "2.0.0", b, 50)}));
  ASSERT_TRUE(r) << r.error().message();
  int na = 0, nb = 0;
  for (int conn = 0; conn < 10; ++conn) {
    Client c(r->bound);
    for (int i = 0; i < 100; ++i) {
      Reply rep = c.get("/");
      ASSERT_EQ(rep.status, 200);
      (rep.body == "a" ? na : nb)++;
    }
  }
  EXPECT_EQ(na + nb, 1000);
  EXPECT_GT(na, 400);
  EXPECT_GT(nb, 400);
  json s = settled_stats(proxy);
  EXPECT_EQ(version_stats(s, "web", "1.0.0")["requests"], na);
  EXPECT_EQ(version_stats(s, "web", "2.0.0")["requests"], nb);
}

TEST(Proxy, WeightFlipsUnderLoadLoseNothing) {
  Upstream a("a"), b("b");
  Proxy proxy;
  auto spec = http_route({backend("a#0", "1.0.0", a, 100), backend("b#0", "2.0.0", b, 0)});
  auto r = proxy.set_route("web", spec);
  ASSERT_TRUE(r) << r.error().message();
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&, bound = r->bound] {
      Client c(bound);
      while (!stop) {
        Reply rep = c.get("/");
        (rep.status == 200 ? ok : bad)++;
      }
    });
  for (int flip = 0; flip < 50; ++flip) {
    spec.backends[0].weight = flip % 2 ? 100 : 0;
    spec.backends[1].weight = flip % 2 ? 0 : 100;
    ASSERT_TRUE(proxy.set_route("web", spec));
    std::this_thread::sleep_for(5ms);
  }
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(ok.load(), 0);
  json s = settled_stats(proxy);
  int64_t total = 0;
  for (const char* v : {"1.0.0", "2.0.0"}) {
    EXPECT_EQ(version_stats(s, "web", v)["errors"], 0);
    EXPECT_EQ(version_stats(s, "web", v)["responses"]["5xx"], 0);
    total += version_stats(s, "web", v)["requests"].get<int64_t>();
  }
  EXPECT_EQ(total, ok.load());
}

TEST(Proxy, RemovedBackendDrainsItsInFlightRequest) {
  Upstream a("a"), b("b");
  Proxy proxy;
  auto r = proxy.set_route("web", http_route({backend("a#0", "1.0.0", a, 100)}));
  ASSERT_TRUE(r) << r.error().message();
  Reply slow;
  std::thread t([&, bound = r->bound] {
    Client c(bound);
    slow = c.get("/slow");
  });
  ASSERT_TRUE(eventually([&] {
    auto rt = proxy.route("web");
    return rt && rt->backends.size() == 1 && rt->backends[0].in_flight == 1;
  }));
  auto r2 = proxy.set_route("web", http_route({backend("b#0", "2.0.0", b, 100)}));
  ASSERT_TRUE(r2) << r2.error().message();
  ASSERT_EQ(r2->backends.size(), 2u);
  EXPECT_EQ(r2->backends[1].spec.id, "a#0");
  EXPECT_TRUE(r2->backends[1].draining);
  EXPECT_EQ(r2->backends[1].in_flight, 1);
  Client c(r->bound);
  EXPECT_EQ(c.get("/").body, "b");  // new requests go to the new set at once
  t.join();
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(slow.body, "a");
  EXPECT_TRUE(eventually([&] { return proxy.route("web")->backends.size() == 1; }));
  EXPECT_EQ(proxy.route("web")->backends[0].spec.id, "b#0");
}

TEST(Proxy, NoBackendAnswers503WithRetryAfter) {
  Proxy proxy;
  auto r = proxy.set_route("web", http_route({}));
  ASSERT_TRUE(r) << r.error().message();
  Client c(r->bound);
  Reply rep = c.get("/");
  EXPECT_EQ(rep.status, 503);
  EXPECT_EQ(rep.res[http::field::retry_after], "1");
  json s = settled_stats(proxy);
  EXPECT_EQ(version_stats(s, "web", kNoVersion)["errors"], 1);
  EXPECT_EQ(version_stats(s, "web", kNoVersion)["responses"]["5xx"], 1);
  // Weight 0 everywhere is "no backend" too.
  Upstream a("a");
  ASSERT_TRUE(proxy.set_route("web", http_route({backend("a#0", "1.0.0", a, 0)})));
  EXPECT_EQ(c.get("/").status, 503);
}

TEST(Proxy, DeadBackendIsRetriedOnTheLiveOne) {
  Upstream live("live");
  uint16_t dead_port;
  {
    asio::io_context ioc;
    tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = acc.local_endpoint().port();
  }  // closed: connects to it are refused
  Proxy proxy;
  auto r = proxy.set_route(
      "web", http_route({{"dead#0", "0.9.0", "127.0.0.1:" + std::to_string(dead_port), 100},
                         backend("live#0", "1.0.0", live, 100)}));
  ASSERT_TRUE(r) << r.error().message();
  Client c(r->bound);
  for (int i = 0; i < 20; ++i) {
    Reply rep = c.get("/");
    ASSERT_EQ(rep.status, 200);
    ASSERT_EQ(rep.body, "live");
  }
  json s = settled_stats(proxy);
  EXPECT_GT(version_stats(s, "web", "0.9.0")["retries"].get<int>(), 0);
  EXPECT_EQ(version_stats(s, "web", "1.0.0")["requests"], 20);
  EXPECT_EQ(version_stats(s, "web", "1.0.0")["errors"], 0);
}

TEST(Proxy, OnlyDeadBackendsAnswer502) {
  uint16_t dead_port;
  {
    asio::io_context ioc;
    tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = acc.local_endpoint().port();
  }
  Proxy proxy;
  auto r = proxy.set_route(
      "web", http_route({{"dead#0", "0.9.0", "127.0.0.1:" + std::to_string(dead_port), 1}}));
  ASSERT_TRUE(r);
  Client c(r->bound);
  EXPECT_EQ(c.get("/").status, 502);
  EXPECT_EQ(version_stats(settled_stats(proxy), "web", "0.9.0")["errors"], 1);
}

TEST(Proxy, HugeHeaderIs431) {
  Upstream a("a");
  Proxy proxy;
  auto r = proxy.set_route("web", http_route({backend("a#0", "1.0.0", a, 1)}));
  ASSERT_TRUE(r);
  asio::io_context ioc;
  tcp::socket s(ioc);
  auto colon = r->bound.rfind(':');
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                          static_cast<uint16_t>(std::stoi(r->bound.substr(colon + 1)))));
  std::string req = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'y') + "\r\n\r\n";
  beast::error_code ec;
  asio::write(s, asio::buffer(req), ec);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(res.result_int(), 431u);
  EXPECT_EQ(a.requests(), 0);
}

TEST(Proxy, KeepAliveReusesOneUpstreamConnection) {
  Upstream a("a");
  Proxy proxy;
  auto r = proxy.set_route("web", http_route({backend("a#0", "1.0.0", a, 1)}));
  ASSERT_TRUE(r);
  Client c(r->bound);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(c.get("/").status, 200);
  EXPECT_EQ(a.connections(), 1);
  EXPECT_EQ(a.requests(), 100);
  // Connection: close from the client is honoured, and the upstream connection survives.
  Reply last = c.get("/", false);
  EXPECT_EQ(last.status, 200);
  EXPECT_FALSE(last.res.keep_alive());
  EXPECT_EQ(a.connections(), 1);
}

TEST(Proxy, HostIsKeptAndForwardedForAdded) {
  Upstream a("a");
  Proxy proxy;
  auto r = proxy.set_route("web", http_route({backend("a#0", "1.0.0", a, 1)}));
  ASSERT_TRUE(r);
  Client c(r->bound);
  EXPECT_EQ(c.get("/echo").body, "a|example.test|127.0.0.1");
}

TEST(Proxy, LargeResponseStreamsIntact) {
  Upstream a("a");
  Proxy proxy;
  auto r = proxy.set_route("web", http_route({backend("a#0", "1.0.0", a, 1)}));
  ASSERT_TRUE(r);
  constexpr size_t kSize = 50 * 1024 * 1024;
  Client c(r->bound);
  Reply rep = c.get("/big?n=" + std::to_string(kSize), true, kSize + 1);
  ASSERT_EQ(rep.status, 200);
  ASSERT_EQ(rep.body.size(), kSize);
  std::string expected(kSize, '\0');
  fill_pattern(expected.data(), kSize, 0);
  Sha256 h1, h2;
  h1.update({reinterpret_cast<const uint8_t*>(rep.body.data()), rep.body.size()});
  h2.update({reinterpret_cast<const uint8_t*>(expected.data()), expected.size()});
  EXPECT_EQ(h1.finish(), h2.finish());
  EXPECT_EQ(c.get("/").body, "a");  // the connection is still good after it
}

TEST(Proxy, RequestBodiesStreamToTheBackend) {
  Upstream a("a");
  Proxy proxy;
  auto r = proxy.set_route("web", http_route({backend("a#0", "1.0.0", a, 1)}));
  ASSERT_TRUE(r);
  Client c(r->bound);
  std::string body(512 * 1024, 'z');
  EXPECT_EQ(c.post("/len", body, false, false).body, "a:524288");
  EXPECT_EQ(c.post("/len", body, true, false).body, "a:524288");  // chunked
  EXPECT_EQ(c.post("/len", body, false, true).body, "a:524288");  // Expect: 100-continue
  EXPECT_EQ(c.get("/").body, "a");
  EXPECT_EQ(a.connections(), 1);
}

TEST(Proxy, StatsAddUpToWhatClientsSaw) {
  Upstream a("a"), b("b");
  Proxy proxy;
  auto r = proxy.set_route(
      "web", http_route({backend("a#0", "1.0.0", a, 1), backend("b#0", "2.0.0", b, 1)}));
  ASSERT_TRUE(r);
  std::map<std::string, std::map<int, int>> seen;  // backend name -> status class -> count
  Client c(r->bound);
  for (int i = 0; i < 60; ++i) {
    Reply rep = c.get(i % 3 == 0 ? "/status/404" : (i % 5 == 0 ? "/status/500" : "/"));
    ASSERT_NE(rep.status, 0);
    seen[rep.body][rep.status / 100]++;
  }
  json s = settled_stats(proxy);
  for (auto [name, version] : {std::pair{"a", "1.0.0"}, std::pair{"b", "2.0.0"}}) {
    const json& v = version_stats(s, "web", version);
    int total = 0;
    for (auto [cls, n] : seen[name]) {
      EXPECT_EQ(v["responses"][std::to_string(cls) + "xx"], n) << name << " " << cls;
      total += n;
    }
    EXPECT_EQ(v["requests"], total);
    EXPECT_EQ(v["in_flight"], 0);
    EXPECT_EQ(v["errors"], 0);
    uint64_t hist = 0;
    for (auto n : v["histogram"]["counts"]) hist += n.get<uint64_t>();
    EXPECT_EQ(hist, static_cast<uint64_t>(total));
    EXPECT_EQ(v["per_second"].size(), 120u);
    int per_second = 0;
    for (const auto& e : v["per_second"]) per_second += e["requests"].get<int>();
    EXPECT_EQ(per_second, total);
    EXPECT_GT(v["latency_ms"]["max"].get<double>(), 0.0);
    EXPECT_LE(v["latency_ms"]["p50"].get<double>(), v["latency_ms"]["p99"].get<double>());
  }
}

// Reads from `s` until EOF or error; false only when `limit` passes first.
bool reads_to_end(tcp::socket& s, std::chrono::milliseconds limit) {
  timeval tv{static_cast<time_t>(limit.count() / 1000), 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[256];
  for (;;) {
    ssize_t n = ::recv(s.native_handle(), buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

TEST(Proxy, TcpModeEchoes) {
  EchoServer echo;
  Proxy proxy;
  RouteSpec spec{"127.0.0.1:0", Protocol::tcp, 10000, {{"e#0", "1.0.0", echo.address(), 1}}};
  auto r = proxy.set_route("db", spec);
  ASSERT_TRUE(r) << r.error().message();
  asio::io_context ioc;
  tcp::socket s(ioc);
  auto colon = r->bound.rfind(':');
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                          static_cast<uint16_t>(std::stoi(r->bound.substr(colon + 1)))));
  std::string msg = "hello through the proxy";
  asio::write(s, asio::buffer(msg));
  std::string got(msg.size(), '\0');
  asio::read(s, asio::buffer(got));
  EXPECT_EQ(got, msg);
  EXPECT_TRUE(eventually([&] { return proxy.route("db")->backends[0].connections == 1; }));
  s.shutdown(tcp::socket::shutdown_send);
  EXPECT_TRUE(reads_to_end(s, 10s));
  EXPECT_TRUE(
      eventually([&] { return version_stats(proxy.stats(), "db", "1.0.0")["requests"] == 1; }));
}

TEST(Proxy, DrainDeadlineCutsALongTcpConnection) {
  EchoServer echo, other;
  Proxy proxy;
  RouteSpec spec{"127.0.0.1:0", Protocol::tcp, 100, {{"e#0", "1.0.0", echo.address(), 1}}};
  auto r = proxy.set_route("db", spec);
  ASSERT_TRUE(r) << r.error().message();
  asio::io_context ioc;
  tcp::socket s(ioc);
  auto colon = r->bound.rfind(':');
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                          static_cast<uint16_t>(std::stoi(r->bound.substr(colon + 1)))));
  std::string msg = "x";
  asio::write(s, asio::buffer(msg));
  asio::read(s, asio::buffer(msg));
  spec.backends = {{"o#0", "2.0.0", other.address(), 1}};
  auto r2 = proxy.set_route("db", spec);
  ASSERT_TRUE(r2);
  EXPECT_TRUE(r2->backends.back().draining);
  EXPECT_TRUE(reads_to_end(s, 10s));  // cut at drain_ms, not by the client or the echo
  EXPECT_TRUE(eventually([&] { return proxy.route("db")->backends.size() == 1; }));
}

TEST(Proxy, BindConflictIsBusy) {
  Proxy proxy;
  auto r = proxy.set_route("one", http_route({}));
  ASSERT_TRUE(r);
  RouteSpec spec = http_route({});
  spec.listen = r->bound;
  auto r2 = proxy.set_route("two", spec);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code(), Errc::busy);
  EXPECT_NE(r2.error().message().find("address in use"), std::string::npos);
  // The same listen for the same route keeps its socket.
  auto spec1 = http_route({});
  auto r3 = proxy.set_route("one", spec1);
  ASSERT_TRUE(r3) << r3.error().message();
  EXPECT_EQ(r3->bound, r->bound);
}

TEST(Proxy, RemovedRouteClosesItsListener) {
  Proxy proxy;
  auto r = proxy.set_route("web", http_route({}));
  ASSERT_TRUE(r);
  ASSERT_TRUE(proxy.remove_route("web"));
  EXPECT_FALSE(proxy.route("web"));
  EXPECT_EQ(proxy.remove_route("web").error().code(), Errc::not_found);
  EXPECT_TRUE(eventually([&] {
    asio::io_context ioc;
    tcp::socket s(ioc);
    beast::error_code ec;
    auto colon = r->bound.rfind(':');
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                            static_cast<uint16_t>(std::stoi(r->bound.substr(colon + 1)))),
              ec);
    return !!ec;
  }));
}

TEST(ProxyDaemon, ServesTheControlApiAndPersistsRoutesAcrossRestarts) {
  test::ScratchDir root;
  Upstream a("a");
  std::string bound;
  {
    auto d = ProxyDaemon::start(root.path());
    ASSERT_TRUE(d) << d.error().message();
    ProxyClient client(root.path());
    auto h = client.health();
    ASSERT_TRUE(h) << h.error().message();
    EXPECT_EQ((*h)["pid"], static_cast<int64_t>(::getpid()));
    auto r = client.put_route("web", http_route({backend("a#0", "1.0.0", a, 1)}));
    ASSERT_TRUE(r) << r.error().message();
    bound = r->bound;
    EXPECT_EQ(Client(bound).get("/").body, "a");
    auto routes = client.routes();
    ASSERT_TRUE(routes) << routes.error().message();
    ASSERT_EQ(routes->size(), 1u);
    EXPECT_EQ((*routes)[0].name, "web");
    EXPECT_EQ((*routes)[0].backends.at(0).spec.id, "a#0");
    auto st = client.stats();
    ASSERT_TRUE(st);
    EXPECT_TRUE((*st)["services"]["web"]["versions"].contains("1.0.0"));
    // A second proxy for the same root is refused.
    auto second = ProxyDaemon::start(root.path());
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code(), Errc::busy);
  }
  EXPECT_TRUE(std::filesystem::exists(root / "proxy/routes.json"));
  auto d = ProxyDaemon::start(root.path());
  ASSERT_TRUE(d) << d.error().message();
  auto r = (*d)->proxy().route("web");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->bound, bound);  // port 0 was persisted as the port it got
  EXPECT_EQ(Client(bound).get("/").body, "a");
  ProxyClient client(root.path());
  ASSERT_TRUE(client.delete_route("web"));
  EXPECT_EQ(client.delete_route("web").error().code(), Errc::not_found);
  d->reset();
  auto d2 = ProxyDaemon::start(root.path());
  ASSERT_TRUE(d2);
  EXPECT_TRUE((*d2)->proxy().routes().empty());
}

TEST(ProxyDaemon, RefusesBadSpecsAndBusyAddresses) {
  test::ScratchDir root;
  auto d = ProxyDaemon::start(root.path());
  ASSERT_TRUE(d) << d.error().message();
  api::Client c = api::Client::unix_socket(root / "proxy.sock");
  auto bad = c.request("PUT", "/v1/routes/web",
                       json{{"listen", "127.0.0.1:0"}, {"backends", {{{"id", "x"}}}}});
  ASSERT_TRUE(bad) << bad.error().message();
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(bad->body["error"]["field"], "backends[0].version");
  auto one = c.request("PUT", "/v1/routes/one",
                       json{{"listen", "127.0.0.1:0"}, {"backends", json::array()}});
  ASSERT_TRUE(one);
  ASSERT_EQ(one->status, 200);
  auto two = c.request("PUT", "/v1/routes/two",
                       json{{"listen", one->body["bound"]}, {"backends", json::array()}});
  ASSERT_TRUE(two);
  EXPECT_EQ(two->status, 409);
  EXPECT_NE(two->body["error"]["message"].get<std::string>().find("address in use"),
            std::string::npos);
  auto missing = c.request("GET", "/v1/routes/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST(ProxyClient, EnsureRunningStartsADetachedProxy) {
  std::filesystem::path binary = MUP_BINARY;
  if (!std::filesystem::exists(binary)) GTEST_SKIP() << "the mup binary is not built";
  test::ScratchDir root;
  auto s = ProxyClient::ensure_running(root.path(), binary);
  ASSERT_TRUE(s) << s.error().message();
  ProxyClient client(root.path());
  auto h = client.health();
  ASSERT_TRUE(h) << h.error().message();
  pid_t pid = (*h)["pid"].get<pid_t>();
  EXPECT_NE(pid, ::getpid());
  EXPECT_NE(::getsid(pid), ::getsid(0));                          // its own session
  ASSERT_TRUE(ProxyClient::ensure_running(root.path(), binary));  // already running: no-op
  EXPECT_EQ((*client.health())["pid"].get<pid_t>(), pid);
  ::kill(pid, SIGTERM);
  // Clean shutdown removes the socket (the process itself is not our child to wait for).
  EXPECT_TRUE(eventually([&] { return !std::filesystem::exists(root / "proxy.sock"); }));
}

TEST(RouteSpec, ParsesAndRoundTrips) {
  json j = {{"listen", "127.0.0.1:8080"},
            {"protocol", "http"},
            {"drain_ms", 5000},
            {"backends",
             {{{"id", "web@2.0.0#0"},
               {"version", "2.0.0"},
               {"address", "127.0.0.1:41234"},
               {"weight", 100}}}}};
  auto s = parse_route_spec(j);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->drain_ms, 5000u);
  EXPECT_EQ(s->backends.at(0).weight, 100u);
  EXPECT_EQ(to_json(*s), j);
}

TEST(RouteSpec, RefusesBadFieldsNamingThem) {
  json good = {
      {"listen", "127.0.0.1:8080"},
      {"backends", {{{"id", "a"}, {"version", "1"}, {"address", "127.0.0.1:1"}, {"weight", 1}}}}};
  ASSERT_TRUE(parse_route_spec(good));
  struct Case {
    std::function<void(json&)> edit;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](json& j) { j.erase("listen"); }, "listen"},
      {[](json& j) { j["listen"] = "localhost:80"; }, "listen"},
      {[](json& j) { j["listen"] = "127.0.0.1:99999"; }, "listen"},
      {[](json& j) { j["protocol"] = "udp"; }, "protocol"},
      {[](json& j) { j["drain_ms"] = -1; }, "drain_ms"},
      {[](json& j) { j["drain_ms"] = "10"; }, "drain_ms"},
      {[](json& j) { j["extra"] = 1; }, "extra"},
      {[](json& j) { j["backends"] = json::object(); }, "backends"},
      {[](json& j) { j["backends"][0]["weight"] = -5; }, "backends[0].weight"},
      {[](json& j) { j["backends"][0].erase("version"); }, "backends[0].version"},
      {[](json& j) { j["backends"][0]["address"] = "127.0.0.1:0"; }, "backends[0].address"},
      {[](json& j) { j["backends"].push_back(j["backends"][0]); }, "backends[1].id"},
  };
  for (const auto& c : cases) {
    json j = good;
    c.edit(j);
    std::string field;
    auto s = parse_route_spec(j, &field);
    ASSERT_FALSE(s) << j.dump();
    EXPECT_EQ(s.error().code(), Errc::invalid_argument);
    EXPECT_EQ(field, c.field) << s.error().message();
    EXPECT_EQ(s.error().message().rfind(c.field, 0), 0u) << s.error().message();
  }
}

TEST(Stats, QuantilesComeFromTheHistogram) {
  uint64_t counts[kLatencyBounds + 1] = {};
  counts[latency_bucket(1000)] = 90;    // ~1 ms
  counts[latency_bucket(100000)] = 10;  // ~100 ms
  double p50 = quantile_us(counts, 0.5, 100000);
  double p99 = quantile_us(counts, 0.99, 100000);
  EXPECT_GT(p50, 700);
  EXPECT_LE(p50, 1000);
  EXPECT_GT(p99, 70000);
  EXPECT_LE(p99, 100000);
  uint64_t none[kLatencyBounds + 1] = {};
  EXPECT_EQ(quantile_us(none, 0.5, 0), 0);
}

}  // namespace
}  // namespace mup::traffic
