// pack / plan / unpack / index show: the plumbing of the incremental engine. Later issues
// (publish, install) and the benchmarks build on these; keep their flags and --json stable.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <tuple>

#include "chunk/chunk_store.hpp"
#include "chunk/tree_index.hpp"
#include "cli/commands.hpp"
#include "core/fs.hpp"
#include "core/progress.hpp"
#include "core/sha256.hpp"
#include "delta/packer.hpp"
#include "delta/piece.hpp"
#include "delta/planner.hpp"
#include "delta/rebuild.hpp"

namespace mup::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

void print_json(const json& j) {
  std::printf("%s\n", j.dump(2).c_str());
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

json plan_json(const delta::Plan& p) {
  return {{"bytes_to_fetch", p.bytes_to_fetch},
          {"full_bytes", p.full_bytes},
          {"chunks", p.chunks},
          {"deltas", p.deltas},
          {"index_bytes", p.index_bytes},
          {"chunk_bytes", p.chunk_bytes},
          {"delta_bytes", p.delta_bytes},
          {"target_bytes", p.target_bytes},
          {"reused_bytes", p.reused_bytes},
          {"seed_chunks", p.seed_chunks},
          {"files",
           {{"reused", p.files_reused}, {"delta", p.files_delta}, {"chunks", p.files_chunks}}}};
}

void print_plan(const delta::Plan& p) {
  double pct = p.full_bytes ? 100.0 * static_cast<double>(p.bytes_to_fetch) /
                                  static_cast<double>(p.full_bytes)
                            : 0;
  std::printf("to fetch:   %s (%.1f%% of the full %s)\n", human_bytes(p.bytes_to_fetch).c_str(),
              pct, human_bytes(p.full_bytes).c_str());
  std::printf("  index     %s\n", human_bytes(p.index_bytes).c_str());
  std::printf("  chunks    %s in %llu chunks\n", human_bytes(p.chunk_bytes).c_str(),
              static_cast<unsigned long long>(p.chunks));
  std::printf("  deltas    %s in %llu deltas\n", human_bytes(p.delta_bytes).c_str(),
              static_cast<unsigned long long>(p.deltas));
  std::printf(
      "files:      %llu reused from seeds, %llu by delta, %llu from chunks (%llu chunks found in "
      "seeds)\n",
      static_cast<unsigned long long>(p.files_reused),
      static_cast<unsigned long long>(p.files_delta),
      static_cast<unsigned long long>(p.files_chunks),
      static_cast<unsigned long long>(p.seed_chunks));
}

// Every piece the plan downloads must be in the store: say which is not, before any work.
Status check_store_has(const chunk::TreeIndex& idx, const delta::Plan& p,
                       const chunk::ChunkStore& store) {
  size_t missing = 0;
  std::string first;
  for (const delta::FilePlan& fp : p.files) {
    const chunk::Entry& e = idx.entries[fp.entry];
    if (fp.source == delta::Source::delta) {
      std::string rel = delta::piece_rel_path(fp.delta->base, e.digest);
      if (!store.has_blob(rel) && missing++ == 0) first = "delta " + rel + " (for " + e.path + ")";
    } else if (fp.source == delta::Source::chunks) {
      for (size_t i = 0; i < e.chunks.size(); ++i)
        if (fp.chunks[i].seed_file < 0 && !store.has_chunk(e.chunks[i].id) && missing++ == 0)
          first = "chunk " + e.chunks[i].id.hex() + " (for " + e.path + ")";
    }
  }
  if (missing == 0) return {};
  return fail(Errc::not_found, "store " + store.root().string() + " lacks " +
                                   std::to_string(missing) + " piece(s) this update needs, first " +
                                   first + "; is it the store the index was packed into?");
}

struct PackArgs {
  std::string src, store, index;
  std::vector<std::string> bases, base_trees;
  int level = 3, delta_level = 19;
  uint32_t min = 16 * 1024, avg = 64 * 1024, max = 256 * 1024;
  unsigned threads = 0;
  bool json = false, quiet = false;
};

void run_pack(const PackArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  if (a.bases.size() != a.base_trees.size())
    die(Error(Errc::invalid_argument, "give one --base-tree for each --base (got " +
                                          std::to_string(a.bases.size()) + " and " +
                                          std::to_string(a.base_trees.size()) + ")"));
  delta::PackOptions o;
  o.params = {a.min, a.avg, a.max};
  o.level = a.level;
  o.delta_level = a.delta_level;
  o.threads = a.threads;
  o.progress = !a.quiet && !a.json;
  for (size_t i = 0; i < a.bases.size(); ++i)
    o.bases.push_back({must(chunk::TreeIndex::load(a.bases[i]), "base index"), a.base_trees[i]});
  auto store = must(chunk::ChunkStore::open(a.store, true));
  delta::PackStats st;
  auto idx = must(delta::pack(a.src, store, o, &st), "packing " + a.src);
  auto idx_file = idx.serialize();
  must(fs::write_file_atomic(a.index, idx_file), "writing index");
  uint64_t isz = idx_file.size();
  // Index deltas, so that a node holding a base version fetches the new index cheaply.
  for (const std::string& b : a.bases) {
    auto base_file = must(fs::read_file(b));
    auto d = must(chunk::make_index_delta(base_file, idx_file), "index delta against " + b);
    must(store.put_blob(chunk::index_delta_rel_path(sha256(base_file), sha256(idx_file)), d));
  }
  must(store.sync());
  double secs = seconds_since(t0);
  if (a.json) {
    print_json({{"index", a.index},
                {"index_bytes", isz},
                {"files", st.files},
                {"file_bytes", st.file_bytes},
                {"chunks", st.chunks},
                {"new_chunks", st.new_chunks},
                {"new_chunk_bytes", st.new_chunk_bytes},
                {"deltas", st.deltas},
                {"delta_bytes", st.delta_bytes},
                {"delta_candidates", st.delta_candidates},
                {"seconds", secs}});
    return;
  }
  if (a.quiet) return;
  std::printf(
      "packed %llu files (%s) in %.2fs: %llu chunk refs, %llu new chunks (%s), %llu deltas (%s) of "
      "%llu "
      "changed files; index %s (%s)\n",
      static_cast<unsigned long long>(st.files), human_bytes(st.file_bytes).c_str(), secs,
      static_cast<unsigned long long>(st.chunks), static_cast<unsigned long long>(st.new_chunks),
      human_bytes(st.new_chunk_bytes).c_str(), static_cast<unsigned long long>(st.deltas),
      human_bytes(st.delta_bytes).c_str(), static_cast<unsigned long long>(st.delta_candidates),
      a.index.c_str(), human_bytes(isz).c_str());
}

struct PlanArgs {
  std::string index, store, out;
  std::vector<std::string> seeds, seed_indexes;
  unsigned threads = 0;
  bool json = false, quiet = false, no_link = false;
};

std::vector<stdfs::path> to_paths(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}

// Loads the target index and plans against the seeds; the index's own cost counts the
// index deltas that the held indexes (--seed-index) allow.
std::tuple<chunk::TreeIndex, chunk::ChunkStore, delta::Plan> load_and_plan(const PlanArgs& a) {
  auto file = must(fs::read_file(a.index));
  auto idx = must(chunk::TreeIndex::parse(file), a.index);
  auto store = must(chunk::ChunkStore::open(a.store, false));
  std::vector<std::vector<uint8_t>> held;
  for (const auto& h : a.seed_indexes) held.push_back(must(fs::read_file(h), "seed index"));
  auto p = must(
      delta::plan(idx, delta::index_fetch_bytes(file, held, store), to_paths(a.seeds), a.threads));
  must(check_store_has(idx, p, store));
  return {std::move(idx), std::move(store), std::move(p)};
}

void run_plan(const PlanArgs& a) {
  auto [idx, store, p] = load_and_plan(a);
  if (a.json) {
    print_json(plan_json(p));
  } else {
    print_plan(p);
  }
}

void run_unpack(const PlanArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  auto [idx, store, p] = load_and_plan(a);
  delta::UnpackOptions o;
  o.threads = a.threads;
  o.link = !a.no_link;
  o.progress = !a.quiet && !a.json;
  auto st = must(delta::unpack(idx, p, store, a.out, o), "unpacking into " + a.out);
  double secs = seconds_since(t0);
  if (a.json) {
    json j = plan_json(p);
    j["out"] = a.out;
    j["files_linked"] = st.files_linked;
    j["bytes_written"] = st.bytes_written;
    j["seconds"] = secs;
    print_json(j);
  } else if (!a.quiet) {
    print_plan(p);
    std::printf("unpacked %s in %.2fs: %llu files (%llu hard-linked), every file verified\n",
                a.out.c_str(), secs, static_cast<unsigned long long>(st.files),
                static_cast<unsigned long long>(st.files_linked));
  }
}

const char* type_name(chunk::EntryType t) {
  switch (t) {
    case chunk::EntryType::dir: return "dir";
    case chunk::EntryType::file: return "file";
    case chunk::EntryType::symlink: return "symlink";
  }
  return "?";
}

void run_index_show(const std::string& path, bool as_json) {
  auto idx = must(chunk::TreeIndex::load(path));
  if (as_json) {
    json entries = json::array();
    for (const auto& e : idx.entries) {
      json j = {{"path", e.path}, {"type", type_name(e.type)}, {"mode", e.mode}};
      if (e.type == chunk::EntryType::symlink) j["target"] = e.link_target;
      if (e.type == chunk::EntryType::file) {
        j["size"] = e.size;
        j["sha256"] = e.digest.hex();
        json cs = json::array();
        for (const auto& c : e.chunks)
          cs.push_back({{"id", c.id.hex()}, {"size", c.size}, {"stored_size", c.stored_size}});
        j["chunks"] = cs;
        json ds = json::array();
        for (const auto& d : e.deltas)
          ds.push_back({{"base", d.base.hex()},
                        {"kind", delta::kind_name(d.kind)},
                        {"stored_size", d.stored_size},
                        {"sha256", d.piece.hex()}});
        j["deltas"] = ds;
      }
      entries.push_back(std::move(j));
    }
    print_json({{"format_version", chunk::TreeIndex::kFormatVersion},
                {"single_file", idx.single_file},
                {"chunk_params",
                 {{"min", idx.params.min_size},
                  {"avg", idx.params.avg_size},
                  {"max", idx.params.max_size}}},
                {"file_bytes", idx.total_file_bytes()},
                {"entries", entries}});
    return;
  }
  size_t files = 0, chunks = 0, deltas = 0;
  for (const auto& e : idx.entries) {
    files += e.type == chunk::EntryType::file;
    chunks += e.chunks.size();
    deltas += e.deltas.size();
  }
  std::printf("tree index %s: format %u, %s, chunks %u/%u/%u\n", path.c_str(),
              chunk::TreeIndex::kFormatVersion, idx.single_file ? "single file" : "tree",
              idx.params.min_size, idx.params.avg_size, idx.params.max_size);
  std::printf("%zu entries, %zu files, %s, %zu chunk refs, %zu deltas\n", idx.entries.size(), files,
              human_bytes(idx.total_file_bytes()).c_str(), chunks, deltas);
  for (const auto& e : idx.entries) {
    std::printf("%-7s %04o %12llu %s %s", type_name(e.type), e.mode,
                static_cast<unsigned long long>(e.size),
                e.type == chunk::EntryType::file ? e.digest.short_hex().c_str() : "------------",
                e.path.c_str());
    if (e.type == chunk::EntryType::symlink) std::printf(" -> %s", e.link_target.c_str());
    if (e.type == chunk::EntryType::file)
      std::printf(
          "  [%zu chunks%s]", e.chunks.size(),
          e.deltas.empty() ? "" : (", " + std::to_string(e.deltas.size()) + " deltas").c_str());
    std::printf("\n");
  }
}

}  // namespace

