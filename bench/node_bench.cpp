// node_bench: activation / rollback latency and staging cost on a real node directory.
//
//   node_bench [--switches N] [--dir DIR]
//
// Prints JSON: {"switch": {name: {n, median_ms, p99_ms, max_ms}}, "staging": [...]}.
//  - "pointer swap": InstallStore::activate alone (symlink + rename + fsync of the dir);
//  - "activate": Engine::activate (journal intent, swap, database, audit record: what
//    `mup activate` costs after start-up), alternating between two versions;
//  - "rollback": Engine::rollback to the previous version, N times.
//  - staging: trees of 1 MB files; v2 changes some files; the time and bytes written to
//    stage v2 beside v1 (unchanged files are hard links), for growing trees with a fixed
//    change and for a fixed tree with growing changes.
// bench/install.sh runs it and puts the table in its results.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/fs.hpp"
#include "delta/packer.hpp"
#include "engine/engine.hpp"
#include "store/install_store.hpp"

namespace stdfs = std::filesystem;
using nlohmann::json;
using namespace mup;

namespace {

void die(const std::string& what, const Error& e) {
  std::fprintf(stderr, "node_bench: %s: %s\n", what.c_str(), e.message().c_str());
  std::exit(1);
}
template <typename T>
T must(Result<T> r, const std::string& what) {
  if (!r) die(what, r.error());
  return std::move(*r);
}
void must(Status s, const std::string& what) {
  if (!s) die(what, s.error());
}

std::vector<uint8_t> noise(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(v.data() + i, &x, std::min<size_t>(8, n - i));
  }
  return v;
}

// A tree of `files` 1 MB files; files below `changed` differ by `seed`.
void make_tree(const stdfs::path& dir, int files, int changed, uint64_t seed) {
  stdfs::create_directories(dir);
  for (int i = 0; i < files; ++i) {
    auto b = noise(1 << 20, static_cast<uint64_t>(i) + (i < changed ? seed * 1000003 : 0));
    must(fs::write_file_atomic(dir / ("f" + std::to_string(i) + ".bin"), b), "writing");
  }
}

json stats(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))];
  };
  return {{"n", ms.size()}, {"median_ms", at(0.5)}, {"p99_ms", at(0.99)}, {"max_ms", ms.back()}};
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Packs `src` into the store's piece cache and stages it as `version` (seeds: `seeds`).
delta::UnpackStats stage(store::InstallStore& st, const stdfs::path& src, const std::string& v,
                         const std::vector<stdfs::path>& seeds, double* seconds) {
  delta::PackOptions po;
  auto idx = must(delta::pack(src, st.pieces(), po, nullptr), "pack");
  auto bytes = idx.serialize();
  must(st.put_index("c", v, bytes), "put_index");
  std::vector<chunk::TreeIndex> held;
  held.reserve(seeds.size());
  std::vector<delta::IndexedSeed> indexed;
  for (const auto& sd : seeds) {
    held.push_back(must(st.load_index("c", sd.filename().string()), "load_index"));
    indexed.push_back({sd, &held.back()});
  }
  double t0 = now_ms();
  auto plan = must(delta::plan(idx, bytes.size(), indexed), "plan");
  auto s = must(st.stage("c", v, idx, plan, {}), "stage");
  if (seconds) *seconds = (now_ms() - t0) / 1000;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int switches = 100;
  stdfs::path dir = stdfs::temp_directory_path() / "mup-node-bench";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--switches") switches = std::atoi(argv[i + 1]);
    if (a == "--dir") dir = argv[i + 1];
  }
  stdfs::remove_all(dir);
  json out;

  // Switch latency: two versions of a 64-file tree.
  {
    stdfs::path node = dir / "node";
    make_tree(dir / "s1", 64, 0, 1);
    make_tree(dir / "s2", 64, 4, 2);
    {
      auto st = must(store::InstallStore::open(node), "open store");
      stage(st, dir / "s1", "1.0.0", {}, nullptr);
      stage(st, dir / "s2", "2.0.0", {st.version_dir("c", "1.0.0")}, nullptr);
      must(st.activate("c", "1.0.0"), "activate");
    }
    auto n = must(engine::Engine::open(node, {}), "open node");
    std::vector<double> swap, act, rb;
    for (int i = 0; i < switches; ++i) {
      double t0 = now_ms();
      must(n->store().activate("c", i % 2 ? "1.0.0" : "2.0.0"), "swap");
      swap.push_back(now_ms() - t0);
    }
    for (int i = 0; i < switches; ++i) {
      double t0 = now_ms();
      must(n->activate("c", i % 2 ? "1.0.0" : "2.0.0"), "activate");
      act.push_back(now_ms() - t0);
    }
    for (int i = 0; i < switches; ++i) {
      double t0 = now_ms();
      must(n->rollback("c", std::nullopt, false), "rollback");
      rb.push_back(now_ms() - t0);
    }
    out["switch"] = {
        {"pointer swap", stats(swap)}, {"activate", stats(act)}, {"rollback", stats(rb)}};
  }

  // Staging cost.
  json staging = json::array();
  struct Case {
    int files, changed;
  };
  for (Case c : {Case{32, 1}, Case{128, 1}, Case{512, 1}, Case{128, 8}, Case{128, 32}}) {
    stdfs::path base = dir / ("stage-" + std::to_string(c.files) + "-" + std::to_string(c.changed));
    make_tree(base / "s1", c.files, 0, 1);
    make_tree(base / "s2", c.files, c.changed, 2);
    auto st = must(store::InstallStore::open(base / "node"), "open store");
    stage(st, base / "s1", "1.0.0", {}, nullptr);
    double secs = 0;
    auto s = stage(st, base / "s2", "2.0.0", {st.version_dir("c", "1.0.0")}, &secs);
    staging.push_back({{"tree_mb", c.files},
                       {"changed_mb", c.changed},
                       {"stage_s", secs},
                       {"bytes_written", s.bytes_written},
                       {"files_linked", s.files_linked}});
    stdfs::remove_all(base);
  }
  out["staging"] = staging;
  std::printf("%s\n", out.dump(2).c_str());
  stdfs::remove_all(dir);
  return 0;
}
