// tuf-conformance-client: mup's TUF client behind the CLI protocol of the public
// conformance suite (theupdateframework/tuf-conformance, CLIENT-CLI.md):
//
//   EP --metadata-dir D init ROOTFILE
//   EP --metadata-url U --metadata-dir D refresh
//   EP --metadata-url U --metadata-dir D --target-name P [--target-name P2 ...]
//      --target-dir T --target-base-url TU download
//
// Options come in any order before the subcommand. Exit 0 on full success, 1 on any
// failure (usage errors included). D holds root.json, timestamp.json, snapshot.json,
// targets.json and "<percent-encoded role>.json", each exactly the bytes received and
// written atomically by the Updater. A target is stored in T under its percent-encoded
// path, written atomically after its length and hashes were verified.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/fs.hpp"
#include "transfer/fetcher.hpp"
#include "tuf/clock.hpp"
#include "tuf/metadata.hpp"
#include "tuf/updater.hpp"

namespace {

namespace stdfs = std::filesystem;
using namespace mup;

struct Args {
  std::string metadata_dir, metadata_url, target_dir, target_base_url, command;
  std::vector<std::string> target_names;
  std::vector<std::string> positional;
};

int usage(const std::string& why) {
  std::fprintf(stderr,
               "tuf-conformance-client: %s\n"
               "usage: tuf-conformance-client --metadata-dir D init ROOTFILE\n"
               "       tuf-conformance-client --metadata-url U --metadata-dir D refresh\n"
               "       tuf-conformance-client --metadata-url U --metadata-dir D --target-name P "
               "[--target-name P ...] --target-dir T --target-base-url TU download\n",
               why.c_str());
  return 1;  // the protocol knows only 0 and 1
}

int failed(const Error& e) {
  std::fprintf(stderr, "tuf-conformance-client: %s\n", e.message().c_str());
  return 1;
}

// The file a target is stored in: its percent-encoded path (never "." or "..").
stdfs::path target_file(const std::string& dir, const std::string& target) {
  std::string name = transfer::percent_encode(target);
  if (name == "." || name == "..") name = std::string(name.size(), '_') + "%2E";
  return stdfs::path(dir) / name;
}

int init(const Args& a) {
  if (a.metadata_dir.empty() || a.positional.size() != 1)
    return usage("init needs --metadata-dir and the trusted root file");
  auto bytes = fs::read_file(a.positional[0], 16u << 20);
  if (!bytes) return failed(bytes.error());
  // Only a sanity check: the Updater verifies the root's own signatures before use.
  auto root = tuf::Metadata<tuf::Root>::parse(*bytes);
  if (!root) return failed(root.error());
  if (auto s = fs::create_dirs(a.metadata_dir); !s) return failed(s.error());
  if (auto s = fs::write_file_atomic(stdfs::path(a.metadata_dir) / "root.json", *bytes); !s)
    return failed(s.error());
  return 0;
}

int run(const Args& a) {
  if (a.metadata_dir.empty() || a.metadata_url.empty())
    return usage(a.command + " needs --metadata-dir and --metadata-url");
  if (a.command == "download" &&
      (a.target_names.empty() || a.target_dir.empty() || a.target_base_url.empty()))
    return usage("download needs --target-name, --target-dir and --target-base-url");
  tuf::UpdaterConfig cfg;
  cfg.metadata_dir = a.metadata_dir;
  cfg.metadata_base_url = a.metadata_url;
  cfg.target_base_url = a.target_base_url;
  transfer::HttpFetcher fetcher;
  tuf::SystemClock clock;
  auto updater = tuf::Updater::create(cfg, fetcher, clock);
  if (!updater) return failed(updater.error());
  if (auto s = updater->refresh(); !s) return failed(s.error());
  if (a.command == "refresh") return 0;
  // Targets in argument order, with the same Updater; stop at the first failure.
  for (const auto& name : a.target_names) {
    auto info = updater->get_targetinfo(name);
    if (!info) return failed(info.error());
    stdfs::path file = target_file(a.target_dir, name);
    if (updater->is_cached(*info, file)) continue;
    if (auto s = updater->download_target(*info, file); !s) return failed(s.error());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    bool ok = true;
    if (!a.command.empty()) {
      a.positional.push_back(arg);
    } else if (arg == "--metadata-dir") {
      ok = value(a.metadata_dir);
    } else if (arg == "--metadata-url") {
      ok = value(a.metadata_url);
    } else if (arg == "--target-dir") {
      ok = value(a.target_dir);
    } else if (arg == "--target-base-url") {
      ok = value(a.target_base_url);
    } else if (arg == "--target-name") {
      std::string n;
      ok = value(n);
      a.target_names.push_back(n);
    } else if (arg == "init" || arg == "refresh" || arg == "download") {
      a.command = arg;
    } else {
      return usage("unknown argument " + arg);
    }
    if (!ok) return usage(arg + " needs a value");
  }
  if (a.command == "init") return init(a);
  if (a.command == "refresh" || a.command == "download") {
    if (!a.positional.empty()) return usage("unexpected argument " + a.positional[0]);
    return run(a);
  }
  return usage("missing command (init, refresh or download)");
}
