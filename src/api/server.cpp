#include "api/server.hpp"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "api/route.hpp"

namespace mup::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using unix_stream = asio::local::stream_protocol;
using json = nlohmann::json;
namespace stdfs = std::filesystem;

Response Response::error(int status, std::string code, std::string message, std::string field) {
  json e = {{"code", std::move(code)}, {"message", std::move(message)}};
  if (!field.empty()) e["field"] = std::move(field);
  return {status, json{{"error", std::move(e)}}};
}

namespace {

// Compares in time that depends only on the lengths, so a TCP client cannot learn the
// token byte by byte from response times.
bool constant_time_equal(std::string_view a, std::string_view b) {
  size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

bool authorized(std::string_view header, const std::string& token) {
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return false;
  return constant_time_equal(header.substr(kScheme.size()), token);
}

struct RouteEntry {
  std::string method;
  RoutePattern pattern;
  Handler handler;
  Access access = Access::token;
};

// What the sessions share with the server. Sessions hold it by shared_ptr, so one that
// outlives stop() (its handlers are destroyed with the io_context) never dangles.
struct Shared {
  ServerOptions options;
  std::shared_mutex mu;
  std::vector<RouteEntry> routes;
  std::atomic<size_t> connections{0};

  void log(std::string_view what) const {
    if (options.log)
      options.log(what);
    else
      std::cerr << "mup api: " << what << std::endl;
  }

  // Whether a request without the token may be served: its method and path match a public
  // route (and no more literal route of that method, which would be the one dispatched).
  bool is_public(std::string_view method, std::string_view target) {
    std::string_view path = split_target(target).path;
    std::shared_lock lock(mu);
    const RouteEntry* best = nullptr;
    for (const auto& r : routes) {
      if (r.method != method || !match_path(r.pattern, path)) continue;
      if (best && best->pattern.literals() >= r.pattern.literals()) continue;
      best = &r;
    }
    return best && best->access == Access::public_read;
  }

  // Finds the route, then parses the body (so an unknown path is a 404 whatever its body),
  // then runs the handler.
  Response dispatch(Request& req, const std::string& body) {
    Handler handler;
    std::string allow;
    {
      std::shared_lock lock(mu);
      const RouteEntry* best = nullptr;
      for (const auto& r : routes) {
        auto params = match_path(r.pattern, req.path);
        if (!params) continue;
        if (allow.find(r.method) == std::string::npos)
          allow += (allow.empty() ? "" : ", ") + r.method;
        if (r.method != req.method) continue;
        if (best && best->pattern.literals() >= r.pattern.literals()) continue;
        best = &r;
        req.params = std::move(*params);
      }
      if (best) handler = best->handler;
    }
    if (!handler) {
      if (allow.empty()) return Response::error(404, "not_found", "no route for " + req.path);
      Response r = Response::error(
          405, "method_not_allowed",
          req.method + " is not allowed on " + req.path + " (allowed: " + allow + ")");
      return r;
    }
    if (!body.empty()) {
      req.body = json::parse(body, nullptr, false);
      if (req.body.is_discarded())
        return Response::error(400, "bad_request", "request body is not valid JSON");
      if (!req.body.is_object())
        return Response::error(400, "bad_request", "request body must be a JSON object");
    }
    try {
      Response r = handler(req);
      if (r.status < 100 || r.status > 599) {
        log("the handler of " + req.method + " " + req.path + " returned status " +
            std::to_string(r.status));
        return Response::error(500, "internal", "the handler returned an invalid status");
      }
      return r;
    } catch (const std::exception& e) {
      log("the handler of " + req.method + " " + req.path + " threw: " + e.what());
      return Response::error(500, "internal", std::string("internal error: ") + e.what());
    } catch (...) {
      log("the handler of " + req.method + " " + req.path + " threw a non-exception");
      return Response::error(500, "internal", "internal error");
    }
  }
};

// One connection. All its work runs on one strand (the socket's executor, shared with the
// deadline timer), so it needs no locks of its own.
template <class Socket>
class Session : public std::enable_shared_from_this<Session<Socket>> {
 public:
  // The caller has counted this connection in shared->connections; the session uncounts it.
  Session(Socket socket, std::shared_ptr<Shared> shared, bool tcp)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        shared_(std::move(shared)),
        tcp_(tcp) {}
  ~Session() { shared_->connections.fetch_sub(1); }

  void run() { read(); }

 private:
  // The deadline covers a whole request (or a whole response write). A generation number
  // tells a stale expiry, queued just before the timer was re-armed, from the current one.
  void arm() {
    uint64_t gen = ++generation_;
    timer_.expires_after(shared_->options.read_timeout);
    timer_.async_wait([self = this->shared_from_this(), gen](beast::error_code ec) {
      if (ec || gen != self->generation_) return;
      beast::error_code ignored;
      self->socket_.close(ignored);
    });
  }
  void disarm() {
    ++generation_;
    timer_.cancel();
  }

  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(shared_->options.max_header));
    parser_->body_limit(shared_->options.max_body);
    arm();  // stays armed until the whole request is in
    http::async_read_header(socket_, buf_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->read_failed(ec);
                              self->read_body();
                            });
  }

  void read_body() {
    auto& req = parser_->get();
    if (tcp_) {
      // Checked on the header, so a client without the token cannot make us read (or
      // invite, with 100 Continue) a body; the connection closes after the 401.
      auto auth = req[http::field::authorization];
      if (!authorized(std::string_view(auth.data(), auth.size()), shared_->options.bearer_token) &&
          !shared_->is_public(
              std::string_view(req.method_string().data(), req.method_string().size()),
              std::string_view(req.target().data(), req.target().size())))
        return send(Response::error(401, "unauthorized",
                                    "this API needs `Authorization: Bearer <token>` over TCP"),
                    false);
    }
    auto expect = req[http::field::expect];
    if (beast::iequals(expect, "100-continue") && !parser_->is_done()) {
      // curl and others wait for this before sending a body.
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     req.version());
      http::async_write(socket_, *cont,
                        [self = this->shared_from_this(), cont](beast::error_code ec, size_t) {
                          if (ec) return self->close();
                          self->read_rest();
                        });
      return;
    }
    read_rest();
  }

  void read_rest() {
    http::async_read(socket_, buf_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->read_failed(ec);
                       self->handle();
                     });
  }

  // The request could not be read whole. Limits get their answer; for the rest (the peer
  // went away, the deadline closed the socket, bytes that are not HTTP) the connection is
  // simply closed, except a parse error, which gets a 400 first.
  void read_failed(beast::error_code ec) {
    disarm();
    if (ec == http::error::body_limit)
      return send(Response::error(413, "too_large",
                                  "request body exceeds " +
                                      std::to_string(shared_->options.max_body) + " bytes"),
                  false);
    if (ec == http::error::header_limit)
      return send(Response::error(431, "headers_too_large",
                                  "request headers exceed " +
                                      std::to_string(shared_->options.max_header) + " bytes"),
                  false);
    if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
      return send(Response::error(400, "bad_request", "malformed HTTP request: " + ec.message()),
                  false);
    close();
  }

  void handle() {
    disarm();
    auto& msg = parser_->get();
    bool keep = msg.keep_alive();
    Request req;
    req.method = std::string(msg.method_string());
    Target t = split_target(std::string_view(msg.target().data(), msg.target().size()));
    req.path = std::string(t.path);
    req.query = parse_query(t.query);
    req.tcp = tcp_;
    send(shared_->dispatch(req, msg.body()), keep);
  }

  void send(const Response& r, bool keep) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(r.status));
    res->set(http::field::server, "mup");
    res->set(http::field::content_type,
             r.content_type.empty() ? std::string("application/json") : r.content_type);
    if (r.status == 401) res->set(http::field::www_authenticate, "Bearer");
    res->keep_alive(keep);
    if (!r.content_type.empty()) {
      res->body() = r.raw;
    } else {
      // Invalid UTF-8 in a handler's strings is replaced, not thrown about.
      res->body() = r.body.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    res->prepare_payload();
    arm();
    http::async_write(socket_, *res,
                      [self = this->shared_from_this(), res, keep](beast::error_code ec, size_t) {
                        self->disarm();
                        if (ec) return self->close();
                        if (!keep) return self->linger_close();
                        self->read();
                      });
  }

  // Closing with unread request bytes (a refused body) would make the kernel reset the
  // connection, and the client could lose our answer. So: stop sending, read and drop what
  // the client still sends until it closes, up to the deadline or kMaxDrain bytes.
  void linger_close() {
    static constexpr size_t kMaxDrain = 16 << 20;
    beast::error_code ec;
    socket_.shutdown(Socket::shutdown_send, ec);
    if (ec) return close();
    arm();
    drain(kMaxDrain);
  }
  void drain(size_t budget) {
    if (!drain_buf_) drain_buf_ = std::make_unique<std::array<char, 8192>>();
    socket_.async_read_some(asio::buffer(*drain_buf_), [self = this->shared_from_this(), budget](
                                                           beast::error_code ec, size_t n) {
      if (ec || n >= budget) {
        self->disarm();
        return self->close();
      }
      self->drain(budget - n);
    });
  }

  void close() {
    beast::error_code ec;
    socket_.shutdown(Socket::shutdown_send, ec);
    socket_.close(ec);
  }

  Socket socket_;
  asio::steady_timer timer_;
  std::shared_ptr<Shared> shared_;
  bool tcp_;
  uint64_t generation_ = 0;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::unique_ptr<std::array<char, 8192>> drain_buf_;
};

