// mup-sample-service: the service the agent and the proxy are tested and benchmarked with.
//
// A small HTTP/1.1 server (keep-alive, pipelining-safe) that says which version and instance
// answered, plus switches that make it misbehave the ways a bad release does: errors, slow
// answers, never becoming ready, crashing at start, after a while, or after N requests.
// Every switch is also an environment variable so a tree's mup-service.toml can set it.
//
//   GET /                {"version","instance","pid"}, header X-Mup-Version (on every answer)
//   GET /healthz         200 when ready, else 503
//   GET /slow?ms=N       answers after N ms (a timer: other requests go on meanwhile)
//   GET /bytes?n=N       N bytes, streamed in 64 KiB pieces
// Flags (environment):  --port (PORT), --version (MUP_VERSION), --instance (MUP_INSTANCE),
//   --error-rate F (MUP_SAMPLE_ERROR_RATE), --seed N (MUP_SAMPLE_SEED), --latency-ms N
//   (MUP_SAMPLE_LATENCY_MS), --crash-at-start (MUP_SAMPLE_CRASH_AT_START=1: exit 3),
//   --never-ready (MUP_SAMPLE_NEVER_READY=1), --ready-after-ms N (MUP_SAMPLE_READY_AFTER_MS),
//   --crash-after-ms N (MUP_SAMPLE_CRASH_AFTER_MS: exit 4), --crash-after-requests N
//   (MUP_SAMPLE_CRASH_AFTER_REQUESTS: exit 5 once N answers are written), --threads N
//   (MUP_SAMPLE_THREADS, default 2). Flags override the environment. Port 0 picks a free
//   port; the start line on stderr says which ("listening on 127.0.0.1:N").
//
// Design: one acceptor thread hands each accepted socket to one of N worker io_contexts,
// each run by a single thread. A connection lives on one thread for its whole life, so
// nothing per connection needs a lock, and SIGTERM can walk each worker's connection set on
// that worker's own thread: idle keep-alive connections close at once, busy ones answer
// with `Connection: close` and then close. The process exits when none are left, or 10 s
// after the signal at the latest.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  uint16_t port = 0;
  std::string version = "0.0.0";
  std::string instance = "0";
  double error_rate = 0;
  uint64_t seed = 1;
  int latency_ms = 0;
  bool crash_at_start = false;
  bool never_ready = false;
  int ready_after_ms = 0;
  int crash_after_ms = 0;
  uint64_t crash_after_requests = 0;
  int threads = 2;
};

[[noreturn]] void die_usage(const std::string& why) {
  std::fprintf(stderr, "mup-sample-service: %s\n", why.c_str());
  std::fprintf(stderr,
               "usage: mup-sample-service [--port N] [--version V] [--instance I] "
               "[--error-rate F] [--seed N] [--latency-ms N] [--crash-at-start] "
               "[--never-ready] [--ready-after-ms N] [--crash-after-ms N] "
               "[--crash-after-requests N] [--threads N]\n");
  std::exit(2);
}

template <typename T>
T parse_number(std::string_view name, std::string_view text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) {
    die_usage("bad value '" + std::string(text) + "' for " + std::string(name));
  }
  return value;
}

bool parse_bool(std::string_view text) {
  return !(text.empty() || text == "0" || text == "false" || text == "no");
}

