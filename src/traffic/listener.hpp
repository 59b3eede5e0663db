// Listener: a route's listening socket and its accept loop (internal to src/traffic).
//
// open() binds and listens (SO_REUSEADDR) on the calling thread, so bind errors come back
// to set_route; start() runs the accept loop on the home worker, handing each accepted
// connection to the next worker in turn, as an HTTP or TCP session according to the route
// table current at accept time. close() may be called from any thread: it is posted to the
// home worker. The accept loop holds the Listener alive until the socket is closed.
#pragma once

#include <memory>
#include <string>

#include "core/error.hpp"
#include "traffic/backend.hpp"

namespace mup::traffic {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  [[nodiscard]] static Result<std::shared_ptr<Listener>> open(const std::string& listen,
                                                              Worker& home);
  Listener(Worker& home, tcp::acceptor acceptor, std::string bound)
      : home_(home), acceptor_(std::move(acceptor)), bound_(std::move(bound)) {}

  void start(std::shared_ptr<RouteRuntime> rt);
  void close();
  const std::string& bound() const { return bound_; }

 private:
  static asio::awaitable<void> accept_loop(std::shared_ptr<Listener> self,
                                           std::shared_ptr<RouteRuntime> rt);
  Worker& home_;
  tcp::acceptor acceptor_;
  std::string bound_;
};

}  // namespace mup::traffic
