// mup-loadgen: an open-loop HTTP/1.1 load generator for the proxy and switch benchmarks.
//
// Open loop: request i is due at start + i/rate whatever happened to earlier ones, and its
// latency counts from that due time, not from when it was written to a socket. A server that
// stalls for a second therefore shows a second of latency on every request due in that
// second (no coordinated omission), and requests that could not even be sent count too.
//
// Connections: a deterministic fraction of requests (--keepalive-fraction) goes over a pool
// of at most --connections persistent connections; the rest each open a new connection and
// send `Connection: close`, the way a mix of browsers and one-shot clients does. A request
// that finds no free pooled connection waits in a FIFO (still timed from its due time).
// A reused pooled connection that the server closed before any response byte is retried once
// on a fresh connection, as HTTP clients do for idempotent requests; `retries` counts those.
//
// Everything runs on one io_context thread: no locks. Memory is bounded by the number of
// seconds (one small histogram each) plus what is in flight; --events streams one CSV line
// per request as it completes (so lines are in completion order, not due order).
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

struct Options {
  double rate = 100;
  double duration_s = 10;  // 0: until SIGINT/SIGTERM
  std::string host = "127.0.0.1";
  std::string port = "80";
  std::string path = "/";
  double keepalive_fraction = 0.5;
  size_t connections = 64;
  size_t max_one_shot = 4096;  // concurrent new-connection requests; beyond that they queue
  int timeout_ms = 5000;
  std::string json_file;
  std::string events_file;
};

[[noreturn]] void die_usage(const std::string& why) {
  std::fprintf(stderr, "mup-loadgen: %s\n", why.c_str());
  std::fprintf(stderr,
               "usage: mup-loadgen --url http://HOST:PORT/PATH [--rate R] [--duration S] "
               "[--keepalive-fraction F] [--connections N] [--timeout-ms T] [--json FILE] "
               "[--events FILE]\n");
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

void parse_url(std::string_view url, Options& o) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) die_usage("only http:// URLs: " + std::string(url));
  url.remove_prefix(kScheme.size());
  auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  o.path = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  auto colon = authority.rfind(':');
  o.host = std::string(authority.substr(0, colon));
  o.port = colon == std::string_view::npos ? "80" : std::string(authority.substr(colon + 1));
  if (o.host.empty()) die_usage("no host in URL");
}

Options parse_options(int argc, char** argv) {
  Options o;
  bool have_url = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) die_usage(std::string(a) + " needs a value");
      return argv[++i];
    };
    if (a == "--rate")
      o.rate = parse_number<double>(a, value());
    else if (a == "--duration")
      o.duration_s = parse_number<double>(a, value());
    else if (a == "--url")
      parse_url(value(), o), have_url = true;
    else if (a == "--keepalive-fraction")
      o.keepalive_fraction = parse_number<double>(a, value());
    else if (a == "--connections")
      o.connections = parse_number<size_t>(a, value());
    else if (a == "--max-one-shot")
      o.max_one_shot = parse_number<size_t>(a, value());
    else if (a == "--timeout-ms")
      o.timeout_ms = parse_number<int>(a, value());
    else if (a == "--json")
      o.json_file = value();
    else if (a == "--events")
      o.events_file = value();
    else
      die_usage("unknown argument " + std::string(a));
  }
  if (!have_url) die_usage("--url is required");
  if (o.rate <= 0) die_usage("--rate must be > 0");
  if (o.connections == 0) o.connections = 1;
  if (o.max_one_shot == 0) o.max_one_shot = 1;
  o.keepalive_fraction = std::clamp(o.keepalive_fraction, 0.0, 1.0);
  return o;
}

// Log-linear histogram of microseconds: 32 sub-buckets per power of two (about 3% error),
// so a second's worth costs a few KiB whatever the rate.
class Histogram {
 public:
  void add(uint64_t us) {
    size_t i = index(us);
    if (i >= counts_.size()) counts_.resize(i + 1, 0);
    ++counts_[i];
    ++total_;
    max_ = std::max(max_, us);
  }
  uint64_t total() const { return total_; }
  uint64_t max() const { return max_; }
  // The value at quantile q (0..1), in microseconds; 0 when empty.
  uint64_t quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::max<uint64_t>(rank, 1);
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(value(i), max_);
    }
    return max_;
  }

 private:
  static size_t index(uint64_t v) {
    if (v < 32) return static_cast<size_t>(v);
    int shift = 63 - __builtin_clzll(v) - 5;
    return static_cast<size_t>(shift) * 32 + static_cast<size_t>(v >> shift);
  }
  static uint64_t value(size_t i) {  // the middle of bucket i
    if (i < 64) return i;
    uint64_t shift = i / 32 - 1;
    uint64_t low = (32 + i % 32) << shift;
    return low + ((uint64_t{1} << shift) - 1) / 2;
  }
  std::vector<uint32_t> counts_;
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

