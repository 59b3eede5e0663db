#include "snapshot/tree_ops.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>  // FICLONE
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>  // renameat2 (glibc, _GNU_SOURCE)

#include "core/fs.hpp"

namespace mup::snapshot::detail {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

std::string describe_special(mode_t m) {
  if (S_ISFIFO(m)) return "FIFO";
  if (S_ISSOCK(m)) return "socket";
  if (S_ISCHR(m)) return "character device";
  if (S_ISBLK(m)) return "block device";
  return "special file";
}

// Takes ownership of `dirfd`.
Status scan_dir(int dirfd, const std::string& prefix, const stdfs::path& root,
                std::vector<StatEntry>& out) {
  DIR* d = ::fdopendir(dirfd);
  if (d == nullptr) {
    int e = errno;
    ::close(dirfd);
    return fail_errno("read directory", (root / prefix).string(), e);
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* de = ::readdir(d)) {
    std::string name = de->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  if (errno != 0) {
    int e = errno;
    ::closedir(d);
    return fail_errno("read directory", (root / prefix).string(), e);
  }
  std::sort(names.begin(), names.end());
  Status result;
  for (const std::string& name : names) {
    std::string rel = prefix;
    if (!rel.empty()) rel += '/';
    rel += name;
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      result = fail_errno("stat", (root / rel).string(), errno);
      break;
    }
    StatEntry e;
    e.path = rel;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    if (S_ISDIR(st.st_mode)) {
      e.kind = Kind::dir;
      out.push_back(std::move(e));
      int sub = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        result = fail_errno("open directory", (root / rel).string(), errno);
        break;
      }
      if (auto s = scan_dir(sub, rel, root, out); !s) {
        result = s;
        break;
      }
    } else if (S_ISREG(st.st_mode)) {
      e.kind = Kind::file;
      e.size = static_cast<uint64_t>(st.st_size);
      out.push_back(std::move(e));
    } else if (S_ISLNK(st.st_mode)) {
      e.kind = Kind::symlink;
      e.mode = 0777;
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
      if (n < 0) {
        result = fail_errno("read symlink", (root / rel).string(), errno);
        break;
      }
      target.resize(static_cast<size_t>(n));
      e.target = std::move(target);
      out.push_back(std::move(e));
    } else {
      e.kind = Kind::other;
      e.other = describe_special(st.st_mode);
      out.push_back(std::move(e));
    }
  }
  ::closedir(d);
  return result;
}

}  // namespace

Result<std::vector<std::string>> list_names(const stdfs::path& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return std::vector<std::string>();
    return fail_errno("read directory", dir.string(), errno);
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* de = ::readdir(d)) {
    std::string name = de->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) return fail_errno("read directory", dir.string(), e);
  std::sort(names.begin(), names.end());
  return names;
}

