// One client connection in TCP mode: pick a backend by weight (retrying a failed connect
// on another one, at most twice), then copy bytes both ways until both directions have
// ended. EOF on one side is passed on as a half-close; an error on either closes both.
// The pair holds its backend lease for its whole life, so a drain deadline cuts it.
#include <cstdio>

#include "traffic/backend.hpp"

namespace mup::traffic {

namespace {

constexpr size_t kPumpBuf = 32 * 1024;
constexpr int kMaxAttempts = 3;

class TcpPair final : public Lease {
 public:
  TcpPair(std::shared_ptr<RouteRuntime> rt, Worker& w, tcp::socket sock)
      : rt_(std::move(rt)), w_(w), client_(std::move(sock)) {}

  ~TcpPair() {
    if (lease_) {
      auto d = std::chrono::steady_clock::now() - start_;
      lease_->stats().on_finish(0, broken_, d, false);
    }
  }

  void force_close() override {
    beast::error_code ec;
    client_.socket().close(ec);
    if (up_) up_->stream.socket().close(ec);
    broken_ = true;
  }

  static asio::awaitable<void> run(std::shared_ptr<TcpPair> self) {
    std::shared_ptr<const Table> table = self->rt_->table.load(std::memory_order_acquire);
    Backend* tried[kMaxAttempts];
    size_t ntried = 0;
    bool connected = false;
    while (ntried < kMaxAttempts) {
      const std::shared_ptr<Backend>* pick = table->pick(self->w_.index, {tried, ntried});
      if (!pick) break;
      if (self->lease_) self->lease_->stats().on_retry();
      self->up_.reset();
      self->lease_ = BackendLease(*pick, self->w_.index, self.get());
      tried[ntried++] = self->lease_.get();
      self->up_ = std::make_unique<UpstreamConn>(self->w_.ioc, *pick);
      if (co_await connect_upstream(*self->up_, self->rt_->limits->connect_timeout)) {
        connected = true;
        break;
      }
    }
    if (!connected) {
      self->up_.reset();
      self->broken_ = true;  // counted as an error by the destructor
      if (!self->lease_) table->unrouted().on_finish(0, true, {}, false);
      beast::error_code ec;
      self->client_.socket().close(ec);
      co_return;
    }
    self->start_ = std::chrono::steady_clock::now();
    self->client_.expires_never();
    self->up_->stream.expires_never();
    asio::co_spawn(self->w_.ioc, pump(self, true), report_session_failure);
    co_await pump(self, false);
  }

 private:
  // Copies client -> upstream (to_upstream) or upstream -> client.
  static asio::awaitable<void> pump(std::shared_ptr<TcpPair> self, bool to_upstream) {
    beast::tcp_stream& from = to_upstream ? self->client_ : self->up_->stream;
    beast::tcp_stream& to = to_upstream ? self->up_->stream : self->client_;
    auto buf = std::make_unique<char[]>(kPumpBuf);
    beast::error_code ec;
    for (;;) {
      size_t n = co_await from.async_read_some(asio::buffer(buf.get(), kPumpBuf),
                                               asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::eof) {
        beast::error_code ignored;
        to.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
      if (ec) break;
      co_await asio::async_write(to, asio::buffer(buf.get(), n),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    if (ec != asio::error::operation_aborted) self->broken_ = true;
    beast::error_code ignored;
    self->client_.socket().close(ignored);
    self->up_->stream.socket().close(ignored);
  }

  std::shared_ptr<RouteRuntime> rt_;
  Worker& w_;
  beast::tcp_stream client_;
  BackendLease lease_;
  std::unique_ptr<UpstreamConn> up_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool broken_ = false;
};

}  // namespace

void start_tcp_session(std::shared_ptr<RouteRuntime> rt, Worker& w, tcp::socket sock) {
  auto pair = std::make_shared<TcpPair>(std::move(rt), w, std::move(sock));
  asio::co_spawn(w.ioc, TcpPair::run(std::move(pair)), report_session_failure);
}

}  // namespace mup::traffic
