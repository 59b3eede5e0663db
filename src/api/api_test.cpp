// api::Server and api::Client over real sockets in a scratch directory. Raw connections
// (RawConn) send bytes our Client would never send: broken JSON, huge headers, half a
// request. No assertion depends on timing.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <thread>

#include "api/client.hpp"
#include "api/route.hpp"
#include "api/server.hpp"
#include "test_util.hpp"

namespace mup::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using unix_stream = asio::local::stream_protocol;
using json = nlohmann::json;
using test::ScratchDir;

// A connection that sends exactly the bytes given and reads replies one at a time.
class RawConn {
 public:
  explicit RawConn(const std::filesystem::path& path) : socket_(io_) {
    socket_.connect(unix_stream::endpoint(path.string()));
  }
  void send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }
  http::response<http::string_body> read() {
    http::response<http::string_body> res;
    http::read(socket_, buf_, res);
    return res;
  }
  // True once the server closed the connection (blocks until it does).
  bool wait_closed() {
    char c;
    beast::error_code ec;
    while (!ec) socket_.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

 private:
  asio::io_context io_;
  unix_stream::socket socket_;
  beast::flat_buffer buf_;
};

json parse_body(const http::response<http::string_body>& res) {
  return json::parse(res.body(), nullptr, false);
}

std::string error_code_of(const json& body) {
  if (!body.is_object() || !body.contains("error")) return "<no error object>";
  return body["error"].value("code", "<no code>");
}

class ApiTest : public ::testing::Test {
 protected:
  std::filesystem::path sock() const { return dir_ / "api.sock"; }

  std::unique_ptr<Server> start(ServerOptions o = {}) {
    if (o.unix_socket.empty()) o.unix_socket = sock();
    o.log = [this](std::string_view s) {
      std::lock_guard lock(log_mu_);
      log_ += std::string(s) + "\n";
    };
    auto s = Server::start(std::move(o));
    EXPECT_TRUE(s) << s.error().message();
    if (!s) return nullptr;
    auto server = std::move(*s);
    EXPECT_TRUE(server->route("GET", "/v1/echo/{id}/abort", [](const Request& r) {
      return Response::ok({{"params", r.params}, {"query", r.query}, {"tcp", r.tcp}});
    }));
    EXPECT_TRUE(server->route("POST", "/v1/echo", [](const Request& r) {
      return Response{201, {{"got", r.body}}};
    }));
    EXPECT_TRUE(server->route(
        "GET", "/v1/throw", [](const Request&) -> Response { throw std::runtime_error("boom"); }));
    return server;
  }

  ScratchDir dir_;
  std::mutex log_mu_;
  std::string log_;
};

TEST(ApiRoute, PatternsQueriesAndDecoding) {
  auto p = parse_pattern("/v1/deployments/{id}/abort");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->literals(), 3u);
  auto m = match_path(*p, "/v1/deployments/web%402.0/abort");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->at("id"), "web@2.0");
  EXPECT_FALSE(match_path(*p, "/v1/deployments//abort"));
  EXPECT_FALSE(match_path(*p, "/v1/deployments/x/abort/"));
  EXPECT_FALSE(match_path(*p, "/v1/deployments/%zz/abort"));
  EXPECT_FALSE(parse_pattern("v1/x"));
  EXPECT_FALSE(parse_pattern("/v1/{a}/{a}"));
  EXPECT_FALSE(parse_pattern("/v1/x{a}"));
  auto q = parse_query("a=1&b=x%20y+z&flag&&a=2&bad=%g1");
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q["a"], "2");
  EXPECT_EQ(q["b"], "x y z");
  EXPECT_EQ(q["flag"], "");
  auto t = split_target("/p/q?x=1?y");
  EXPECT_EQ(t.path, "/p/q");
  EXPECT_EQ(t.query, "x=1?y");
}

