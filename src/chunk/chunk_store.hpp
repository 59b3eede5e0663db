// ChunkStore: a content-addressed store of zstd-compressed chunks, plus named blobs
// (delta pieces) beside them.
//
// Layout under the root: chunks/<first two hex digits>/<sha256 of the plain bytes>, each a
// single zstd frame; blobs under any other relative path (deltas/...). Every object is
// written to a temp name and renamed into place, so a reader never sees a torn object
// under its final name; call sync() once after a batch to make the batch durable (one
// syncfs instead of an fsync per chunk). Every read is verified: a chunk must decompress
// to exactly its stated size and hash to its id, or the read fails naming the chunk.
// Concurrent put/get from several threads and processes are safe (puts of the same id
// race benignly: same bytes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.hpp"
#include "core/sha256.hpp"

namespace mup::chunk {

// Where a stored piece sits inside a larger file (a cached segment of an update bundle): read
// in place rather than written out as a file of its own.
struct Extent {
  std::filesystem::path file;
  uint64_t offset = 0, size = 0;
};
// By the piece's relative path in the store ("chunks/ab/<id>", "deltas/...").
using Extents = std::unordered_map<std::string, Extent>;

class ChunkStore {
 public:
  // Opens the store at `root`; with `create`, makes the directories if missing.
  [[nodiscard]] static Result<ChunkStore> open(const std::filesystem::path& root, bool create);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path chunk_path(const Digest& id) const;

  bool has_chunk(const Digest& id) const;
  // Compressed size on disk, or not_found.
  [[nodiscard]] Result<uint64_t> stored_size(const Digest& id) const;
  // What put_chunk does with a chunk already stored under its id.
  enum class Existing {
    keep,     // reuse it as it is
    replace,  // rewrite it atomically (same content, other compression)
    verify,   // reuse it if it reads back as its content, else rewrite it (after a crash)
  };
  // Stores `plain` (whose SHA-256 is `id`) compressed at `level` unless already present (see
  // Existing). Returns the stored (compressed) size.
  [[nodiscard]] Result<uint64_t> put_chunk(const Digest& id, std::span<const uint8_t> plain,
                                           int level, Existing existing = Existing::keep) const;
  // Reads, decompresses and verifies the chunk; `plain_size` is the size the index states.
  [[nodiscard]] Result<std::vector<uint8_t>> get_chunk(const Digest& id, uint32_t plain_size) const;

  // Named blobs (relative path without ".."), written atomically.
  [[nodiscard]] Status put_blob(const std::string& rel, std::span<const uint8_t> bytes) const;
  [[nodiscard]] Result<std::vector<uint8_t>> get_blob(const std::string& rel,
                                                      uint64_t max_size) const;
  bool has_blob(const std::string& rel) const;
  std::filesystem::path blob_path(const std::string& rel) const { return root_ / rel; }

  // This store, reading the pieces `extents` places from there (has_*, get_* and
  // stored_size see them; reads are verified as any other); puts still write files.
  ChunkStore with_extents(std::shared_ptr<const Extents> extents) const;

  // Makes every object written so far durable (syncfs on the store's filesystem).
  [[nodiscard]] Status sync() const;

  // Batches that survive a power cut, for one writer at a time (the publisher holds its
  // lock). Objects are renamed into place before the batch's sync, so after a power cut an
  // object under its final name may be empty or torn, and a later writer that reuses it by
  // name would sign an index naming bad bytes. begin_batch() durably records that a batch is
  // being written and answers whether an earlier batch never reached end_batch(): then the
  // writer must check what it reuses (Existing::verify). end_batch() syncs, then clears the
  // record.
  [[nodiscard]] Result<bool> begin_batch() const;
  [[nodiscard]] Status end_batch() const;
  std::filesystem::path batch_marker() const { return root_ / ".mup-batch-incomplete"; }

 private:
  explicit ChunkStore(std::filesystem::path root) : root_(std::move(root)) {}
  [[nodiscard]] Status write_object(const std::filesystem::path& final_path,
                                    std::span<const uint8_t> bytes) const;
  const Extent* extent(const std::string& rel) const;
  // The stored bytes of `rel`, from its extent or its file (at most max_size).
  [[nodiscard]] Result<std::vector<uint8_t>> read_object(const std::string& rel,
                                                         uint64_t max_size) const;
  std::filesystem::path root_;
  std::shared_ptr<const Extents> extents_;
};

}  // namespace mup::chunk