void register_engine_commands(CLI::App& app) {
  auto pa = std::make_shared<PackArgs>();
  auto* pack =
      app.add_subcommand("pack", "Chunk a tree (or file) into a store and write its tree index");
  pack->add_option("SRC", pa->src, "Directory or file to pack")->required();
  pack->add_option("--store", pa->store, "Chunk store directory (created if missing)")->required();
  pack->add_option("--index", pa->index, "Where to write the tree index")->required();
  pack->add_option("--base", pa->bases,
                   "Index of a base version to compute deltas against (repeatable)");
  pack->add_option("--base-tree", pa->base_trees, "The base version's tree, one per --base");
  pack->add_option("--level", pa->level, "zstd level for chunks when packing without a base")
      ->capture_default_str();
  pack->add_option("--delta-level", pa->delta_level,
                   "zstd level for deltas and chunks new since a base")
      ->capture_default_str();
  pack->add_option("--min", pa->min, "Minimum chunk size in bytes")->capture_default_str();
  pack->add_option("--avg", pa->avg, "Average chunk size in bytes")->capture_default_str();
  pack->add_option("--max", pa->max, "Maximum chunk size in bytes")->capture_default_str();
  pack->add_option("--threads", pa->threads, "Worker threads (default: all cores)");
  pack->add_flag("--json", pa->json, "Print a JSON summary");
  pack->add_flag("-q,--quiet", pa->quiet, "Print nothing on success");
  pack->callback([pa] { run_pack(*pa); });

  auto pl = std::make_shared<PlanArgs>();
  auto* plan =
      app.add_subcommand("plan", "Say what a node holding the seeds must fetch to get a target");
  plan->add_option("TARGET", pl->index, "Target tree index")->required();
  plan->add_option("--store", pl->store, "Store the target was packed into")->required();
  plan->add_option("--seed", pl->seeds, "A tree the node holds (repeatable)");
  plan->add_option(
      "--seed-index", pl->seed_indexes,
      "Index of a version the node holds: the target index is then fetched as a delta");
  plan->add_option("--threads", pl->threads, "Worker threads (default: all cores)");
  plan->add_flag("--json", pl->json, "Print JSON: bytes_to_fetch, chunks, deltas, full_bytes, ...");
  plan->callback([pl] { run_plan(*pl); });

  auto ua = std::make_shared<PlanArgs>();
  auto* unpack =
      app.add_subcommand("unpack", "Rebuild a target tree from seeds and store pieces, verified");
  unpack->add_option("TARGET", ua->index, "Target tree index")->required();
  unpack->add_option("--store", ua->store, "Store holding the pieces")->required();
  unpack->add_option("--out", ua->out, "Destination (must not exist; created atomically)")
      ->required();
  unpack->add_option("--seed", ua->seeds, "A tree the node holds (repeatable)");
  unpack->add_option("--seed-index", ua->seed_indexes,
                     "Index of a version the node holds (for the report)");
  unpack->add_option("--threads", ua->threads, "Worker threads (default: all cores)");
  unpack->add_flag("--no-link", ua->no_link,
                   "Copy unchanged files instead of hard-linking them from seeds");
  unpack->add_flag("--json", ua->json, "Print a JSON summary");
  unpack->add_flag("-q,--quiet", ua->quiet, "Print nothing on success");
  unpack->callback([ua] { run_unpack(*ua); });

  auto* index = app.add_subcommand("index", "Inspect tree indexes");
  index->require_subcommand(1);
  auto show_path = std::make_shared<std::string>();
  auto show_json = std::make_shared<bool>(false);
  auto* show = index->add_subcommand("show", "Print a tree index");
  show->add_option("FILE", *show_path, "Tree index file")->required();
  show->add_flag("--json", *show_json, "Print JSON");
  show->callback([show_path, show_json] { run_index_show(*show_path, *show_json); });
}

}  // namespace mup::cli