// A connection over the limit gets a short 503 and is closed. The socket is fresh, so the
// tiny write goes to the kernel's buffer; non-blocking so a full buffer cannot stall us.
template <class Socket>
void refuse(Socket& s) {
  static const std::string kBusy = [] {
    std::string body = R"({"error":{"code":"unavailable","message":"too many connections"}})";
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           "Connection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  beast::error_code ec;
  s.non_blocking(true, ec);
  s.write_some(asio::buffer(kBusy.data(), kBusy.size()), ec);
  s.shutdown(Socket::shutdown_send, ec);
  s.close(ec);
}

Result<std::pair<asio::ip::address, uint16_t>> parse_listen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos)
    return fail(Errc::invalid_argument, "TCP listen address wants HOST:PORT, got " + listen);
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return fail(Errc::invalid_argument, "cannot listen on " + listen + ": " + ec.message());
  if (!addr.is_loopback())
    return fail(Errc::invalid_argument,
                "cannot listen on " + listen + ": the API listens on loopback addresses only");
  unsigned long port = 0;
  try {
    size_t used = 0;
    port = std::stoul(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1) port = 65536;
  } catch (...) {
    port = 65536;
  }
  if (port > 65535) return fail(Errc::invalid_argument, "bad port in " + listen);
  return std::make_pair(addr, static_cast<uint16_t>(port));
}

