// What the judge and the scheduler read from outside: a version's [rollback] table and the API's
// policy overrides (policy_from_json), a journaled judge state and baseline (Judge::restore,
// counts_from_json), a maintenance window's cron expression and time zone, an RFC 3339 time.
// Any bytes either fail cleanly or give a value that serialises back to itself; nothing may
// throw or crash.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "deploy/schedule.hpp"
#include "rollback/judge.hpp"
#include "traffic/stats.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)mup::parse_rfc3339(text);
  if (auto cron = mup::deploy::parse_cron(text)) {
    (void)mup::deploy::next_match(*cron, 1'796'159'940'000, 0);
    (void)mup::deploy::window_at_or_after(*cron, 1'796'159'940'000, 3'600'000, 60);
  }
  (void)mup::deploy::parse_tz_offset(text);
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto p = mup::rollback::policy_from_json(j);
  if (p) {
    auto again = mup::rollback::policy_from_json(p->to_json());
    if (!again || again->to_json() != p->to_json()) std::abort();
  }
  auto counts = mup::rollback::counts_from_json(j);
  (void)mup::rollback::counts_from_stats(j);
  mup::rollback::Judge judge = mup::rollback::Judge::restore(
      p ? *p : mup::rollback::Policy{}, counts ? std::optional(*counts) : std::nullopt, j);
  mup::rollback::Counts batch{100, 3, std::vector<uint64_t>(mup::traffic::kLatencyBounds + 1, 2)};
  judge.observe(1000, batch, &batch);
  judge.observe(2000, batch, nullptr);
  (void)judge.summary(3000, "pass").to_json().dump();
  (void)judge.state_json().dump();
  return 0;
}
