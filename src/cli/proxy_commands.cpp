// `mup proxy`: runs the data plane (traffic::ProxyDaemon) for a node root in the
// foreground until SIGTERM or SIGINT, then shuts down cleanly (control socket removed,
// lock released). The agent starts it detached (traffic::ProxyClient::ensure_running);
// an operator may run it by hand or under systemd.
#include <signal.h>

#include <cstdio>

#include "cli/commands.hpp"
#include "cli/node_args.hpp"
#include "traffic/daemon.hpp"

namespace mup::cli {

namespace {

struct ProxyArgs {
  NodeArgs node;
  unsigned threads = 2;
};

// Waits for SIGTERM or SIGINT (blocked in every thread, taken here with sigwait), so
// shutdown runs in normal code, not in a signal handler.
int wait_for_stop_signal(const sigset_t& set) {
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

void run_proxy(const ProxyArgs& a) {
  // A peer closing mid-write must not kill the data plane; nor the loss of a terminal.
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  // Blocked before any thread starts, so every thread inherits the mask.
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  std::filesystem::path root = a.node.root();
  traffic::ProxyOptions o;
  o.threads = a.threads;
  auto daemon =
      must(traffic::ProxyDaemon::start(root, o), "starting the proxy for " + root.string());
  std::fprintf(stderr, "mup proxy: serving %zu route(s); control API on %s\n",
               daemon->proxy().routes().size(), (root / "proxy.sock").c_str());
  int sig = wait_for_stop_signal(stop);
  std::fprintf(stderr, "mup proxy: signal %d, shutting down\n", sig);
  daemon.reset();
}

}  // namespace

void register_proxy_commands(CLI::App& app) {
  auto a = std::make_shared<ProxyArgs>();
  auto* cmd = app.add_subcommand("proxy", "Run the traffic proxy (data plane) for a node");
  add_node_options(cmd, a->node, false);
  cmd->add_option("--threads", a->threads, "Worker threads (default 2)")->check(CLI::Range(1, 64));
  cmd->callback([a] { run_proxy(*a); });
}

}  // namespace mup::cli