// Makes `path` free for a new socket: a socket file nothing accepts on is removed; a live
// one, or anything that is not a socket, is left alone and reported.
Status clear_stale_socket(const stdfs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return fail_errno("lstat", path.string(), errno);
  }
  if (!S_ISSOCK(st.st_mode))
    return fail(Errc::already_exists,
                path.string() + " exists and is not a socket; refusing to replace it");
  asio::io_context io;
  unix_stream::socket probe(io);
  boost::system::error_code ec;
  probe.connect(unix_stream::endpoint(path.string()), ec);
  if (!ec) return fail(Code::busy, "another process serves " + path.string() + "; stop it first");
  if (ec != asio::error::connection_refused && ec != asio::error::not_found)
    return fail(Errc::io, "cannot tell whether " + path.string() + " is in use: " + ec.message());
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return fail_errno("unlink stale socket", path.string(), errno);
  return {};
}

}  // namespace

struct Server::Impl {
  std::shared_ptr<Shared> shared = std::make_shared<Shared>();
  // Optional so that stop() can destroy them (closing every connection) while the Server
  // object lives on. The acceptors go first: they use the io_context.
  std::optional<asio::io_context> ioc;
  std::optional<unix_stream::acceptor> unix_acceptor;
  std::optional<tcp::acceptor> tcp_acceptor;
  std::vector<std::thread> threads;
  uint16_t port = 0;
  // The socket file this server made, to remove it at stop() only if it is still ours.
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;
  std::mutex stop_mu;
  bool stopped = false;

  template <class Acceptor>
  void accept(Acceptor& acceptor, bool is_tcp) {
    acceptor.async_accept(
        asio::make_strand(*ioc), [this, &acceptor, is_tcp](beast::error_code ec, auto socket) {
          if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
          if (ec) {
            // Out of descriptors, most likely: pause instead of spinning on the error.
            auto t = std::make_shared<asio::steady_timer>(*ioc, std::chrono::milliseconds(50));
            t->async_wait(
                [this, &acceptor, is_tcp, t](beast::error_code) { accept(acceptor, is_tcp); });
            return;
          }
          if (shared->connections.fetch_add(1) >= shared->options.max_connections) {
            shared->connections.fetch_sub(1);
            refuse(socket);
          } else {
            using S = std::decay_t<decltype(socket)>;
            std::make_shared<Session<S>>(std::move(socket), shared, is_tcp)->run();
          }
          accept(acceptor, is_tcp);
        });
  }

