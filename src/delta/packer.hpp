// pack: turns a source tree (or one file) into chunks and delta pieces in a store, and
// returns its TreeIndex. This is the publisher's half of the incremental engine.
//
// Steps: scan the tree; chunk every file (FastCDC) and hash chunks and files (SHA-256), in
// parallel; store each chunk the store lacks, zstd-compressed; then, for every file whose
// path exists in a base version with other content (or, for a file renamed by a version
// bump, whose path differs only in its digits), compute the delta candidates and keep the
// cheapest if it beats what the chunks alone would cost a node holding that base.
//
// Compression: new chunks go in at `level` (fast: a first publish is throughput-bound).
// With a base, deltas use `delta_level`, and so do, in a last pass, the new chunks of files
// that got no delta: those are what nodes will download, and they are few. Memory: the source and
// base files are mapped, not read; deltas hold at most ~5x a base file of up to 64 MiB per worker
// (bsdiff), or a block per worker (tensor deltas, zstd prefix deltas hold base + target). The store
// is synced before pack returns; the caller writes the index afterwards, so an index never names a
// piece that is not durable.
#pragma once

#include <filesystem>
#include <vector>

#include "chunk/chunk_store.hpp"
#include "chunk/tree_index.hpp"
#include "core/error.hpp"

namespace mup::delta {

struct BaseTree {
  chunk::TreeIndex index;
  std::filesystem::path
      tree;  // the base version's files (a dir, or the file of a single-file index)
};

struct PackOptions {
  chunk::ChunkParams params;
  int level = 3;
  int delta_level = 19;
  unsigned threads = 0;  // 0 = default_threads()
  bool progress = false;
  // Chunks already in the store are read back and checked before they are reused (a torn
  // one is stored again): after a writer that did not finish (ChunkStore::begin_batch).
  bool verify_reused = false;
  std::vector<BaseTree> bases;
};

struct PackStats {
  uint64_t files = 0;
  uint64_t file_bytes = 0;
  uint64_t chunks = 0;      // chunk references in the index
  uint64_t new_chunks = 0;  // chunks this pack wrote
  uint64_t new_chunk_bytes = 0;
  uint64_t deltas = 0;
  uint64_t delta_bytes = 0;
  uint64_t delta_candidates = 0;  // files for which deltas were computed
};

[[nodiscard]] Result<chunk::TreeIndex> pack(const std::filesystem::path& src,
                                            const chunk::ChunkStore& store, const PackOptions& opts,
                                            PackStats* stats = nullptr);

}  // namespace mup::delta
