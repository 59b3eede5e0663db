#include "chunk/tree_scan.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace mup::chunk {

namespace stdfs = std::filesystem;

namespace {

Status scan_dir(int dirfd, const std::string& prefix, const stdfs::path& root,
                std::vector<Entry>& out) {
  DIR* d = ::fdopendir(dirfd);
  if (d == nullptr) {
    int e = errno;
    ::close(dirfd);
    return fail_errno("read directory", (root / prefix).string(), e);
  }
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string name = de->d_name;
    if (name == "." || name == "..") continue;
    names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  Status result;
  for (const std::string& name : names) {
    std::string rel = prefix.empty() ? name : prefix + "/" + name;
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      result = fail_errno("stat", (root / rel).string(), errno);
      break;
    }
    Entry e;
    e.path = rel;
    e.mode = st.st_mode & 07777;
    if (S_ISDIR(st.st_mode)) {
      e.type = EntryType::dir;
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
      e.type = EntryType::file;
      e.size = static_cast<uint64_t>(st.st_size);
      out.push_back(std::move(e));
    } else if (S_ISLNK(st.st_mode)) {
      e.type = EntryType::symlink;
      e.mode = 0777;
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
      if (n < 0) {
        result = fail_errno("read symlink", (root / rel).string(), errno);
        break;
      }
      target.resize(static_cast<size_t>(n));
      e.link_target = std::move(target);
      out.push_back(std::move(e));
    } else {
      result =
          fail(Errc::unsupported, (root / rel).string() +
                                      " is a device, FIFO or socket; update packages hold only "
                                      "directories, regular files and symlinks");
      break;
    }
  }
  ::closedir(d);
  return result;
}

}  // namespace

Result<ScannedTree> scan_tree(const stdfs::path& root) {
  struct stat st {};
  if (::lstat(root.c_str(), &st) != 0) return fail_errno("stat", root.string(), errno);
  ScannedTree t;
  if (S_ISREG(st.st_mode)) {
    t.single_file = true;
    Entry e;
    e.path = root.filename().string();
    e.mode = st.st_mode & 07777;
    e.size = static_cast<uint64_t>(st.st_size);
    t.entries.push_back(std::move(e));
    return t;
  }
  if (!S_ISDIR(st.st_mode))
    return fail(Errc::invalid_argument,
                root.string() + " is neither a directory nor a regular file");
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail_errno("open directory", root.string(), errno);
  MUP_TRY(scan_dir(fd, "", root, t.entries));
  // Bytewise order of full paths ("a-b" < "a/b"), which per-directory sorting does not give.
  std::sort(t.entries.begin(), t.entries.end(),
            [](const Entry& a, const Entry& b) { return a.path < b.path; });
  return t;
}

}  // namespace mup::chunk
