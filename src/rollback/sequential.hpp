// Anytime-valid sequential tests on counts: the statistics under the rollback judge.
//
// Each test is a nonnegative (super)martingale under its null hypothesis "the new version
// is no worse": a mixture of likelihood ratios over a grid of alternatives, started at 1.
// By Ville's inequality, P(the statistic EVER reaches 1/alpha | null) <= alpha, however
// long the test runs and however often it is looked at (no peeking problem). The judge
// rejects (rolls back) when log_e_value() >= ln(1/alpha).
//
//   TwoSampleTest: the new and the old version on the same traffic at once (canary,
//     blue-green's warm set). Per batch the counts (n_new, x_new) and (n_old, x_old) of
//     "bad" requests (failed, or slower than a bound). Conditioned on the batch's total
//     x = x_new + x_old, x_new is hypergeometric under equal rates whatever the common rate
//     is, and Fisher's noncentral hypergeometric with odds ratio psi when the new one is
//     worse; the batch's likelihood ratio is exact, so the test needs no estimate of the
//     rate and holds for any split of traffic (weights may change between batches).
//     Null: psi <= 1 (the family has a monotone likelihood ratio). Alternatives: psi in
//     {1.25, 1.5, 2, 3, 5, 10}, equal mixture weights.
//   BaselineTest: the new version alone against the old version's recorded counts (after
//     an immediate switch; after blue-green's). The baseline rate p0 is not known exactly:
//     its upper confidence bound p0u at level alpha_baseline (Chernoff: the largest q with
//     N0 * KL(x0/N0 || q) <= ln(1/alpha_baseline)) takes its place, so
//     P(false alarm) <= alpha_baseline + alpha_test. Then a Bernoulli mixture SPRT of
//     H0: p <= p0u against p = r * p0u, r in {1.25, 1.5, 2, 3, 5, 10} (capped below 1).
//   Cusum: after commit, a change detector (Page's CUSUM) on the Bernoulli rate against a
//     baseline bound: S = max(0, S + llr(batch)) with the alternative 2 * p0u, alarm at
//     h = ln(max_batches / alpha): the CUSUM alarms only when some SPRT started at an
//     earlier batch crosses e^h, each does with probability <= e^-h, so over at most
//     max_batches batches P(false alarm) <= alpha.
//
// Plain values, not thread-safe; deterministic.
#pragma once

#include <cstdint>
#include <vector>

namespace mup::rollback {

// What a test has accumulated, to carry it across a restart.
struct TestState {
  std::vector<double> log_lr;  // per alternative
  uint64_t n_new = 0, x_new = 0, n_old = 0, x_old = 0;
};

// The grid of alternatives (odds ratios, rate ratios) every mixture uses.
const std::vector<double>& alternative_ratios();

// The upper confidence bound on a rate from x of n (Chernoff / KL): the largest q >= x/n
// with n * KL(x/n || q) <= ln(1/alpha). 1 when n == 0.
double rate_upper_bound(uint64_t x, uint64_t n, double alpha);

class TwoSampleTest {
 public:
  TwoSampleTest();
  void observe(uint64_t n_new, uint64_t x_new, uint64_t n_old, uint64_t x_old);
  // ln of the mixture likelihood ratio (0 at start).
  double log_e_value() const;
  uint64_t n_new() const { return n_new_; }
  uint64_t x_new() const { return x_new_; }
  uint64_t n_old() const { return n_old_; }
  uint64_t x_old() const { return x_old_; }
  TestState state() const { return {log_lr_, n_new_, x_new_, n_old_, x_old_}; }
  // False (and nothing changed) when the state is not one of this test's.
  bool restore(const TestState& s);

 private:
  std::vector<double> log_lr_;  // per alternative
  uint64_t n_new_ = 0, x_new_ = 0, n_old_ = 0, x_old_ = 0;
};

class BaselineTest {
 public:
  // p0u: the baseline's upper bound (rate_upper_bound of its counts).
  explicit BaselineTest(double p0u);
  void observe(uint64_t n, uint64_t x);
  double log_e_value() const;
  double p0u() const { return p0u_; }
  uint64_t n() const { return n_; }
  uint64_t x() const { return x_; }
  TestState state() const { return {log_lr_, n_, x_, 0, 0}; }
  bool restore(const TestState& s);

 private:
  double p0u_;
  std::vector<double> p1_;      // the alternatives' rates
  std::vector<double> log_lr_;  // per alternative
  uint64_t n_ = 0, x_ = 0;
};

class Cusum {
 public:
  Cusum(double p0u, int64_t max_batches, double alpha);
  // True when it alarms (and stays true).
  bool observe(uint64_t n, uint64_t x);
  double statistic() const { return s_; }
  double threshold() const { return h_; }
  bool alarmed() const { return alarmed_; }

 private:
  double p0u_, p1_, h_;
  double s_ = 0;
  bool alarmed_ = false;
};

}  // namespace mup::rollback
