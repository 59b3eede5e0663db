// The time TUF compares expiry dates against, behind a seam so tests never sleep.
//
// Times are whole seconds since the Unix epoch (UTC). SystemClock reads the real clock
// (so `faketime` works on the conformance entry point); FakeClock is set by tests.
// Clocks are thread-safe to read; FakeClock::set is not synchronised.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mup::tuf {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t now() const = 0;
};

class SystemClock : public Clock {
 public:
  int64_t now() const override;
};

class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t t = 1'700'000'000) : t_(t) {}
  int64_t now() const override { return t_; }
  void set(int64_t t) { t_ = t; }
  void advance(int64_t seconds) { t_ += seconds; }

 private:
  int64_t t_;
};

// "YYYY-MM-DDTHH:MM:SSZ" (the form TUF writes; fractional seconds are not accepted).
[[nodiscard]] Result<int64_t> parse_utc_time(std::string_view text);
std::string format_utc_time(int64_t unix_seconds);

}  // namespace mup::tuf
