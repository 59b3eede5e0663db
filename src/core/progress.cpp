#include "core/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace mup {

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

Progress::Progress(std::string label, uint64_t total_bytes, bool enabled)
    : label_(std::move(label)),
      total_(total_bytes),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() = default;  // no summary for work that did not finish

void Progress::add(uint64_t bytes) {
  uint64_t done = done_ += bytes;
  (void)done;
  if (!enabled_ || !tty_) return;
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::steady_clock::now() - start_)
                    .count();
  int64_t last = last_draw_ns_.load(std::memory_order_relaxed);
  if (now - last < 100'000'000) return;
  if (!last_draw_ns_.compare_exchange_strong(last, now)) return;
  std::lock_guard lock(draw_mu_);
  draw(false);
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  std::lock_guard lock(draw_mu_);
  draw(true);
}

void Progress::draw(bool final_line) {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  uint64_t done = done_.load();
  double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  std::string line = label_ + ": " + human_bytes(done);
  if (total_ > 0) {
    line += " / " + human_bytes(total_);
    char pct[16];
    std::snprintf(pct, sizeof pct, " (%3.0f%%)",
                  100.0 * static_cast<double>(done) / static_cast<double>(total_));
    line += pct;
  }
  line += ", " + human_bytes(static_cast<uint64_t>(rate)) + "/s";
  if (!final_line && total_ > done && rate > 0) {
    char eta[32];
    std::snprintf(eta, sizeof eta, ", ETA %.0fs", static_cast<double>(total_ - done) / rate);
    line += eta;
  }
  if (final_line) {
    char el[32];
    std::snprintf(el, sizeof el, ", %.2fs", secs);
    line += el;
  }
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  } else if (final_line) {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace mup
