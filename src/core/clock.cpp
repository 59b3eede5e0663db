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

std::optional<int64_t> parse_rfc3339(std::string_view t) {
  auto digits = [&](size_t at, size_t n) -> std::optional<int> {
    if (at + n > t.size()) return std::nullopt;
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (t[i] < '0' || t[i] > '9') return std::nullopt;
      v = v * 10 + (t[i] - '0');
    }
    return v;
  };
  auto year = digits(0, 4), mon = digits(5, 2), day = digits(8, 2), hour = digits(11, 2),
       min = digits(14, 2), sec = digits(17, 2);
  if (!year || !mon || !day || !hour || !min || !sec || t.size() < 20 || t[4] != '-' ||
      t[7] != '-' || (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || t[13] != ':' || t[16] != ':')
    return std::nullopt;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (*mon < 1 || *mon > 12 || *day < 1 || *day > kDays[*mon - 1] || *hour > 23 || *min > 59 ||
      *sec > 60)
    return std::nullopt;
  size_t i = 19;
  int64_t frac_ms = 0;
  if (t[i] == '.') {
    size_t n = 0;
    for (++i; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i, ++n)
      if (n < 3) frac_ms = frac_ms * 10 + (t[i] - '0');
    if (n == 0) return std::nullopt;
    for (; n < 3; ++n) frac_ms *= 10;
  }
  int64_t offset_s = 0;
  if (i < t.size() && (t[i] == 'Z' || t[i] == 'z')) {
    ++i;
  } else if (i < t.size() && (t[i] == '+' || t[i] == '-')) {
    auto oh = digits(i + 1, 2), om = digits(i + 4, 2);
    if (!oh || !om || i + 3 >= t.size() || t[i + 3] != ':' || *oh > 23 || *om > 59)
      return std::nullopt;
    offset_s = (t[i] == '+' ? 1 : -1) * (*oh * 3600 + *om * 60);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != t.size()) return std::nullopt;
  struct tm tmv {};
  tmv.tm_year = *year - 1900;
  tmv.tm_mon = *mon - 1;
  tmv.tm_mday = *day;
  tmv.tm_hour = *hour;
  tmv.tm_min = *min;
  tmv.tm_sec = std::min(*sec, 59);
  const time_t base = timegm(&tmv);
  if (tmv.tm_mday != *day) return std::nullopt;  // 29 February of a common year
  if (*sec == 60) frac_ms = 999;
  return (static_cast<int64_t>(base) - offset_s) * 1000 + frac_ms;
}

}  // namespace mup