TEST_F(ApiTest, RouteParamsAndQuery) {
  auto server = start();
  ASSERT_TRUE(server);
  auto c = Client::unix_socket(sock());
  auto r = c.request("GET", "/v1/echo/web%20app/abort?since=3&name=a+b");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body["params"]["id"], "web app");
  EXPECT_EQ(r->body["query"]["since"], "3");
  EXPECT_EQ(r->body["query"]["name"], "a b");
  EXPECT_EQ(r->body["tcp"], false);
  auto post = c.request("POST", "/v1/echo", json{{"component", "web"}});
  ASSERT_TRUE(post) << post.error().message();
  EXPECT_EQ(post->status, 201);
  EXPECT_EQ(post->body["got"]["component"], "web");
  // A route added while serving is served; one given twice replaces the first.
  ASSERT_TRUE(server->route("GET", "/v1/late", [](const Request&) { return Response::ok(); }));
  ASSERT_TRUE(server->route("GET", "/v1/late", [](const Request&) {
    return Response::ok({{"second", true}});
  }));
  auto late = c.request("GET", "/v1/late");
  ASSERT_TRUE(late);
  EXPECT_EQ(late->body["second"], true);
  EXPECT_FALSE(server->route("GET", "no-slash", [](const Request&) { return Response::ok(); }));
}

TEST_F(ApiTest, MostLiteralRouteWins) {
  auto server = start();
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->route("GET", "/v1/routes/{service}", [](const Request& r) {
    return Response::ok({{"service", r.params.at("service")}});
  }));
  ASSERT_TRUE(server->route("GET", "/v1/routes/stats", [](const Request&) {
    return Response::ok({{"stats", true}});
  }));
  auto c = Client::unix_socket(sock());
  auto a = c.request("GET", "/v1/routes/stats");
  auto b = c.request("GET", "/v1/routes/web");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->body["stats"], true);
  EXPECT_EQ(b->body["service"], "web");
}

TEST_F(ApiTest, ErrorsHaveOneShape) {
  auto server = start();
  ASSERT_TRUE(server);
  auto c = Client::unix_socket(sock());
  auto nf = c.request("GET", "/v1/nothing");
  ASSERT_TRUE(nf);
  EXPECT_EQ(nf->status, 404);
  EXPECT_EQ(error_code_of(nf->body), "not_found");
  EXPECT_TRUE(nf->body["error"]["message"].is_string());
  EXPECT_FALSE(nf->body["error"].contains("field"));

  // The route is looked up before the body: an unknown path is a 404 whatever it carries.
  RawConn unknown(sock());
  unknown.send("POST /v1/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{{{");
  EXPECT_EQ(unknown.read().result_int(), 404u);

  auto na = c.request("DELETE", "/v1/echo");
  ASSERT_TRUE(na);
  EXPECT_EQ(na->status, 405);
  EXPECT_EQ(error_code_of(na->body), "method_not_allowed");

  auto arr = c.request("POST", "/v1/echo", json::array({1, 2}));
  ASSERT_TRUE(arr);
  EXPECT_EQ(arr->status, 400);
  EXPECT_EQ(error_code_of(arr->body), "bad_request");

  RawConn raw(sock());
  raw.send("POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nop}");
  auto bad = raw.read();
  EXPECT_EQ(bad.result_int(), 400u);
  EXPECT_EQ(error_code_of(parse_body(bad)), "bad_request");
  // The connection stays usable after a 400 on the body.
  raw.send("GET /v1/echo/x/abort HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(raw.read().result_int(), 200u);

  auto field = Response::error(400, "bad_request", "listen is not HOST:PORT", "listen");
  EXPECT_EQ(field.body["error"]["field"], "listen");
}

TEST_F(ApiTest, LimitsOnBodyAndHeaders) {
  auto server = start();
  ASSERT_TRUE(server);
  {
    // Announced too large: refused at the header, before any body is read.
    RawConn raw(sock());
    raw.send("POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n{}");
    auto res = raw.read();
    EXPECT_EQ(res.result_int(), 413u);
    EXPECT_EQ(error_code_of(parse_body(res)), "too_large");
  }
  {
    // Sent whole by our client: the server drains it, so the 413 still arrives.
    auto c = Client::unix_socket(sock());
    auto r = c.request("POST", "/v1/echo", json{{"blob", std::string(2 << 20, 'x')}});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->status, 413);
  }
  {
    RawConn raw(sock());
    raw.send("GET /v1/echo/x/abort HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') +
             "\r\n\r\n");
    auto res = raw.read();
    EXPECT_EQ(res.result_int(), 431u);
    EXPECT_EQ(error_code_of(parse_body(res)), "headers_too_large");
  }
  {
    RawConn raw(sock());
    raw.send("NOT HTTP AT ALL\r\n\r\n");
    auto res = raw.read();
    EXPECT_EQ(res.result_int(), 400u);
  }
  // A body of exactly the limit is fine.
  auto c = Client::unix_socket(sock());
  std::string blob(1 << 20, 'y');
  blob.resize((1 << 20) - std::string(R"({"b":""})").size());
  auto ok = c.request("POST", "/v1/echo", json{{"b", blob}});
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->status, 201);
}

