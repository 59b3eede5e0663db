#include "rollback/sequential.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mup::rollback {

namespace {

double log_choose(double n, double k) {
  return std::lgamma(n + 1) - std::lgamma(k + 1) - std::lgamma(n - k + 1);
}

// ln(sum(exp(v))) of the values, stable.
double log_sum_exp(const std::vector<double>& v) {
  double m = -std::numeric_limits<double>::infinity();
  for (double x : v) m = std::max(m, x);
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (double x : v) s += std::exp(x - m);
  return m + std::log(s);
}

// ln of an equal-weight mixture of likelihood ratios given by their logs.
double log_mixture(const std::vector<double>& log_lr) {
  return log_sum_exp(log_lr) - std::log(static_cast<double>(log_lr.size()));
}

double kl(double a, double q) {
  double r = 0;
  if (a > 0) r += a * std::log(a / q);
  if (a < 1) r += (1 - a) * std::log((1 - a) / (1 - q));
  return r;
}

// A Bernoulli rate's alternative r * p0, kept below 1 (halfway to 1 at most).
double alternative_rate(double p0, double r) {
  return std::min(r * p0, (1 + p0) / 2);
}

}  // namespace

const std::vector<double>& alternative_ratios() {
  static const std::vector<double> kRatios = {1.25, 1.5, 2, 3, 5, 10};
  return kRatios;
}

double rate_upper_bound(uint64_t x, uint64_t n, double alpha) {
  if (n == 0) return 1;
  const double a = static_cast<double>(x) / static_cast<double>(n);
  const double budget = std::log(1 / alpha) / static_cast<double>(n);
  double lo = a, hi = 1;
  if (kl(a, std::nextafter(1.0, 0.0)) <= budget) return 1;
  for (int i = 0; i < 100; ++i) {
    const double mid = (lo + hi) / 2;
    (kl(a, mid) <= budget ? lo : hi) = mid;
  }
  return lo;
}

TwoSampleTest::TwoSampleTest() : log_lr_(alternative_ratios().size(), 0.0) {}

void TwoSampleTest::observe(uint64_t n_new, uint64_t x_new, uint64_t n_old, uint64_t x_old) {
  n_new_ += n_new;
  x_new_ += x_new;
  n_old_ += n_old;
  x_old_ += x_old;
  x_new = std::min(x_new, n_new);
  x_old = std::min(x_old, n_old);
  const uint64_t k = x_new + x_old;
  // A batch with no bad request, or only one side, says nothing about the ratio.
  if (k == 0 || n_new == 0 || n_old == 0 || k == n_new + n_old) return;
  const double n1 = static_cast<double>(n_new), n0 = static_cast<double>(n_old);
  const uint64_t lo = k > n_old ? k - n_old : 0, hi = std::min(k, n_new);
  // ln C(n1+n0, k): the central hypergeometric's normaliser (Vandermonde).
  const double log_central = log_choose(n1 + n0, static_cast<double>(k));
  std::vector<double> terms;
  terms.reserve(hi - lo + 1);
  const auto& ratios = alternative_ratios();
  for (size_t g = 0; g < ratios.size(); ++g) {
    const double lpsi = std::log(ratios[g]);
    terms.clear();
    for (uint64_t j = lo; j <= hi; ++j) {
      const double jd = static_cast<double>(j);
      terms.push_back(log_choose(n1, jd) + log_choose(n0, static_cast<double>(k - j)) + jd * lpsi);
    }
    log_lr_[g] += static_cast<double>(x_new) * lpsi - log_sum_exp(terms) + log_central;
  }
}

bool TwoSampleTest::restore(const TestState& s) {
  if (s.log_lr.size() != log_lr_.size()) return false;
  log_lr_ = s.log_lr;
  n_new_ = s.n_new;
  x_new_ = s.x_new;
  n_old_ = s.n_old;
  x_old_ = s.x_old;
  return true;
}

double TwoSampleTest::log_e_value() const {
  return log_mixture(log_lr_);
}

BaselineTest::BaselineTest(double p0u) : p0u_(p0u) {
  if (p0u_ > 0 && p0u_ < 1)
    for (double r : alternative_ratios()) p1_.push_back(alternative_rate(p0u_, r));
  log_lr_.assign(std::max<size_t>(p1_.size(), 1), 0.0);
}

void BaselineTest::observe(uint64_t n, uint64_t x) {
  x = std::min(x, n);
  n_ += n;
  x_ += x;
  const double xd = static_cast<double>(x), yd = static_cast<double>(n - x);
  for (size_t g = 0; g < p1_.size(); ++g)
    log_lr_[g] += xd * std::log(p1_[g] / p0u_) + yd * std::log((1 - p1_[g]) / (1 - p0u_));
}

bool BaselineTest::restore(const TestState& s) {
  if (s.log_lr.size() != log_lr_.size()) return false;
  log_lr_ = s.log_lr;
  n_ = s.n_new;
  x_ = s.x_new;
  return true;
}

double BaselineTest::log_e_value() const {
  return log_mixture(log_lr_);
}

Cusum::Cusum(double p0u, int64_t max_batches, double alpha)
    : p0u_(p0u),
      p1_(alternative_rate(p0u, 2)),
      h_(std::log(static_cast<double>(std::max<int64_t>(max_batches, 1)) / alpha)) {}

bool Cusum::observe(uint64_t n, uint64_t x) {
  if (alarmed_) return true;
  if (p0u_ <= 0 || p0u_ >= 1) return false;
  x = std::min(x, n);
  const double llr = static_cast<double>(x) * std::log(p1_ / p0u_) +
                     static_cast<double>(n - x) * std::log((1 - p1_) / (1 - p0u_));
  s_ = std::max(0.0, s_ + llr);
  alarmed_ = s_ >= h_;
  return alarmed_;
}

}  // namespace mup::rollback
