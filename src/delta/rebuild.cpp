#include "delta/rebuild.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include "core/fault.hpp"
#include "core/fs.hpp"
#include "core/parallel.hpp"
#include "core/progress.hpp"
#include "delta/piece.hpp"

namespace mup::delta {

namespace stdfs = std::filesystem;
using chunk::Entry;
using chunk::EntryType;

namespace {

// Writes a file through a buffer, hashing what it writes.
class VerifiedWriter {
 public:
  VerifiedWriter(int fd, const stdfs::path& path) : fd_(fd), path_(path) { buf_.reserve(kBuf); }
  Status write(std::span<const uint8_t> data) {
    written_ += data.size();
    hasher_.update(data);
    if (buf_.size() + data.size() > kBuf) MUP_TRY(flush());
    if (data.size() >= kBuf) return fs::write_all(fd_, data, path_);
    buf_.insert(buf_.end(), data.begin(), data.end());
    return {};
  }
  Status flush() {
    Status s = fs::write_all(fd_, buf_, path_);
    buf_.clear();
    return s;
  }
  uint64_t written() const { return written_; }
  Digest digest() { return hasher_.finish(); }

 private:
  static constexpr size_t kBuf = 1 << 20;
  int fd_;
  const stdfs::path& path_;
  std::vector<uint8_t> buf_;
  Sha256 hasher_;
  uint64_t written_ = 0;
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Status copy_verified(const stdfs::path& from, VerifiedWriter& w) {
  auto m = fs::MappedFile::open(from);
  if (!m) return tl::unexpected(m.error());
  return w.write(m->bytes());
}

Status build_file(const Entry& e, const FilePlan& fp, const Plan& plan,
                  const chunk::ChunkStore& store, const stdfs::path& dst, const UnpackOptions& opts,
                  std::atomic<uint64_t>& linked, std::atomic<uint64_t>& written) {
  MUP_TRY(fault::point("unpack.file"));
  if (fp.source == Source::reuse && opts.link) {
    const stdfs::path& src = plan.seed_files[static_cast<size_t>(fp.seed_file)];
    struct stat st {};
    if (::lstat(src.c_str(), &st) == 0 && (st.st_mode & 07777) == e.mode &&
        static_cast<uint64_t>(st.st_size) == e.size && ::link(src.c_str(), dst.c_str()) == 0) {
      ++linked;
      return {};
    }
  }
  Fd f{::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)};
  if (f.fd < 0) return fail_errno("create", dst.string(), errno);
  VerifiedWriter w(f.fd, dst);
  std::string what;  // the piece, for error messages
  switch (fp.source) {
    case Source::reuse: {
      const stdfs::path& src = plan.seed_files[static_cast<size_t>(fp.seed_file)];
      what = "seed file " + src.string();
      MUP_TRY(copy_verified(src, w));
      break;
    }
    case Source::delta: {
      const stdfs::path& base_path = plan.seed_files[static_cast<size_t>(fp.seed_file)];
      std::string rel = piece_rel_path(fp.delta->base, e.digest);
      what = "delta " + rel;
      auto piece = store.get_blob(rel, fp.delta->stored_size);
      if (!piece) return tl::unexpected(piece.error().context(what + " for " + e.path));
      if (piece->size() != fp.delta->stored_size || sha256(*piece) != fp.delta->piece)
        return fail(Errc::corrupt, what + " for " + e.path +
                                       " is corrupt (size or SHA-256 differs from the index); "
                                       "refetch it");
      auto base = fs::MappedFile::open(base_path);
      if (!base) return tl::unexpected(base.error().context("base of " + e.path));
      if (sha256(base->bytes()) != fp.delta->base)
        return fail(Errc::corrupt,
                    "seed " + base_path.string() + " changed since planning; plan again");
      auto s = apply_piece(*piece, fp.delta->kind, base->bytes(), e.size,
                           [&](std::span<const uint8_t> b) { return w.write(b); });
      if (!s) return tl::unexpected(s.error().context(what + " for " + e.path));
      break;
    }
    case Source::chunks: {
      std::vector<fs::MappedFile> maps;  // seed files opened for this file
      std::vector<int32_t> map_ids;
      for (size_t i = 0; i < e.chunks.size(); ++i) {
        const chunk::ChunkRef& c = e.chunks[i];
        const ChunkLoc& loc = fp.chunks[i];
        if (loc.seed_file >= 0) {
          auto it = std::find(map_ids.begin(), map_ids.end(), loc.seed_file);
          if (it == map_ids.end()) {
            auto m = fs::MappedFile::open(plan.seed_files[static_cast<size_t>(loc.seed_file)]);
            if (!m) return tl::unexpected(m.error().context("seed chunk of " + e.path));
            maps.push_back(std::move(*m));
            map_ids.push_back(loc.seed_file);
            it = map_ids.end() - 1;
          }
          auto bytes = maps[static_cast<size_t>(it - map_ids.begin())].bytes();
          if (loc.offset + c.size > bytes.size() ||
              sha256(bytes.subspan(loc.offset, c.size)) != c.id)
            return fail(Errc::corrupt, "seed chunk " + c.id.short_hex() + " for " + e.path +
                                           " changed since planning; plan again");
          MUP_TRY(w.write(bytes.subspan(loc.offset, c.size)));
        } else {
          auto data = store.get_chunk(c.id, c.size);
          if (!data) return tl::unexpected(data.error().context("building " + e.path));
          MUP_TRY(w.write(*data));
        }
      }
      what = "its chunks";
      break;
    }
  }
  MUP_TRY(w.flush());
  if (w.written() != e.size || w.digest() != e.digest)
    return fail(Errc::corrupt,
                e.path + " rebuilt from " + what + " does not match its SHA-256 in the index");
  if (::fchmod(f.fd, e.mode) != 0) return fail_errno("chmod", dst.string(), errno);
  written += w.written();
  return {};
}

}  // namespace

Result<UnpackStats> unpack(const chunk::TreeIndex& index, const Plan& plan,
                           const chunk::ChunkStore& store, const stdfs::path& out,
                           const UnpackOptions& opts) {
  std::error_code ec;
  if (stdfs::exists(stdfs::symlink_status(out, ec)))
    return fail(Errc::already_exists, out.string() +
                                          " already exists; unpack builds a new tree (remove it or "
                                          "choose another --out)");
  stdfs::path parent = out.parent_path().empty() ? stdfs::path(".") : out.parent_path();
  if (!stdfs::is_directory(parent, ec))
    return fail(Errc::not_found, "directory " + parent.string() + " does not exist");
  auto tmp = fs::TempDir::create(out);
  if (!tmp) return tl::unexpected(tmp.error());
  const stdfs::path root = tmp->path();
  auto dst_of = [&](const Entry& e) { return index.single_file ? root / "file" : root / e.path; };

  // Directories first (writable while we fill them), and symlinks: cheap, in order.
  for (const Entry& e : index.entries) {
    if (e.type == EntryType::dir && ::mkdir(dst_of(e).c_str(), 0700) != 0)
      return fail_errno("create directory", dst_of(e).string(), errno);
    if (e.type == EntryType::symlink && ::symlink(e.link_target.c_str(), dst_of(e).c_str()) != 0)
      return fail_errno("create symlink", dst_of(e).string(), errno);
  }
  std::atomic<uint64_t> linked{0}, written{0};
  Progress progress("unpacking", plan.target_bytes, opts.progress);
  MUP_TRY(try_parallel_for(
      plan.files.size(), opts.threads ? opts.threads : default_threads(), [&](size_t i) -> Status {
        const FilePlan& fp = plan.files[i];
        const Entry& e = index.entries[fp.entry];
        MUP_TRY(build_file(e, fp, plan, store, dst_of(e), opts, linked, written));
        progress.add(e.size);
        return {};
      }));
  progress.finish();
  // Directory modes last, deepest first, so a read-only directory does not block its children.
  for (auto it = index.entries.rbegin(); it != index.entries.rend(); ++it)
    if (it->type == EntryType::dir && ::chmod(dst_of(*it).c_str(), it->mode) != 0)
      return fail_errno("chmod", dst_of(*it).string(), errno);
  MUP_TRY(fault::point("unpack.before_rename"));
  MUP_TRY(fs::sync_filesystem(root));
  stdfs::path built = index.single_file ? root / "file" : root;
  if (index.single_file) ::chmod(root.c_str(), 0700);
  if (::rename(built.c_str(), out.c_str()) != 0)
    return fail_errno("rename into place", out.string(), errno);
  if (!index.single_file) tmp->release();
  MUP_TRY(fs::fsync_dir(parent));
  UnpackStats st;
  st.files = plan.files.size();
  st.bytes_written = written;
  st.files_linked = linked;
  return st;
}

}  // namespace mup::delta
