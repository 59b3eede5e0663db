// The manifest of one snapshot (`manifest.json`), internal to the snapshot module.
//
// Format 1: {"format":1, "id", "component", "version", "label", "created_at_ms",
// "absent": bool, "root": {"mode":"0755","uid","gid"} (present states only),
// "entries": [{"path", "type": "file|dir|symlink", "mode": "0644", "uid", "gid",
// "size" and "sha256" (files), "target" (symlinks)}] sorted by path (bytewise),
// "files", "bytes", "bytes_copied", "files_linked", "content_hash"}.
//
// content_hash is the hex SHA-256 of a canonical serialisation of `absent`, `root` and the
// entries (see content_hash()), so editing any of them without recomputing it is detected,
// and two snapshots of the same state have the same content_hash whatever their ids.
//
// parse() treats its input as hostile: it checks types, the id's shape, every path
// (relative, normalised, no NUL, bounded), order (hence no duplicates), that every parent
// is a directory entry (so nothing can be restored through a symlink). It does not check
// content_hash: verification reports a mismatch as one problem among others.
// Values; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/sha256.hpp"

namespace mup::snapshot {

enum class EntryType : uint8_t { dir, file, symlink };
std::string_view type_name(EntryType t);
std::string octal_mode(uint32_t mode);  // "0644"

struct ManifestEntry {
  std::string path;
  EntryType type = EntryType::file;
  uint32_t mode = 0644;  // permission bits (07777); 0777 for symlinks, not restored
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;   // files
  Digest sha256;       // files
  std::string target;  // symlinks
};

struct Manifest {
  static constexpr int kFormat = 1;
  static constexpr size_t kMaxPath = 4096;
  static constexpr size_t kMaxEntries = 10'000'000;

  std::string id;
  std::string component;
  std::string version;
  std::string label;
  int64_t created_at_ms = 0;
  bool absent = false;
  uint32_t root_mode = 0755;
  uint32_t root_uid = 0;
  uint32_t root_gid = 0;
  std::vector<ManifestEntry> entries;
  uint64_t bytes_copied = 0;
  uint64_t files_linked = 0;
  std::string content_hash;  // as recorded

  // Over absent/root/entries; entries must be sorted by path.
  std::string compute_content_hash() const;
  uint64_t files() const;
  uint64_t bytes() const;

  std::string to_json() const;
  [[nodiscard]] static Result<Manifest> parse(std::string_view text);
};

// One relative path from a manifest: non-empty, not absolute, no "", "." or ".."
// component, no NUL, at most kMaxPath bytes and 255 bytes per component.
[[nodiscard]] Status validate_rel_path(std::string_view path);

// Ids: "<component>-<yyyymmddThhmmss>-<6 lowercase hex>"; splits one, or says why not.
struct IdParts {
  std::string_view component;
  std::string_view stamp;  // yyyymmddThhmmss
};
[[nodiscard]] Result<IdParts> parse_id(std::string_view id);
std::string format_stamp(int64_t unix_ms);  // UTC yyyymmddThhmmss

}  // namespace mup::snapshot
