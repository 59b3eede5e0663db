#include "deploy/schedule.hpp"

#include <charconv>
#include <ctime>
#include <vector>

namespace mup::deploy {

namespace {

Status bad(const std::string& what) {
  return fail(Errc::invalid_argument, "window: " + what);
}

std::optional<int> number(std::string_view s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// One field into `set` (bits lo..hi); `any` when it is a bare "*".
template <size_t N>
Status parse_field(std::string_view text, const char* name, int lo, int hi, std::bitset<N>& set,
                   bool& any) {
  any = text == "*";
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    int step = 1;
    if (auto slash = item.find('/'); slash != std::string_view::npos) {
      auto s = number(item.substr(slash + 1));
      if (!s || *s < 1)
        return bad(std::string(name) + ": step '" + std::string(item.substr(slash + 1)) +
                   "' is not a positive number");
      step = *s;
      item = item.substr(0, slash);
    }
    int a = lo, b = hi;
    if (item != "*") {
      const auto dash = item.find('-');
      auto x = number(item.substr(0, dash));
      auto y = dash == std::string_view::npos ? x : number(item.substr(dash + 1));
      if (!x || !y)
        return bad(std::string(name) + ": '" + std::string(item) + "' is not a number or range");
      a = *x;
      b = dash == std::string_view::npos && step > 1 ? hi : *y;
    }
    if (a < lo || b > hi || a > b)
      return bad(std::string(name) + ": '" + std::string(text) + "' is outside " +
                 std::to_string(lo) + "-" + std::to_string(hi));
    for (int v = a; v <= b; v += step) set.set(static_cast<size_t>(v));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return {};
}

}  // namespace

Result<CronExpr> parse_cron(std::string_view text) {
  std::vector<std::string_view> f;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    size_t j = i;
    while (j < text.size() && text[j] != ' ') ++j;
    if (j > i) f.push_back(text.substr(i, j - i));
    i = j;
  }
  if (f.size() != 5)
    return tl::unexpected(
        bad("'" + std::string(text) +
            "' needs five fields: minute hour day-of-month month day-of-week (e.g. \"30 2 * * "
            "1-5\")")
            .error());
  CronExpr e;
  bool unused = false;
  std::bitset<8> dow;
  MUP_TRY(parse_field(f[0], "minute", 0, 59, e.minutes, unused));
  MUP_TRY(parse_field(f[1], "hour", 0, 23, e.hours, unused));
  MUP_TRY(parse_field(f[2], "day-of-month", 1, 31, e.days, e.days_any));
  MUP_TRY(parse_field(f[3], "month", 1, 12, e.months, unused));
  MUP_TRY(parse_field(f[4], "day-of-week", 0, 7, dow, e.weekdays_any));
  for (size_t d = 0; d < 7; ++d) e.weekdays[d] = dow[d];
  if (dow[7]) e.weekdays.set(0);
  return e;
}

Result<int> parse_tz_offset(std::string_view t) {
  if (t == "UTC" || t == "Z" || t == "utc") return 0;
  if (t.size() == 6 && (t[0] == '+' || t[0] == '-') && t[3] == ':') {
    auto h = number(t.substr(1, 2)), m = number(t.substr(4, 2));
    if (h && m && *h <= 23 && *m <= 59) return (t[0] == '+' ? 1 : -1) * (*h * 60 + *m);
  }
  return fail(Errc::invalid_argument,
              "time zone '" + std::string(t) +
                  "': use UTC or a fixed offset like +02:00 (named zones are not supported)");
}

std::optional<int64_t> next_match(const CronExpr& e, int64_t from_ms, int tz_offset_min) {
  // Work in local minutes; round up to the next whole minute.
  const int64_t offset_ms = int64_t{tz_offset_min} * 60000;
  int64_t local_min = (from_ms + offset_ms + 59999) / 60000;
  if (from_ms + offset_ms < 0) local_min = (from_ms + offset_ms) / 60000;
  const int64_t limit = local_min + int64_t{4} * 366 * 1440;
  while (local_min < limit) {
    const time_t t = static_cast<time_t>(local_min * 60);
    struct tm tmv {};
    gmtime_r(&t, &tmv);
    const bool dom = e.days[static_cast<size_t>(tmv.tm_mday)];
    const bool dow = e.weekdays[static_cast<size_t>(tmv.tm_wday)];
    const bool day_ok = e.days_any && e.weekdays_any ? true
                        : e.days_any                 ? dow
                        : e.weekdays_any             ? dom
                                                     : dom || dow;
    if (!e.months[static_cast<size_t>(tmv.tm_mon + 1)] || !day_ok) {
      local_min += 1440 - (tmv.tm_hour * 60 + tmv.tm_min);  // next day
      continue;
    }
    if (!e.hours[static_cast<size_t>(tmv.tm_hour)]) {
      local_min += 60 - tmv.tm_min;  // next hour
      continue;
    }
    if (!e.minutes[static_cast<size_t>(tmv.tm_min)]) {
      ++local_min;
      continue;
    }
    return local_min * 60000 - offset_ms;
  }
  return std::nullopt;
}

std::optional<Window> window_at_or_after(const CronExpr& e, int64_t from_ms, int64_t duration_ms,
                                         int tz_offset_min) {
  // The matches since duration_ms ago, oldest first: the first still open, else the next one.
  int64_t t = from_ms - std::max<int64_t>(0, duration_ms - 1);
  for (int i = 0; i < 1 << 20; ++i) {
    auto m = next_match(e, t, tz_offset_min);
    if (!m) return std::nullopt;
    if (*m > from_ms || *m + duration_ms > from_ms) return Window{*m, *m + duration_ms};
    t = *m + 1;
  }
  return std::nullopt;
}

}  // namespace mup::deploy
