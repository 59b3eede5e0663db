// unpack: rebuilds the tree a TreeIndex describes, from a Plan's seeds and the pieces in
// a store, into a directory (or a file, for a single-file index) that does not exist yet.
//
// Everything is built in a temp directory beside the destination and renamed into place
// only when every file has been verified against its SHA-256, so the destination either
// does not exist or is complete. Unchanged files are hard-linked from seeds (same
// filesystem, same mode; copied otherwise, or always with link=false). On any failure -
// a corrupt, truncated or missing chunk or delta, a seed that changed since planning, a
// full disk - the error names the piece and the file, and the temp directory is removed.
// A temp directory left by a killed process is swept on the next unpack to the same place.
#pragma once

#include <filesystem>

#include "chunk/chunk_store.hpp"
#include "chunk/tree_index.hpp"
#include "core/error.hpp"
#include "delta/planner.hpp"

namespace mup::delta {

struct UnpackOptions {
  unsigned threads = 0;
  bool link = true;  // hard-link unchanged files from seeds
  bool progress = false;
};

struct UnpackStats {
  uint64_t files = 0;
  uint64_t bytes_written = 0;  // bytes written (not linked)
  uint64_t files_linked = 0;
};

[[nodiscard]] Result<UnpackStats> unpack(const chunk::TreeIndex& index, const Plan& plan,
                                         const chunk::ChunkStore& store,
                                         const std::filesystem::path& out,
                                         const UnpackOptions& opts);

}  // namespace mup::delta