TEST_F(ApiTest, HandlerThatThrowsGives500AndServingGoesOn) {
  auto server = start();
  ASSERT_TRUE(server);
  auto c = Client::unix_socket(sock());
  auto r = c.request("GET", "/v1/throw");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(error_code_of(r->body), "internal");
  auto again = c.request("GET", "/v1/echo/1/abort");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  std::lock_guard lock(log_mu_);
  EXPECT_NE(log_.find("boom"), std::string::npos) << log_;
}

TEST_F(ApiTest, UnixSocketIsOwnerOnlyAndRemovedAtStop) {
  auto server = start();
  ASSERT_TRUE(server);
  struct stat st {};
  ASSERT_EQ(::stat(sock().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  server->stop();
  server->stop();  // idempotent
  EXPECT_FALSE(std::filesystem::exists(sock()));
  auto r = Client::unix_socket(sock()).request("GET", "/v1/echo/1/abort");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::unavailable));
}

TEST_F(ApiTest, StaleSocketIsReplacedLiveOneRefused) {
  {
    // A socket file left behind by a process that died: bound, then closed, not unlinked.
    asio::io_context io;
    unix_stream::acceptor a(io);
    a.open(unix_stream());
    a.bind(unix_stream::endpoint(sock().string()));
    a.listen();
  }
  ASSERT_TRUE(std::filesystem::exists(sock()));
  auto stale = Client::unix_socket(sock()).request("GET", "/v1/x");
  ASSERT_FALSE(stale);
  EXPECT_TRUE(stale.error().is(Code::unavailable)) << stale.error().message();

  auto server = start();
  ASSERT_TRUE(server);
  auto c = Client::unix_socket(sock());
  ASSERT_TRUE(c.request("GET", "/v1/echo/1/abort"));

  ServerOptions o;
  o.unix_socket = sock();
  auto second = Server::start(o);
  ASSERT_FALSE(second);
  EXPECT_TRUE(second.error().is(Code::busy));
  EXPECT_EQ(second.error().code(), Errc::busy);
  EXPECT_NE(second.error().message().find("another process serves " + sock().string()),
            std::string::npos)
      << second.error().message();
  // The first server is untouched, its socket file too.
  auto r = c.request("GET", "/v1/echo/2/abort");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200);
}

TEST_F(ApiTest, NotASocketIsNotReplaced) {
  test::write_file(sock(), std::string("precious"));
  ServerOptions o;
  o.unix_socket = sock();
  auto s = Server::start(o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::already_exists);
  EXPECT_TRUE(std::filesystem::is_regular_file(sock()));
}

TEST_F(ApiTest, TcpNeedsTheBearerToken) {
  ServerOptions no_token;
  no_token.tcp_listen = "127.0.0.1:0";
  EXPECT_FALSE(Server::start(no_token));
  ServerOptions public_addr;
  public_addr.tcp_listen = "0.0.0.0:0";
  public_addr.bearer_token = "t";
  EXPECT_FALSE(Server::start(public_addr));

  ServerOptions o;
  o.tcp_listen = "127.0.0.1:0";
  o.bearer_token = "s3cret-token";
  auto server = start(o);
  ASSERT_TRUE(server);
  ASSERT_NE(server->port(), 0);
  std::string addr = "127.0.0.1:" + std::to_string(server->port());
  auto none = Client::tcp(addr, "").request("GET", "/v1/echo/1/abort");
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(error_code_of(none->body), "unauthorized");
  auto wrong = Client::tcp(addr, "s3cret-tokeX").request("GET", "/v1/echo/1/abort");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  auto longer = Client::tcp(addr, "s3cret-token-and-more").request("GET", "/v1/echo/1/abort");
  ASSERT_TRUE(longer);
  EXPECT_EQ(longer->status, 401);
  // Refused on the header: the body is never looked at.
  auto post = Client::tcp(addr, "nope").request("POST", "/v1/echo", json{{"a", 1}});
  ASSERT_TRUE(post) << post.error().message();
  EXPECT_EQ(post->status, 401);
  auto right = Client::tcp(addr, "s3cret-token").request("GET", "/v1/echo/1/abort");
  ASSERT_TRUE(right) << right.error().message();
  EXPECT_EQ(right->status, 200);
  EXPECT_EQ(right->body["tcp"], true);
  // The unix socket of the same server needs no token.
  auto local = Client::unix_socket(sock()).request("GET", "/v1/echo/1/abort");
  ASSERT_TRUE(local);
  EXPECT_EQ(local->status, 200);
  EXPECT_EQ(local->body["tcp"], false);
}

