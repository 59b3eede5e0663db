// The judge on synthetic streams with fixed seeds: false alarms over many A/A runs stay
// under the configured alpha, bad versions are caught within the stated number of batches,
// and the edge cases (no data, exact thresholds, restarts) behave.
#include "rollback/judge.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "rollback/sequential.hpp"
#include "traffic/stats.hpp"

namespace mup::rollback {
namespace {

using Rng = std::mt19937_64;

uint64_t binomial(Rng& rng, uint64_t n, double p) {
  return std::binomial_distribution<uint64_t>(n, p)(rng);
}

// A batch of `n` requests with failure rate p and lognormal latencies of median `median_ms`.
Counts batch(Rng& rng, uint64_t n, double p, double median_ms) {
  Counts c;
  c.requests = n;
  c.failed = binomial(rng, n, p);
  c.latency.assign(traffic::kLatencyBounds + 1, 0);
  std::lognormal_distribution<double> lat(std::log(median_ms * 1000), 0.5);
  for (uint64_t i = 0; i < n; ++i)
    ++c.latency[traffic::latency_bucket(static_cast<uint64_t>(lat(rng)))];
  return c;
}

Counts baseline(Rng& rng, uint64_t n, double p, double median_ms) {
  return batch(rng, n, p, median_ms);
}

Policy errors_only(double alpha) {
  Policy p;
  p.alpha = alpha;
  p.triggers = {{Metric::error_rate}};
  return p;
}

TEST(RateUpperBound, CoversTheTrueRateAtItsLevel) {
  Rng rng(1);
  const double alpha = 0.05, p = 0.01;
  int misses = 0;
  const int runs = 4000;
  for (int i = 0; i < runs; ++i) {
    const uint64_t n = 2000, x = binomial(rng, n, p);
    const double u = rate_upper_bound(x, n, alpha);
    EXPECT_GE(u, static_cast<double>(x) / n);
    if (u < p) ++misses;
  }
  EXPECT_LE(misses, runs * alpha);
  EXPECT_EQ(rate_upper_bound(0, 0, 0.01), 1.0);
  EXPECT_LT(rate_upper_bound(0, 10000, 0.001), 0.001);
  EXPECT_GT(rate_upper_bound(10, 1000, 0.001), rate_upper_bound(10, 1000, 0.1));
}

// A/A: the same rate on both sides, watched for a long time, batch sizes changing with the
// weights (5% .. 50% of 200 requests/s): the false-alarm count stays under alpha * runs.
TEST(TwoSampleTest, FalseAlarmsStayUnderAlphaHoweverLongItRuns) {
  Rng rng(2);
  const double alpha = 0.01;
  const int runs = 2000;
  int alarms = 0;
  for (int r = 0; r < runs; ++r) {
    TwoSampleTest t;
    for (int b = 0; b < 240; ++b) {  // 60 s of 250 ms batches
      const uint64_t total = 50, n1 = b < 80 ? 3 : b < 160 ? 12 : 25;
      t.observe(n1, binomial(rng, n1, 0.01), total - n1, binomial(rng, total - n1, 0.01));
      if (t.log_e_value() >= std::log(1 / alpha)) {
        ++alarms;
        break;
      }
    }
  }
  EXPECT_LE(alarms, runs * alpha) << alarms << " false alarms in " << runs;
}

TEST(TwoSampleTest, ABetterNewVersionNeverAlarms) {
  Rng rng(3);
  for (int r = 0; r < 200; ++r) {
    TwoSampleTest t;
    for (int b = 0; b < 240; ++b)
      t.observe(25, binomial(rng, 25, 0.005), 25, binomial(rng, 25, 0.02));
    EXPECT_LT(t.log_e_value(), std::log(1000.0));
  }
}

TEST(TwoSampleTest, SixPercentAgainstOnePercentIsCaughtWithinSeconds) {
  Rng rng(4);
  std::vector<int> batches;
  for (int r = 0; r < 200; ++r) {
    TwoSampleTest t;
    int b = 0;
    for (; b < 400; ++b) {
      t.observe(25, binomial(rng, 25, 0.06), 25, binomial(rng, 25, 0.01));
      if (t.log_e_value() >= std::log(1000.0)) break;
    }
    batches.push_back(b + 1);
  }
  std::sort(batches.begin(), batches.end());
  // Half the traffic each at 200 requests/s, alpha 0.001: p95 under 8 s (32 batches).
  EXPECT_LE(batches[batches.size() * 95 / 100], 32);
}

TEST(BaselineTest, FalseAlarmsStayUnderAlphaWithAnEstimatedBaseline) {
  Rng rng(5);
  const double alpha = 0.01;
  const int runs = 2000;
  int alarms = 0;
  for (int r = 0; r < runs; ++r) {
    // Baseline: 60 s at 200 requests/s of the same 1% failure rate.
    Judge j(errors_only(alpha), baseline(rng, 12000, 0.01, 10));
    for (int b = 0; b < 480 && !j.rollback(); ++b)
      j.observe(b * 250, batch(rng, 50, 0.01, 10), nullptr);
    if (j.rollback()) ++alarms;
  }
  EXPECT_LE(alarms, runs * alpha) << alarms << " false alarms in " << runs;
}

// Detection against the baseline, in batches of 250 ms at 200 requests/s after an immediate
// switch, a 10-minute baseline (120,000 requests, 1% failed, median 10 ms), the default
// policy (error rate and p50, alpha 0.001 in all). The bars are 2 s for 6% (8
// batches), 15 s for 2% and 10 s for p50 +50%. 2% is out of reach at alpha 0.001: even the
// SPRT that knows the old rate exactly needs ~23 s at p95 (mean drift 0.78 nats/s, sd 1.37,
// threshold ln 1000); this test pins what the judge does so a change that slows it shows.
int p95_batches_to_rollback(uint64_t seed, double p_new, double median_new, Policy policy) {
  Rng rng(seed);
  std::vector<int> batches;
  for (int r = 0; r < 200; ++r) {
    Judge j(policy, baseline(rng, 120000, 0.01, 10));
    int b = 0;
    for (; b < 1000 && !j.rollback(); ++b)
      j.observe(b * 250, batch(rng, 50, p_new, median_new), nullptr);
    batches.push_back(b);
  }
  std::sort(batches.begin(), batches.end());
  std::printf("p_new %.3f median %.0f ms: batches to rollback median %d p95 %d\n", p_new,
              median_new, batches[batches.size() / 2], batches[batches.size() * 95 / 100]);
  return batches[batches.size() * 95 / 100];
}

TEST(Judge, DetectionAgainstTheBaseline) {
  Policy all;
  EXPECT_LE(p95_batches_to_rollback(6, 0.06, 10, all), 8);    // 2 s
  EXPECT_LE(p95_batches_to_rollback(7, 0.02, 10, all), 160);  // 40 s
  EXPECT_LE(p95_batches_to_rollback(8, 0.01, 15, all), 16);   // 4 s
}

// Seen on loopback: a freshly started version answering in 0.14 ms against a baseline of
// 0.1 ms is "significantly" slower, and no reason to roll back.
TEST(Judge, ASubMillisecondSlowdownNeverRollsBack) {
  Rng rng(16);
  for (int r = 0; r < 50; ++r) {
    Judge j(Policy{}, baseline(rng, 40000, 0, 0.1));
    for (int b = 0; b < 120; ++b) j.observe(b * 250, batch(rng, 50, 0, 0.14), nullptr);
    EXPECT_FALSE(j.rollback()) << j.rollback()->reason;
  }
}

TEST(Judge, DecisionCarriesTheCountsAndStatistic) {
  Rng rng(9);
  Judge j(errors_only(0.001), std::nullopt);
  for (int b = 0; b < 200 && !j.rollback(); ++b) {
    Counts old = batch(rng, 25, 0.01, 10);
    j.observe(1000 + b * 250, batch(rng, 25, 0.2, 10), &old);
  }
  ASSERT_TRUE(j.rollback());
  const auto d = j.rollback()->to_json();
  EXPECT_EQ(d["verdict"], "rollback");
  EXPECT_EQ(d["algorithm"], "sequential");
  EXPECT_EQ(d["metric"], "error_rate");
  EXPECT_EQ(d["against"], "old");
  EXPECT_GE(d["statistic"].get<double>(), d["threshold"].get<double>());
  EXPECT_NEAR(d["threshold"].get<double>(), std::log(1000.0), 1e-9);
  EXPECT_GT(d["new"]["requests"].get<uint64_t>(), 0u);
  EXPECT_GT(d["new"]["errors"].get<uint64_t>(), 0u);
  EXPECT_EQ(d["new"]["requests"], d["old"]["requests"]);
  EXPECT_TRUE(d.contains("decided_at"));
}

TEST(Judge, NoTrafficNeverPasses) {
  Judge j(Policy{}, std::nullopt);
  for (int b = 0; b < 100; ++b) j.observe(b * 250, Counts{}, nullptr);
  EXPECT_FALSE(j.enough_data());
  EXPECT_FALSE(j.rollback());
  EXPECT_EQ(j.summary(25000, "no-data").verdict, "no-data");
  EXPECT_NE(j.summary(25000, "no-data").reason.find("0 requests"), std::string::npos);
}

TEST(Judge, NoBaselineAndNoOldSideLeavesOnlyThresholds) {
  Rng rng(10);
  Judge j(errors_only(0.001), std::nullopt);
  for (int b = 0; b < 100; ++b) j.observe(b * 250, batch(rng, 50, 0.5, 10), nullptr);
  EXPECT_FALSE(j.rollback());  // nothing to compare with
  EXPECT_TRUE(j.enough_data());
  EXPECT_NE(j.summary(0, "pass").reason.find("no baseline"), std::string::npos);
}

TEST(Judge, ThresholdFiresAboveTheLimitNotAtIt) {
  Policy p;
  p.triggers = {{Metric::error_rate, Algorithm::threshold, 0.05, 1000}};
  Judge at(p, std::nullopt);
  Counts c;
  c.requests = 100;
  c.failed = 5;  // exactly 5%
  for (int t = 0; t <= 3000; t += 1000) at.observe(t, c, nullptr);
  EXPECT_FALSE(at.rollback());
  Judge over(p, std::nullopt);
  c.failed = 6;
  for (int t = 0; t <= 3000 && !over.rollback(); t += 1000) over.observe(t, c, nullptr);
  ASSERT_TRUE(over.rollback());
  EXPECT_EQ(over.rollback()->algorithm, Algorithm::threshold);
  EXPECT_NEAR(over.rollback()->statistic, 0.06, 1e-9);
}

TEST(Judge, ThresholdNeedsAFullWindowWithEnoughRequests) {
  Policy p;
  p.min_requests = 1;
  p.triggers = {{Metric::error_rate, Algorithm::threshold, 0.05, 1000}};
  Judge j(p, std::nullopt);
  Counts few;
  few.requests = kMinWindowRequests - 1;
  few.failed = few.requests;  // all failed, but too few to judge
  j.observe(0, few, nullptr);
  j.observe(1000, Counts{}, nullptr);
  EXPECT_FALSE(j.rollback());
  EXPECT_FALSE(j.enough_data());
}

TEST(Judge, LatencyThresholdOnP99) {
  Rng rng(11);
  Policy p;
  p.triggers = {{Metric::latency_p99, Algorithm::threshold, 50, 1000}};
  Judge j(p, std::nullopt);
  for (int t = 0; t <= 2000 && !j.rollback(); t += 250)
    j.observe(t, batch(rng, 50, 0, 100), nullptr);
  ASSERT_TRUE(j.rollback());
  EXPECT_GT(j.rollback()->statistic, 50);
}

TEST(Judge, WarningTriggersAreRecordedAndNeverRollBack) {
  Policy p;
  p.triggers = {{Metric::error_rate, Algorithm::threshold, 0.01, 1000, Severity::warning}};
  Judge j(p, std::nullopt);
  Counts c;
  c.requests = 100;
  c.failed = 50;
  for (int t = 0; t <= 5000; t += 1000) j.observe(t, c, nullptr);
  EXPECT_FALSE(j.rollback());
  ASSERT_EQ(j.warnings().size(), 1u);
  EXPECT_EQ(j.warnings()[0].verdict, "warning");
}

TEST(Judge, LatencyTwoSampleCatchesASlowerNewVersionAndNotAnEqualOne) {
  Rng rng(12);
  int caught = 0, false_alarms = 0;
  for (int r = 0; r < 100; ++r) {
    Policy p;
    p.triggers = {{Metric::latency_p50}};
    Judge slow(p, std::nullopt), same(p, std::nullopt);
    for (int b = 0; b < 80; ++b) {
      Counts o1 = batch(rng, 25, 0, 10), o2 = batch(rng, 25, 0, 10);
      slow.observe(b * 250, batch(rng, 25, 0, 15), &o1);
      same.observe(b * 250, batch(rng, 25, 0, 10), &o2);
    }
    caught += slow.rollback() ? 1 : 0;
    false_alarms += same.rollback() ? 1 : 0;
  }
  EXPECT_GE(caught, 95);
  EXPECT_LE(false_alarms, 1);
}

// Beside the old version, a slower node (load from elsewhere) slows both sides: the
// latency test compares them on the same traffic, not the new one with a baseline recorded
// when the node was idle. A new version slower than the old one at the same time is caught.
TEST(Judge, LatencyBesideTheOldVersionIgnoresALoadChangeThatSlowsBoth) {
  Rng rng(21);
  int caught = 0, false_alarms = 0, alone_alarms = 0;
  const int runs = 200;
  for (int r = 0; r < runs; ++r) {
    Policy p;
    p.triggers = {{Metric::latency_p50}};
    const Counts base = baseline(rng, 5000, 0, 5);  // recorded at 5 ms
    Judge slow(p, base), same(p, base), alone(p, base);
    for (int b = 0; b < 80; ++b) {
      // The node is now twice as slow for everyone: 10 ms.
      Counts o1 = batch(rng, 25, 0, 10), o2 = batch(rng, 25, 0, 10);
      slow.observe(b * 250, batch(rng, 25, 0, 16), &o1);
      same.observe(b * 250, batch(rng, 25, 0, 10), &o2);
      alone.observe(b * 250, batch(rng, 25, 0, 10), nullptr);
    }
    caught += slow.rollback() ? 1 : 0;
    false_alarms += same.rollback() ? 1 : 0;
    alone_alarms += alone.rollback() ? 1 : 0;
  }
  EXPECT_GE(caught, runs * 95 / 100);
  EXPECT_LE(false_alarms, 1) << "alpha 0.001 over " << runs << " runs";
  // Without the old version beside it, the same load change reads as a regression: what the
  // header says of a baseline (the test shows the difference is the concurrent reference).
  EXPECT_GE(alone_alarms, runs * 95 / 100);
}

// The tolerance holds beside the old version too: a new version 0.5 ms slower than the old
// one (tolerance 1 ms) is not rolled back; one 3 ms slower is.
TEST(Judge, LatencyToleranceHoldsBesideTheOldVersion) {
  Rng rng(22);
  int within = 0, beyond = 0;
  const int runs = 200;
  for (int r = 0; r < runs; ++r) {
    Policy p;
    p.triggers = {{Metric::latency_p50}};
    p.latency_tolerance_ms = 1;
    Judge a(p, std::nullopt), b(p, std::nullopt);
    for (int k = 0; k < 80; ++k) {
      Counts o1 = batch(rng, 25, 0, 2), o2 = batch(rng, 25, 0, 2);
      a.observe(k * 250, batch(rng, 25, 0, 2.5), &o1);
      b.observe(k * 250, batch(rng, 25, 0, 5), &o2);
    }
    within += a.rollback() ? 1 : 0;
    beyond += b.rollback() ? 1 : 0;
  }
  EXPECT_LE(within, 1);
  EXPECT_GE(beyond, runs * 95 / 100);
  // The decision names both bounds and both sides' slow counts.
  Policy p;
  p.triggers = {{Metric::latency_p50}};
  Judge j(p, std::nullopt);
  for (int k = 0; k < 80 && !j.rollback(); ++k) {
    Counts o = batch(rng, 25, 0, 2);
    j.observe(k * 250, batch(rng, 25, 0, 8), &o);
  }
  ASSERT_TRUE(j.rollback());
  const auto d = j.rollback()->to_json();
  EXPECT_EQ(d["against"], "old");
  EXPECT_GE(d["statistic"].get<double>(), d["threshold"].get<double>());
  EXPECT_GE(d["statistic_beside"].get<double>(), d["threshold"].get<double>());
  EXPECT_GT(d["new"]["slow"].get<uint64_t>(), d["old"]["slow"].get<uint64_t>());
  EXPECT_NE(d["reason"].get<std::string>().find("and than the old one on the same traffic"),
            std::string::npos);
  // Both statistics and what each had crossed survive a restart.
  Judge half(p, std::nullopt);
  for (int k = 0; k < 10; ++k) {
    Counts o = batch(rng, 25, 0, 2);
    half.observe(k * 250, batch(rng, 25, 0, 2.2), &o);
  }
  ASSERT_FALSE(half.rollback());
  ASSERT_TRUE(half.state_json()["checks"][0].contains("beside"));
  Judge back = Judge::restore(p, std::nullopt, half.state_json());
  EXPECT_EQ(back.state_json(), half.state_json());
}

TEST(Judge, RestoredJudgeContinuesFromTheSavedStatistic) {
  Rng rng(13);
  Counts base = baseline(rng, 60000, 0.01, 10);
  Judge a(Policy{}, base);
  for (int b = 0; b < 10; ++b) a.observe(b * 250, batch(rng, 50, 0.015, 10), nullptr);
  Judge r = Judge::restore(Policy{}, base, a.state_json());
  EXPECT_EQ(r.state_json(), a.state_json());
  EXPECT_EQ(r.new_requests(), a.new_requests());
  // Garbage state: a fresh judge, never a crash.
  Judge g = Judge::restore(Policy{}, base, nlohmann::json{{"checks", 3}});
  EXPECT_EQ(g.new_requests(), 0u);
}

TEST(Policy, ParsesOverridesAndNamesBadFields) {
  auto p = policy_from_json(
      {{"alpha", 0.01},
       {"automatic", false},
       {"triggers",
        {{{"metric", "latency_p99"}, {"algorithm", "threshold"}, {"threshold", 250}}}}});
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->alpha, 0.01);
  EXPECT_FALSE(p->automatic);
  ASSERT_EQ(p->triggers.size(), 1u);
  EXPECT_EQ(p->triggers[0].metric, Metric::latency_p99);
  auto again = policy_from_json(p->to_json());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->to_json(), p->to_json());

