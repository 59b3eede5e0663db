#include "deploy/schedule.hpp"

#include <gtest/gtest.h>

#include "core/clock.hpp"

namespace mup::deploy {
namespace {

int64_t at(const char* rfc3339) {
  return *parse_rfc3339(rfc3339);
}

TEST(Cron, NextMatchOfCommonExpressions) {
  auto e = parse_cron("30 2 * * 1-5");
  ASSERT_TRUE(e) << e.error().message();
  // 2026-12-05 is a Saturday: the next weekday 02:30 is Monday the 7th.
  EXPECT_EQ(next_match(*e, at("2026-12-05T00:00:00Z"), 0), at("2026-12-07T02:30:00Z"));
  EXPECT_EQ(next_match(*e, at("2026-12-07T02:30:00Z"), 0), at("2026-12-07T02:30:00Z"));
  EXPECT_EQ(next_match(*e, at("2026-12-07T02:30:00.001Z"), 0), at("2026-12-08T02:30:00Z"));
  // In +02:00, 02:30 local is 00:30 UTC.
  EXPECT_EQ(next_match(*e, at("2026-12-07T00:00:00Z"), 120), at("2026-12-07T00:30:00Z"));
  auto every = parse_cron("*/15 * * * *");
  ASSERT_TRUE(every);
  EXPECT_EQ(next_match(*every, at("2026-12-01T21:16:00Z"), 0), at("2026-12-01T21:30:00Z"));
  auto dom_or_dow = parse_cron("0 0 1 * 0");  // the 1st, or a Sunday
  ASSERT_TRUE(dom_or_dow);
  EXPECT_EQ(next_match(*dom_or_dow, at("2026-12-02T00:00:00Z"), 0), at("2026-12-06T00:00:00Z"));
  auto never = parse_cron("0 0 31 2 *");
  ASSERT_TRUE(never);
  EXPECT_FALSE(next_match(*never, at("2026-12-01T00:00:00Z"), 0));
}

TEST(Cron, WindowIsTheOpenOneOrTheNext) {
  auto e = parse_cron("0 2 * * *");
  ASSERT_TRUE(e);
  const int64_t hour = 3600000;
  auto open = window_at_or_after(*e, at("2026-12-02T02:40:00Z"), hour, 0);
  ASSERT_TRUE(open);
  EXPECT_EQ(open->start_ms, at("2026-12-02T02:00:00Z"));
  EXPECT_EQ(open->end_ms, at("2026-12-02T03:00:00Z"));
  auto next = window_at_or_after(*e, at("2026-12-02T03:00:00Z"), hour, 0);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->start_ms, at("2026-12-03T02:00:00Z"));
}

TEST(Cron, BadExpressionsNameTheField) {
  for (auto [text, field] :
       std::vector<std::pair<const char*, const char*>>{{"61 * * * *", "minute"},
                                                        {"* 24 * * *", "hour"},
                                                        {"* * 0 * *", "day-of-month"},
                                                        {"* * * 13 *", "month"},
                                                        {"* * * * 8", "day-of-week"},
                                                        {"* * * *", "five fields"},
                                                        {"*/0 * * * *", "step"},
                                                        {"a * * * *", "minute"}}) {
    auto e = parse_cron(text);
    ASSERT_FALSE(e) << text;
    EXPECT_NE(e.error().message().find(field), std::string::npos) << e.error().message();
  }
  EXPECT_EQ(*parse_tz_offset("+02:00"), 120);
  EXPECT_EQ(*parse_tz_offset("-05:30"), -330);
  EXPECT_EQ(*parse_tz_offset("UTC"), 0);
  EXPECT_FALSE(parse_tz_offset("Europe/Paris"));
}

}  // namespace
}  // namespace mup::deploy
