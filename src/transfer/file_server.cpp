#include "transfer/file_server.hpp"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/hex.hpp"

namespace mup::transfer {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
namespace stdfs = std::filesystem;

namespace {

// The file a request target names, or empty when it is not a servable file in the root.
stdfs::path resolve(const stdfs::path& root, std::string_view target) {
  target = target.substr(0, target.find('?'));
  auto decoded = percent_decode(target);
  if (!decoded) return {};
  const std::string& path = *decoded;
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string::npos) return {};
  stdfs::path rel = stdfs::path(path.substr(1)).lexically_normal();
  if (rel.empty() || rel.is_absolute() || *rel.begin() == "..") return {};
  std::error_code ec;
  stdfs::path full = stdfs::weakly_canonical(root / rel, ec);
  if (ec) return {};
  auto r = full.lexically_relative(root);
  if (r.empty() || *r.begin() == "..") return {};  // a symlink led out of the root
  if (!stdfs::is_regular_file(full, ec)) return {};
  return full;
}

// Parses "bytes=a-b", "bytes=a-", "bytes=-n" for a file of `size`; false when unusable.
bool parse_range(std::string_view h, uint64_t size, uint64_t& first, uint64_t& last) {
  if (h.substr(0, 6) != "bytes=" || h.find(',') != std::string_view::npos || size == 0)
    return false;
  h.remove_prefix(6);
  size_t dash = h.find('-');
  if (dash == std::string_view::npos) return false;
  std::string a(h.substr(0, dash)), b(h.substr(dash + 1));
  try {
    if (a.empty()) {
      uint64_t n = std::stoull(b);
      if (n == 0) return false;
      first = n >= size ? 0 : size - n;
      last = size - 1;
    } else {
      first = std::stoull(a);
      last = b.empty() ? size - 1 : std::min<uint64_t>(std::stoull(b), size - 1);
    }
  } catch (...) {
    return false;
  }
  return first <= last && first < size;
}

// Limits a hostile client meets (see file_server.hpp).
constexpr size_t kHeaderLimit = 16 << 10;         // request line and headers
constexpr size_t kTargetLimit = 8 << 10;          // the request target (414 beyond)
constexpr size_t kChunk = 64 << 10;               // a file body is sent this much at a time
constexpr auto kIdle = std::chrono::seconds(30);  // no progress this long: closed

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, const stdfs::path& root, std::atomic<size_t>& live,
          std::atomic<uint64_t>& requests)
      : stream_(std::move(s)), root_(root), live_(live), requests_(requests) {
    ++live_;
  }
  ~Session() { --live_; }
  void run() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(0);
    stream_.expires_after(kIdle);
    http::async_read(stream_, buf_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec == http::error::header_limit) return self->too_large();
                       if (ec) return self->close();
                       self->handle();
                     });
  }

  // 414 when the request line alone is over the limit, else 431; then the connection ends.
  void too_large() {
    keep_ = false;
    std::string_view seen(static_cast<const char*>(buf_.data().data()), buf_.size());
    const bool line = seen.find("\r\n") == std::string_view::npos;
    error(line ? http::status::uri_too_long : http::status::request_header_fields_too_large,
          line ? "request target too long" : "request headers too large");
  }

  template <class Body>
  void send(http::response<Body>&& res) {
    auto sp = std::make_shared<http::response<Body>>(std::move(res));
    const bool keep = keep_ && sp->keep_alive();
    stream_.expires_after(kIdle);
    http::async_write(stream_, *sp,
                      [self = shared_from_this(), sp, keep](beast::error_code ec, size_t) {
                        if (ec || !keep) return self->close();
                        self->read();
                      });
  }

  void error(http::status st, const std::string& why) {
    http::response<http::string_body> res{st, 11};
    res.set(http::field::server, "mup");
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(keep_);
    res.body() = why + "\n";
    res.prepare_payload();
    send(std::move(res));
  }

  void handle() {
    const auto& req = parser_->get();
    ++requests_;
    keep_ = req.keep_alive();
    if (req.method() != http::verb::get && req.method() != http::verb::head)
      return error(http::status::method_not_allowed, "only GET and HEAD");
    if (req.target().size() > kTargetLimit) {
      keep_ = false;
      return error(http::status::uri_too_long, "request target too long");
    }
    stdfs::path file = resolve(root_, std::string_view(req.target().data(), req.target().size()));
    if (file.empty()) return error(http::status::not_found, "not found");
    auto in = std::make_shared<std::ifstream>(file, std::ios::binary);
    std::error_code fec;
    const uint64_t size = stdfs::file_size(file, fec);
    if (!*in || fec) return error(http::status::not_found, "not found");
    uint64_t first = 0, last = size ? size - 1 : 0;
    bool ranged = false;
    if (auto it = req.find(http::field::range); it != req.end()) {
      if (!parse_range(std::string_view(it->value().data(), it->value().size()), size, first,
                       last)) {
        http::response<http::empty_body> res{http::status::range_not_satisfiable, req.version()};
        res.set(http::field::content_range, "bytes */" + std::to_string(size));
        res.keep_alive(keep_);
        res.content_length(0);
        return send(std::move(res));
      }
      ranged = true;
    }
    if (req.method() == http::verb::head) {
      http::response<http::empty_body> res{http::status::ok, req.version()};
      res.set(http::field::accept_ranges, "bytes");
      res.content_length(size);
      res.keep_alive(keep_);
      return send(std::move(res));
    }
    stream_file(std::move(in), ranged, first, size ? last - first + 1 : 0, size, req.version());
  }

  // The body kChunk at a time from the file (a whole file, or a range): memory per
  // connection is bounded whatever the file's size, and a client that stops reading is
  // dropped after kIdle without progress, while a slow one that keeps reading is served.
  struct Out {
    http::response<http::buffer_body> res;
    http::response_serializer<http::buffer_body> sr{res};
    std::shared_ptr<std::ifstream> in;
    uint64_t left = 0;
    std::vector<char> buf = std::vector<char>(kChunk);
  };
  void stream_file(std::shared_ptr<std::ifstream> in, bool ranged, uint64_t first, uint64_t len,
                   uint64_t size, unsigned version) {
    auto out = std::make_shared<Out>();
    out->res = http::response<http::buffer_body>(
        ranged ? http::status::partial_content : http::status::ok, version);
    out->res.set(http::field::server, "mup");
    out->res.set(http::field::content_type, "application/octet-stream");
    out->res.set(http::field::accept_ranges, "bytes");
    if (ranged)
      out->res.set(http::field::content_range, "bytes " + std::to_string(first) + "-" +
                                                   std::to_string(first + len - 1) + "/" +
                                                   std::to_string(size));
    out->res.content_length(len);
    out->res.keep_alive(keep_);
    out->res.body().data = nullptr;
    out->res.body().more = true;
    in->seekg(static_cast<std::streamoff>(first));
    out->in = std::move(in);
    out->left = len;
    stream_.expires_after(kIdle);
    http::async_write_header(stream_, out->sr,
                             [self = shared_from_this(), out](beast::error_code ec, size_t) {
                               if (ec) return self->close();
                               self->next_chunk(out);
                             });
  }
  void next_chunk(const std::shared_ptr<Out>& out) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out->left, out->buf.size()));
    if (n > 0) {
      out->in->read(out->buf.data(), static_cast<std::streamsize>(n));
      if (out->in->gcount() != static_cast<std::streamsize>(n)) return close();  // shrank
    }
    out->left -= n;
    out->res.body().data = n ? out->buf.data() : nullptr;
    out->res.body().size = n;
    out->res.body().more = out->left > 0;
    stream_.expires_after(kIdle);
    http::async_write(stream_, out->sr,
                      [self = shared_from_this(), out](beast::error_code ec, size_t) {
                        if (ec == http::error::need_buffer) ec = {};
                        if (ec) return self->close();
                        if (!out->sr.is_done()) return self->next_chunk(out);
                        if (!self->keep_ || !out->res.keep_alive()) return self->close();
                        self->read();
                      });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  const stdfs::path& root_;
  std::atomic<size_t>& live_;
  std::atomic<uint64_t>& requests_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  bool keep_ = true;
};

}  // namespace

