// mup::Clock: the one clock every module reads, behind a seam so tests never sleep.
//
// Two readings, for two purposes (update_engine's ClockInterface):
//   - wall_ms(): Unix time in milliseconds (UTC). For what is recorded or compared with
//     other machines: journal and audit times, metadata expiry. It can jump (NTP, an
//     operator setting the date).
//   - monotonic(): never goes back and does not jump with the wall clock. For timeouts,
//     durations and "has it been N seconds since".
// Code takes a `const Clock&` (borrowed: it must outlive its users) and the daemon's
// Context owns one; system_clock() is the process-wide real one. FakeClock is for tests.
// Every clock here is thread-safe, FakeClock's setters included.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mup {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t wall_ms() const = 0;
  virtual std::chrono::steady_clock::time_point monotonic() const = 0;

  // Whole Unix seconds (rounded down, also before 1970).
  int64_t wall_s() const;
};

class SystemClock final : public Clock {
 public:
  int64_t wall_ms() const override;
  std::chrono::steady_clock::time_point monotonic() const override;
};

// The real clock, for code that has no Context to take one from. Never destroyed.
const Clock& system_clock();

// "YYYY-MM-DDTHH:MM:SSZ" of Unix milliseconds (UTC): how status, history, audit and
// deployments show times.
std::string iso_utc(int64_t unix_ms);
// Unix milliseconds of an RFC 3339 time: "2026-12-01T21:19:00Z", "...T21:19:00.250+02:00"
// ('T' or 't' or ' ', 'Z' or 'z' or an offset). nullopt for anything else, or a field out of
// range (month 13, minute 60; a leap second 60 is taken as 59.999).
std::optional<int64_t> parse_rfc3339(std::string_view text);

// A clock that moves only when told. advance() moves both readings by the same amount (they
// derive from one counter, so they never drift apart); set_wall_ms() jumps the wall clock
// alone, as an NTP step does, leaving monotonic() where it is.
class FakeClock final : public Clock {
 public:
  static constexpr int64_t kDefaultWallMs = 1'700'000'000'000;  // 2023-11-14T22:13:20Z

  explicit FakeClock(int64_t wall_ms = kDefaultWallMs);

  int64_t wall_ms() const override;
  // Starts at an arbitrary fixed point (not the epoch of steady_clock).
  std::chrono::steady_clock::time_point monotonic() const override;

  // `d` must not be negative: monotonic time does not go back.
  void advance(std::chrono::nanoseconds d);
  void set_wall_ms(int64_t wall_ms);

 private:
  // wall = wall_offset_ns_ + elapsed_ns_ and monotonic = elapsed_ns_, so advance() is one
  // atomic add and set_wall_ms() one store.
  std::atomic<int64_t> elapsed_ns_;
  std::atomic<int64_t> wall_offset_ns_;
};

}  // namespace mup