bool path_exists(const stdfs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

bool is_real_dir(const stdfs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<ScannedState> scan_state(const stdfs::path& root) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return fail_errno("open directory", root.string(), errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return fail_errno("stat", root.string(), e);
  }
  ScannedState s;
  s.mode = st.st_mode & 07777;
  s.uid = st.st_uid;
  s.gid = st.st_gid;
  MUP_TRY(scan_dir(fd, "", root, s.entries));
  // Bytewise order of full paths ("a-b" < "a/b"), which per-directory sorting does not give.
  std::sort(s.entries.begin(), s.entries.end(),
            [](const StatEntry& a, const StatEntry& b) { return a.path < b.path; });
  return s;
}

Result<UniqueFd> open_dir(const stdfs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return fail_errno("open directory", p.string(), errno);
  return UniqueFd(fd);
}

Result<UniqueFd> open_beneath(int dirfd, const std::string& rel, int flags,
                              const stdfs::path& what) {
  // One component at a time with O_NOFOLLOW: portable, and no symlink is ever crossed.
  UniqueFd cur;
  int at = dirfd;
  size_t start = 0;
  for (;;) {
    size_t slash = rel.find('/', start);
    std::string comp = rel.substr(start, slash == std::string::npos ? slash : slash - start);
    if (slash == std::string::npos) {
      int fd = ::openat(at, comp.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return fail_errno("open", what.string(), errno);
      return UniqueFd(fd);
    }
    int fd = ::openat(at, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return fail_errno("open", what.string(), errno);
    cur = UniqueFd(fd);
    at = cur.get();
    start = slash + 1;
  }
}

Result<Hashed> hash_fd(int fd, const stdfs::path& what) {
  constexpr size_t kBuf = 1 << 20;
  thread_local std::vector<uint8_t> buf(kBuf);
  Sha256 h;
  Hashed out;
  for (;;) {
    ssize_t n = ::pread(fd, buf.data(), kBuf, static_cast<off_t>(out.size));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read", what.string(), errno);
    if (n == 0) break;
    h.update({buf.data(), static_cast<size_t>(n)});
    out.size += static_cast<uint64_t>(n);
  }
  out.sha256 = h.finish();
  return out;
}

Status copy_contents(int in, int out, uint64_t size, const stdfs::path& what) {
  auto changed = [&] {
    return fail(Errc::io, what.string() +
                              " changed size while it was being copied; stop whatever writes "
                              "it and try again");
  };
  if (size == 0) return {};
  // A reflink shares the extents (btrfs, XFS): instant, and no extra space until written.
  if (::ioctl(out, FICLONE, in) == 0) {
    struct stat st {};
    if (::fstat(out, &st) != 0) return fail_errno("stat", what.string(), errno);
    if (static_cast<uint64_t>(st.st_size) != size) return changed();
    return {};
  }
  uint64_t done = 0;
  bool in_kernel = true;
  thread_local std::vector<uint8_t> buf;
  while (done < size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(size - done, 1 << 30));
    if (in_kernel) {
      loff_t off_in = static_cast<loff_t>(done), off_out = static_cast<loff_t>(done);
      ssize_t n = ::copy_file_range(in, &off_in, out, &off_out, want, 0);
      if (n > 0) {
        done += static_cast<uint64_t>(n);
        continue;
      }
      if (n == 0) break;
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
          errno == EBADF) {
        in_kernel = false;
        continue;
      }
      return fail_errno("copy to", what.string(), errno);
    }
    buf.resize(1 << 20);
    want = std::min(want, buf.size());
    ssize_t n = ::pread(in, buf.data(), want, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read", what.string(), errno);
    if (n == 0) break;
    size_t w = 0;
    while (w < static_cast<size_t>(n)) {
      ssize_t m =
          ::pwrite(out, buf.data() + w, static_cast<size_t>(n) - w, static_cast<off_t>(done + w));
      if (m < 0 && errno == EINTR) continue;
      if (m < 0) return fail_errno("write", what.string(), errno);
      w += static_cast<size_t>(m);
    }
    done += static_cast<uint64_t>(n);
  }
  if (done != size) return changed();
  return {};
}

Status set_owner_mode(int fd, uint32_t uid, uint32_t gid, uint32_t mode, const stdfs::path& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno("stat", what.string(), errno);
  if ((st.st_uid != uid || st.st_gid != gid) && ::fchown(fd, uid, gid) != 0)
    return fail_errno("set owner " + std::to_string(uid) + ":" + std::to_string(gid) + " of",
                      what.string(), errno);
  if (::fchmod(fd, mode) != 0) return fail_errno("chmod", what.string(), errno);
  return {};
}

Status set_owner_mode_at(int dirfd, const std::string& rel, bool is_symlink, uint32_t uid,
                         uint32_t gid, uint32_t mode, const stdfs::path& what) {
  struct stat st {};
  if (::fstatat(dirfd, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return fail_errno("stat", what.string(), errno);
  if ((st.st_uid != uid || st.st_gid != gid) &&
      ::fchownat(dirfd, rel.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
    return fail_errno("set owner " + std::to_string(uid) + ":" + std::to_string(gid) + " of",
                      what.string(), errno);
  if (!is_symlink && ::fchmodat(dirfd, rel.c_str(), mode, 0) != 0)
    return fail_errno("chmod", what.string(), errno);
  return {};
}

Status remove_tree(const stdfs::path& path) {
  std::error_code ec;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return fail_errno("stat", path.string(), errno);
  }
  if (S_ISDIR(st.st_mode)) {
    // Snapshots keep the modes of the state they copy, read-only directories included;
    // open each up before it is entered.
    ::chmod(path.c_str(), 0700);
    for (auto it = stdfs::recursive_directory_iterator(path, ec);
         !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0700);
    }
  }
  stdfs::remove_all(path, ec);
  if (ec) return fail_errno("remove", path.string(), ec.value());
  return {};
}

Result<TempTree> TempTree::create(const stdfs::path& final_path) {
  sweep_temps(final_path.parent_path().empty() ? stdfs::path(".") : final_path.parent_path(),
              final_path.filename().string());
  auto t = fs::TempDir::create(final_path);
  if (!t) return tl::unexpected(t.error());
  stdfs::path p = t->path();
  t->release();
  return TempTree(std::move(p));
}

TempTree::~TempTree() {
  if (!path_.empty()) (void)remove_tree(path_);
}

pid_t leading_pid(std::string_view text) {
  int64_t pid = 0;
  for (char c : text) {
    if (c < '0' || c > '9') break;
    pid = pid * 10 + (c - '0');
    if (pid > INT32_MAX) return 0;
  }
  return static_cast<pid_t>(pid);
}

bool process_gone(pid_t pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

void sweep_temps(const stdfs::path& dir, std::string_view name) {
  constexpr std::string_view kMark = ".mup-tmp.";
  std::string prefix = name.empty() ? std::string() : "." + std::string(name) + std::string(kMark);
  auto names = list_names(dir);
  if (!names) return;
  std::vector<stdfs::path> stale;
  for (const std::string& f : *names) {
    if (f[0] != '.') continue;
    size_t at = std::string::npos;
    if (prefix.empty()) {
      at = f.find(kMark);
    } else if (f.rfind(prefix, 0) == 0) {
      at = prefix.size() - kMark.size();
    }
    if (at == std::string::npos) continue;
    pid_t pid = leading_pid(std::string_view(f).substr(at + kMark.size()));
    if (pid <= 0 || !process_gone(pid)) continue;
    stale.push_back(dir / f);
  }
  for (const stdfs::path& p : stale) (void)remove_tree(p);
}

Status exchange_paths(const stdfs::path& a, const stdfs::path& b) {
  if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return {};
  int e = errno;
  if (e == EINVAL || e == ENOSYS)
    return fail(Errc::unsupported, "the filesystem holding " + b.string() +
                                       " cannot swap directories atomically "
                                       "(renameat2 RENAME_EXCHANGE); keep state on ext4, XFS, "
                                       "btrfs or tmpfs");
  return fail_errno("swap in", b.string(), e);
}

Status rename_noreplace(const stdfs::path& from, const stdfs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return {};
  int e = errno;
  if (e == EINVAL || e == ENOSYS) {
    // No RENAME_NOREPLACE here: rename(2) still refuses a non-empty target directory.
    struct stat st {};
    if (::lstat(to.c_str(), &st) == 0) return fail_errno("rename into place", to.string(), EEXIST);
    if (::rename(from.c_str(), to.c_str()) == 0) return {};
    e = errno;
  }
  return fail_errno("rename into place", to.string(), e);
}

}  // namespace mup::snapshot::detail
