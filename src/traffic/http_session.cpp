// One client connection in HTTP/1.1 mode: read a request header, pick a backend, forward
// the request on a pooled (or new) upstream connection, stream the bodies both ways, and
// loop while both sides keep the connection alive.
//
// Bodies are never buffered whole: the parsers use buffer_body over one 64 KiB buffer per
// session, and each piece read is written on before the next is read (Beast's relay
// pattern), so memory per session is bounded whatever Content-Length says. Chunked bodies
// are decoded and re-chunked; a response delimited by the upstream closing is re-framed as
// chunked for an HTTP/1.1 client (and the upstream connection is not pooled).
//
// Retries (at most 2, each on a backend not tried yet for this request): a failed connect,
// for any method; for an idempotent method, a connection that failed before the request
// body was touched and before any response byte arrived (typically a pooled connection the
// backend had closed). Otherwise the client gets 502, or its connection is closed when the
// response had already begun.
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstdio>
#include <limits>
#include <optional>

#include "traffic/backend.hpp"

namespace mup::traffic {

namespace http = beast::http;

namespace {

constexpr size_t kBufSize = 64 * 1024;
constexpr int kMaxAttempts = 3;
constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

auto redirect(beast::error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

bool idempotent(http::verb v) {
  switch (v) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::put:
    case http::verb::delete_:
    case http::verb::options:
    case http::verb::trace: return true;
    default: return false;
  }
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// Removes the hop-by-hop headers (RFC 9110 7.6.1), those the Connection header names
// included; framing headers (Content-Length, Transfer-Encoding) stay: the serializer
// writes the body as the parser framed it.
template <bool isRequest>
void strip_hop_by_hop(http::header<isRequest, http::fields>& h) {
  std::vector<std::string> named;
  for (auto token : http::token_list(h[http::field::connection])) {
    std::string_view t(token.data(), token.size());
    if (!iequals(t, "close") && !iequals(t, "keep-alive") && !iequals(t, "transfer-encoding") &&
        !iequals(t, "content-length"))
      named.emplace_back(t);
  }
  h.erase(http::field::connection);
  h.erase(http::field::keep_alive);
  h.erase("Proxy-Connection");
  h.erase(http::field::te);
  h.erase(http::field::upgrade);
  h.erase(http::field::proxy_authorization);
  for (const auto& n : named) h.erase(n);
}

bool is_http_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category();
}

enum class Relay { ok, read_failed, write_failed };

// Streams the rest of the body `p` is reading from `in` into `out` through `sr` (whose
// header has been written), one buffer at a time.
template <bool isRequest>
asio::awaitable<Relay> relay_body(beast::tcp_stream& in, beast::flat_buffer& inbuf,
                                  http::parser<isRequest, http::buffer_body>& p,
                                  beast::tcp_stream& out,
                                  http::serializer<isRequest, http::buffer_body>& sr, char* buf,
                                  std::chrono::milliseconds timeout) {
  beast::error_code ec;
  auto& body = p.get().body();
  while (!p.is_done()) {
    body.data = buf;
    body.size = kBufSize;
    in.expires_after(timeout);
    co_await http::async_read_some(in, inbuf, p, redirect(ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return Relay::read_failed;
    size_t got = kBufSize - body.size;
    if (got == 0 && !p.is_done()) continue;  // a chunk header, no data yet
    body.data = got ? buf : nullptr;
    body.size = got;
    body.more = !p.is_done();
    out.expires_after(timeout);
    co_await http::async_write(out, sr, redirect(ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return Relay::write_failed;
  }
  if (!sr.is_done()) {
    body.data = nullptr;
    body.size = 0;
    body.more = false;
    out.expires_after(timeout);
    co_await http::async_write(out, sr, redirect(ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return Relay::write_failed;
  }
  co_return Relay::ok;
}

class HttpSession final : public Lease {
 public:
  HttpSession(std::shared_ptr<RouteRuntime> rt, Worker& w, tcp::socket sock)
      : rt_(std::move(rt)), w_(w), limits_(*rt_->limits), client_(std::move(sock)) {
    beast::error_code ec;
    auto ep = client_.socket().remote_endpoint(ec);
    if (!ec) client_ip_ = ep.address().to_string();
    client_.socket().set_option(tcp::no_delay(true), ec);
  }

  void force_close() override {
    beast::error_code ec;
    client_.socket().close(ec);
    if (up_) up_->stream.socket().close(ec);
  }

  asio::awaitable<void> run() {
    for (;;) {
      http::request_parser<http::buffer_body> req_p;
      req_p.header_limit(static_cast<uint32_t>(limits_.max_header_bytes));
      req_p.body_limit(std::numeric_limits<std::uint64_t>::max());  // streamed, never held whole
      beast::error_code ec;
      client_.expires_after(limits_.client_idle);
      co_await http::async_read_header(client_, cbuf_, req_p, redirect(ec));
      if (ec == http::error::header_limit) {
        co_await send_simple(http::status::request_header_fields_too_large, 11, false, false);
        break;
      }
      if (ec) {
        if (is_http_error(ec) && ec != http::error::end_of_stream &&
            ec != http::error::partial_message)
          co_await send_simple(http::status::bad_request, 11, false, false);
        break;
      }
      if (!co_await handle(req_p)) break;
    }
    beast::error_code ec;
    client_.socket().shutdown(tcp::socket::shutdown_send, ec);
    client_.socket().close(ec);
  }

 private:
  enum class Attempt { ok, retry, bad_gateway, client_gone };

  // A proxy-made answer; false when the client could not be written to.
  asio::awaitable<bool> send_simple(http::status st, unsigned version, bool keep,
                                    bool retry_after) {
    http::response<http::string_body> r{st, version};
    r.set(http::field::server, "mup-proxy");
    r.set(http::field::content_type, "text/plain");
    if (retry_after) r.set(http::field::retry_after, "1");
    r.keep_alive(keep);
    r.body() = std::string(http::obsolete_reason(st)) + "\n";
    r.prepare_payload();
    beast::error_code ec;
    client_.expires_after(limits_.io_timeout);
    co_await http::async_write(client_, r, redirect(ec));
    co_return !ec;
  }

  // Connects if needed, sends the request head (and body), reads the response head.
  asio::awaitable<Attempt> attempt(http::request_parser<http::buffer_body>& req_p,
                                   std::optional<http::response_parser<http::buffer_body>>& res_p,
                                   bool reused) {
    auto& req = req_p.get();
    bool may_retry = idempotent(req.method());
    beast::error_code ec;
    if (!reused && !co_await connect_upstream(*up_, limits_.connect_timeout))
      co_return Attempt::retry;
    bool has_body = !req_p.is_done();
    http::request_serializer<http::buffer_body> sr(req);
    up_->stream.expires_after(limits_.io_timeout);
    if (has_body) {
      co_await http::async_write_header(up_->stream, sr, redirect(ec));
      if (ec) co_return may_retry ? Attempt::retry : Attempt::bad_gateway;
      if (expects_continue_) {
        // The client waits for this before sending its body; the upstream was not asked.
        expects_continue_ = false;
        client_.expires_after(limits_.io_timeout);
        co_await asio::async_write(client_, asio::buffer(kContinue, sizeof(kContinue) - 1),
                                   redirect(ec));
        if (ec) co_return Attempt::client_gone;
      }
      Relay r = co_await relay_body(client_, cbuf_, req_p, up_->stream, sr, buf_.get(),
                                    limits_.io_timeout);
      if (r == Relay::read_failed) co_return Attempt::client_gone;
      if (r == Relay::write_failed) co_return Attempt::bad_gateway;
      may_retry = false;  // the body is gone: it cannot be sent again
    } else {
      req.body().data = nullptr;
      req.body().size = 0;
      req.body().more = false;
      co_await http::async_write(up_->stream, sr, redirect(ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return may_retry ? Attempt::retry : Attempt::bad_gateway;
    }
    for (;;) {
      res_p.emplace();
      res_p->header_limit(static_cast<uint32_t>(limits_.max_response_header_bytes));
      res_p->body_limit(std::numeric_limits<std::uint64_t>::max());
      if (req.method() == http::verb::head) res_p->skip(true);
      up_->stream.expires_after(limits_.io_timeout);
      co_await http::async_read_header(up_->stream, up_->buf, *res_p, redirect(ec));
      if (ec) {
        bool nothing_read = up_->buf.size() == 0 && ec != beast::error::timeout;
        co_return may_retry&& nothing_read ? Attempt::retry : Attempt::bad_gateway;
      }
      int st = res_p->get().result_int();
      if (st < 100 || st >= 200) break;
      if (st == 101) co_return Attempt::bad_gateway;  // upgrades are not proxied
      // An interim answer (100 Continue, 103): pass it on, wait for the final one.
      if (st == 100) {
        client_.expires_after(limits_.io_timeout);
        co_await asio::async_write(client_, asio::buffer(kContinue, sizeof(kContinue) - 1),
                                   redirect(ec));
        if (ec) co_return Attempt::client_gone;
      }
      may_retry = false;
    }
    co_return Attempt::ok;
  }

  // Forwards one request; true when the client connection stays open for the next one.
  asio::awaitable<bool> handle(http::request_parser<http::buffer_body>& req_p) {
    auto start = std::chrono::steady_clock::now();
    auto& req = req_p.get();
    bool client_keep = req.keep_alive();
    unsigned client_version = req.version() == 10 ? 10 : 11;
    http::verb method = req.method();
    strip_hop_by_hop(req.base());
    expects_continue_ = false;
    if (auto ex = req.find(http::field::expect); ex != req.end()) {
      expects_continue_ = iequals({ex->value().data(), ex->value().size()}, "100-continue");
      req.erase(http::field::expect);
    }
    if (auto xff = req.find("X-Forwarded-For"); xff != req.end()) {
      std::string v(xff->value().data(), xff->value().size());
      req.set("X-Forwarded-For", v + ", " + client_ip_);
    } else {
      req.set("X-Forwarded-For", client_ip_);
    }
    req.version(11);
    req.keep_alive(true);
    if (!buf_) buf_ = std::make_unique<char[]>(kBufSize);

    std::shared_ptr<const Table> table = rt_->table.load(std::memory_order_acquire);
    Backend* tried[kMaxAttempts];
    size_t ntried = 0;
    BackendLease lease;
    std::optional<http::response_parser<http::buffer_body>> res_p;
    Attempt outcome = Attempt::bad_gateway;
    while (ntried < kMaxAttempts) {
      const std::shared_ptr<Backend>* pick = table->pick(w_.index, {tried, ntried});
      if (!pick) break;
      if (lease) lease->stats().on_retry();
      lease = BackendLease(*pick, w_.index, this);
      tried[ntried++] = lease.get();
      up_ = lease->take_idle(w_.index);
      bool reused = up_ != nullptr;
      if (!up_) up_ = std::make_unique<UpstreamConn>(w_.ioc, *pick);
      outcome = co_await attempt(req_p, res_p, reused);
      if (outcome != Attempt::retry) break;
      up_.reset();
    }
    auto elapsed = [&] { return std::chrono::steady_clock::now() - start; };
    bool body_left = !req_p.is_done();
    if (!lease) {  // no backend to route to
      // Proxy-made answers are counted before they are sent: they are decided here.
      table->unrouted().on_finish(503, true, elapsed());
      bool ok = co_await send_simple(http::status::service_unavailable, client_version,
                                     client_keep && !body_left, true);
      co_return ok&& client_keep && !body_left;
    }
    if (outcome == Attempt::client_gone) {
      up_.reset();
      lease->stats().on_finish(0, true, elapsed());
      co_return false;
    }
    if (outcome != Attempt::ok) {  // retry (attempts exhausted) or bad_gateway
      up_.reset();
      lease->stats().on_finish(502, true, elapsed());
      lease.release();
      bool ok = co_await send_simple(http::status::bad_gateway, client_version,
                                     client_keep && !body_left, false);
      co_return ok&& client_keep && !body_left;
    }

    auto& res = res_p->get();
    int status = res.result_int();
    bool up_keep = res.keep_alive();
    strip_hop_by_hop(res.base());
    bool no_body = method == http::verb::head || status == 204 || status == 304;
    if (!no_body && !res_p->chunked() && !res_p->content_length()) {
      up_keep = false;  // delimited by the upstream closing
      if (client_version == 11) {
        res.chunked(true);
      } else {
        client_keep = false;
      }
    }
    if (client_version == 10 && res_p->chunked()) {
      res.chunked(false);  // an HTTP/1.0 client reads until we close
      client_keep = false;
    }
    if (body_left) client_keep = false;  // the request body was not read whole
    res.version(client_version);
    res.keep_alive(client_keep);
    http::response_serializer<http::buffer_body> sr(res);
    beast::error_code ec;
    client_.expires_after(limits_.io_timeout);
    co_await http::async_write_header(client_, sr, redirect(ec));
    bool ok = !ec;
    bool broken = !!ec;
    if (ok && !no_body) {
      Relay r = co_await relay_body(up_->stream, up_->buf, *res_p, client_, sr, buf_.get(),
                                    limits_.io_timeout);
      ok = r == Relay::ok;
      broken = !ok;
    }
    if (ok && up_keep && res_p->is_done()) {
      lease->put_idle(w_.index, std::move(up_));
    } else {
      up_.reset();
    }
    lease->stats().on_finish(status, broken, elapsed());
    co_return ok&& client_keep;
  }

  std::shared_ptr<RouteRuntime> rt_;
  Worker& w_;
  const ProxyLimits& limits_;
  beast::tcp_stream client_;
  beast::flat_buffer cbuf_;
  std::string client_ip_;
  std::unique_ptr<UpstreamConn> up_;
  std::unique_ptr<char[]> buf_;
  bool expects_continue_ = false;  // the client sent Expect: 100-continue
};

asio::awaitable<void> http_session(std::shared_ptr<RouteRuntime> rt, Worker& w, tcp::socket sock) {
  HttpSession s(std::move(rt), w, std::move(sock));
  co_await s.run();
}

}  // namespace

void report_session_failure(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "mup proxy: a session failed: %s\n", ex.what());
  } catch (...) {
    std::fprintf(stderr, "mup proxy: a session failed\n");
  }
}

void start_http_session(std::shared_ptr<RouteRuntime> rt, Worker& w, tcp::socket sock) {
  asio::co_spawn(w.ioc, http_session(std::move(rt), w, std::move(sock)), report_session_failure);
}

}  // namespace mup::traffic
