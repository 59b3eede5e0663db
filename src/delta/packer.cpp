#include "delta/packer.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "chunk/fastcdc.hpp"
#include "chunk/tree_scan.hpp"
#include "core/fault.hpp"
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
    if (data.size() != e.size)
      return fail(Errc::io, p.string() + " changed size while being packed; retry");
    uint64_t off = 0;
    for (uint32_t len : chunker.split(data)) {
      e.chunks.push_back({sha256(data.subspan(off, len)), len, 0});
      w.offsets.push_back(off);
      off += len;
    }
    // A file of one chunk (most files of a tree) has the chunk's digest: hash it once.
    e.digest = e.chunks.size() == 1 ? e.chunks[0].id : sha256(data);
    progress.add(data.size());
    return {};
  });
}

// Phase B: stores every chunk the store lacks (or, with `upgrade`, rewrites exactly the
// chunks in it at `level`), then refreshes every chunk ref's stored size. Returns the ids
// this call wrote.
Result<std::unordered_set<Digest>> store_chunks(std::vector<Entry>& entries,
                                                std::vector<FileWork>& work,
                                                const chunk::ChunkStore& store, int level,
                                                unsigned threads,
                                                const std::unordered_set<Digest>* upgrade,
                                                bool verify_reused, Progress& progress) {
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
  std::vector<char> wrote(jobs.size(), 0);
  MUP_TRY(try_parallel_for(jobs.size(), threads, [&](size_t j) -> Status {
    const FileWork& w = work[jobs[j].work];
    const ChunkRef& c = entries[w.entry].chunks[jobs[j].chunk];
    bool replace = upgrade != nullptr && upgrade->count(c.id) > 0;
    if (upgrade != nullptr && !replace) {
      stored[j] = c.stored_size;
      return {};
    }
    wrote[j] = replace || !store.has_chunk(c.id);
    auto data = w.map.bytes().subspan(w.offsets[jobs[j].chunk], c.size);
    using E = chunk::ChunkStore::Existing;
    auto size = store.put_chunk(c.id, data, level,
                                replace         ? E::replace
                                : verify_reused ? E::verify
                                                : E::keep);
    if (!size) return tl::unexpected(size.error());
    stored[j] = static_cast<uint32_t>(*size);
    progress.add(c.size);
    return {};
  }));
  for (size_t wi = 0; wi < work.size(); ++wi)
    for (ChunkRef& c : entries[work[wi].entry].chunks) c.stored_size = stored[first.at(c.id)];
  std::unordered_set<Digest> written;
  for (size_t j = 0; j < jobs.size(); ++j)
    if (wrote[j]) written.insert(entries[work[jobs[j].work].entry].chunks[jobs[j].chunk].id);
  return written;
}

// Phase D: the new chunks of files that got no delta are what nodes will download: store
// them again at the strong level.
Status upgrade_undeltaed_chunks(std::vector<Entry>& entries, std::vector<FileWork>& work,
                                const chunk::ChunkStore& store,
                                const std::unordered_set<Digest>& written, int level,
                                unsigned threads, Progress& progress) {
  std::unordered_set<Digest> upgrade;
  for (const FileWork& w : work) {
    const Entry& e = entries[w.entry];
    if (!e.deltas.empty()) continue;
    for (const ChunkRef& c : e.chunks)
      if (written.count(c.id)) upgrade.insert(c.id);
  }
  if (upgrade.empty()) return {};
  auto r = store_chunks(entries, work, store, level, threads, &upgrade, false, progress);
  if (!r) return tl::unexpected(r.error());
  return {};
}

struct DeltaJob {
  size_t work;  // a file with this target content
  stdfs::path base_path;
  const Entry* base_entry;
  uint64_t chunk_cost;  // what the node would fetch without a delta
};

using PiecePair = std::pair<Digest, Digest>;  // (base, target)

