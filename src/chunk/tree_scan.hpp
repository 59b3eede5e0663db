// scan_tree: lists a directory tree (or a single file) as TreeIndex entries, without
// content: paths, types, permission bits, sizes and symlink targets, sorted by path.
//
// Symlinks are recorded, never followed. Devices, FIFOs and sockets are refused with an
// error naming the path (an update package carries none). Thread-safe.
#pragma once

#include <filesystem>
#include <vector>

#include "chunk/tree_index.hpp"
#include "core/error.hpp"

namespace mup::chunk {

struct ScannedTree {
  bool single_file = false;
  std::vector<Entry> entries;
};

[[nodiscard]] Result<ScannedTree> scan_tree(const std::filesystem::path& root);

}  // namespace mup::chunk
