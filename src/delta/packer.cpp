#include "delta/packer.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "chunk/fastcdc.hpp"
#include "chunk/tree_scan.hpp"
#include "core/fs.hpp"
#include "core/parallel.hpp"
#include "core/progress.hpp"
#include "delta/piece.hpp"

namespace mup::delta {

namespace stdfs = std::filesystem;
using chunk::ChunkRef;
using chunk::DeltaRef;
using chunk::Entry;
using chunk::EntryType;
using chunk::TreeIndex;

namespace {

struct FileWork {
  size_t entry = 0;
  fs::MappedFile map;
  std::vector<uint64_t> offsets;  // of each chunk
};

stdfs::path entry_path(const stdfs::path& root, bool single_file, const Entry& e) {
  return single_file ? root : root / e.path;
}

// Phase A: chunk and hash every file.
Status chunk_files(const stdfs::path& src, bool single_file, std::vector<Entry>& entries,
                   std::vector<FileWork>& work, const chunk::Chunker& chunker, unsigned threads,
                   Progress& progress) {
  return try_parallel_for(work.size(), threads, [&](size_t i) -> Status {
    FileWork& w = work[i];
    Entry& e = entries[w.entry];
    stdfs::path p = entry_path(src, single_file, e);
    auto m = fs::MappedFile::open(p);
    if (!m) return tl::unexpected(m.error());
    w.map = std::move(*m);
    auto data = w.map.bytes();
    if (data.size() != e.size) return fail(Errc::io, p.string() + " changed size while being packed; retry");
    Sha256 whole;
    uint64_t off = 0;
    for (uint32_t len : chunker.split(data)) {
      auto piece = data.subspan(off, len);
      whole.update(piece);
      e.chunks.push_back({sha256(piece), len, 0});
      w.offsets.push_back(off);
      off += len;
    }
    e.digest = whole.finish();
    progress.add(data.size());
    return {};
  });
}

// Phase B: store the chunks the store lacks; fill in every chunk's stored size.
Status store_chunks(std::vector<Entry>& entries, std::vector<FileWork>& work,
                    const chunk::ChunkStore& store, int level, unsigned threads, PackStats& st,
                    Progress& progress) {
  struct Job {
    size_t work;
    size_t chunk;
  };
  std::vector<Job> jobs;
  std::unordered_map<Digest, size_t> first;  // id -> job index
  for (size_t wi = 0; wi < work.size(); ++wi) {
    const Entry& e = entries[work[wi].entry];
    for (size_t c = 0; c < e.chunks.size(); ++c)
      if (first.emplace(e.chunks[c].id, jobs.size()).second) jobs.push_back({wi, c});
  }
  std::vector<uint32_t> stored(jobs.size());
  std::atomic<uint64_t> new_chunks{0}, new_bytes{0};
  MUP_TRY(try_parallel_for(jobs.size(), threads, [&](size_t j) -> Status {
    const FileWork& w = work[jobs[j].work];
    const ChunkRef& c = entries[w.entry].chunks[jobs[j].chunk];
    bool existed = store.has_chunk(c.id);
    auto data = w.map.bytes().subspan(w.offsets[jobs[j].chunk], c.size);
    auto size = store.put_chunk(c.id, data, level);
    if (!size) return tl::unexpected(size.error());
    stored[j] = static_cast<uint32_t>(*size);
    if (!existed) {
      ++new_chunks;
      new_bytes += *size;
    }
    progress.add(c.size);
    return {};
  }));
  for (size_t wi = 0; wi < work.size(); ++wi)
    for (ChunkRef& c : entries[work[wi].entry].chunks) c.stored_size = stored[first.at(c.id)];
  st.new_chunks = new_chunks;
  st.new_chunk_bytes = new_bytes;
  return {};
}

struct DeltaJob {
  size_t work;
  const BaseTree* base;
  const Entry* base_entry;
  uint64_t chunk_cost;  // what the node would fetch without a delta
};

// Phase C: deltas against each base, kept where they beat chunk reuse.
Status make_deltas(std::vector<Entry>& entries, std::vector<FileWork>& work, const PackOptions& opts,
                   const chunk::ChunkStore& store, unsigned threads, PackStats& st, Progress& progress) {
  std::vector<DeltaJob> jobs;
  for (const BaseTree& b : opts.bases) {
    std::unordered_set<Digest> base_chunks;
    for (const Entry& be : b.index.entries)
      for (const ChunkRef& c : be.chunks) base_chunks.insert(c.id);
    for (size_t wi = 0; wi < work.size(); ++wi) {
      const Entry& e = entries[work[wi].entry];
      const Entry* be = b.index.single_file ? &b.index.entries[0] : b.index.find(e.path);
      if (be == nullptr || be->type != EntryType::file || be->digest == e.digest || e.size == 0 || be->size == 0)
        continue;
      uint64_t cost = 0;
      for (const ChunkRef& c : e.chunks)
        if (!base_chunks.count(c.id)) cost += c.stored_size;
      if (cost == 0) continue;
      jobs.push_back({wi, &b, be, cost});
    }
  }
  // Largest first, so the long ones do not end up alone at the tail.
  std::sort(jobs.begin(), jobs.end(), [&](const DeltaJob& a, const DeltaJob& b) {
    return entries[work[a.work].entry].size > entries[work[b.work].entry].size;
  });
  std::mutex mu;
  std::atomic<uint64_t> n{0}, bytes{0};
  MUP_TRY(try_parallel_for(jobs.size(), threads, [&](size_t j) -> Status {
    const DeltaJob& job = jobs[j];
    Entry& e = entries[work[job.work].entry];
    stdfs::path bp = entry_path(job.base->tree, job.base->index.single_file, *job.base_entry);
    auto bmap = fs::MappedFile::open(bp);
    if (!bmap) return tl::unexpected(bmap.error().context("base tree"));
    if (bmap->size() != job.base_entry->size || sha256(bmap->bytes()) != job.base_entry->digest)
      return fail(Errc::invalid_argument, bp.string() + " does not match its base index; give the tree the "
                                                        "base index was made from (--base-tree)");
    auto piece = make_best(bmap->bytes(), work[job.work].map.bytes(), opts.delta_level);
    if (!piece) return tl::unexpected(piece.error().context("delta for " + e.path));
    progress.add(e.size);
    if (!*piece || (*piece)->bytes.size() >= job.chunk_cost) return {};
    const Piece& pc = **piece;
    MUP_TRY(store.put_blob(piece_rel_path(job.base_entry->digest, e.digest), pc.bytes));
    DeltaRef ref{job.base_entry->digest, static_cast<uint8_t>(pc.kind), pc.bytes.size(), sha256(pc.bytes)};
    ++n;
    bytes += pc.bytes.size();
    std::lock_guard lock(mu);
    e.deltas.push_back(ref);
    return {};
  }));
  // Two bases may hold the same base file: keep one piece per base digest, in a stable order.
  for (Entry& e : entries) {
    auto by_base = [](const DeltaRef& a, const DeltaRef& b) { return a.base < b.base; };
    std::sort(e.deltas.begin(), e.deltas.end(), by_base);
    e.deltas.erase(std::unique(e.deltas.begin(), e.deltas.end(),
                               [](const DeltaRef& a, const DeltaRef& b) { return a.base == b.base; }),
                   e.deltas.end());
  }
  st.delta_candidates = jobs.size();
  st.deltas = n;
  st.delta_bytes = bytes;
  return {};
}

}  // namespace

Result<TreeIndex> pack(const stdfs::path& src, const chunk::ChunkStore& store, const PackOptions& opts,
                       PackStats* stats) {
  MUP_TRY(opts.params.validate());
  for (const BaseTree& b : opts.bases)
    if (!(b.index.params == opts.params))
      return fail(Errc::invalid_argument, "a base index was made with other chunk sizes; pack with the same "
                                          "--min/--avg/--max as the base");
  unsigned threads = opts.threads ? opts.threads : default_threads();
  auto scanned = chunk::scan_tree(src);
  if (!scanned) return tl::unexpected(scanned.error());
  TreeIndex idx;
  idx.params = opts.params;
  idx.single_file = scanned->single_file;
  idx.entries = std::move(scanned->entries);
  MUP_TRY(idx.validate_structure());  // paths from the filesystem can still be unsafe (e.g. >4096 bytes)

  std::vector<FileWork> work;
  uint64_t total = 0;
  for (size_t i = 0; i < idx.entries.size(); ++i) {
    if (idx.entries[i].type != EntryType::file) continue;
    work.push_back({i, {}, {}});
    total += idx.entries[i].size;
  }
  PackStats st;
  st.files = work.size();
  st.file_bytes = total;
  chunk::Chunker chunker(opts.params);
  {
    Progress p("chunking", total, opts.progress);
    MUP_TRY(chunk_files(src, idx.single_file, idx.entries, work, chunker, threads, p));
  }
  {
    Progress p("storing chunks", total, opts.progress);
    MUP_TRY(store_chunks(idx.entries, work, store, opts.bases.empty() ? opts.level : opts.delta_level, threads,
                         st, p));
  }
  if (!opts.bases.empty()) {
    Progress p("computing deltas", 0, opts.progress);
    MUP_TRY(make_deltas(idx.entries, work, opts, store, threads, st, p));
  }
  for (const Entry& e : idx.entries) st.chunks += e.chunks.size();
  MUP_TRY(store.sync());
  MUP_TRY(idx.validate());
  if (stats) *stats = st;
  return idx;
}

}  // namespace mup::delta