// Environment first, flags override: the supervisor sets PORT/MUP_VERSION/MUP_INSTANCE,
// and a tree's mup-service.toml may set MUP_SAMPLE_* in [service] env.
Options parse_options(int argc, char** argv) {
  Options o;
  auto env = [](const char* name) -> std::optional<std::string_view> {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string_view(v);
  };
  if (auto v = env("PORT")) o.port = parse_number<uint16_t>("PORT", *v);
  if (auto v = env("MUP_VERSION")) o.version = *v;
  if (auto v = env("MUP_INSTANCE")) o.instance = *v;
  if (auto v = env("MUP_SAMPLE_ERROR_RATE")) o.error_rate = parse_number<double>("rate", *v);
  if (auto v = env("MUP_SAMPLE_SEED")) o.seed = parse_number<uint64_t>("seed", *v);
  if (auto v = env("MUP_SAMPLE_LATENCY_MS")) o.latency_ms = parse_number<int>("latency", *v);
  if (auto v = env("MUP_SAMPLE_CRASH_AT_START")) o.crash_at_start = parse_bool(*v);
  if (auto v = env("MUP_SAMPLE_NEVER_READY")) o.never_ready = parse_bool(*v);
  if (auto v = env("MUP_SAMPLE_READY_AFTER_MS")) o.ready_after_ms = parse_number<int>("ready", *v);
  if (auto v = env("MUP_SAMPLE_CRASH_AFTER_MS")) o.crash_after_ms = parse_number<int>("crash", *v);
  if (auto v = env("MUP_SAMPLE_CRASH_AFTER_REQUESTS")) {
    o.crash_after_requests = parse_number<uint64_t>("crash requests", *v);
  }
  if (auto v = env("MUP_SAMPLE_THREADS")) o.threads = parse_number<int>("threads", *v);

  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) die_usage(std::string(a) + " needs a value");
      return argv[++i];
    };
    if (a == "--port")
      o.port = parse_number<uint16_t>(a, value());
    else if (a == "--version")
      o.version = value();
    else if (a == "--instance")
      o.instance = value();
    else if (a == "--error-rate")
      o.error_rate = parse_number<double>(a, value());
    else if (a == "--seed")
      o.seed = parse_number<uint64_t>(a, value());
    else if (a == "--latency-ms")
      o.latency_ms = parse_number<int>(a, value());
    else if (a == "--crash-at-start")
      o.crash_at_start = true;
    else if (a == "--never-ready")
      o.never_ready = true;
    else if (a == "--ready-after-ms")
      o.ready_after_ms = parse_number<int>(a, value());
    else if (a == "--crash-after-ms")
      o.crash_after_ms = parse_number<int>(a, value());
    else if (a == "--crash-after-requests")
      o.crash_after_requests = parse_number<uint64_t>(a, value());
    else if (a == "--threads")
      o.threads = parse_number<int>(a, value());
    else
      die_usage("unknown argument " + std::string(a));
  }
  if (o.threads < 1) o.threads = 1;
  return o;
}

// splitmix64: a request's fate depends only on (seed, request number), so a run with the
// same seed fails the same requests whatever the timing.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct Shared {
  Options opt;
  Clock::time_point started = Clock::now();
  std::atomic<uint64_t> request_counter{0};
  std::atomic<uint64_t> answered{0};
  std::atomic<bool> stopping{false};
  std::string pid_text = std::to_string(getpid());
};

std::string_view query_param(std::string_view target, std::string_view key) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == key && eq != std::string_view::npos) return pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return {};
}

uint64_t query_number(std::string_view target, std::string_view key) {
  std::string_view v = query_param(target, key);
  uint64_t n = 0;
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

bool header_is(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || line[name.size()] != ':') return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool contains_token(std::string_view value, std::string_view token) {
  for (size_t i = 0; i + token.size() <= value.size(); ++i) {
    bool eq = true;
    for (size_t j = 0; j < token.size() && eq; ++j) {
      eq = std::tolower(static_cast<unsigned char>(value[i + j])) == token[j];
    }
    if (eq) return true;
  }
  return false;
}

class Worker;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, Worker& worker, Shared& shared)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        worker_(worker),
        shared_(shared) {}
  ~Connection();
  void start();
  // On the worker's thread: close now if idle, else after the current answer.
  void shutdown() {
    if (!busy_) close();
  }
  void close() {
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
  }

 private:
  void read_more();
  void handle_buffer();
  void respond(int status, std::string_view content_type, std::string body);
  void send_bytes_chunk();
  void after_write();

  tcp::socket socket_;
  asio::steady_timer timer_;
  Worker& worker_;
  Shared& shared_;
  std::string in_;
  char read_buf_[8192];
  std::string out_;
  bool busy_ = false;  // a request is being answered (reading its successor waits)
  bool keep_alive_ = true;
  uint64_t bytes_left_ = 0;  // /bytes: still to stream after out_
};

class Worker {
 public:
  explicit Worker(Shared& shared) : shared_(shared), guard_(asio::make_work_guard(ctx_)) {}
  asio::io_context& ctx() { return ctx_; }
  void adopt(tcp::socket socket) {
    auto c = std::make_shared<Connection>(std::move(socket), *this, shared_);
    if (shared_.stopping) return c->close();
    live_.insert(c.get());
    c->start();
  }
  void forget(Connection* c) { live_.erase(c); }
  // Called once SIGTERM arrived, on this worker's thread.
  void begin_shutdown() {
    guard_.reset();  // run() returns once the last connection is gone
    std::vector<Connection*> now(live_.begin(), live_.end());
    for (Connection* c : now) c->shutdown();
  }
  void run() { ctx_.run(); }
  void stop() { ctx_.stop(); }

 private:
  Shared& shared_;
  asio::io_context ctx_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::unordered_set<Connection*> live_;
};

