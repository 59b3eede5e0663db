#include "test_util.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

namespace mup::test {

ScratchDir::ScratchDir() {
  std::string tmpl = (stdfs::temp_directory_path() / "mup-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  // Tests may leave read-only dirs behind; make them writable before removal.
  for (auto it = stdfs::recursive_directory_iterator(path_, ec);
       it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0755);
  }
  stdfs::remove_all(path_, ec);
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> out(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

std::vector<uint8_t> text_bytes(size_t n, uint64_t seed) {
  static const char* kWords[] = {"update",   "chunk",  "delta", "mohhos",  "node",  "version",
                                 "rollback", "signed", "tree",  "index",   "store", "fleet",
                                 "health",   "canary", "model", "kernel\n"};
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out;
  out.reserve(n + 16);
  while (out.size() < n) {
    const char* w = kWords[rng() % 16];
    out.insert(out.end(), w, w + std::char_traits<char>::length(w));
    out.push_back(' ');
  }
  out.resize(n);
  return out;
}

void write_file(const stdfs::path& p, const std::vector<uint8_t>& data) {
  stdfs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

void write_file(const stdfs::path& p, const std::string& data) {
  write_file(p, std::vector<uint8_t>(data.begin(), data.end()));
}

std::vector<uint8_t> read_file(const stdfs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

namespace {
std::map<std::string, stdfs::path> list_tree(const stdfs::path& root) {
  std::map<std::string, stdfs::path> m;
  for (auto it = stdfs::recursive_directory_iterator(root);
       it != stdfs::recursive_directory_iterator(); ++it) {
    m[stdfs::relative(it->path(), root).string()] = it->path();
  }
  return m;
}
}  // namespace

bool trees_equal(const stdfs::path& a, const stdfs::path& b, std::string* why) {
  auto ta = list_tree(a), tb = list_tree(b);
  for (const auto& [rel, pa] : ta) {
    auto itb = tb.find(rel);
    if (itb == tb.end()) return (*why = "missing in second: " + rel), false;
    struct stat sa {
    }, sb{};
    ::lstat(pa.c_str(), &sa);
    ::lstat(itb->second.c_str(), &sb);
    if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT))
      return (*why = "type differs: " + rel), false;
    if (!S_ISLNK(sa.st_mode) && (sa.st_mode & 07777) != (sb.st_mode & 07777))
      return (*why = "mode differs: " + rel), false;
    if (S_ISLNK(sa.st_mode)) {
      if (stdfs::read_symlink(pa) != stdfs::read_symlink(itb->second))
        return (*why = "link target differs: " + rel), false;
    } else if (S_ISREG(sa.st_mode)) {
      if (read_file(pa) != read_file(itb->second)) return (*why = "content differs: " + rel), false;
    }
  }
  for (const auto& [rel, pb] : tb)
    if (!ta.count(rel)) return (*why = "extra in second: " + rel), false;
  return true;
}

RunResult run_mup(const std::vector<std::string>& args, const std::string& env) {
  static int counter = 0;
  ScratchDir tmp;
  std::string cmd = env + " " + MUP_BINARY;
  for (const auto& a : args) {
    std::string q = "'";
    for (char c : a) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
    cmd += " " + q + "'";
  }
  auto out = tmp / ("out" + std::to_string(counter));
  auto err = tmp / ("err" + std::to_string(counter++));
  cmd += " >" + out.string() + " 2>" + err.string() + " </dev/null";
  int st = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  auto o = read_file(out), e = read_file(err);
  r.out.assign(o.begin(), o.end());
  r.err.assign(e.begin(), e.end());
  return r;
}

}  // namespace mup::test
