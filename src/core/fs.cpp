#include "core/fs.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string_view>

#include "core/fault.hpp"

namespace mup::fs {

namespace {
std::atomic<uint64_t> g_temp_counter{0};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

Result<std::vector<uint8_t>> read_file(const stdfs::path& path, uint64_t max_size) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return fail_errno("open", path.string(), errno);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return fail_errno("stat", path.string(), errno);
  if (!S_ISREG(st.st_mode))
    return fail(Errc::invalid_argument, path.string() + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_size)
    return fail(Errc::corrupt, path.string() + " is larger than the " + std::to_string(max_size) +
                                   " bytes allowed");
  std::vector<uint8_t> out(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(f.fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read", path.string(), errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

Result<std::vector<uint8_t>> read_range(const stdfs::path& path, uint64_t offset, uint64_t size) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return fail_errno("open", path.string(), errno);
  std::vector<uint8_t> out(static_cast<size_t>(size));
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::pread(f.fd, out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read", path.string(), errno);
    if (n == 0)
      return fail(Errc::corrupt, path.string() + " ends before byte " +
                                     std::to_string(offset + size) + " (at " +
                                     std::to_string(offset + got) + ")");
    got += static_cast<size_t>(n);
  }
  return out;
}

Status write_all(int fd, std::span<const uint8_t> data, const stdfs::path& what) {
  MUP_TRY(fault::point("write"));
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("write", what.string(), errno);
    data = data.subspan(static_cast<size_t>(n));
  }
  return {};
}

Status fsync_dir(const stdfs::path& dir) {
  Fd f{::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (f.fd < 0) return fail_errno("open directory", dir.string(), errno);
  if (::fsync(f.fd) != 0 && errno != EINVAL) return fail_errno("fsync", dir.string(), errno);
  return {};
}

Status sync_filesystem(const stdfs::path& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return fail_errno("open", path.string(), errno);
  if (::syncfs(f.fd) != 0) return fail_errno("syncfs", path.string(), errno);
  return {};
}

std::string unsafe_path_reason(std::string_view path, size_t max_len) {
  if (path.empty()) return "empty";
  if (path.size() > max_len) return "too long";
  if (path.front() == '/') return "absolute";
  if (path.find('\0') != std::string_view::npos) return "contains NUL";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view comp = path.substr(start, end - start);
    if (comp.empty()) return "empty component";
    if (comp == ".") return "'.' component";
    if (comp == "..") return "'..' component escapes the root";
    if (comp.size() > 255) return "component longer than 255 bytes";
    start = end + 1;
  }
  return {};
}

stdfs::path temp_sibling(const stdfs::path& final_path) {
  std::string name = "." + final_path.filename().string() + ".mup-tmp." +
                     std::to_string(::getpid()) + "." + std::to_string(g_temp_counter++);
  return final_path.parent_path() / name;
}

void sweep_stale_temps(const stdfs::path& final_path) {
  std::error_code ec;
  stdfs::path dir = final_path.parent_path().empty() ? stdfs::path(".") : final_path.parent_path();
  std::string prefix = "." + final_path.filename().string() + ".mup-tmp.";
  for (const auto& e : stdfs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    std::string rest = name.substr(prefix.size());
    pid_t pid = static_cast<pid_t>(std::atol(rest.c_str()));
    if (pid <= 0) continue;
    if (::kill(pid, 0) == 0 || errno == EPERM) continue;  // its owner still runs
    stdfs::remove_all(e.path(), ec);
  }
}

Status write_file_atomic(const stdfs::path& path, std::span<const uint8_t> data, mode_t mode) {
  stdfs::path tmp = temp_sibling(path);
  Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)};
  if (f.fd < 0) return fail_errno("create", tmp.string(), errno);
  auto cleanup = [&] { ::unlink(tmp.c_str()); };
  if (auto s = write_all(f.fd, data, tmp); !s) {
    cleanup();
    return s;
  }
  if (::fchmod(f.fd, mode) != 0 || ::fsync(f.fd) != 0) {
    int e = errno;
    cleanup();
    return fail_errno("fsync", tmp.string(), e);
  }
  ::close(f.fd);
  f.fd = -1;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    cleanup();
    return fail_errno("rename into place", path.string(), e);
  }
  return fsync_dir(path.parent_path());
}

Status create_dirs(const stdfs::path& dir) {
  std::error_code ec;
  stdfs::create_directories(dir, ec);
  if (ec) return fail_errno("create directory", dir.string(), ec.value());
  return {};
}

Status remove_all(const stdfs::path& path) {
  std::error_code ec;
  stdfs::remove_all(path, ec);
  if (ec) return fail_errno("remove", path.string(), ec.value());
  return {};
}

Result<MappedFile> MappedFile::open(const stdfs::path& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return fail_errno("open", path.string(), errno);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return fail_errno("stat", path.string(), errno);
  if (!S_ISREG(st.st_mode))
    return fail(Errc::invalid_argument, path.string() + " is not a regular file");
  MappedFile m;
  m.size_ = static_cast<size_t>(st.st_size);
  if (m.size_ == 0) return m;
  void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) return fail_errno("mmap", path.string(), errno);
  m.data_ = static_cast<const uint8_t*>(p);
  return m;
}

MappedFile::MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::drop_cache() const {
  if (data_ != nullptr) ::madvise(const_cast<uint8_t*>(data_), size_, MADV_DONTNEED);
}

Result<TempDir> TempDir::create(const stdfs::path& final_path) {
  sweep_stale_temps(final_path);
  stdfs::path p = temp_sibling(final_path);
  if (::mkdir(p.c_str(), 0755) != 0) return fail_errno("create directory", p.string(), errno);
  return TempDir(std::move(p));
}

TempDir& TempDir::operator=(TempDir&& o) noexcept {
  if (this != &o) {
    if (!path_.empty()) {
      std::error_code ec;
      stdfs::remove_all(path_, ec);
    }
    path_ = std::move(o.path_);
    o.path_.clear();
  }
  return *this;
}

TempDir::~TempDir() {
  if (!path_.empty()) {
    std::error_code ec;
    stdfs::remove_all(path_, ec);
  }
}

}  // namespace mup::fs