enum class ErrorKind { none, connect, reset, timeout, parse };

const char* error_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::none: return "";
    case ErrorKind::connect: return "connect";
    case ErrorKind::reset: return "reset";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::parse: return "parse";
  }
  return "?";
}

struct SecondStats {
  uint64_t sent = 0, ok = 0, non_2xx = 0, errors = 0;
  Histogram latency;
  std::map<std::string, uint64_t> versions;
};

// What every request ended as; one summary at the end, one line per request to --events.
class Recorder {
 public:
  explicit Recorder(const Options& o) {
    if (!o.events_file.empty()) {
      events_.open(o.events_file, std::ios::out | std::ios::trunc);
      if (!events_) die_usage("cannot write " + o.events_file);
      events_ << "t_sched_ms,latency_us,status,version,error\n";
    }
  }
  void scheduled(double t_sched_s) {
    ++sent_;
    second(t_sched_s).sent++;
  }
  void finished(double t_sched_s, uint64_t latency_us, int status, const std::string& version,
                ErrorKind err) {
    SecondStats& s = second(t_sched_s);
    if (err != ErrorKind::none) {
      ++s.errors;
      ++errors_[static_cast<int>(err)];
    } else {
      ++completed_;
      ++status_[status];
      latency_.add(latency_us);
      s.latency.add(latency_us);
      if (status >= 200 && status < 300) {
        ++s.ok;
      } else {
        ++s.non_2xx;
        ++non_2xx_;
        if (!version.empty()) ++non_2xx_versions_[version];
      }
      if (!version.empty()) {
        ++versions_[version];
        ++s.versions[version];
      }
    }
    if (events_.is_open()) {
      char line[96];
      std::snprintf(line, sizeof line, "%.3f,%llu,%d,", t_sched_s * 1000.0,
                    static_cast<unsigned long long>(latency_us), status);
      events_ << line << version << ',' << error_name(err) << '\n';
    }
  }
  void retried() { ++retries_; }

  nlohmann::json summary(const Options& o, double elapsed_s, int64_t start_unix_ms) {
    using nlohmann::json;
    auto ms = [](uint64_t us) { return static_cast<double>(us) / 1000.0; };
    json status = json::object();
    for (auto& [code, n] : status_) status[std::to_string(code)] = n;
    json per_second = json::array();
    for (size_t t = 0; t < seconds_.size(); ++t) {
      const SecondStats& s = seconds_[t];
      per_second.push_back({{"t", t},
                            {"sent", s.sent},
                            {"ok", s.ok},
                            {"non_2xx", s.non_2xx},
                            {"errors", s.errors},
                            {"p99_ms", ms(s.latency.quantile(0.99))},
                            {"versions", s.versions}});
    }
    auto kind = [&](ErrorKind k) { return errors_[static_cast<int>(k)]; };
    if (events_.is_open()) events_.flush();
    return {{"url", "http://" + o.host + ":" + o.port + o.path},
            {"rate", o.rate},
            {"duration_s", elapsed_s},
            {"keepalive_fraction", o.keepalive_fraction},
            {"start_unix_ms", start_unix_ms},
            {"sent", sent_},
            {"completed", completed_},
            {"status", status},
            {"non_2xx", non_2xx_},
            {"connect_errors", kind(ErrorKind::connect)},
            {"timeouts", kind(ErrorKind::timeout)},
            {"reset_errors", kind(ErrorKind::reset)},
            {"parse_errors", kind(ErrorKind::parse)},
            {"other_errors", kind(ErrorKind::reset) + kind(ErrorKind::parse)},
            {"retries", retries_},
            {"versions", versions_},
            {"non_2xx_versions", non_2xx_versions_},
            {"latency_ms",
             {{"p50", ms(latency_.quantile(0.5))},
              {"p90", ms(latency_.quantile(0.9))},
              {"p99", ms(latency_.quantile(0.99))},
              {"p999", ms(latency_.quantile(0.999))},
              {"max", ms(latency_.max())}}},
            {"per_second", per_second}};
  }

