#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "api/client.hpp"
#include "traffic/daemon.hpp"

namespace mup::traffic {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

constexpr auto kTimeout = std::chrono::seconds(10);

// An HTTP error reply as an Error with the closest code.
Error reply_error(const api::Reply& r, const std::string& what) {
  std::string msg = what + ": status " + std::to_string(r.status);
  if (r.body.is_object() && r.body.contains("error") && r.body["error"].is_object())
    msg = what + ": " + r.body["error"].value("message", msg);
  Errc code = r.status == 400   ? Errc::invalid_argument
              : r.status == 404 ? Errc::not_found
              : r.status == 409 ? Errc::busy
                                : Errc::io;
  return Error(code, msg);
}

Result<json> call(api::Client& c, const std::string& method, const std::string& path,
                  const json& body = nullptr) {
  auto r = c.request(method, path, body, kTimeout);
  if (!r) return tl::unexpected(r.error());
  if (r->status != 200) return tl::unexpected(reply_error(*r, method + " " + path));
  return std::move(r->body);
}

// Starts `binary proxy --root root` in its own session, detached from us (double fork:
// the grandchild is reparented to init and never becomes our zombie), stdio to the log.
Status spawn_detached(const stdfs::path& binary, const stdfs::path& root) {
  // Everything the children use is prepared before fork: after it only async-signal-safe
  // calls are allowed (this process has threads).
  std::string bin = binary.string(), root_s = root.string();
  std::string log = (root / "proxy" / "proxy.log").string();
  std::error_code ec;
  stdfs::create_directories(root / "proxy", ec);
  const char* argv[] = {bin.c_str(), "proxy", "--root", root_s.c_str(), nullptr};
  pid_t child = ::fork();
  if (child < 0) return fail_errno("fork", "mup proxy", errno);
  if (child == 0) {
    ::setsid();
    pid_t grandchild = ::fork();
    if (grandchild != 0) ::_exit(grandchild < 0 ? 1 : 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in < 0 || out < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    ::execv(bin.c_str(), const_cast<char* const*>(argv));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail(Errc::io, "could not start " + bin + " proxy (fork failed)");
  return {};
}

}  // namespace

ProxyClient::ProxyClient(const stdfs::path& root)
    : client_(std::make_unique<api::Client>(api::Client::unix_socket(root / "proxy.sock"))) {}
ProxyClient::~ProxyClient() = default;
ProxyClient::ProxyClient(ProxyClient&&) noexcept = default;
ProxyClient& ProxyClient::operator=(ProxyClient&&) noexcept = default;

Status ProxyClient::ensure_running(const stdfs::path& root, const stdfs::path& mup_binary,
                                   std::chrono::milliseconds wait) {
  auto answers = [&] {
    api::Client c = api::Client::unix_socket(root / "proxy.sock");
    auto r = c.request("GET", "/v1/health", nullptr, std::chrono::seconds(1));
    return r && r->status == 200;
  };
  if (answers()) return {};
  MUP_TRY(spawn_detached(mup_binary, root));
  auto deadline = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (answers()) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return fail(Errc::io, "started " + mup_binary.string() + " proxy --root " + root.string() +
                            " but it did not answer on " + (root / "proxy.sock").string() +
                            " within " + std::to_string(wait.count()) + " ms; see " +
                            (root / "proxy" / "proxy.log").string());
}

Result<json> ProxyClient::health() {
  return call(*client_, "GET", "/v1/health");
}

Result<Route> ProxyClient::put_route(const std::string& name, const RouteSpec& spec) {
  auto j = call(*client_, "PUT", "/v1/routes/" + name, to_json(spec));
  if (!j) return tl::unexpected(j.error());
  return parse_route(*j);
}

Status ProxyClient::delete_route(const std::string& name) {
  auto j = call(*client_, "DELETE", "/v1/routes/" + name);
  if (!j) return tl::unexpected(j.error());
  return {};
}

Result<std::vector<Route>> ProxyClient::routes() {
  auto j = call(*client_, "GET", "/v1/routes");
  if (!j) return tl::unexpected(j.error());
  if (!j->contains("routes") || !(*j)["routes"].is_array())
    return fail(Errc::corrupt, "GET /v1/routes: no \"routes\" array in the reply");
  std::vector<Route> out;
  for (const auto& r : (*j)["routes"]) {
    auto route = parse_route(r);
    if (!route) return tl::unexpected(route.error().context("GET /v1/routes"));
    out.push_back(std::move(*route));
  }
  return out;
}

Result<json> ProxyClient::stats() {
  return call(*client_, "GET", "/v1/stats");
}

}  // namespace mup::traffic
