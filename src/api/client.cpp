#include "api/client.hpp"

#include <sys/un.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mutex>
#include <optional>

namespace mup::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using unix_stream = asio::local::stream_protocol;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Servers close keep-alive connections idle for their read timeout (10 s by default); a
// POST, which is not retried, goes on a fresh connection once the kept one is this old.
constexpr auto kMaxIdleForPost = std::chrono::seconds(2);
constexpr size_t kMaxReplyBody = 64 << 20;

bool idempotent(http::verb v) {
  return v == http::verb::get || v == http::verb::head || v == http::verb::put ||
         v == http::verb::delete_ || v == http::verb::options;
}

// An error on a kept connection that means the server had closed it before our request.
bool closed_by_peer(beast::error_code ec) {
  return ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::eof;
}

}  // namespace

struct Client::Impl {
  bool is_unix = true;
  std::string target;  // socket path or host:port
  std::string host, port, token;
  std::mutex mu;
  asio::io_context ioc;
  std::optional<unix_stream::socket> unix_socket;
  std::optional<tcp::socket> tcp_socket;
  beast::flat_buffer buf;
  Clock::time_point last_used;

  bool connected() const {
    return (unix_socket && unix_socket->is_open()) || (tcp_socket && tcp_socket->is_open());
  }
  void close() {
    beast::error_code ec;
    if (unix_socket) unix_socket->close(ec);
    if (tcp_socket) tcp_socket->close(ec);
    unix_socket.reset();
    tcp_socket.reset();
    buf.clear();
  }

  // Runs what was started on the io_context until it is done or the deadline passes; then
  // the connection is closed (completing the operations as aborted). False on deadline.
  bool run_until(Clock::time_point deadline) {
    ioc.restart();
    ioc.run_until(deadline);
    if (ioc.stopped()) return true;
    close();
    ioc.run();
    return false;
  }

  Error timed_out(std::string_view what, std::chrono::milliseconds timeout) const {
    return make_error(Code::timeout, "no reply from " + target + " within " +
                                         std::to_string(timeout.count()) + " ms (" +
                                         std::string(what) + ")");
  }