// A public route (the agent's /metrics) answers over TCP without the token, with its own
// Content-Type; every other route, and other methods on its path, still need the token.
TEST_F(ApiTest, PublicTextRouteNeedsNoTokenOverTcp) {
  ServerOptions o;
  o.tcp_listen = "127.0.0.1:0";
  o.bearer_token = "s3cret-token";
  auto server = start(o);
  ASSERT_TRUE(server);
  EXPECT_FALSE(server->route(
      "POST", "/metrics", [](const Request&) { return Response::ok(); }, Access::public_read));
  ASSERT_TRUE(server->route(
      "GET", "/metrics",
      [](const Request&) { return Response::text("up 1\n", "text/plain; version=0.0.4"); },
      Access::public_read));
  ASSERT_TRUE(server->route("GET", "/metrics/{x}", [](const Request&) { return Response::ok(); }));
  asio::io_context io;
  auto get = [&](const std::string& target, const std::string& auth) {
    asio::ip::tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), server->port()});
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "test");
    if (!auth.empty()) req.set(http::field::authorization, auth);
    http::write(s, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    return res;
  };
  auto anon = get("/metrics?x=1", "");
  EXPECT_EQ(anon.result_int(), 200);
  EXPECT_EQ(anon.body(), "up 1\n");
  EXPECT_EQ(anon[http::field::content_type], "text/plain; version=0.0.4");
  EXPECT_EQ(get("/metrics", "Bearer wrong").result_int(), 200);
  EXPECT_EQ(get("/metrics/y", "").result_int(), 401) << "a non-public route under it";
  EXPECT_EQ(get("/v1/echo/1/abort", "").result_int(), 401);
  auto post = Client::tcp("127.0.0.1:" + std::to_string(server->port()), "")
                  .request("POST", "/metrics", json::object());
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 401) << "only the public method is public";
}

TEST_F(ApiTest, KeepAliveServesTwoRequestsOnOneConnection) {
  auto server = start();
  ASSERT_TRUE(server);
  RawConn raw(sock());
  raw.send("GET /v1/echo/a/abort HTTP/1.1\r\nHost: x\r\n\r\n");
  auto first = raw.read();
  EXPECT_EQ(first.result_int(), 200u);
  EXPECT_TRUE(first.keep_alive());
  raw.send("GET /v1/echo/b/abort HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto second = raw.read();
  EXPECT_EQ(second.result_int(), 200u);
  EXPECT_EQ(parse_body(second)["params"]["id"], "b");
  EXPECT_TRUE(raw.wait_closed());
}

TEST_F(ApiTest, ExpectContinueIsAnswered) {
  auto server = start();
  ASSERT_TRUE(server);
  RawConn raw(sock());
  raw.send(
      "POST /v1/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n");
  auto interim = raw.read();  // beast reads the 100 as a message of its own
  EXPECT_EQ(interim.result_int(), 100u);
  raw.send("{\"a\":1}");
  auto res = raw.read();
  EXPECT_EQ(res.result_int(), 201u);
  EXPECT_EQ(parse_body(res)["got"]["a"], 1);
}

TEST_F(ApiTest, MissingSocketSaysNoServerListening) {
  auto c = Client::unix_socket(dir_ / "agent.sock");
  auto r = c.request("GET", "/v1/status");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::unavailable));
  EXPECT_EQ(r.error().code_string(), "api.unavailable");
  EXPECT_NE(r.error().message().find("no server listening on " + (dir_ / "agent.sock").string()),
            std::string::npos)
      << r.error().message();
  auto t = Client::tcp("127.0.0.1:1", "x").request("GET", "/v1/status");
  ASSERT_FALSE(t);
  EXPECT_TRUE(t.error().is(Code::unavailable)) << t.error().message();
}

TEST_F(ApiTest, ClientReconnectsAfterTheServerRestarts) {
  auto server = start();
  ASSERT_TRUE(server);
  auto c = Client::unix_socket(sock());
  ASSERT_TRUE(c.request("GET", "/v1/echo/1/abort"));
  server->stop();
  server = start();
  ASSERT_TRUE(server);
  auto r = c.request("GET", "/v1/echo/2/abort");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200);
}

