// plan: decides, for a target TreeIndex and the seeds a node holds, where each file of the
// target comes from, so that the node downloads the fewest bytes.
//
// Seeds are trees the node already has (installed versions, or any directory; for a
// single-file index, a file). The planner hashes every file of every seed: a seed file
// whose SHA-256 equals a target file's is reused whole (from any path); a delta whose base
// SHA-256 matches a seed file costs its stored size; otherwise the file is built from
// chunks, those found in the seed file at the same path (chunked with the index's
// parameters) cost nothing and the rest cost their stored size. Each file takes the
// cheapest source; a chunk or delta piece needed twice is counted once. The index's own size is
// part of bytes_to_fetch: a node must download it too.
//
// A Plan refers into the TreeIndex it was made from; keep that index alive and unchanged.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "chunk/chunk_store.hpp"
#include "chunk/tree_index.hpp"
#include "core/error.hpp"

namespace mup::delta {

enum class Source : uint8_t { reuse, delta, chunks };

struct ChunkLoc {
  int32_t seed_file = -1;  // index into Plan::seed_files, or -1: fetch from the store
  uint64_t offset = 0;     // within the seed file
};

struct FilePlan {
  size_t entry = 0;  // index into TreeIndex::entries
  Source source = Source::chunks;
  int32_t seed_file = -1;                  // reuse: the identical file; delta: the base
  const chunk::DeltaRef* delta = nullptr;  // delta: the piece
  std::vector<ChunkLoc> chunks;            // chunks: where each chunk comes from
  uint64_t fetch_bytes = 0;                // what this file alone would download
};

struct Plan {
  std::vector<std::filesystem::path> seed_files;  // verified seed files (hashed at plan time)
  std::vector<FilePlan> files;
  uint64_t index_bytes = 0;
  uint64_t bytes_to_fetch = 0;  // index + unique chunks + deltas
  uint64_t full_bytes = 0;      // index + every unique chunk of the target, compressed
  uint64_t target_bytes = 0;    // plain size of all target files
  uint64_t chunk_bytes = 0;
  uint64_t delta_bytes = 0;
  uint64_t reused_bytes = 0;  // plain bytes of files taken whole from seeds
  uint64_t chunks = 0;        // unique chunks to fetch
  uint64_t seed_chunks = 0;   // chunks taken from seed files
  uint64_t deltas = 0;        // unique delta pieces to fetch
  uint64_t files_reused = 0, files_delta = 0, files_chunks = 0;
};

// What fetching the target index itself costs a node that holds `held_indexes` (index
// files of versions it has): the smallest index delta in `store` that rebuilds the target
// index exactly (verified), or the whole index file.
[[nodiscard]] uint64_t index_fetch_bytes(std::span<const uint8_t> target_index_file,
                                         const std::vector<std::vector<uint8_t>>& held_indexes,
                                         const chunk::ChunkStore& store);

[[nodiscard]] Result<Plan> plan(const chunk::TreeIndex& index, uint64_t index_bytes,
                                const std::vector<std::filesystem::path>& seeds,
                                unsigned threads = 0);

// A seed whose content its tree index states: an installed version, immutable and verified
// when it was staged. Its files are not read to plan (only stat'ed: a file whose size
// differs from the index is left out), so planning an update costs what changed, not the
// size of the tree; unpack still verifies every file it builds, so a seed edited behind
// mup's back fails the unpack (naming the file) instead of corrupting the result. With a
// null index the seed is hashed like any directory.
struct IndexedSeed {
  std::filesystem::path tree;
  const chunk::TreeIndex* index = nullptr;
};
[[nodiscard]] Result<Plan> plan(const chunk::TreeIndex& index, uint64_t index_bytes,
                                const std::vector<IndexedSeed>& seeds, unsigned threads = 0);

}  // namespace mup::delta
