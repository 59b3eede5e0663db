// Progress: a one-line progress report on stderr for long work (bytes, rate, ETA).
//
// On a terminal it redraws one line at most ten times a second; elsewhere it prints
// nothing until finish(), which prints one summary line, so logs stay readable. Work
// abandoned on an error (no finish()) prints no summary.
// add() is thread-safe (atomic); the other calls are for the owning thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace mup {

class Progress {
 public:
  Progress(std::string label, uint64_t total_bytes, bool enabled);
  ~Progress();
  void add(uint64_t bytes);
  void finish();

 private:
  void draw(bool final_line);
  std::string label_;
  uint64_t total_;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  std::atomic<uint64_t> done_{0};
  std::atomic<int64_t> last_draw_ns_{0};
  std::mutex draw_mu_;
  std::chrono::steady_clock::time_point start_;
};

// "12.3 MB" style, SI units.
std::string human_bytes(uint64_t n);

}  // namespace mup
