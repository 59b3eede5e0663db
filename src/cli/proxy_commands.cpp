// `mup proxy`: the data plane process (traffic/daemon.hpp). The agent starts it detached;
// it can also be run by hand, in the foreground, to look at it.
#include <signal.h>

#include <cstdio>

#include "cli/commands.hpp"
#include "cli/node_args.hpp"
#include "traffic/daemon.hpp"

namespace mup::cli {

void register_proxy_commands(CLI::App& app) {
  auto n = std::make_shared<NodeArgs>();
  auto* cmd = app.add_subcommand(
      "proxy", "Run the traffic proxy of a node in the foreground (the agent starts it itself)");
  add_node_options(cmd, *n, false);
  cmd->callback([n] {
    // A signal thread would be nicer; sigwait on a blocked set is as robust: TERM and INT
    // end it, HUP and PIPE never do (the agent's death must not take the data plane along).
    ::signal(SIGPIPE, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts: they inherit it
    traffic::DaemonOptions o;
    o.root = n->root();
    auto d = must(traffic::ProxyDaemon::start(std::move(o)), "starting the proxy");
    std::fprintf(stderr, "mup proxy: serving %s\n", (n->root() / "proxy.sock").c_str());
    int sig = 0;
    sigwait(&set, &sig);
    std::fprintf(stderr, "mup proxy: signal %d: stopping\n", sig);
    d->stop();
  });
}

}  // namespace mup::cli
