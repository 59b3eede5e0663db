#include "traffic/backend.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace mup::traffic {

UpstreamConn::UpstreamConn(asio::io_context& ioc, std::shared_ptr<Backend> b)
    : backend(*b), owner(std::move(b)), stream(ioc) {
  backend.add_connection(1);
}

UpstreamConn::~UpstreamConn() {
  backend.add_connection(-1);
}

Backend::Backend(BackendSpec spec, tcp::endpoint ep, std::shared_ptr<VersionStats> stats,
                 size_t workers, size_t pool_limit)
    : spec_(std::move(spec)),
      endpoint_(ep),
      stats_(std::move(stats)),
      pool_limit_(pool_limit),
      slots_(std::make_unique<Slot[]>(workers)) {}

Backend::~Backend() = default;

uint64_t Backend::set_draining(bool d) {
  draining_.store(d, std::memory_order_release);
  return drain_gen_.fetch_add(1, std::memory_order_acq_rel) + 1;
}

void Backend::add_connection(int64_t d) {
  connections_.fetch_add(d, std::memory_order_relaxed);
  stats_->add_connections(d);
}

void Backend::begin_request() {
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  stats_->on_start();
}

void Backend::end_request() {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  stats_->on_end();
}

std::unique_ptr<UpstreamConn> Backend::take_idle(unsigned w) {
  auto& idle = slots_[w].idle;
  while (!idle.empty()) {
    std::unique_ptr<UpstreamConn> c = std::move(idle.back());
    idle.pop_back();
    // A pooled connection the backend has closed reads EOF; one with unexpected bytes
    // pending is out of step. Either is dropped here rather than failing a request.
    char byte;
    ssize_t n = ::recv(c->stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && c->buf.size() == 0) {
      c->owner = shared_from_this();
      return c;
    }
  }
  return nullptr;
}

void Backend::put_idle(unsigned w, std::unique_ptr<UpstreamConn> c) {
  auto& idle = slots_[w].idle;
  if (draining() || idle.size() >= pool_limit_) return;  // `c` closes here
  std::shared_ptr<Backend> keep = std::move(c->owner);   // `c` must not own its owner
  idle.push_back(std::move(c));
}

void Backend::close_idle(unsigned w) {
  slots_[w].idle.clear();
}

void Backend::add_lease(unsigned w, Lease* l) {
  slots_[w].leases.push_back(l);
}

void Backend::remove_lease(unsigned w, Lease* l) {
  auto& v = slots_[w].leases;
  auto it = std::find(v.begin(), v.end(), l);
  if (it != v.end()) {
    *it = v.back();
    v.pop_back();
  }
}

void Backend::force_close_leases(unsigned w) {
  // force_close only closes sockets; the sessions remove their leases later, when their
  // pending operations complete, so iterating a copy is not even needed, but is cheap.
  std::vector<Lease*> leases = slots_[w].leases;
  for (Lease* l : leases) l->force_close();
}

BackendLease::BackendLease(std::shared_ptr<Backend> b, unsigned worker, Lease* lease)
    : backend_(std::move(b)), worker_(worker), lease_(lease) {
  backend_->begin_request();
  if (lease_) backend_->add_lease(worker_, lease_);
}

BackendLease& BackendLease::operator=(BackendLease&& o) noexcept {
  if (this != &o) {
    release();
    backend_ = std::move(o.backend_);
    worker_ = o.worker_;
    lease_ = o.lease_;
    o.backend_ = nullptr;
    o.lease_ = nullptr;
  }
  return *this;
}

void BackendLease::release() {
  if (!backend_) return;
  if (lease_) backend_->remove_lease(worker_, lease_);
  backend_->end_request();
  backend_.reset();
  lease_ = nullptr;
}

Table::Table(Protocol protocol, uint32_t drain_ms, std::vector<Entry> entries,
             std::shared_ptr<VersionStats> unrouted, size_t workers)
    : protocol_(protocol),
      drain_ms_(drain_ms),
      entries_(std::move(entries)),
      unrouted_(std::move(unrouted)),
      cursors_(std::make_unique<Cursor[]>(workers)) {
  for (size_t w = 0; w < workers; ++w) cursors_[w].current.assign(entries_.size(), 0);
}

const std::shared_ptr<Backend>* Table::pick(unsigned w, std::span<Backend* const> exclude) const {
  auto& current = cursors_[w].current;
  int64_t total = 0;
  size_t best = entries_.size();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.weight == 0) continue;
    if (std::find(exclude.begin(), exclude.end(), e.backend.get()) != exclude.end()) continue;
    current[i] += e.weight;
    total += e.weight;
    if (best == entries_.size() || current[i] > current[best]) best = i;
  }
  if (best == entries_.size()) return nullptr;
  current[best] -= total;
  return &entries_[best].backend;
}

asio::awaitable<bool> connect_upstream(UpstreamConn& c, std::chrono::milliseconds timeout) {
  beast::error_code ec;
  c.stream.expires_after(timeout);
  co_await c.stream.async_connect(c.backend.endpoint(),
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return false;
  c.stream.socket().set_option(tcp::no_delay(true), ec);
  co_return true;
}

}  // namespace mup::traffic
