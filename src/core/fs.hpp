// Filesystem operations that matter for crash-safety, and small file helpers.
//
// Contract: every function returns Status/Result; nothing throws. Atomic replace follows
// write-temp, fsync, rename, fsync-directory, so a reader sees the old file or the new one,
// never a torn one. Temporary names start with '.' and contain ".mup-tmp." so that
// sweep_stale_temps() can find what a killed process left. All functions are thread-safe
// (they share no state).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mup::fs {

namespace stdfs = std::filesystem;

[[nodiscard]] Result<std::vector<uint8_t>> read_file(const stdfs::path& path,
                                                     uint64_t max_size = UINT64_MAX);
// Exactly `size` bytes of `path` from `offset` (Errc::corrupt if the file ends before).
[[nodiscard]] Result<std::vector<uint8_t>> read_range(const stdfs::path& path, uint64_t offset,
                                                      uint64_t size);
[[nodiscard]] Status write_all(int fd, std::span<const uint8_t> data, const stdfs::path& what);
[[nodiscard]] Status fsync_dir(const stdfs::path& dir);
// Makes everything written on the filesystem holding `path` durable (syncfs): one call
// after a batch of many files instead of an fsync per file.
[[nodiscard]] Status sync_filesystem(const stdfs::path& path);
// Atomically replaces (or creates) `path` with `data`; mode applies to the new file.
[[nodiscard]] Status write_file_atomic(const stdfs::path& path, std::span<const uint8_t> data,
                                       mode_t mode = 0644);
[[nodiscard]] Status create_dirs(const stdfs::path& dir);
[[nodiscard]] Status remove_all(const stdfs::path& path);

// Why `path` is not a safe relative path below some root (empty string when it is):
// empty, longer than `max_len`, absolute, a NUL, an empty, "." or ".." component, or a
// component over 255 bytes. Every reader of untrusted paths (tree indexes, snapshot
// manifests) checks with it.
std::string unsafe_path_reason(std::string_view path, size_t max_len);

// A temp path beside `final_path`: ".<name>.mup-tmp.<pid>.<n>".
stdfs::path temp_sibling(const stdfs::path& final_path);
// Removes temp siblings of `final_path` left by processes that no longer run.
void sweep_stale_temps(const stdfs::path& final_path);

// A read-only memory map of a whole file (empty files map to an empty span).
class MappedFile {
 public:
  [[nodiscard]] static Result<MappedFile> open(const stdfs::path& path);
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }
  // Tells the kernel the pages are no longer needed (bounds RSS on long scans).
  void drop_cache() const;

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Deletes the directory tree at destruction unless release() was called.
class TempDir {
 public:
  [[nodiscard]] static Result<TempDir> create(const stdfs::path& final_path);
  TempDir() = default;
  TempDir(TempDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  TempDir& operator=(TempDir&& o) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const stdfs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  explicit TempDir(stdfs::path p) : path_(std::move(p)) {}
  stdfs::path path_;
};

}  // namespace mup::fs
