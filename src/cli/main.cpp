// mup: the MOHHOS incremental update system. One binary, subcommands.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/node_args.hpp"

namespace mup::cli {

// With --json, the error is also a JSON object on stdout, with a code callers branch on.
void die(const Error& e) {
  std::fprintf(stderr, "mup: error: %s\n", e.message().c_str());
  if (global_args().json || json_requested())
    std::printf("%s\n",
                nlohmann::json({{"error", {{"code", e.code_string()}, {"message", e.message()}}}})
                    .dump()
                    .c_str());
  throw CliExit{1};
}

}  // namespace mup::cli

int main(int argc, char** argv) {
  CLI::App app{"mup: incremental updates with automatic rollback for MOHHOS"};
  app.set_version_flag("--version", std::string("mup ") + MUP_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  mup::cli::add_global_options(app);
  mup::cli::register_engine_commands(app);
  mup::cli::register_repo_commands(app);
  mup::cli::register_node_commands(app);
  mup::cli::register_install_commands(app);
  mup::cli::register_agent_commands(app);
  mup::cli::register_proxy_commands(app);
  mup::cli::register_health_commands(app);
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--json") mup::cli::set_json_requested();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help, version, or the usage error
    return code == 0 ? 0 : 2;
  } catch (const mup::cli::CliExit& e) {
    return e.code;
  } catch (const std::exception& e) {  // a bug: say so, never std::terminate
    std::fprintf(stderr, "mup: internal error: %s (please report it)\n", e.what());
    return 1;
  }
  return 0;
}