 private:
  SecondStats& second(double t_s) {
    size_t t = t_s < 0 ? 0 : static_cast<size_t>(t_s);
    if (t >= seconds_.size()) seconds_.resize(t + 1);
    return seconds_[t];
  }
  uint64_t sent_ = 0, completed_ = 0, non_2xx_ = 0, retries_ = 0;
  uint64_t errors_[5] = {};
  std::map<int, uint64_t> status_;
  std::map<std::string, uint64_t> versions_;
  std::map<std::string, uint64_t> non_2xx_versions_;  // non-2xx answers by X-Mup-Version
  Histogram latency_;
  std::deque<SecondStats> seconds_;
  std::ofstream events_;
};

struct Request {
  Clock::time_point due;
  bool keep_alive = true;
  bool retried = false;
};

class Generator;

// One TCP connection: pooled (serves requests one after another) or one-shot.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Generator& g, bool pooled);
  void connect_and_send(Request r);
  void send(Request r);  // on an established pooled connection
  bool pooled() const { return pooled_; }

 private:
  void write_request();
  void read_response();
  bool parse(size_t& consumed);  // false: need more bytes; sets status/error fields
  void finish(ErrorKind err);
  void on_io_error(const error_code& ec);

  Generator& gen_;
  tcp::socket socket_;
  asio::steady_timer deadline_;
  bool pooled_;
  bool used_before_ = false;
  Request req_;
  uint64_t generation_ = 0;  // guards the deadline handler against a later request
  bool timed_out_ = false;
  std::string in_;
  char buf_[16384];
  // Response parsing state.
  bool have_head_ = false;
  int status_ = 0;
  std::string version_;
  bool server_closes_ = false;
  bool chunked_ = false;
  bool until_eof_ = false;
  uint64_t body_left_ = 0;
  enum class ChunkState { size, data, data_end, trailers } chunk_ = ChunkState::size;
  friend class Generator;
};

class Generator {
 public:
  Generator(asio::io_context& ctx, Options o, tcp::resolver::results_type endpoints)
      : ctx_(ctx),
        opt_(std::move(o)),
        endpoints_(std::move(endpoints)),
        timer_(ctx),
        recorder_(opt_) {
    std::string host = opt_.host + (opt_.port == "80" ? "" : ":" + opt_.port);
    request_keep_alive_ =
        "GET " + opt_.path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: mup-loadgen\r\n\r\n";
    request_close_ = "GET " + opt_.path + " HTTP/1.1\r\nHost: " + host +
                     "\r\nUser-Agent: mup-loadgen\r\nConnection: close\r\n\r\n";
  }

  void start() {
    start_ = Clock::now();
    start_unix_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    interval_ = std::chrono::duration<double>(1.0 / opt_.rate);
    schedule();
  }
  void stop_scheduling() {
    stopping_ = true;
    timer_.cancel();
    maybe_done();
  }
  nlohmann::json summary() {
    double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    return recorder_.summary(opt_, elapsed, start_unix_ms_);
  }
  bool done() const { return done_; }

 private:
  friend class Connection;

  Clock::time_point due(uint64_t i) const {
    return start_ + std::chrono::duration_cast<Clock::duration>(interval_ * static_cast<double>(i));
  }
  double since_start(Clock::time_point t) const {
    return std::chrono::duration<double>(t - start_).count();
  }

  // Issues every request due by now, then sleeps until the next one is due. A late wake-up
  // issues the backlog at once; each keeps its own due time.
  void schedule() {
    auto now = Clock::now();
    while (!stopping_) {
      if (opt_.duration_s > 0 && since_start(due(issued_)) >= opt_.duration_s) {
        return stop_scheduling();
      }
      Clock::time_point t = due(issued_);
      if (t > now) break;
      // Bresenham over the fraction: exactly round(i*F) of the first i requests keep alive.
      double f = opt_.keepalive_fraction;
      bool keep_alive = std::floor(static_cast<double>(issued_ + 1) * f) >
                        std::floor(static_cast<double>(issued_) * f);
      ++issued_;
      recorder_.scheduled(since_start(t));
      dispatch(Request{t, keep_alive, false});
    }
    if (stopping_) return;
    timer_.expires_at(due(issued_));
    timer_.async_wait([this](error_code ec) {
      if (!ec) schedule();
    });
  }

