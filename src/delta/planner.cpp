#include "delta/planner.hpp"

#include <sys/stat.h>

#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "chunk/fastcdc.hpp"
#include "chunk/tree_scan.hpp"
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

// Every regular file of a seed (a seed that is a file counts as one): any of them can be
// reused whole or serve as a delta base, wherever it lies.
Result<std::vector<stdfs::path>> seed_files(const stdfs::path& seed) {
  auto t = chunk::scan_tree(seed);
  if (!t) return tl::unexpected(t.error().context("seed " + seed.string()));
  std::vector<stdfs::path> out;
  for (const Entry& e : t->entries)
    if (e.type == EntryType::file) out.push_back(t->single_file ? seed : seed / e.path);
  return out;
}

// Hashes one seed file; when the target has a file of other content at the same path (or,
// for a single-file index, any seed file), also records its chunks for reuse.
Status scan_seed_file(const stdfs::path& p, const Entry* same_path_target,
                      const chunk::Chunker& chunker, SeedState& ss) {
  auto m = fs::MappedFile::open(p);
  if (!m) return {};  // vanished or unreadable since the walk: plan without it
  auto data = m->bytes();
  Digest d = sha256(data);
  int32_t id = ss.add_file(p, d);
  if (same_path_target == nullptr || d == same_path_target->digest) return {};
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

uint64_t index_fetch_bytes(std::span<const uint8_t> target_index_file,
                           const std::vector<std::vector<uint8_t>>& held_indexes,
                           const chunk::ChunkStore& store) {
  uint64_t best = target_index_file.size();
  Digest target = sha256(target_index_file);
  auto body = chunk::index_body_size(target_index_file);
  if (!body) return best;
  for (const auto& held : held_indexes) {
    std::string rel = chunk::index_delta_rel_path(sha256(held), target);
    if (!store.has_blob(rel)) continue;
    auto delta = store.get_blob(rel, target_index_file.size());
    if (!delta || delta->size() >= best) continue;
    if (chunk::apply_index_delta(held, *delta, target, *body)) best = delta->size();
  }
  return best;
}

namespace {

Result<Plan> make_plan(const chunk::TreeIndex& index, uint64_t index_bytes,
                       const std::vector<IndexedSeed>& seeds, unsigned threads) {
  if (threads == 0) threads = default_threads();
  for (const IndexedSeed& s : seeds) {
    std::error_code ec;
    if (!stdfs::exists(s.tree, ec))
      return fail(Errc::not_found, "seed " + s.tree.string() + " does not exist");
  }
  std::vector<size_t> files;
  for (size_t i = 0; i < index.entries.size(); ++i)
    if (index.entries[i].type == EntryType::file) files.push_back(i);

  SeedState ss;
  chunk::Chunker chunker(index.params);
  std::vector<stdfs::path> all_seed_files;
  std::vector<const Entry*> same_path;  // per seed file: the target file at its path
  auto target_at = [&](const std::string& rel) -> const Entry* {
    const Entry* t = index.single_file ? &index.entries[0] : index.find(rel);
    return t != nullptr && t->type == EntryType::file ? t : nullptr;
  };
  for (const IndexedSeed& s : seeds) {
    if (s.index != nullptr && !s.index->single_file) {
      // Known content: no need to read the file unless its chunks are wanted and the
      // index's chunking differs from the target's.
      for (const Entry& e : s.index->entries) {
        if (e.type != EntryType::file) continue;
        stdfs::path p = s.tree / e.path;
        struct stat st {};
        if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
            static_cast<uint64_t>(st.st_size) != e.size)
          continue;  // not what the index says: plan without it
        int32_t id = ss.add_file(p, e.digest);
        const Entry* t = target_at(e.path);
        if (t == nullptr || t->digest == e.digest) continue;
        if (s.index->params == index.params) {
          std::lock_guard lock(ss.mu);
          uint64_t off = 0;
          for (const auto& c : e.chunks) {
            ss.chunks.emplace(c.id, SeedChunk{id, off});
            off += c.size;
          }
        } else {
          same_path.push_back(t);
          all_seed_files.push_back(p);
        }
      }
      continue;
    }
    auto listed = seed_files(s.tree);
    if (!listed) return tl::unexpected(listed.error());
    for (const stdfs::path& p : *listed) {
      same_path.push_back(target_at(p.lexically_relative(s.tree).generic_string()));
      all_seed_files.push_back(p);
    }
  }
  MUP_TRY(try_parallel_for(all_seed_files.size(), threads, [&](size_t k) -> Status {
    return scan_seed_file(all_seed_files[k], same_path[k], chunker, ss);
  }));

  Plan plan;
  plan.index_bytes = index_bytes;
  std::unordered_set<Digest> fetched, all, fetched_pieces;
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
    // A piece already fetched for an identical file elsewhere in the tree costs nothing.
    auto delta_cost = [&](const chunk::DeltaRef& d) {
      return fetched_pieces.count(d.piece) ? 0 : d.stored_size;
    };
    const chunk::DeltaRef* best = nullptr;
    for (const auto& d : e.deltas) {
      if (ss.by_digest.count(d.base) && delta_cost(d) < chunk_cost &&
          (!best || delta_cost(d) < delta_cost(*best)))
        best = &d;
    }
    if (best != nullptr) {
      fp.source = Source::delta;
      fp.delta = best;
      fp.seed_file = ss.by_digest.at(best->base);
      fp.fetch_bytes = delta_cost(*best);
      if (fetched_pieces.insert(best->piece).second) {
        plan.delta_bytes += best->stored_size;
        ++plan.deltas;
      }
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

}  // namespace

Result<Plan> plan(const chunk::TreeIndex& index, uint64_t index_bytes,
                  const std::vector<stdfs::path>& seeds, unsigned threads) {
  std::vector<IndexedSeed> s;
  for (const auto& p : seeds) s.push_back({p, nullptr});
  return make_plan(index, index_bytes, s, threads);
}

Result<Plan> plan(const chunk::TreeIndex& index, uint64_t index_bytes,
                  const std::vector<IndexedSeed>& seeds, unsigned threads) {
  return make_plan(index, index_bytes, seeds, threads);
}

}  // namespace mup::delta
