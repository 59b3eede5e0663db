// The proxy's data-plane objects (internal to src/traffic; Proxy is the public face).
//
// Threading model (Envoy's): the proxy runs N workers, each an io_context run by exactly
// one thread. A client connection lives on one worker for its whole life, and so does every
// upstream connection it uses: a Backend keeps one Slot per worker (idle pooled upstream
// connections, the leases of requests in flight), touched only by that worker's thread, so
// the hot path takes no lock. Cross-thread work (drain: close the idle connections, cut the
// leases at the deadline) is posted to each worker. Counters shared by all workers are
// relaxed atomics.
//
// A Table is one immutable snapshot of a route (protocol, drain time, weighted backends):
// set_route builds a new one and swaps it in with one atomic store, so a request sees the
// old table or the new one. The only mutable part of a Table is each worker's smooth
// weighted round-robin state, which only that worker touches.
//
// Ownership: Proxy owns the RouteRuntimes; tables, sessions and drain timers share the
// Backends (shared_ptr). An UpstreamConn points back to its Backend without owning it: it
// is either in that Backend's idle list or held by a session that also holds the Backend.
#pragma once

// clang-format off
#include <utility>  // first: Boost 1.74's awaitable.hpp uses std::exchange without it
// clang-format on
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "traffic/route.hpp"
#include "traffic/stats.hpp"

namespace mup::traffic {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

struct ProxyLimits {
  std::chrono::milliseconds client_idle{60'000};     // keep-alive idle, client side
  std::chrono::milliseconds io_timeout{60'000};      // any one read or write in a request
  std::chrono::milliseconds connect_timeout{2'000};  // upstream connect
  size_t max_header_bytes = 16 * 1024;               // client request header: 431 above
  size_t max_response_header_bytes = 64 * 1024;      // upstream response header: 502 above
  size_t pool_per_worker = 64;  // idle upstream connections kept per backend and worker
};

struct Worker {
  explicit Worker(unsigned i) : index(i), ioc(1) {}
  unsigned index;
  asio::io_context ioc;
};

// Something a drain deadline may cut: a session with a request (HTTP) or a connection (TCP)
// on a backend. force_close() runs on the lease's worker thread.
class Lease {
 public:
  virtual void force_close() = 0;

 protected:
  ~Lease() = default;
};

class Backend;

struct UpstreamConn {
  // `b` is kept alive through `owner` while the connection is out of the pool; a pooled
  // connection is owned by its Backend, which therefore outlives it.
  UpstreamConn(asio::io_context& ioc, std::shared_ptr<Backend> b);
  ~UpstreamConn();
  UpstreamConn(const UpstreamConn&) = delete;
  UpstreamConn& operator=(const UpstreamConn&) = delete;
  Backend& backend;
  std::shared_ptr<Backend> owner;
  beast::tcp_stream stream;
  beast::flat_buffer buf;
};

class Backend : public std::enable_shared_from_this<Backend> {
 public:
  Backend(BackendSpec spec, tcp::endpoint ep, std::shared_ptr<VersionStats> stats, size_t workers,
          size_t pool_limit);
  ~Backend();

  const BackendSpec& spec() const { return spec_; }  // weight: as when created
  const tcp::endpoint& endpoint() const { return endpoint_; }
  VersionStats& stats() const { return *stats_; }

  bool draining() const { return draining_.load(std::memory_order_acquire); }
  // Marks draining (or active again); returns the drain generation, which a deadline
  // timer compares so that a backend put back in service is not cut.
  uint64_t set_draining(bool d);
  uint64_t drain_generation() const { return drain_gen_.load(std::memory_order_acquire); }

  int64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  int64_t connections() const { return connections_.load(std::memory_order_relaxed); }
  void add_connection(int64_t d);

  // Worker-local: call only on worker w's thread.
  std::unique_ptr<UpstreamConn> take_idle(unsigned w);         // a live pooled one, or null
  void put_idle(unsigned w, std::unique_ptr<UpstreamConn> c);  // closes it when draining
  void close_idle(unsigned w);
  void add_lease(unsigned w, Lease* l);
  void remove_lease(unsigned w, Lease* l);
  void force_close_leases(unsigned w);

  void begin_request();
  void end_request();

 private:
  struct alignas(64) Slot {
    std::vector<std::unique_ptr<UpstreamConn>> idle;
    std::vector<Lease*> leases;
  };
  BackendSpec spec_;
  tcp::endpoint endpoint_;
  std::shared_ptr<VersionStats> stats_;
  size_t pool_limit_;
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> drain_gen_{0};
  std::atomic<int64_t> in_flight_{0}, connections_{0};
  std::unique_ptr<Slot[]> slots_;  // last: its pooled connections count down the above
};

// A request's (or TCP connection's) hold on a backend: counts it in flight and registers
// the lease for drain deadlines, for as long as it lives. Worker-local.
class BackendLease {
 public:
  BackendLease() = default;
  BackendLease(std::shared_ptr<Backend> b, unsigned worker, Lease* lease);
  BackendLease(BackendLease&& o) noexcept { *this = std::move(o); }
  BackendLease& operator=(BackendLease&& o) noexcept;
  ~BackendLease() { release(); }
  void release();
  Backend* get() const { return backend_.get(); }
  Backend* operator->() const { return backend_.get(); }
  explicit operator bool() const { return backend_ != nullptr; }

 private:
  std::shared_ptr<Backend> backend_;
  unsigned worker_ = 0;
  Lease* lease_ = nullptr;
};

class Table {
 public:
  struct Entry {
    std::shared_ptr<Backend> backend;
    uint32_t weight;
  };
  Table(Protocol protocol, uint32_t drain_ms, std::vector<Entry> entries,
        std::shared_ptr<VersionStats> unrouted, size_t workers);

  Protocol protocol() const { return protocol_; }
  uint32_t drain_ms() const { return drain_ms_; }
  const std::vector<Entry>& entries() const { return entries_; }
  VersionStats& unrouted() const { return *unrouted_; }
  // Smooth weighted round robin over entries with weight > 0 that are not in `exclude`,
  // for worker w (call on its thread). Null when none is left.
  const std::shared_ptr<Backend>* pick(unsigned w, std::span<Backend* const> exclude) const;

 private:
  struct alignas(64) Cursor {
    std::vector<int64_t> current;
  };
  Protocol protocol_;
  uint32_t drain_ms_;
  std::vector<Entry> entries_;
  std::shared_ptr<VersionStats> unrouted_;
  mutable std::unique_ptr<Cursor[]> cursors_;
};

// What a listener and its sessions share about a route.
struct RouteRuntime {
  std::string name;
  std::atomic<std::shared_ptr<const Table>> table;
  std::vector<Worker*> workers;
  const ProxyLimits* limits;
};

// Session entry points (http_session.cpp, tcp_session.cpp): run on worker w, own `sock`.
void start_http_session(std::shared_ptr<RouteRuntime> rt, Worker& w, tcp::socket sock);
void start_tcp_session(std::shared_ptr<RouteRuntime> rt, Worker& w, tcp::socket sock);

// The completion of a session coroutine: an escaped exception is logged, never rethrown.
void report_session_failure(std::exception_ptr e);

// Connects `c` to its backend within the connect timeout; false on failure.
asio::awaitable<bool> connect_upstream(UpstreamConn& c, std::chrono::milliseconds timeout);

}  // namespace mup::traffic