  Status listen_unix(const stdfs::path& path) {
    if (path.string().size() >= sizeof(sockaddr_un{}.sun_path))
      return fail(Errc::invalid_argument,
                  "socket path " + path.string() + " is too long for a unix socket (max " +
                      std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes)");
    MUP_TRY(clear_stale_socket(path));
    unix_acceptor.emplace(*ioc);
    boost::system::error_code ec;
    unix_acceptor->open(unix_stream(), ec);
    if (!ec) unix_acceptor->bind(unix_stream::endpoint(path.string()), ec);
    if (ec) return fail(Errc::io, "cannot bind " + path.string() + ": " + ec.message());
    // Owner-only before listen(): until then a connect is refused, so nobody slips in
    // while the file still has the umask's mode.
    if (::chmod(path.c_str(), 0600) != 0) return fail_errno("chmod", path.string(), errno);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      socket_dev = st.st_dev;
      socket_ino = st.st_ino;
    }
    unix_acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return fail(Errc::io, "cannot listen on " + path.string() + ": " + ec.message());
    return {};
  }

  Status listen_tcp(const std::string& listen) {
    auto where = parse_listen(listen);
    if (!where) return tl::unexpected(where.error());
    tcp::endpoint ep(where->first, where->second);
    tcp_acceptor.emplace(*ioc);
    boost::system::error_code ec;
    tcp_acceptor->open(ep.protocol(), ec);
    if (!ec) tcp_acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) tcp_acceptor->bind(ep, ec);
    if (!ec) tcp_acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return fail(Errc::io, "cannot listen on " + listen + ": " + ec.message());
    port = tcp_acceptor->local_endpoint(ec).port();
    return {};
  }

  void remove_socket_file() {
    const auto& path = shared->options.unix_socket;
    if (path.empty() || socket_ino == 0) return;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && st.st_dev == socket_dev && st.st_ino == socket_ino)
      ::unlink(path.c_str());
    socket_ino = 0;
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Server>> Server::start(ServerOptions options) {
  if (options.unix_socket.empty() && options.tcp_listen.empty())
    return fail(Errc::invalid_argument, "the API server needs a unix socket or a TCP address");
  if (!options.tcp_listen.empty() && options.bearer_token.empty())
    return fail(Errc::invalid_argument,
                "listening on " + options.tcp_listen + " needs a bearer token");
  auto impl = std::make_unique<Impl>();
  impl->shared->options = std::move(options);
  impl->ioc.emplace();
  const ServerOptions& o = impl->shared->options;
  // The Server does not exist yet, so a failure here cleans up by hand: the socket file
  // goes only once it is ours.
  auto failed = [&](Error e) {
    impl->remove_socket_file();
    return tl::unexpected<Error>(std::move(e));
  };
  if (!o.unix_socket.empty())
    if (auto s = impl->listen_unix(o.unix_socket); !s) return failed(s.error());
  if (!o.tcp_listen.empty())
    if (auto s = impl->listen_tcp(o.tcp_listen); !s) return failed(s.error());
  if (impl->unix_acceptor) impl->accept(*impl->unix_acceptor, false);
  if (impl->tcp_acceptor) impl->accept(*impl->tcp_acceptor, true);
  Impl* raw = impl.get();
  for (unsigned i = 0; i < std::max(1u, o.threads); ++i)
    raw->threads.emplace_back([raw] {
      // Nothing of ours throws out of a completion handler, but should something (an
      // allocation), one connection is lost, not the process.
      for (;;) {
        try {
          raw->ioc->run();
          return;
        } catch (const std::exception& e) {
          raw->shared->log(std::string("unexpected exception in the server loop: ") + e.what());
        }
      }
    });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::~Server() {
  stop();
}

Status Server::route(std::string method, std::string_view pattern, Handler handler, Access access) {
  auto p = parse_pattern(pattern);
  if (!p) return tl::unexpected(p.error());
  if (!handler) return fail(Errc::invalid_argument, "no handler for " + method + " " + p->source);
  if (access == Access::public_read && method != "GET" && method != "HEAD")
    return fail(Errc::invalid_argument,
                "only GET and HEAD routes may be public, not " + method + " " + p->source);
  std::unique_lock lock(impl_->shared->mu);
  for (auto& r : impl_->shared->routes) {
    if (r.method == method && r.pattern.source == p->source) {
      r.handler = std::move(handler);
      r.access = access;
      return {};
    }
  }
  impl_->shared->routes.push_back({std::move(method), std::move(*p), std::move(handler), access});
  return {};
}

uint16_t Server::port() const {
  return impl_->port;
}

void Server::stop() {
  std::lock_guard lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->ioc->stop();
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
  impl_->threads.clear();
  impl_->remove_socket_file();
  // Destroying the io_context destroys the sessions' pending handlers and with them the
  // sessions, so every client sees its connection close.
  impl_->unix_acceptor.reset();
  impl_->tcp_acceptor.reset();
  impl_->ioc.reset();
}

}  // namespace mup::api
