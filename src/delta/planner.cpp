#include "delta/planner.hpp"

#include <sys/stat.h>

#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "chunk/fastcdc.hpp"
#include "core/fs.hpp"
#include "core/parallel.hpp"

namespace mup::delta {

namespace stdfs = std::filesystem;
using chunk::Entry;
using chunk::EntryType;

namespace {

struct SeedChunk {
  int32_t file;
  uint64_t offset;
};

// What the node holds: seed files by content, and seed chunks by id.
struct SeedState {
  std::mutex mu;
  std::vector<stdfs::path> files;
  std::unordered_map<Digest, int32_t> by_digest;
  std::unordered_map<Digest, SeedChunk> chunks;

  int32_t add_file(const stdfs::path& p, const Digest& d) {
    std::lock_guard lock(mu);
    auto [it, inserted] = by_digest.emplace(d, static_cast<int32_t>(files.size()));
    if (inserted) files.push_back(p);
    return it->second;
  }
};

// Candidate seed paths for a target entry: the same relative path in each seed directory,
// or, for a single-file index, each seed that is a regular file.
std::vector<stdfs::path> seed_candidates(const chunk::TreeIndex& idx, const Entry& e,
                                         const std::vector<stdfs::path>& seeds) {
  std::vector<stdfs::path> out;
  for (const stdfs::path& s : seeds) {
    struct stat st {};
    if (::lstat(s.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) out.push_back(s / e.path);
    if (S_ISREG(st.st_mode) && idx.single_file) out.push_back(s);
  }
  return out;
}

Status scan_seed_file(const stdfs::path& p, const Entry& target, const chunk::Chunker& chunker, SeedState& ss) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};  // nothing usable there
  auto m = fs::MappedFile::open(p);
  if (!m) return {};  // unreadable seed: plan without it
  auto data = m->bytes();
  Digest d = sha256(data);
  int32_t id = ss.add_file(p, d);
  if (d == target.digest) return {};
  // Same path, other content: its chunks may still be reused.
  std::vector<std::pair<Digest, uint64_t>> found;
  uint64_t off = 0;
  for (uint32_t len : chunker.split(data)) {
    found.emplace_back(sha256(data.subspan(off, len)), off);
    off += len;
  }
  std::lock_guard lock(ss.mu);
  for (auto& [cid, o] : found) ss.chunks.emplace(cid, SeedChunk{id, o});
  return {};
}

}  // namespace

Result<Plan> plan(const chunk::TreeIndex& index, uint64_t index_bytes, const std::vector<stdfs::path>& seeds,
                  unsigned threads) {
  if (threads == 0) threads = default_threads();
  for (const stdfs::path& s : seeds) {
    std::error_code ec;
    if (!stdfs::exists(s, ec)) return fail(Errc::not_found, "seed " + s.string() + " does not exist");
  }
  std::vector<size_t> files;
  for (size_t i = 0; i < index.entries.size(); ++i)
    if (index.entries[i].type == EntryType::file) files.push_back(i);

  SeedState ss;
  chunk::Chunker chunker(index.params);
  MUP_TRY(try_parallel_for(files.size(), threads, [&](size_t k) -> Status {
    const Entry& e = index.entries[files[k]];
    for (const stdfs::path& p : seed_candidates(index, e, seeds)) MUP_TRY(scan_seed_file(p, e, chunker, ss));
    return {};
  }));

  Plan plan;
  plan.index_bytes = index_bytes;
  std::unordered_set<Digest> fetched, all;
  uint64_t all_bytes = 0;
  for (size_t i : files) {
    const Entry& e = index.entries[i];
    plan.target_bytes += e.size;
    for (const auto& c : e.chunks)
      if (all.insert(c.id).second) all_bytes += c.stored_size;

    FilePlan fp;
    fp.entry = i;
    if (auto it = ss.by_digest.find(e.digest); it != ss.by_digest.end()) {
      fp.source = Source::reuse;
      fp.seed_file = it->second;
      plan.reused_bytes += e.size;
      ++plan.files_reused;
      plan.files.push_back(std::move(fp));
      continue;
    }
    // Chunks: seed chunks and chunks already counted for an earlier file are free.
    uint64_t chunk_cost = 0;
    std::vector<ChunkLoc> locs;
    locs.reserve(e.chunks.size());
    for (const auto& c : e.chunks) {
      if (auto sc = ss.chunks.find(c.id); sc != ss.chunks.end()) {
        locs.push_back({sc->second.file, sc->second.offset});
      } else {
        locs.push_back({});
        if (!fetched.count(c.id)) chunk_cost += c.stored_size;
      }
    }
    const chunk::DeltaRef* best = nullptr;
    for (const auto& d : e.deltas) {
      if (ss.by_digest.count(d.base) && d.stored_size < chunk_cost && (!best || d.stored_size < best->stored_size))
        best = &d;
    }
    if (best != nullptr) {
      fp.source = Source::delta;
      fp.delta = best;
      fp.seed_file = ss.by_digest.at(best->base);
      fp.fetch_bytes = best->stored_size;
      plan.delta_bytes += best->stored_size;
      ++plan.deltas;
      ++plan.files_delta;
    } else {
      fp.source = Source::chunks;
      fp.fetch_bytes = chunk_cost;
      for (size_t c = 0; c < e.chunks.size(); ++c) {
        if (locs[c].seed_file >= 0) {
          ++plan.seed_chunks;
        } else if (fetched.insert(e.chunks[c].id).second) {
          plan.chunk_bytes += e.chunks[c].stored_size;
          ++plan.chunks;
        }
      }
      fp.chunks = std::move(locs);
      ++plan.files_chunks;
    }
    plan.files.push_back(std::move(fp));
  }
  plan.seed_files = std::move(ss.files);
  plan.bytes_to_fetch = index_bytes + plan.chunk_bytes + plan.delta_bytes;
  plan.full_bytes = index_bytes + all_bytes;
  return plan;
}

}  // namespace mup::delta
