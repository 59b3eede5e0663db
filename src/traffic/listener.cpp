#include "traffic/listener.hpp"

#include <cerrno>

namespace mup::traffic {

Result<std::shared_ptr<Listener>> Listener::open(const std::string& listen, Worker& home) {
  std::string host;
  uint16_t port = 0;
  if (!split_host_port(listen, host, port))
    return fail(Errc::invalid_argument, "listen: wants IP:PORT, got \"" + listen + "\"");
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return fail(Errc::invalid_argument, "listen: bad address \"" + listen + "\"");
  tcp::endpoint ep(addr, port);
  tcp::acceptor acceptor(home.ioc);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (ec == asio::error::address_in_use)
    return fail(Errc::busy, "cannot listen on " + listen +
                                ": address in use (another route or process holds it; "
                                "pick another port or stop that process)");
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail(Errc::io, "cannot listen on " + listen + ": " + ec.message());
  auto local = acceptor.local_endpoint(ec);
  std::string bound = local.address().is_v6() ? "[" + local.address().to_string() + "]"
                                              : local.address().to_string();
  bound += ":" + std::to_string(local.port());
  return std::make_shared<Listener>(home, std::move(acceptor), std::move(bound));
}

void Listener::start(std::shared_ptr<RouteRuntime> rt) {
  asio::co_spawn(home_.ioc, accept_loop(shared_from_this(), std::move(rt)), report_session_failure);
}

void Listener::close() {
  asio::post(home_.ioc, [self = shared_from_this()] {
    beast::error_code ec;
    self->acceptor_.close(ec);
  });
}

asio::awaitable<void> Listener::accept_loop(std::shared_ptr<Listener> self,
                                            std::shared_ptr<RouteRuntime> rt) {
  size_t next = 0;
  for (;;) {
    Worker& w = *rt->workers[next++ % rt->workers.size()];
    tcp::socket sock(w.ioc);
    beast::error_code ec;
    co_await self->acceptor_.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
    if (!self->acceptor_.is_open() || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors or memory: back off instead of spinning; the kernel keeps the
      // pending connections queued meanwhile.
      asio::steady_timer t(self->home_.ioc, std::chrono::milliseconds(50));
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    std::shared_ptr<const Table> table = rt->table.load(std::memory_order_acquire);
    if (table->protocol() == Protocol::tcp) {
      start_tcp_session(rt, w, std::move(sock));
    } else {
      start_http_session(rt, w, std::move(sock));
    }
  }
}

}  // namespace mup::traffic
