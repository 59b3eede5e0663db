#include "health/prometheus.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace mup::health {

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, p);
}

namespace {

std::string series(const std::string& name, const Labels& labels) {
  std::string s = name;
  if (!labels.empty()) {
    s += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) s += ',';
      s += labels[i].first + "=\"" + escape_label_value(labels[i].second) + '"';
    }
    s += '}';
  }
  return s;
}

}  // namespace

void Exposition::family(const std::string& name, const std::string& type, const std::string& help) {
  if (index_.count(name)) return;
  index_[name] = families_.size();
  families_.push_back({name, type, help, {}});
}

Exposition::Family& Exposition::get(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) family(name, "untyped", name);
  return families_[index_.at(name)];
}

void Exposition::add(const std::string& name, const Labels& labels, double value) {
  get(name).lines.push_back(series(name, labels) + ' ' + format_value(value));
}

void Exposition::histogram(const std::string& name, const Labels& labels,
                           const std::vector<double>& bounds, const std::vector<uint64_t>& counts,
                           double sum) {
  Family& f = get(name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (i < counts.size()) cumulative += counts[i];
    Labels l = labels;
    l.emplace_back("le", format_value(bounds[i]));
    f.lines.push_back(series(name + "_bucket", l) + ' ' +
                      format_value(static_cast<double>(cumulative)));
  }
  for (size_t i = bounds.size(); i < counts.size(); ++i) cumulative += counts[i];
  Labels inf = labels;
  inf.emplace_back("le", "+Inf");
  f.lines.push_back(series(name + "_bucket", inf) + ' ' +
                    format_value(static_cast<double>(cumulative)));
  f.lines.push_back(series(name + "_sum", labels) + ' ' + format_value(sum));
  f.lines.push_back(series(name + "_count", labels) + ' ' +
                    format_value(static_cast<double>(cumulative)));
}

std::string Exposition::text() const {
  std::string out;
  for (const auto& f : families_) {
    out += "# HELP " + f.name + ' ' + escape_help(f.help) + '\n';
    out += "# TYPE " + f.name + ' ' + f.type + '\n';
    for (const auto& l : f.lines) out += l + '\n';
  }
  return out;
}

}  // namespace mup::health
