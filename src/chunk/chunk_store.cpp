#include "chunk/chunk_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/fault.hpp"
#include "core/fs.hpp"
#include "core/zstd.hpp"

namespace mup::chunk {

namespace stdfs = std::filesystem;

namespace {

// "chunks/<2 hex>/<hex>": where a chunk is stored, relative to the root.
std::string chunk_rel(const Digest& id) {
  std::string h = id.hex();
  return "chunks/" + h.substr(0, 2) + "/" + h;
}
}  // namespace

Result<ChunkStore> ChunkStore::open(const stdfs::path& root, bool create) {
  if (create) {
    MUP_TRY(fs::create_dirs(root / "chunks"));
  } else {
    std::error_code ec;
    if (!stdfs::is_directory(root, ec))
      return fail(Errc::not_found,
                  "store " + root.string() + " does not exist (create it with mup pack)");
  }
  return ChunkStore(root);
}

stdfs::path ChunkStore::chunk_path(const Digest& id) const {
  return root_ / chunk_rel(id);
}

ChunkStore ChunkStore::with_extents(std::shared_ptr<const Extents> extents) const {
  ChunkStore view(root_);
  view.extents_ = std::move(extents);
  return view;
}

const Extent* ChunkStore::extent(const std::string& rel) const {
  if (!extents_) return nullptr;
  auto it = extents_->find(rel);
  return it == extents_->end() ? nullptr : &it->second;
}

Result<std::vector<uint8_t>> ChunkStore::read_object(const std::string& rel,
                                                     uint64_t max_size) const {
  if (const Extent* x = extent(rel)) {
    if (x->size > max_size)
      return fail(Errc::corrupt, rel + " in " + x->file.string() + " is larger than the " +
                                     std::to_string(max_size) + " bytes allowed");
    return fs::read_range(x->file, x->offset, x->size);
  }
  return fs::read_file(root_ / rel, max_size);
}

bool ChunkStore::has_chunk(const Digest& id) const {
  if (extent(chunk_rel(id))) return true;
  struct stat st {};
  return ::stat(chunk_path(id).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<uint64_t> ChunkStore::stored_size(const Digest& id) const {
  if (const Extent* x = extent(chunk_rel(id))) return x->size;
  struct stat st {};
  if (::stat(chunk_path(id).c_str(), &st) != 0) return fail_errno("stat chunk", id.hex(), errno);
  return static_cast<uint64_t>(st.st_size);
}

Status ChunkStore::write_object(const stdfs::path& final_path,
                                std::span<const uint8_t> bytes) const {
  stdfs::path dir = final_path.parent_path();
  stdfs::path tmp = fs::temp_sibling(final_path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ENOENT) {
    MUP_TRY(fs::create_dirs(dir));
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  }
  if (fd < 0) return fail_errno("create", tmp.string(), errno);
  Status s = fs::write_all(fd, bytes, tmp);
  ::close(fd);
  if (s && ::rename(tmp.c_str(), final_path.c_str()) != 0)
    s = fail_errno("rename", final_path.string(), errno);
  if (!s) ::unlink(tmp.c_str());
  return s;
}

Result<uint64_t> ChunkStore::put_chunk(const Digest& id, std::span<const uint8_t> plain, int level,
                                       Existing existing) const {
  stdfs::path p = chunk_path(id);
  struct stat st {};
  if (existing != Existing::replace && ::stat(p.c_str(), &st) == 0) {
    if (existing == Existing::keep) return static_cast<uint64_t>(st.st_size);
    if (get_chunk(id, static_cast<uint32_t>(plain.size())))
      return static_cast<uint64_t>(st.st_size);
    // Torn by a crash (or damaged): stored again below, atomically.
  }
  auto z = zstd::compress(plain, level);
  if (!z) return tl::unexpected(z.error().context("compressing chunk " + id.short_hex()));
  MUP_TRY(write_object(p, *z));
  return z->size();
}

Result<std::vector<uint8_t>> ChunkStore::get_chunk(const Digest& id, uint32_t plain_size) const {
  auto z = read_object(chunk_rel(id), uint64_t{plain_size} + plain_size / 8 + 4096);
  if (!z) return tl::unexpected(z.error().context("chunk " + id.hex()));
  auto plain = zstd::decompress(*z, plain_size);
  if (!plain) return tl::unexpected(plain.error().context("chunk " + id.hex() + " is corrupt"));
  if (plain->size() != plain_size)
    return fail(Errc::corrupt, "chunk " + id.hex() +
                                   " is corrupt: " + std::to_string(plain->size()) +
                                   " bytes, index says " + std::to_string(plain_size));
  if (sha256(*plain) != id)
    return fail(Errc::corrupt,
                "chunk " + id.hex() + " is corrupt: its content does not hash to its id");
  return plain;
}

Status ChunkStore::put_blob(const std::string& rel, std::span<const uint8_t> bytes) const {
  return write_object(root_ / rel, bytes);
}

Result<std::vector<uint8_t>> ChunkStore::get_blob(const std::string& rel, uint64_t max_size) const {
  return read_object(rel, max_size);
}

bool ChunkStore::has_blob(const std::string& rel) const {
  if (extent(rel)) return true;
  struct stat st {};
  return ::stat((root_ / rel).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Status ChunkStore::sync() const {
  return fs::sync_filesystem(root_);
}

Result<bool> ChunkStore::begin_batch() const {
  std::error_code ec;
  const bool unfinished = stdfs::exists(batch_marker(), ec);
  if (!unfinished) {
    static constexpr uint8_t kNote[] = "a batch of objects is being written\n";
    MUP_TRY(fs::write_file_atomic(batch_marker(), std::span(kNote, sizeof kNote - 1), 0644));
  }
  return unfinished;
}

Status ChunkStore::end_batch() const {
  MUP_TRY(sync());
  if (::unlink(batch_marker().c_str()) != 0 && errno != ENOENT)
    return fail_errno("remove", batch_marker().string(), errno);
  return fs::fsync_dir(root_);
}

}  // namespace mup::chunk
