// Maintenance windows for scheduled deployments: a cron expression (the five classic fields)
// in a fixed time zone offset, and a duration.
//
//   minute hour day-of-month month day-of-week     e.g. "30 2 * * 1-5" (02:30 on weekdays)
// Each field: *, a number, a range a-b, a step */n or a-b/n, or a comma list of those;
// day-of-week 0-7 (0 and 7 are Sunday). As in Vixie cron, when both day fields are
// restricted a day matches if either does. Names (JAN, MON) and @reboot-style macros are
// not accepted. Time zones: "UTC" (or "Z") or a fixed offset "+HH:MM" / "-HH:MM"; named zones
// with daylight saving are not supported (a window defined in one would move twice a year).
// Pure functions, thread-safe.
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mup::deploy {

struct CronExpr {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  std::bitset<32> days;     // 1..31
  std::bitset<13> months;   // 1..12
  std::bitset<8> weekdays;  // 0..6 (7 folded into 0)
  bool days_any = true, weekdays_any = true;
};

// Errc::invalid_argument naming the field and what is wrong.
[[nodiscard]] Result<CronExpr> parse_cron(std::string_view text);
// Minutes east of UTC: "UTC", "Z", "+02:00", "-05:30".
[[nodiscard]] Result<int> parse_tz_offset(std::string_view text);

// The first minute at or after `from_ms` that the expression matches, in Unix ms (searched
// up to 4 years ahead: nullopt when none, e.g. "0 0 31 2 *").
std::optional<int64_t> next_match(const CronExpr& e, int64_t from_ms, int tz_offset_min);

// The window a deployment starts in: `from_ms` itself when it is inside a window (a match at
// most `duration_ms` earlier), else the next match. Both ends in Unix ms.
struct Window {
  int64_t start_ms, end_ms;
};
std::optional<Window> window_at_or_after(const CronExpr& e, int64_t from_ms, int64_t duration_ms,
                                         int tz_offset_min);

}  // namespace mup::deploy