// A path with every run of digits replaced by '#': a version bump in a file or directory
// name (libdns-9.18.49-1~deb12u1-Debian.so -> ...u3...) keeps the same shape.
std::string path_shape(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] >= '0' && path[i] <= '9') {
      out.push_back('#');
      while (i + 1 < path.size() && path[i + 1] >= '0' && path[i + 1] <= '9') ++i;
    } else {
      out.push_back(path[i]);
    }
  }
  return out;
}

// Base files by path shape, for files that were renamed by a version bump.
using ShapeMap = std::unordered_map<std::string, std::vector<const Entry*>>;
ShapeMap shapes_of(const TreeIndex& idx) {
  ShapeMap m;
  for (const Entry& e : idx.entries)
    if (e.type == EntryType::file && e.size > 0) m[path_shape(e.path)].push_back(&e);
  return m;
}

// The base file a target file is diffed against, in one base version: the file at the same
// path; failing that, the file of the same path shape closest in size. None when the
// content is unchanged.
const Entry* base_for(const BaseTree& b, const ShapeMap& shapes, const Entry& e) {
  const Entry* be = b.index.single_file ? &b.index.entries[0] : b.index.find(e.path);
  if (be == nullptr || be->type != EntryType::file) {
    be = nullptr;
    if (auto it = shapes.find(path_shape(e.path)); it != shapes.end()) {
      auto dist = [&](const Entry* x) {
        return x->size > e.size ? x->size - e.size : e.size - x->size;
      };
      for (const Entry* c : it->second)
        if (be == nullptr || dist(c) < dist(be)) be = c;
    }
  }
  if (be == nullptr || be->size == 0 || be->digest == e.digest) return nullptr;
  return be;
}

// Phase C: deltas against each base, kept where they beat chunk reuse. Identical files at
// several paths (or in several bases) share one piece, computed once.
Status make_deltas(std::vector<Entry>& entries, std::vector<FileWork>& work,
                   const PackOptions& opts, const chunk::ChunkStore& store, unsigned threads,
                   PackStats& st, Progress& progress) {
  std::vector<DeltaJob> jobs;
  std::set<PiecePair> queued;
  std::vector<ShapeMap> shapes;
  for (const BaseTree& b : opts.bases) shapes.push_back(shapes_of(b.index));
  for (size_t bi = 0; bi < opts.bases.size(); ++bi) {
    const BaseTree& b = opts.bases[bi];
    std::unordered_set<Digest> base_chunks;
    for (const Entry& be : b.index.entries)
      for (const ChunkRef& c : be.chunks) base_chunks.insert(c.id);
    for (size_t wi = 0; wi < work.size(); ++wi) {
      const Entry& e = entries[work[wi].entry];
      const Entry* be = base_for(b, shapes[bi], e);
      if (be == nullptr || e.size == 0 || !queued.insert({be->digest, e.digest}).second) continue;
      uint64_t cost = 0;
      for (const ChunkRef& c : e.chunks)
        if (!base_chunks.count(c.id)) cost += c.stored_size;
      if (cost == 0) continue;
      jobs.push_back({wi, entry_path(b.tree, b.index.single_file, *be), be, cost});
    }
  }
  // Largest first, so the long ones do not end up alone at the tail.
  std::sort(jobs.begin(), jobs.end(), [&](const DeltaJob& a, const DeltaJob& b) {
    return entries[work[a.work].entry].size > entries[work[b.work].entry].size;
  });
  std::mutex mu;
  std::map<PiecePair, DeltaRef> made;
  MUP_TRY(try_parallel_for(jobs.size(), threads, [&](size_t j) -> Status {
    const DeltaJob& job = jobs[j];
    const Entry& e = entries[work[job.work].entry];
    auto bmap = fs::MappedFile::open(job.base_path);
    if (!bmap) return tl::unexpected(bmap.error().context("base tree"));
    if (bmap->size() != job.base_entry->size || sha256(bmap->bytes()) != job.base_entry->digest)
      return fail(Errc::invalid_argument,
                  job.base_path.string() +
                      " does not match its base index; give the tree the base index "
                      "was made from (--base-tree)");
    auto piece = make_best(bmap->bytes(), work[job.work].map.bytes(), opts.delta_level);
    if (!piece) return tl::unexpected(piece.error().context("delta for " + e.path));
    progress.add(e.size);
    if (!*piece || (*piece)->bytes.size() >= job.chunk_cost) return {};
    const Piece& pc = **piece;
    MUP_TRY(store.put_blob(piece_rel_path(job.base_entry->digest, e.digest), pc.bytes));
    std::lock_guard lock(mu);
    made[{job.base_entry->digest, e.digest}] = DeltaRef{
        job.base_entry->digest, static_cast<uint8_t>(pc.kind), pc.bytes.size(), sha256(pc.bytes)};
    return {};
  }));
  for (const auto& [pair, ref] : made) {
    ++st.deltas;
    st.delta_bytes += ref.stored_size;
  }
  // Attach each piece to every file it rebuilds, one per base digest, in a stable order.
  for (const FileWork& w : work) {
    Entry& e = entries[w.entry];
    for (size_t bi = 0; bi < opts.bases.size(); ++bi) {
      const Entry* be = base_for(opts.bases[bi], shapes[bi], e);
      if (be == nullptr) continue;
      auto it = made.find({be->digest, e.digest});
      bool dup = std::any_of(e.deltas.begin(), e.deltas.end(),
                             [&](const DeltaRef& d) { return d.base == be->digest; });
      if (it != made.end() && !dup) e.deltas.push_back(it->second);
    }
    std::sort(e.deltas.begin(), e.deltas.end(),
              [](const DeltaRef& a, const DeltaRef& b) { return a.base < b.base; });
  }
  st.delta_candidates = jobs.size();
  return {};
}

}  // namespace