  auto bad = policy_from_json({{"alpha", 0.7}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("alpha"), std::string::npos);
  bad = policy_from_json({{"triggers", {{{"metric", "cpu"}}}}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("triggers[0].metric"), std::string::npos);
  bad = policy_from_json({{"triggers", {{{"algorithm", "threshold"}}}}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("threshold"), std::string::npos);
  bad = policy_from_json({{"speed", 1}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("speed: unknown key"), std::string::npos);
}

TEST(Cusum, FalseAlarmsOverTheWatchWindowStayUnderAlpha) {
  Rng rng(14);
  const double alpha = 0.01;
  const int runs = 1000, batches = 600;
  int alarms = 0;
  for (int r = 0; r < runs; ++r) {
    Cusum c(rate_upper_bound(600, 60000, alpha / 10), batches, alpha);
    for (int b = 0; b < batches && !c.alarmed(); ++b) c.observe(200, binomial(rng, 200, 0.01));
    alarms += c.alarmed() ? 1 : 0;
  }
  EXPECT_LE(alarms, runs * alpha);
}

TEST(Cusum, ARegressionAfterALongHealthyStretchIsCaughtQuickly) {
  Rng rng(15);
  Cusum c(rate_upper_bound(600, 60000, 0.0001), 600, 0.001);
  for (int b = 0; b < 500; ++b) ASSERT_FALSE(c.observe(200, binomial(rng, 200, 0.01)));
  int b = 0;
  while (!c.observe(200, binomial(rng, 200, 0.05)) && b < 100) ++b;
  EXPECT_TRUE(c.alarmed());
  EXPECT_LE(b, 10);  // seconds at 200 requests/s
}

TEST(Counts, SinceHandlesACounterReset) {
  Counts a{100, 5, {}}, b{40, 1, {}};
  EXPECT_EQ(b.since(a).requests, 40u);
  Counts c{150, 7, {}};
  EXPECT_EQ(c.since(a).requests, 50u);
  EXPECT_EQ(c.since(a).failed, 2u);
}

}  // namespace
}  // namespace mup::rollback
