#include "core/clock.hpp"

#include <ctime>

namespace mup {

namespace {

using std::chrono::nanoseconds;

constexpr int64_t kNsPerMs = 1'000'000;
// Where a FakeClock's monotonic time starts: one day in, so that no test mistakes it for
// a default-constructed time_point.
constexpr int64_t kFakeMonotonicStartNs = 86'400LL * 1'000'000'000;

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

}  // namespace

int64_t Clock::wall_s() const {
  return floor_div(wall_ms(), 1000);
}

int64_t SystemClock::wall_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::chrono::steady_clock::time_point SystemClock::monotonic() const {
  return std::chrono::steady_clock::now();
}

const Clock& system_clock() {
  static const SystemClock* const clock = new SystemClock();  // outlives static destructors
  return *clock;
}

FakeClock::FakeClock(int64_t wall_ms)
    : elapsed_ns_(kFakeMonotonicStartNs),
      wall_offset_ns_(wall_ms * kNsPerMs - kFakeMonotonicStartNs) {}

int64_t FakeClock::wall_ms() const {
  // One load of each; a concurrent set_wall_ms() is seen before or after, never torn.
  const int64_t offset = wall_offset_ns_.load(std::memory_order_acquire);
  return floor_div(offset + elapsed_ns_.load(std::memory_order_acquire), kNsPerMs);
}

std::chrono::steady_clock::time_point FakeClock::monotonic() const {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          nanoseconds(elapsed_ns_.load(std::memory_order_acquire))));
}

void FakeClock::advance(std::chrono::nanoseconds d) {
  elapsed_ns_.fetch_add(d.count(), std::memory_order_acq_rel);
}

void FakeClock::set_wall_ms(int64_t wall_ms) {
  wall_offset_ns_.store(wall_ms * kNsPerMs - elapsed_ns_.load(std::memory_order_acquire),
                        std::memory_order_release);
}

std::string iso_utc(int64_t ms) {
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tmv {};
  gmtime_r(&t, &tmv);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  return buf;
}

}  // namespace mup
