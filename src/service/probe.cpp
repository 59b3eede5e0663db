#include "service/probe.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "service/procfs.hpp"

namespace mup::service {

namespace {

using steady = std::chrono::steady_clock;

int ms_left(steady::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
  return static_cast<int>(std::max<int64_t>(0, left));
}

// A connected non-blocking socket to 127.0.0.1:port, or -1 with `why` set.
int connect_loopback(int port, steady::time_point deadline, std::string& why) {
  std::string where = "connect 127.0.0.1:" + std::to_string(port);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    why = "socket: " + std::string(std::strerror(errno));
    return -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) {
      why = where + ": " + std::strerror(errno);
      ::close(fd);
      return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int r = ::poll(&p, 1, ms_left(deadline));
    int err = 0;
    socklen_t len = sizeof err;
    if (r <= 0) {
      why = where + ": timed out";
      ::close(fd);
      return -1;
    }
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      why = where + ": " + std::strerror(err);
      ::close(fd);
      return -1;
    }
  }
  return fd;
}

}  // namespace

std::string probe_tcp(int port, int64_t timeout_ms) {
  std::string why;
  int fd = connect_loopback(port, steady::now() + std::chrono::milliseconds(timeout_ms), why);
  if (fd < 0) return why;
  ::close(fd);
  return "";
}

std::string probe_http(int port, const std::string& path, int64_t timeout_ms) {
  auto deadline = steady::now() + std::chrono::milliseconds(timeout_ms);
  std::string why;
  int fd = connect_loopback(port, deadline, why);
  if (fd < 0) return why;
  std::string what = "GET " + path + " on 127.0.0.1:" + std::to_string(port);
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nUser-Agent: mup-probe\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, ms_left(deadline)) > 0) continue;
      why = what + ": timed out sending";
    } else {
      why = what + ": send: " + std::strerror(errno);
    }
    ::close(fd);
    return why;
  }
  std::string head;
  while (head.find("\r\n") == std::string::npos && head.size() < 1024) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms_left(deadline)) <= 0) {
      ::close(fd);
      return what + ": no answer in time";
    }
    char buf[512];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    head.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  // "HTTP/1.x NNN reason"
  if (head.rfind("HTTP/", 0) != 0 || head.size() < 12 || head[8] != ' ')
    return what + ": not an HTTP answer";
  std::string code = head.substr(9, 3);
  if (code[0] == '2') return "";
  return what + ": status " + code;
}

std::string probe_exec(const SpawnSpec& spec, int64_t timeout_ms) {
  auto child = spawn_process(spec);
  if (!child) return child.error().message();
  std::string what = "ready command " + spec.program;
  bool exited = procfs::wait_exit(child->pidfd, child->pid, child->start_ticks, timeout_ms);
  if (!exited) {
    ::kill(-child->pid, SIGKILL);
    procfs::wait_exit(child->pidfd, child->pid, child->start_ticks, 5000);
  }
  int status = 0;
  while (::waitpid(child->pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (child->pidfd >= 0) ::close(child->pidfd);
  if (!exited) return what + ": timed out after " + std::to_string(timeout_ms) + " ms";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  return what + ": " + describe_wait_status(status);
}

}  // namespace mup::service