Result<TreeIndex> pack(const stdfs::path& src, const chunk::ChunkStore& store,
                       const PackOptions& opts, PackStats* stats) {
  MUP_TRY(opts.params.validate());
  for (const BaseTree& b : opts.bases)
    if (!(b.index.params == opts.params))
      return fail(Errc::invalid_argument,
                  "a base index was made with other chunk sizes; pack with the same "
                  "--min/--avg/--max as the base");
  unsigned threads = opts.threads ? opts.threads : default_threads();
  auto scanned = chunk::scan_tree(src);
  if (!scanned) return tl::unexpected(scanned.error());
  TreeIndex idx;
  idx.params = opts.params;
  idx.single_file = scanned->single_file;
  idx.entries = std::move(scanned->entries);
  MUP_TRY(idx.validate_structure());  // paths from the filesystem can still be unsafe (e.g. >4096
                                      // bytes)

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
  // With a base, chunks go in at the fast level first; deltas are judged against them; then
  // the chunks still needed by files without a delta are stored again at the strong level.
  std::unordered_set<Digest> written;
  {
    Progress p("storing chunks", total, opts.progress);
    auto w =
        store_chunks(idx.entries, work, store, opts.level, threads, nullptr, opts.verify_reused, p);
    if (!w) return tl::unexpected(w.error());
    written = std::move(*w);
  }
  if (!opts.bases.empty()) {
    Progress p("computing deltas", 0, opts.progress);
    MUP_TRY(make_deltas(idx.entries, work, opts, store, threads, st, p));
    Progress q("recompressing new chunks", 0, opts.progress);
    MUP_TRY(
        upgrade_undeltaed_chunks(idx.entries, work, store, written, opts.delta_level, threads, q));
  }
  std::unordered_set<Digest> counted;
  for (const Entry& e : idx.entries) {
    st.chunks += e.chunks.size();
    for (const ChunkRef& c : e.chunks) {
      if (!written.count(c.id) || !counted.insert(c.id).second) continue;
      ++st.new_chunks;
      st.new_chunk_bytes += c.stored_size;
    }
  }
  for (const Entry& e : idx.entries) st.chunks += e.chunks.size();
  MUP_TRY(fault::point("pack.before_sync"));  // a power cut here may leave torn pieces
  MUP_TRY(store.sync());
  MUP_TRY(idx.validate());
  if (stats) *stats = st;
  return idx;
}

}  // namespace mup::delta