// Last handler gone: the worker's thread is the only one that touches live_.
Connection::~Connection() {
  worker_.forget(this);
}

void Connection::start() {
  boost::system::error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  read_more();
}

void Connection::read_more() {
  socket_.async_read_some(asio::buffer(read_buf_),
                          [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                            if (ec) return;  // peer closed, or shutdown() closed it
                            self->in_.append(self->read_buf_, n);
                            self->handle_buffer();
                          });
}

// Parses one request from in_ (more may follow: pipelining) and answers it.
void Connection::handle_buffer() {
  auto end = in_.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (in_.size() > 64 * 1024) return close();  // headers too large: not worth answering
    return read_more();
  }
  std::string_view head(in_.data(), end + 2);
  auto eol = head.find("\r\n");
  std::string_view request_line = head.substr(0, eol);
  auto sp1 = request_line.find(' ');
  auto sp2 = request_line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return close();
  bool is_get = request_line.substr(0, sp1) == "GET";  // head dangles after the erase below
  std::string target(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
  std::string_view http_version = request_line.substr(sp2 + 1);
  keep_alive_ = http_version == "HTTP/1.1";
  uint64_t content_length = 0;
  for (size_t pos = eol + 2; pos < head.size();) {
    auto next = head.find("\r\n", pos);
    std::string_view line = head.substr(pos, next - pos);
    pos = next + 2;
    if (header_is(line, "connection")) {
      std::string_view v = trim(line.substr(11));
      if (contains_token(v, "close")) keep_alive_ = false;
      if (contains_token(v, "keep-alive")) keep_alive_ = true;
    } else if (header_is(line, "content-length")) {
      std::string_view v = trim(line.substr(15));
      std::from_chars(v.data(), v.data() + v.size(), content_length);
    }
  }
  if (in_.size() < end + 4 + content_length) return read_more();  // body still coming
  in_.erase(0, end + 4 + content_length);                         // bodies are accepted and ignored
  busy_ = true;
  if (shared_.stopping) keep_alive_ = false;

  uint64_t n = shared_.request_counter.fetch_add(1);
  std::string path = target.substr(0, target.find('?'));
  if (!is_get) return respond(405, "text/plain", "only GET\n");
  if (path == "/") {
    const Options& o = shared_.opt;
    // Instances of one version draw independent sequences (the instance mixed into the seed):
    // two instances failing on the same request numbers would correlate their errors.
    const uint64_t stream = mix(o.seed ^ std::hash<std::string>{}(o.instance));
    bool fail = o.error_rate > 0 &&
                static_cast<double>(mix(stream ^ mix(n)) >> 11) * 0x1.0p-53 < o.error_rate;
    std::string body = fail ? "{\"error\":\"injected\",\"version\":\"" + o.version + "\"}"
                            : "{\"version\":\"" + o.version + "\",\"instance\":\"" + o.instance +
                                  "\",\"pid\":" + shared_.pid_text + "}";
    int status = fail ? 500 : 200;
    if (o.latency_ms <= 0) return respond(status, "application/json", std::move(body));
    timer_.expires_after(std::chrono::milliseconds(o.latency_ms));
    timer_.async_wait([self = shared_from_this(), status,
                       body = std::move(body)](boost::system::error_code ec) mutable {
      if (!ec) self->respond(status, "application/json", std::move(body));
    });
    return;
  }
  if (path == "/healthz") {
    const Options& o = shared_.opt;
    bool ready = !o.never_ready &&
                 Clock::now() - shared_.started >= std::chrono::milliseconds(o.ready_after_ms);
    return ready ? respond(200, "text/plain", "ok\n") : respond(503, "text/plain", "not ready\n");
  }
  if (path == "/slow") {
    timer_.expires_after(std::chrono::milliseconds(query_number(target, "ms")));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->respond(200, "text/plain", "slow\n");
    });
    return;
  }
  if (path == "/bytes") {
    bytes_left_ = query_number(target, "n");
    return respond(200, "application/octet-stream", "");
  }
  respond(404, "text/plain", "not found\n");
}

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

void Connection::respond(int status, std::string_view content_type, std::string body) {
  out_.clear();
  out_ += "HTTP/1.1 ";
  out_ += std::to_string(status);
  out_ += ' ';
  out_ += reason(status);
  out_ += "\r\nContent-Type: ";
  out_ += content_type;
  out_ += "\r\nContent-Length: ";
  out_ += std::to_string(body.size() + bytes_left_);
  out_ += "\r\nX-Mup-Version: ";
  out_ += shared_.opt.version;
  out_ += "\r\nX-Mup-Instance: ";
  out_ += shared_.opt.instance;
  out_ += keep_alive_ ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n";
  out_ += body;
  asio::async_write(socket_, asio::buffer(out_),
                    [self = shared_from_this()](boost::system::error_code ec, size_t) {
                      if (ec) return self->close();
                      self->send_bytes_chunk();
                    });
}

