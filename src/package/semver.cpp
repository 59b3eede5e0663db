#include "package/semver.hpp"

#include <cctype>

namespace mup::package {

namespace {

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

Result<uint64_t> number(std::string_view s, std::string_view whole) {
  if (!all_digits(s) || (s.size() > 1 && s[0] == '0') || s.size() > 18)
    return fail(Errc::invalid_argument,
                "\"" + std::string(whole) + "\" is not a semantic version (MAJOR.MINOR.PATCH)");
  uint64_t v = 0;
  for (char c : s) v = v * 10 + static_cast<uint64_t>(c - '0');
  return v;
}

bool valid_identifiers(std::string_view s, bool numeric_rules) {
  if (s.empty()) return false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('.', start);
    if (end == std::string_view::npos) end = s.size();
    std::string_view id = s.substr(start, end - start);
    if (id.empty()) return false;
    for (char c : id)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    if (numeric_rules && all_digits(id) && id.size() > 1 && id[0] == '0') return false;
    start = end + 1;
  }
  return true;
}

}  // namespace

Result<Version> Version::parse(std::string_view s) {
  return parse_impl(s, false);
}
Result<Version> Version::parse_loose(std::string_view s) {
  return parse_impl(s, true);
}

Result<Version> Version::parse_impl(std::string_view s, bool loose) {
  std::string_view core = s, pre, build;
  if (size_t plus = core.find('+'); plus != std::string_view::npos) {
    build = core.substr(plus + 1);
    core = core.substr(0, plus);
    if (!valid_identifiers(build, false))
      return fail(Errc::invalid_argument,
                  "bad build metadata in version \"" + std::string(s) + "\"");
  }
  if (size_t dash = core.find('-'); dash != std::string_view::npos) {
    pre = core.substr(dash + 1);
    core = core.substr(0, dash);
    if (!valid_identifiers(pre, true))
      return fail(Errc::invalid_argument, "bad pre-release in version \"" + std::string(s) + "\"");
  }
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t dot = core.find('.', start);
    parts.push_back(
        core.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (parts.size() > 3 || (!loose && parts.size() != 3))
    return fail(Errc::invalid_argument,
                "\"" + std::string(s) + "\" is not a semantic version (MAJOR.MINOR.PATCH)");
  uint64_t n[3] = {0, 0, 0};
  for (size_t i = 0; i < parts.size(); ++i) {
    auto v = number(parts[i], s);
    if (!v) return tl::unexpected(v.error());
    n[i] = *v;
  }
  Version out;
  out.major_ = n[0];
  out.minor_ = n[1];
  out.patch_ = n[2];
  out.pre_ = std::string(pre);
  out.build_ = std::string(build);
  return out;
}

std::string Version::str() const {
  std::string s =
      std::to_string(major_) + "." + std::to_string(minor_) + "." + std::to_string(patch_);
  if (!pre_.empty()) s += "-" + pre_;
  if (!build_.empty()) s += "+" + build_;
  return s;
}

std::strong_ordering Version::operator<=>(const Version& o) const {
  if (auto c = major_ <=> o.major_; c != 0) return c;
  if (auto c = minor_ <=> o.minor_; c != 0) return c;
  if (auto c = patch_ <=> o.patch_; c != 0) return c;
  // A pre-release sorts before the release; identifiers compare numerically or ASCII.
  if (pre_.empty() || o.pre_.empty()) return pre_.empty() <=> o.pre_.empty();
  std::string_view a = pre_, b = o.pre_;
  while (true) {
    size_t ea = a.find('.'), eb = b.find('.');
    std::string_view ia = a.substr(0, ea), ib = b.substr(0, eb);
    bool na = all_digits(ia), nb = all_digits(ib);
    std::strong_ordering c = std::strong_ordering::equal;
    if (na && nb) {
      c = ia.size() != ib.size() ? ia.size() <=> ib.size() : ia.compare(ib) <=> 0;
    } else if (na != nb) {
      c = na ? std::strong_ordering::less : std::strong_ordering::greater;
    } else {
      c = ia.compare(ib) <=> 0;
    }
    if (c != 0) return c;
    bool enda = ea == std::string_view::npos, endb = eb == std::string_view::npos;
    if (enda || endb) return endb <=> enda;
    a = a.substr(ea + 1);
    b = b.substr(eb + 1);
  }
}

Result<Constraint> Constraint::parse(std::string_view s) {
  Constraint c;
  c.text_ = std::string(s);
  size_t start = 0;
  while (start < s.size()) {
    size_t comma = s.find(',', start);
    std::string_view term =
        s.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!term.empty() && term.front() == ' ') term.remove_prefix(1);
    while (!term.empty() && term.back() == ' ') term.remove_suffix(1);
    Op op = Op::eq;
    if (term.rfind(">=", 0) == 0)
      op = Op::ge, term.remove_prefix(2);
    else if (term.rfind("<=", 0) == 0)
      op = Op::le, term.remove_prefix(2);
    else if (term.rfind("!=", 0) == 0)
      op = Op::ne, term.remove_prefix(2);
    else if (term.rfind("==", 0) == 0)
      op = Op::eq, term.remove_prefix(2);
    else if (term.rfind(">", 0) == 0)
      op = Op::gt, term.remove_prefix(1);
    else if (term.rfind("<", 0) == 0)
      op = Op::lt, term.remove_prefix(1);
    else if (term.rfind("=", 0) == 0)
      op = Op::eq, term.remove_prefix(1);
    auto v = Version::parse_loose(term);
    if (!v)
      return fail(Errc::invalid_argument, "bad version constraint \"" + std::string(s) +
                                              "\": use comparisons like >=2.0,<3 (" +
                                              v.error().message() + ")");
    c.terms_.emplace_back(op, *v);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return c;
}

bool Constraint::matches(const Version& v) const {
  for (const auto& [op, want] : terms_) {
    auto c = v <=> want;
    bool ok = false;
    switch (op) {
      case Op::eq: ok = c == 0; break;
      case Op::ne: ok = c != 0; break;
      case Op::lt: ok = c < 0; break;
      case Op::le: ok = c <= 0; break;
      case Op::gt: ok = c > 0; break;
      case Op::ge: ok = c >= 0; break;
    }
    if (!ok) return false;
  }
  return true;
}

Result<Dependency> Dependency::parse(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '-' ||
                          s[i] == '_' || s[i] == '.'))
    ++i;
  if (i == 0)
    return fail(Errc::invalid_argument,
                "dependency \"" + std::string(s) + "\" has no component name");
  auto c = Constraint::parse(s.substr(i));
  if (!c) return tl::unexpected(c.error());
  return Dependency{std::string(s.substr(0, i)), std::move(*c)};
}

}  // namespace mup::package