TEST_F(ApiTest, PostAfterTheServerRestartedGoesOnAFreshConnection) {
  auto server = start();
  ASSERT_TRUE(server);
  auto c = Client::unix_socket(sock());
  ASSERT_TRUE(c.request("POST", "/v1/echo", json::object()));
  server->stop();
  server = start();
  ASSERT_TRUE(server);
  auto r = c.request("POST", "/v1/echo", json{{"a", 1}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 201);
}

TEST_F(ApiTest, ClientGivesUpAtItsTimeout) {
  auto server = start();
  ASSERT_TRUE(server);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  ASSERT_TRUE(server->route("GET", "/v1/stuck", [&](const Request&) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
    return Response::ok();
  }));
  auto c = Client::unix_socket(sock());
  auto r = c.request("GET", "/v1/stuck", nullptr, std::chrono::milliseconds(100));
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::timeout)) << r.error().message();
  // The same client works again on a new connection.
  auto again = c.request("GET", "/v1/echo/1/abort");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->status, 200);
}

TEST_F(ApiTest, ReplyThatIsNotJsonIsAProtocolError) {
  // A stand-in server that answers every connection with a text body.
  asio::io_context io;
  unix_stream::acceptor acceptor(io, unix_stream::endpoint(sock().string()));
  std::thread fake([&] {
    unix_stream::socket s(io);
    acceptor.accept(s);
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    http::read(s, buf, req);
    asio::write(s, asio::buffer(std::string(
                       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")));
  });
  auto r = Client::unix_socket(sock()).request("GET", "/v1/health");
  fake.join();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Code::protocol)) << r.error().message();
}

TEST_F(ApiTest, SlowClientBlocksNobody) {
  ServerOptions o;
  o.read_timeout = std::chrono::milliseconds(300);
  o.threads = 1;  // one thread: a blocking read would stall everything
  auto server = start(o);
  ASSERT_TRUE(server);
  RawConn slow(sock());
  slow.send("GET /v1/echo/slow/abort HTTP/1.1\r\nHost: x\r\nX-Half: ");
  std::atomic<bool> ok{false};
  std::thread other([&] {
    auto r = Client::unix_socket(sock()).request("GET", "/v1/echo/fast/abort");
    ok = r && r->status == 200;
  });
  other.join();
  EXPECT_TRUE(ok);
  // The half request is never completed: the server drops the connection.
  EXPECT_TRUE(slow.wait_closed());
}

TEST_F(ApiTest, ConnectionsOverTheLimitAreRefused) {
  ServerOptions o;
  o.max_connections = 2;
  auto server = start(o);
  ASSERT_TRUE(server);
  RawConn a(sock()), b(sock());
  for (RawConn* c : {&a, &b}) {
    c->send("GET /v1/echo/x/abort HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(c->read().result_int(), 200u);
  }
  RawConn third(sock());
  auto res = third.read();
  EXPECT_EQ(res.result_int(), 503u);
  EXPECT_EQ(error_code_of(parse_body(res)), "unavailable");
}

TEST_F(ApiTest, ManyConcurrentClients) {
  auto server = start();
  ASSERT_TRUE(server);
  std::atomic<int> served{0};
  ASSERT_TRUE(server->route("POST", "/v1/count", [&](const Request& r) {
    served.fetch_add(1);
    return Response::ok({{"n", r.body.value("n", -1)}});
  }));
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 50; ++t) {
    threads.emplace_back([&, t] {
      auto c = Client::unix_socket(sock());
      for (int i = 0; i < 20; ++i) {
        int n = t * 100 + i;
        auto r = c.request(i % 2 ? "POST" : "GET", i % 2 ? "/v1/count" : "/v1/echo/1/abort",
                           i % 2 ? json{{"n", n}} : json(nullptr));
        if (r && r->status == (i % 2 ? 200 : 200) && (!(i % 2) || r->body["n"] == n)) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 1000);
  EXPECT_EQ(served.load(), 500);
}

TEST_F(ApiTest, OneClientSharedByThreads) {
  auto server = start();
  ASSERT_TRUE(server);
  auto c = Client::unix_socket(sock());
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto r = c.request("GET", "/v1/echo/1/abort");
        if (r && r->status == 200) ++good;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 200);
}

}  // namespace
}  // namespace mup::api