struct FileServer::Impl {
  stdfs::path root;
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  asio::steady_timer retry{ioc};
  std::vector<std::thread> threads;
  std::string host;
  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;
  std::atomic<size_t> live{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<size_t> max_connections{512};
  std::chrono::milliseconds backoff{0};

  // Accepting goes on after errors: out of descriptors (a connection flood) waits a moment,
  // longer each time (up to 1 s), and tries again, so the server answers once the flood
  // ends. Over max_connections a connection gets 503 and is closed.
  void accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;  // stopped
      if (ec) {
        backoff = std::min<std::chrono::milliseconds>(
            std::max<std::chrono::milliseconds>(backoff * 2, std::chrono::milliseconds(10)),
            std::chrono::seconds(1));
        retry.expires_after(backoff);
        retry.async_wait([this](beast::error_code e) {
          if (!e) accept();
        });
        return;
      }
      backoff = std::chrono::milliseconds(0);
      if (live.load() >= max_connections) {
        auto sock = std::make_shared<tcp::socket>(std::move(s));
        static const std::string busy =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        asio::async_write(*sock, asio::buffer(busy), [sock](beast::error_code, size_t) {
          beast::error_code e;
          sock->shutdown(tcp::socket::shutdown_both, e);
        });
      } else {
        std::make_shared<Session>(std::move(s), root, live, requests)->run();
      }
      accept();
    });
  }
};