  void dispatch(Request r) {
    if (r.keep_alive) {
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        ++in_flight_;
        return c->send(r);
      }
      if (pool_size_ < opt_.connections) return open(r, true);
      return waiting_pooled_.push_back(r);
    }
    if (one_shot_ < opt_.max_one_shot) return open(r, false);
    waiting_one_shot_.push_back(r);
  }

  void open(Request r, bool pooled) {
    ++in_flight_;
    if (pooled)
      ++pool_size_;
    else
      ++one_shot_;
    std::make_shared<Connection>(*this, pooled)->connect_and_send(r);
  }

  // Takes the next waiting request whose deadline has not passed; expired ones are timeouts.
  std::optional<Request> next_waiting(std::deque<Request>& q) {
    auto now = Clock::now();
    while (!q.empty()) {
      Request r = q.front();
      q.pop_front();
      if (now - r.due < timeout()) return r;
      uint64_t lat = std::chrono::duration_cast<std::chrono::microseconds>(now - r.due).count();
      recorder_.finished(since_start(r.due), lat, 0, "", ErrorKind::timeout);
    }
    return std::nullopt;
  }

  // A connection finished its request (c->req_) one way or another.
  void completed(const std::shared_ptr<Connection>& c, ErrorKind err, bool reusable) {
    auto now = Clock::now();
    uint64_t lat = std::chrono::duration_cast<std::chrono::microseconds>(now - c->req_.due).count();
    bool stale_pooled = c->pooled_ && c->used_before_ && !c->have_head_ && c->in_.empty() &&
                        err == ErrorKind::reset && !c->req_.retried;
    --in_flight_;
    if (c->pooled_) {
      if (!reusable) --pool_size_;
    } else {
      --one_shot_;
    }
    if (stale_pooled) {
      // The server closed an idle keep-alive connection as we reused it: retry once.
      recorder_.retried();
      Request r = c->req_;
      r.retried = true;
      open(r, true);
    } else {
      recorder_.finished(since_start(c->req_.due), lat, err == ErrorKind::none ? c->status_ : 0,
                         c->version_, err);
    }
    if (c->pooled_) {
      if (reusable) {
        if (auto r = next_waiting(waiting_pooled_)) {
          ++in_flight_;
          c->send(*r);
        } else {
          idle_.push_back(c);
        }
      } else if (pool_size_ < opt_.connections) {
        if (auto r = next_waiting(waiting_pooled_)) open(*r, true);
      }
    } else if (auto r = next_waiting(waiting_one_shot_)) {
      open(*r, false);
    }
    maybe_done();
  }

  void maybe_done() {
    if (!stopping_ || in_flight_ > 0 || done_) return;
    // Nothing in flight and still waiting cannot happen (a finishing connection takes the
    // next waiting request); if it did, those would never be sent, so send them now.
    while (auto r = next_waiting(waiting_pooled_)) open(*r, true);
    while (auto r = next_waiting(waiting_one_shot_)) open(*r, false);
    if (in_flight_ > 0) return;
    done_ = true;
    for (auto& c : idle_) {
      error_code ignored;
      c->socket_.close(ignored);
    }
    idle_.clear();
    ctx_.stop();  // the signal set would keep run() going
  }

  Clock::duration timeout() const { return std::chrono::milliseconds(opt_.timeout_ms); }

  asio::io_context& ctx_;
  Options opt_;
  tcp::resolver::results_type endpoints_;
  asio::steady_timer timer_;
  Recorder recorder_;
  std::string request_keep_alive_, request_close_;
  Clock::time_point start_;
  int64_t start_unix_ms_ = 0;
  std::chrono::duration<double> interval_{};
  uint64_t issued_ = 0;
  bool stopping_ = false;
  bool done_ = false;
  size_t in_flight_ = 0;  // requests on a connection (not those waiting)
  size_t pool_size_ = 0;  // pooled connections open or opening
  size_t one_shot_ = 0;   // one-shot connections open or opening
  std::vector<std::shared_ptr<Connection>> idle_;
  std::deque<Request> waiting_pooled_, waiting_one_shot_;
};

Connection::Connection(Generator& g, bool pooled)
    : gen_(g), socket_(g.ctx_), deadline_(g.ctx_), pooled_(pooled) {}

