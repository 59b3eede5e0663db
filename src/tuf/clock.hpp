// The time TUF compares expiry dates against: mup's one clock (core/clock.hpp), read in
// whole seconds since the Unix epoch (UTC).
//
// tuf::Clock is a mup::Clock with now() in seconds, so a tuf::SystemClock or
// tuf::FakeClock can be handed to any module that takes a mup::Clock, and ClockAdapter
// lets TUF read a mup::Clock it was given (the daemon's). SystemClock reads the real clock
// (so `faketime` works on the conformance entry point); FakeClock is set by tests. All are
// thread-safe, FakeClock's setters included.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/error.hpp"

namespace mup::tuf {

class Clock : public mup::Clock {
 public:
  int64_t now() const { return wall_s(); }
};

class SystemClock final : public Clock {
 public:
  int64_t wall_ms() const override { return mup::system_clock().wall_ms(); }
  std::chrono::steady_clock::time_point monotonic() const override {
    return mup::system_clock().monotonic();
  }
};

// Reads `clock`, which it borrows: it must outlive the adapter.
class ClockAdapter final : public Clock {
 public:
  explicit ClockAdapter(const mup::Clock& clock) : clock_(&clock) {}
  int64_t wall_ms() const override { return clock_->wall_ms(); }
  std::chrono::steady_clock::time_point monotonic() const override { return clock_->monotonic(); }

 private:
  const mup::Clock* clock_;
};

// Seconds in, seconds out; advance() moves the monotonic reading too.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t t = 1'700'000'000) : fake_(t * 1000) {}
  int64_t wall_ms() const override { return fake_.wall_ms(); }
  std::chrono::steady_clock::time_point monotonic() const override { return fake_.monotonic(); }
  void set(int64_t t) { fake_.set_wall_ms(t * 1000); }
  void advance(int64_t seconds) { fake_.advance(std::chrono::seconds(seconds)); }

 private:
  mup::FakeClock fake_;
};

// "YYYY-MM-DDTHH:MM:SSZ" (the form TUF writes; fractional seconds are not accepted).
[[nodiscard]] Result<int64_t> parse_utc_time(std::string_view text);
std::string format_utc_time(int64_t unix_seconds);

}  // namespace mup::tuf