  Status connect(Clock::time_point deadline, std::chrono::milliseconds timeout) {
    beast::error_code ec = asio::error::would_block;
    if (is_unix) {
      if (target.size() >= sizeof(sockaddr_un{}.sun_path))
        return fail(Errc::invalid_argument, "socket path " + target + " is too long");
      unix_socket.emplace(ioc);
      unix_socket->async_connect(unix_stream::endpoint(target),
                                 [&](beast::error_code e) { ec = e; });
    } else {
      tcp::resolver resolver(ioc);
      auto results = resolver.resolve(host, port, ec);
      if (ec) return fail(Code::unavailable, "cannot resolve " + target + ": " + ec.message());
      tcp_socket.emplace(ioc);
      asio::async_connect(*tcp_socket, results,
                          [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    }
    if (!run_until(deadline)) return tl::unexpected(timed_out("connecting", timeout));
    if (!ec) return {};
    close();
    if (ec == asio::error::connection_refused || ec == asio::error::not_found ||
        ec == boost::system::errc::no_such_file_or_directory)
      return fail(Code::unavailable, "no server listening on " + target);
    return fail(Code::unavailable, "cannot connect to " + target + ": " + ec.message());
  }

  // A kept connection the server has closed reads as end-of-file (or has unexpected bytes):
  // checked without blocking before reuse, so even a POST need not go out on a dead one.
  template <class Socket>
  static bool still_open(Socket& socket) {
    beast::error_code ec;
    socket.non_blocking(true, ec);  // only sync calls see this; async ones manage their own
    if (ec) return false;
    char c;
    socket.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::would_block;
  }
  bool kept_connection_usable() {
    if (unix_socket && unix_socket->is_open()) return still_open(*unix_socket);
    if (tcp_socket && tcp_socket->is_open()) return still_open(*tcp_socket);
    return false;
  }

  // One request and its reply on the open connection. `stale` says the failure looks like
  // a connection the server had already closed (nothing of a reply came back).
  template <class Socket>
  Result<Reply> exchange(Socket& socket, http::request<http::string_body>& req,
                         Clock::time_point deadline, std::chrono::milliseconds timeout,
                         bool& stale) {
    stale = false;
    beast::error_code ec = asio::error::would_block;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxReplyBody);
    http::async_write(socket, req, [&](beast::error_code e, size_t) {
      ec = e;
      if (e) return;
      ec = asio::error::would_block;
      http::async_read(socket, buf, parser, [&](beast::error_code e2, size_t) { ec = e2; });
    });
    std::string what = std::string(req.method_string()) + " " + std::string(req.target());
    if (!run_until(deadline)) return tl::unexpected(timed_out(what, timeout));
    if (ec) {
      stale = closed_by_peer(ec) && !parser.got_some();
      close();
      if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
          ec != http::error::end_of_stream && ec != http::error::partial_message)
        return fail(Code::protocol,
                    "bad HTTP reply from " + target + " to " + what + ": " + ec.message());
      return fail(Code::unavailable,
                  "connection to " + target + " lost during " + what + ": " + ec.message());
    }
    auto& res = parser.get();
    if (!res.keep_alive()) close();
    Reply reply;
    reply.status = static_cast<int>(res.result_int());
    if (!res.body().empty()) {
      reply.body = json::parse(res.body(), nullptr, false);
      if (reply.body.is_discarded())
        return fail(Code::protocol, "reply from " + target + " to " + what + " (status " +
                                        std::to_string(reply.status) + ") is not JSON");
    }
    return reply;
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Client Client::unix_socket(std::filesystem::path path) {
  auto impl = std::make_unique<Impl>();
  impl->is_unix = true;
  impl->target = path.string();
  return Client(std::move(impl));
}

Client Client::tcp(std::string host_port, std::string token) {
  auto impl = std::make_unique<Impl>();
  impl->is_unix = false;
  size_t colon = host_port.rfind(':');
  impl->host = colon == std::string::npos ? host_port : host_port.substr(0, colon);
  impl->port = colon == std::string::npos ? "" : host_port.substr(colon + 1);
  if (impl->host.size() > 2 && impl->host.front() == '[' && impl->host.back() == ']')
    impl->host = impl->host.substr(1, impl->host.size() - 2);
  impl->target = std::move(host_port);
  impl->token = std::move(token);
  return Client(std::move(impl));
}

const std::string& Client::target() const {
  return impl_->target;
}

Result<Reply> Client::request(const std::string& method, const std::string& path,
                              const nlohmann::json& body, std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown)
    return fail(Errc::invalid_argument, "unknown HTTP method " + method);
  if (path.empty() || path[0] != '/')
    return fail(Errc::invalid_argument, "request path must start with '/': " + path);
  http::request<http::string_body> req{verb, path, 11};
  req.set(http::field::host, d.is_unix ? std::string("localhost") : d.target);
  req.set(http::field::user_agent, "mup");
  if (!d.is_unix) req.set(http::field::authorization, "Bearer " + d.token);
  if (!body.is_null()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  req.keep_alive(true);
  req.prepare_payload();

  std::lock_guard lock(d.mu);
  auto deadline = Clock::now() + timeout;
  if (d.connected() && (!d.kept_connection_usable() ||
                        (!idempotent(verb) && Clock::now() - d.last_used > kMaxIdleForPost)))
    d.close();
  for (int attempt = 0;; ++attempt) {
    bool reused = d.connected();
    if (!reused) MUP_TRY(d.connect(deadline, timeout));
    bool stale = false;
    Result<Reply> r = d.is_unix ? d.exchange(*d.unix_socket, req, deadline, timeout, stale)
                                : d.exchange(*d.tcp_socket, req, deadline, timeout, stale);
    d.last_used = Clock::now();
    if (!r && stale && reused && attempt == 0 && idempotent(verb)) continue;
    return r;
  }
}

}  // namespace mup::api
