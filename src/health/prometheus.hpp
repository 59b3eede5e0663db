// A writer of the Prometheus text exposition format, version 0.0.4 (what `/metrics`
// answers, Content-Type kContentType): families in the order first added, each with its
// # HELP and # TYPE lines, then its samples. Label values are escaped (\\, \", \n), HELP
// text too (\\, \n); values print as the shortest decimal that reads back the same, or
// +Inf / -Inf / NaN. Histograms get cumulative _bucket samples ending with le="+Inf", then
// _sum and _count.
//
// Not thread-safe (one writer per scrape). Names and label names are the caller's, and must
// match [a-zA-Z_:][a-zA-Z0-9_:]* / [a-zA-Z_][a-zA-Z0-9_]*: they are not checked.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mup::health {

inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

using Labels = std::vector<std::pair<std::string, std::string>>;

std::string escape_label_value(std::string_view v);
std::string escape_help(std::string_view v);
std::string format_value(double v);

class Exposition {
 public:
  // Declares a family ("counter", "gauge", "histogram"); declaring it again is a no-op.
  void family(const std::string& name, const std::string& type, const std::string& help);
  // A sample of a counter or gauge family declared before.
  void add(const std::string& name, const Labels& labels, double value);
  // A histogram sample set: `bounds` are the buckets' upper bounds (ascending, without
  // +Inf) and `counts` the per-bucket counts, not cumulative, with one more entry for what
  // is above the last bound.
  void histogram(const std::string& name, const Labels& labels, const std::vector<double>& bounds,
                 const std::vector<uint64_t>& counts, double sum);
  std::string text() const;

 private:
  struct Family {
    std::string name, type, help;
    std::vector<std::string> lines;
  };
  Family& get(const std::string& name);
  std::vector<Family> families_;
  std::map<std::string, size_t> index_;
};

}  // namespace mup::health
