#include "transfer/file_server.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <condition_variable>
#include <fstream>
#include <mutex>
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

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, const stdfs::path& root) : stream_(std::move(s)), root_(root) {}
  void run() { read(); }

 private:
  void read() {
    req_ = {};
    stream_.expires_after(std::chrono::seconds(60));
    http::async_read(stream_, buf_, req_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->close();
                       self->handle();
                     });
  }

  template <class Body>
  void send(http::response<Body>&& res) {
    auto sp = std::make_shared<http::response<Body>>(std::move(res));
    bool keep = sp->keep_alive();
    http::async_write(stream_, *sp,
                      [self = shared_from_this(), sp, keep](beast::error_code ec, size_t) {
                        if (ec || !keep) return self->close();
                        self->read();
                      });
  }

  void error(http::status st, const std::string& why) {
    http::response<http::string_body> res{st, req_.version()};
    res.set(http::field::server, "mup");
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(req_.keep_alive());
    res.body() = why + "\n";
    res.prepare_payload();
    send(std::move(res));
  }

  void handle() {
    if (req_.method() != http::verb::get && req_.method() != http::verb::head)
      return error(http::status::method_not_allowed, "only GET and HEAD");
    stdfs::path file = resolve(root_, std::string_view(req_.target().data(), req_.target().size()));
    if (file.empty()) return error(http::status::not_found, "not found");
    beast::error_code ec;
    http::file_body::value_type body;
    body.open(file.c_str(), beast::file_mode::scan, ec);
    if (ec) return error(http::status::not_found, "not found");
    uint64_t size = body.size();
    uint64_t first = 0, last = size ? size - 1 : 0;
    bool ranged = false;
    if (auto it = req_.find(http::field::range); it != req_.end()) {
      if (!parse_range(std::string_view(it->value().data(), it->value().size()), size, first,
                       last)) {
        http::response<http::empty_body> res{http::status::range_not_satisfiable, req_.version()};
        res.set(http::field::content_range, "bytes */" + std::to_string(size));
        res.keep_alive(req_.keep_alive());
        res.content_length(0);
        return send(std::move(res));
      }
      ranged = true;
    }
    if (req_.method() == http::verb::head) {
      http::response<http::empty_body> res{http::status::ok, req_.version()};
      res.set(http::field::accept_ranges, "bytes");
      res.content_length(size);
      res.keep_alive(req_.keep_alive());
      return send(std::move(res));
    }
    if (!ranged) {
      http::response<http::file_body> res{std::piecewise_construct,
                                          std::make_tuple(std::move(body)),
                                          std::make_tuple(http::status::ok, req_.version())};
      res.set(http::field::server, "mup");
      res.set(http::field::content_type, "application/octet-stream");
      res.set(http::field::accept_ranges, "bytes");
      res.content_length(size);
      res.keep_alive(req_.keep_alive());
      return send(std::move(res));
    }
    // A range: read it into memory (ranges serve resumed pieces, which are bounded).
    std::ifstream in(file, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(first));
    std::string data(static_cast<size_t>(last - first + 1), '\0');
    in.read(data.data(), static_cast<std::streamsize>(data.size()));
    http::response<http::string_body> res{http::status::partial_content, req_.version()};
    res.set(http::field::content_range, "bytes " + std::to_string(first) + "-" +
                                            std::to_string(last) + "/" + std::to_string(size));
    res.set(http::field::content_type, "application/octet-stream");
    res.keep_alive(req_.keep_alive());
    res.body() = std::move(data);
    res.prepare_payload();
    send(std::move(res));
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  const stdfs::path& root_;
  beast::flat_buffer buf_;
  http::request<http::empty_body> req_;
};

}  // namespace

struct FileServer::Impl {
  stdfs::path root;
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  std::string host;
  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;

  void accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec) return;  // acceptor closed
      std::make_shared<Session>(std::move(s), root)->run();
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
