#include "engine/locks.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include "core/fs.hpp"

namespace mup::engine {

namespace stdfs = std::filesystem;

Result<LockFile> LockFile::try_acquire(const stdfs::path& path, Mode mode,
                                       const std::string& what) {
  MUP_TRY(fs::create_dirs(path.parent_path()));
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return fail_errno("open lock file", path.string(), errno);
  int op = (mode == Mode::shared ? LOCK_SH : LOCK_EX) | LOCK_NB;
  while (::flock(fd, op) != 0) {
    int e = errno;
    if (e == EINTR) continue;
    ::close(fd);
    if (e == EWOULDBLOCK)
      return fail(Errc::busy, "another mup process is working on " + what +
                                  "; wait for it to finish (mup status shows it) and try again");
    return fail_errno("lock", path.string(), e);
  }
  return LockFile(fd);
}

Result<LockFile> LockFile::wait(const stdfs::path& path, Mode mode) {
  MUP_TRY(fs::create_dirs(path.parent_path()));
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return fail_errno("open lock file", path.string(), errno);
  while (::flock(fd, mode == Mode::shared ? LOCK_SH : LOCK_EX) != 0) {
    int e = errno;
    if (e == EINTR) continue;
    ::close(fd);
    return fail_errno("lock", path.string(), e);
  }
  return LockFile(fd);
}

LockFile& LockFile::operator=(LockFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

LockFile::~LockFile() {
  if (fd_ >= 0) ::close(fd_);
}

Result<WriterLock> NodeLocks::writer(const std::string& component) const {
  WriterLock w;
  auto n = LockFile::try_acquire(node_lock(), LockFile::Mode::shared,
                                 "node " + root_.string() + " (a garbage collection)");
  if (!n) return tl::unexpected(n.error());
  w.node = std::move(*n);
  auto c = LockFile::try_acquire(component_lock(component), LockFile::Mode::exclusive,
                                 component + " on node " + root_.string());
  if (!c) return tl::unexpected(c.error());
  w.component = std::move(*c);
  return w;
}

Result<LockFile> NodeLocks::group(int64_t id) const {
  return LockFile::try_acquire(root_ / "locks" / "g" / (std::to_string(id) + ".lock"),
                               LockFile::Mode::exclusive, "group operation " + std::to_string(id));
}

Result<LockFile> NodeLocks::remote(const std::string& name) const {
  return LockFile::wait(
      root_ / "locks" / "r" / ((name.empty() ? std::string("-") : name) + ".lock"),
      LockFile::Mode::exclusive);
}

Result<LockFile> NodeLocks::exclusive() const {
  return LockFile::try_acquire(node_lock(), LockFile::Mode::exclusive, "node " + root_.string());
}

}  // namespace mup::engine
