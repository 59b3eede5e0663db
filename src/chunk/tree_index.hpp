// TreeIndex: the deterministic, versioned, compact description of a tree of files.
//
// It lists every directory, regular file and symlink (path, mode, size, SHA-256, link
// target), each file's chunks (id, plain size, stored size) and the delta pieces that can
// rebuild a file from a base file (base SHA-256, kind, stored size, piece SHA-256). A single
// file (model weights) is a tree of one entry with single_file set.
//
// Wire format (version 1):  "MUPI" | u8 version | u8 flags | varint body size |
// zstd(body). The body is varint-coded: chunk params, entry count, then entries sorted by
// path (bytewise), each path coded as (length shared with the previous path, suffix). A
// file with one chunk covering it all stores no separate chunk id (it equals the file's).
// Serialising the same tree twice gives the same bytes.
//
// parse() treats its input as hostile: every length is bounded, and validate() runs before
// it returns. validate() requires relative, normalised paths (no "", ".", "..", leading
// "/", NUL), strictly increasing order (hence no duplicates), every parent present as a
// directory entry (so a symlink can never be a parent), chunk sizes that add up to the
// file size and respect the chunk params. A TreeIndex is a plain value; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "chunk/fastcdc.hpp"
#include "core/error.hpp"
#include "core/sha256.hpp"

namespace mup::chunk {

enum class EntryType : uint8_t { dir = 0, file = 1, symlink = 2 };

struct ChunkRef {
  Digest id;
  uint32_t size = 0;         // plain bytes
  uint32_t stored_size = 0;  // compressed bytes in the store
  bool operator==(const ChunkRef&) const = default;
};

struct DeltaRef {
  Digest base;               // SHA-256 of the base file it applies to
  uint8_t kind = 0;          // delta::DeltaKind
  uint64_t stored_size = 0;  // bytes of the piece in the store
  Digest piece;              // SHA-256 of the piece bytes
  bool operator==(const DeltaRef&) const = default;
};

struct Entry {
  std::string path;
  EntryType type = EntryType::file;
  uint32_t mode = 0644;  // permission bits (07777)
  uint64_t size = 0;     // files
  Digest digest;         // files: SHA-256 of the content
  std::vector<ChunkRef> chunks;
  std::vector<DeltaRef> deltas;
  std::string link_target;  // symlinks
  bool operator==(const Entry&) const = default;
};

class TreeIndex {
 public:
  static constexpr uint8_t kFormatVersion = 1;
  static constexpr size_t kMaxPath = 4096;
  static constexpr size_t kMaxEntries = 10'000'000;

  ChunkParams params;
  bool single_file = false;
  std::vector<Entry> entries;

  [[nodiscard]] std::vector<uint8_t> serialize() const;
  [[nodiscard]] static Result<TreeIndex> parse(std::span<const uint8_t> bytes);
  [[nodiscard]] Status validate() const;
  // The structural half of validate(): paths, order, parents, types, modes; not contents.
  [[nodiscard]] Status validate_structure() const;

  // The uncompressed body of an index file, and the inverse (deterministic for one zstd
  // version: the compressed frame is what a repository signs).
  struct Body {
    std::vector<uint8_t> raw;
    bool single_file = false;
  };
  [[nodiscard]] static Result<Body> unframe(std::span<const uint8_t> file);
  [[nodiscard]] static std::vector<uint8_t> frame(std::span<const uint8_t> raw, bool single_file);

  [[nodiscard]] static Result<TreeIndex> load(const std::string& path);
  [[nodiscard]] Status save(const std::string& path) const;  // atomic

  const Entry* find(std::string_view path) const;
  uint64_t total_file_bytes() const;

 private:
  [[nodiscard]] Status validate_impl(bool contents) const;
  std::vector<uint8_t> serialize_body() const;
};

// Index deltas: a node that holds the index of the version it runs fetches the next
// version's index as a zstd prefix delta of the uncompressed bodies ("MUPX" | u8 flags |
// varint body size | zstd frame), stored at indexes/<2 hex>/<base sha>-<target sha>. The
// rebuilt index file must hash to `target_sha256` (the digest the repository signs), else
// the node fetches the full index.
//
// An index delta is not a TUF target: only what it rebuilds is signed. `body_size` is the
// target's uncompressed body size from signed metadata (the manifest's index_body_size): a
// delta stating another size is refused before anything is decompressed, and decompression
// never produces more, so a hostile delta cannot make the node allocate more than the honest
// index needs.
[[nodiscard]] Result<std::vector<uint8_t>> make_index_delta(std::span<const uint8_t> base_file,
                                                            std::span<const uint8_t> target_file);
[[nodiscard]] Result<std::vector<uint8_t>> apply_index_delta(std::span<const uint8_t> base_file,
                                                             std::span<const uint8_t> delta,
                                                             const Digest& target_sha256,
                                                             uint64_t body_size);
// The body size an index file's header states (what a publisher signs as index_body_size).
[[nodiscard]] Result<uint64_t> index_body_size(std::span<const uint8_t> index_file);
std::string index_delta_rel_path(const Digest& base_sha256, const Digest& target_sha256);

// Checks one relative path: non-empty, no leading '/', no "", "." or ".." component, no NUL,
// at most kMaxPath bytes and 255 bytes per component.
[[nodiscard]] Status validate_path(std::string_view path);

}  // namespace mup::chunk
