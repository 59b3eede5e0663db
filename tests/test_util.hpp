// Helpers shared by the tests: scratch directories, deterministic data, running `mup`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mup::test {

namespace stdfs = std::filesystem;

// A fresh directory under the system temp dir, removed at destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const stdfs::path& path() const { return path_; }
  stdfs::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  stdfs::path path_;
};

// Deterministic pseudo-random bytes (xorshift), for reproducible test trees.
std::vector<uint8_t> random_bytes(size_t n, uint64_t seed);
// Text-like bytes that compress (words from a small vocabulary).
std::vector<uint8_t> text_bytes(size_t n, uint64_t seed);

void write_file(const stdfs::path& p, const std::vector<uint8_t>& data);
void write_file(const stdfs::path& p, const std::string& data);
std::vector<uint8_t> read_file(const stdfs::path& p);

// True when both trees hold the same entries (type, mode bits, content, link targets).
// On difference, `why` says the first one found.
bool trees_equal(const stdfs::path& a, const stdfs::path& b, std::string* why);

struct RunResult {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the built `mup` binary with `args` (shell-quoted), capturing stdout and stderr.
RunResult run_mup(const std::vector<std::string>& args, const std::string& env = "");

}  // namespace mup::test