void Connection::connect_and_send(Request r) {
  req_ = r;
  ++generation_;
  timed_out_ = false;
  deadline_.expires_at(r.due + gen_.timeout());
  deadline_.async_wait([self = shared_from_this(), g = generation_](error_code ec) {
    if (ec || g != self->generation_) return;
    self->timed_out_ = true;
    error_code ignored;
    self->socket_.close(ignored);
  });
  asio::async_connect(
      socket_, gen_.endpoints_, [self = shared_from_this()](error_code ec, const tcp::endpoint&) {
        if (ec) return self->finish(self->timed_out_ ? ErrorKind::timeout : ErrorKind::connect);
        error_code ignored;
        self->socket_.set_option(tcp::no_delay(true), ignored);
        self->write_request();
      });
}

void Connection::send(Request r) {
  used_before_ = true;
  req_ = r;
  ++generation_;
  timed_out_ = false;
  deadline_.expires_at(r.due + gen_.timeout());
  deadline_.async_wait([self = shared_from_this(), g = generation_](error_code ec) {
    if (ec || g != self->generation_) return;
    self->timed_out_ = true;
    error_code ignored;
    self->socket_.close(ignored);
  });
  write_request();
}

void Connection::write_request() {
  have_head_ = false;
  status_ = 0;
  version_.clear();
  server_closes_ = chunked_ = until_eof_ = false;
  chunk_ = ChunkState::size;
  body_left_ = 0;
  const std::string& text = pooled_ ? gen_.request_keep_alive_ : gen_.request_close_;
  asio::async_write(socket_, asio::buffer(text),
                    [self = shared_from_this()](error_code ec, size_t) {
                      if (ec) return self->on_io_error(ec);
                      self->read_response();
                    });
}

void Connection::on_io_error(const error_code& ec) {
  if (timed_out_) return finish(ErrorKind::timeout);
  if (ec == asio::error::eof && until_eof_ && have_head_) return finish(ErrorKind::none);
  finish(ErrorKind::reset);
}

void Connection::read_response() {
  size_t consumed = 0;
  if (!in_.empty() && parse(consumed)) {
    in_.erase(0, consumed);
    return finish(status_ == -1 ? ErrorKind::parse : ErrorKind::none);
  }
  in_.erase(0, consumed);
  socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](error_code ec, size_t n) {
    if (ec) return self->on_io_error(ec);
    self->in_.append(self->buf_, n);
    self->read_response();
  });
}

bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || line[name.size()] != ':') return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
  }
  return true;
}