FileServer::FileServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<FileServer>> FileServer::start(const stdfs::path& root,
                                                      const std::string& listen, unsigned threads) {
  std::error_code fec;
  auto canon = stdfs::canonical(root, fec);
  if (fec || !stdfs::is_directory(canon))
    return fail(Errc::not_found, root.string() + " is not a directory");
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos)
    return fail(Errc::invalid_argument, "--listen wants HOST:PORT, got " + listen);
  auto impl = std::make_unique<Impl>();
  impl->root = canon;
  impl->host = listen.substr(0, colon);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(impl->host, ec);
  if (ec) return fail(Errc::invalid_argument, "cannot listen on " + listen + ": " + ec.message());
  unsigned long port = 0;
  try {
    port = std::stoul(listen.substr(colon + 1));
  } catch (...) {
    return fail(Errc::invalid_argument, "bad port in " + listen);
  }
  if (port > 65535) return fail(Errc::invalid_argument, "bad port in " + listen);
  tcp::endpoint ep(addr, static_cast<uint16_t>(port));
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail(Errc::io, "cannot listen on " + listen + ": " + ec.message());
  impl->accept();
  Impl* raw = impl.get();
  for (unsigned i = 0; i < std::max(1u, threads); ++i)
    raw->threads.emplace_back([raw] { raw->ioc.run(); });
  return std::unique_ptr<FileServer>(new FileServer(std::move(impl)));
}

FileServer::~FileServer() {
  stop();
}

void FileServer::set_max_connections(size_t n) {
  impl_->max_connections = n;
}

uint64_t FileServer::requests() const {
  return impl_->requests.load();
}

uint16_t FileServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

std::string FileServer::base_url() const {
  std::string h =
      impl_->host.find(':') != std::string::npos ? "[" + impl_->host + "]" : impl_->host;
  return "http://" + h + ":" + std::to_string(port());
}

void FileServer::stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
  impl_->cv.notify_all();
}

void FileServer::wait() {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait(lock, [&] { return impl_->stopped; });
}

}  // namespace mup::transfer