// /bytes streams in 64 KiB pieces so a large n costs no memory.
void Connection::send_bytes_chunk() {
  if (bytes_left_ == 0) return after_write();
  size_t piece = static_cast<size_t>(std::min<uint64_t>(bytes_left_, 64 * 1024));
  out_.assign(piece, 'x');
  bytes_left_ -= piece;
  asio::async_write(socket_, asio::buffer(out_),
                    [self = shared_from_this()](boost::system::error_code ec, size_t) {
                      if (ec) return self->close();
                      self->send_bytes_chunk();
                    });
}

void Connection::after_write() {
  busy_ = false;
  uint64_t answered = shared_.answered.fetch_add(1) + 1;
  if (shared_.opt.crash_after_requests > 0 && answered >= shared_.opt.crash_after_requests) {
    std::fprintf(stderr, "mup-sample-service %s: crashing after %llu requests (exit 5)\n",
                 shared_.opt.version.c_str(), static_cast<unsigned long long>(answered));
    std::_Exit(5);
  }
  if (!keep_alive_ || shared_.stopping) return close();
  handle_buffer();
}

}  // namespace

int main(int argc, char** argv) {
  Shared shared;
  shared.opt = parse_options(argc, argv);
  const Options& o = shared.opt;
  if (o.crash_at_start) {
    std::fprintf(stderr, "mup-sample-service %s: crashing at start (exit 3)\n", o.version.c_str());
    return 3;
  }
  std::signal(SIGPIPE, SIG_IGN);

  asio::io_context main_ctx{1};
  tcp::acceptor acceptor(main_ctx);
  try {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), o.port);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(1024);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mup-sample-service %s: cannot listen on 127.0.0.1:%u: %s\n",
                 o.version.c_str(), o.port, e.what());
    return 1;
  }
  unsigned port = acceptor.local_endpoint().port();

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < o.threads; ++i) workers.push_back(std::make_unique<Worker>(shared));
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

  size_t next_worker = 0;
  std::function<void()> accept_next = [&] {
    Worker& w = *workers[next_worker++ % workers.size()];
    acceptor.async_accept(w.ctx(), [&, wp = &w](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;  // closed by SIGTERM (or out of fds: the next accept retries)
      asio::post(wp->ctx(), [wp, s = std::move(s)]() mutable { wp->adopt(std::move(s)); });
      accept_next();
    });
  };
  accept_next();

  asio::steady_timer crash_timer(main_ctx);
  if (o.crash_after_ms > 0) {
    crash_timer.expires_after(std::chrono::milliseconds(o.crash_after_ms));
    crash_timer.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      std::fprintf(stderr, "mup-sample-service %s: crashing after %d ms (exit 4)\n",
                   o.version.c_str(), o.crash_after_ms);
      std::_Exit(4);
    });
  }

  asio::signal_set signals(main_ctx, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    std::fprintf(stderr, "mup-sample-service %s: signal %d, draining\n", o.version.c_str(), sig);
    shared.stopping = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    crash_timer.cancel();
    for (auto& w : workers) asio::post(w->ctx(), [wp = w.get()] { wp->begin_shutdown(); });
  });

  std::fprintf(stderr,
               "mup-sample-service %s: instance %s pid %s listening on 127.0.0.1:%u "
               "(error-rate %g, latency %d ms, %d threads)\n",
               o.version.c_str(), o.instance.c_str(), shared.pid_text.c_str(), port, o.error_rate,
               o.latency_ms, o.threads);
  main_ctx.run();  // returns once the acceptor is closed and the signal handled

  // In-flight answers get up to 10 s; a worker still busy then is stopped.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  bool forced = false;
  for (size_t i = 0; i < threads.size(); ++i) {
    while (!workers[i]->ctx().stopped() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!workers[i]->ctx().stopped()) {
      forced = true;
      workers[i]->stop();
    }
    threads[i].join();
  }
  std::fprintf(stderr, "mup-sample-service %s: stopped%s after %llu requests\n", o.version.c_str(),
               forced ? " (drain timed out)" : "",
               static_cast<unsigned long long>(shared.request_counter.load()));
  return 0;
}