std::string_view header_value(std::string_view line, size_t name_len) {
  std::string_view v = line.substr(name_len + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool has_token(std::string_view v, std::string_view token) {
  std::string lower(v);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return lower.find(token) != std::string::npos;
}

// Consumes what it can of in_ (reporting how much in `consumed`); true when the response is
// complete (status_ == -1: malformed). Bodies are counted, not kept.
bool Connection::parse(size_t& consumed) {
  std::string_view data(in_);
  if (!have_head_) {
    auto end = data.find("\r\n\r\n");
    if (end == std::string_view::npos) {
      if (data.size() > 64 * 1024) return status_ = -1, true;
      return false;
    }
    std::string_view head = data.substr(0, end + 2);
    auto eol = head.find("\r\n");
    std::string_view status_line = head.substr(0, eol);
    if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/") return status_ = -1, true;
    std::string_view code = status_line.substr(9, 3);
    if (std::from_chars(code.data(), code.data() + 3, status_).ec != std::errc{}) {
      return status_ = -1, true;
    }
    bool has_length = false;
    server_closes_ = status_line.substr(0, 8) == "HTTP/1.0";
    for (size_t pos = eol + 2; pos < head.size();) {
      auto next = head.find("\r\n", pos);
      std::string_view line = head.substr(pos, next - pos);
      pos = next + 2;
      if (iequals_prefix(line, "content-length")) {
        std::string_view v = header_value(line, 14);
        if (std::from_chars(v.data(), v.data() + v.size(), body_left_).ec != std::errc{}) {
          return status_ = -1, true;
        }
        has_length = true;
      } else if (iequals_prefix(line, "transfer-encoding")) {
        chunked_ = has_token(header_value(line, 17), "chunked");
      } else if (iequals_prefix(line, "connection")) {
        std::string_view v = header_value(line, 10);
        if (has_token(v, "close")) server_closes_ = true;
        if (has_token(v, "keep-alive")) server_closes_ = false;
      } else if (iequals_prefix(line, "x-mup-version")) {
        version_ = header_value(line, 13);
      }
    }
    have_head_ = true;
    consumed = end + 4;
    bool no_body = status_ == 204 || status_ == 304 || (status_ >= 100 && status_ < 200);
    if (no_body) return true;
    if (!chunked_ && !has_length) until_eof_ = true, server_closes_ = true;
  }
  if (until_eof_) {
    consumed = data.size();
    return false;
  }
  if (!chunked_) {
    uint64_t take = std::min<uint64_t>(body_left_, data.size() - consumed);
    consumed += take;
    body_left_ -= take;
    return body_left_ == 0;
  }
  // Chunked: size line, data, CRLF, ... a 0-size chunk, trailer lines, an empty line.
  while (consumed < data.size()) {
    if (chunk_ == ChunkState::data) {
      uint64_t take = std::min<uint64_t>(body_left_, data.size() - consumed);
      consumed += take;
      body_left_ -= take;
      if (body_left_ > 0) return false;
      chunk_ = ChunkState::data_end;
      continue;
    }
    auto eol = data.find("\r\n", consumed);
    if (eol == std::string_view::npos) return false;
    std::string_view line = data.substr(consumed, eol - consumed);
    consumed = eol + 2;
    if (chunk_ == ChunkState::data_end) {
      if (!line.empty()) return status_ = -1, true;
      chunk_ = ChunkState::size;
    } else if (chunk_ == ChunkState::trailers) {
      if (line.empty()) return true;
    } else {
      uint64_t size = 0;
      if (std::from_chars(line.data(), line.data() + line.size(), size, 16).ec != std::errc{}) {
        return status_ = -1, true;
      }
      body_left_ = size;
      chunk_ = size == 0 ? ChunkState::trailers : ChunkState::data;
    }
  }
  return false;
}

void Connection::finish(ErrorKind err) {
  ++generation_;  // a deadline that fires now belongs to no request
  deadline_.cancel();
  bool reusable = pooled_ && err == ErrorKind::none && !server_closes_ && !until_eof_;
  if (!reusable) {
    error_code ignored;
    socket_.close(ignored);
  }
  gen_.completed(shared_from_this(), err, reusable);
}

// Open-ended runs and many one-shot connections need more descriptors than the usual 1024.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse_options(argc, argv);
  raise_fd_limit();
  asio::io_context ctx{1};
  tcp::resolver::results_type endpoints;
  try {
    endpoints = tcp::resolver(ctx).resolve(opt.host, opt.port);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mup-loadgen: cannot resolve %s:%s: %s\n", opt.host.c_str(),
                 opt.port.c_str(), e.what());
    return 1;
  }
  Generator gen(ctx, opt, endpoints);
  asio::signal_set signals(ctx, SIGINT, SIGTERM);
  signals.async_wait([&](error_code ec, int) {
    if (!ec) gen.stop_scheduling();
  });
  gen.start();
  ctx.run();  // until the generator is done (it stops the context)
  nlohmann::json summary = gen.summary();
  if (!opt.json_file.empty()) {
    std::ofstream out(opt.json_file, std::ios::out | std::ios::trunc);
    out << summary.dump(2) << '\n';
    if (!out) {
      std::fprintf(stderr, "mup-loadgen: cannot write %s\n", opt.json_file.c_str());
      return 1;
    }
  }
  const auto& l = summary["latency_ms"];
  std::printf(
      "sent %llu completed %llu non_2xx %llu connect_errors %llu timeouts %llu other_errors "
      "%llu retries %llu | p50 %.2f p99 %.2f p999 %.2f max %.2f ms\n",
      summary["sent"].get<unsigned long long>(), summary["completed"].get<unsigned long long>(),
      summary["non_2xx"].get<unsigned long long>(),
      summary["connect_errors"].get<unsigned long long>(),
      summary["timeouts"].get<unsigned long long>(),
      summary["other_errors"].get<unsigned long long>(),
      summary["retries"].get<unsigned long long>(), l["p50"].get<double>(), l["p99"].get<double>(),
      l["p999"].get<double>(), l["max"].get<double>());
  return 0;
}
