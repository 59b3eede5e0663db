#include "health/thresholds.hpp"

#include <cctype>
#include <charconv>
#include <cmath>

#include "core/fs.hpp"
#include "health/errors.hpp"

namespace mup::health {

using nlohmann::json;

json to_json(const Thresholds& t) {
  return {{"error_rate", t.error_rate},
          {"p99_ms", t.p99_ms},
          {"cpu_percent", t.cpu_percent},
          {"memory_bytes", t.memory_bytes},
          {"min_requests", t.min_requests}};
}

namespace {

Error bad(const std::string& field, const std::string& why) {
  return make_error(Code::bad_threshold, field + ": " + why);
}

Status positive(const json& j, const char* field, double& out, double max) {
  if (!j.contains(field)) return {};
  const json& v = j[field];
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0 ||
      v.get<double>() > max)
    return tl::unexpected(bad(field, "must be a number > 0 and <= " + json(max).dump()));
  out = v.get<double>();
  return {};
}

}  // namespace

Result<Thresholds> thresholds_from_json(const json& j, Thresholds t) {
  if (!j.is_object()) return tl::unexpected(bad("thresholds", "must be a JSON object"));
  for (const auto& [k, v] : j.items())
    if (k != "error_rate" && k != "p99_ms" && k != "cpu_percent" && k != "memory_bytes" &&
        k != "min_requests")
      return tl::unexpected(bad(k,
                                "unknown field (error_rate, p99_ms, cpu_percent, "
                                "memory_bytes, min_requests)"));
  MUP_TRY(positive(j, "error_rate", t.error_rate, 1.0));
  MUP_TRY(positive(j, "p99_ms", t.p99_ms, 86'400'000.0));
  MUP_TRY(positive(j, "cpu_percent", t.cpu_percent, 100'000.0));
  if (j.contains("memory_bytes")) {
    const json& v = j["memory_bytes"];
    if (v.is_string()) {
      auto b = parse_bytes(v.get<std::string>());
      if (!b) return tl::unexpected(bad("memory_bytes", b.error().message()));
      t.memory_bytes = *b;
    } else if (v.is_number_unsigned() && v.get<uint64_t>() > 0) {
      t.memory_bytes = v.get<uint64_t>();
    } else {
      return tl::unexpected(bad("memory_bytes", "must be a positive integer or a size like 512M"));
    }
    if (t.memory_bytes == 0) return tl::unexpected(bad("memory_bytes", "must be > 0"));
  }
  if (j.contains("min_requests")) {
    if (!j["min_requests"].is_number_unsigned() || j["min_requests"].get<uint64_t>() == 0)
      return tl::unexpected(bad("min_requests", "must be a positive integer"));
    t.min_requests = j["min_requests"].get<uint64_t>();
  }
  return t;
}

Result<uint64_t> parse_bytes(std::string_view text) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || p == text.data())
    return fail(Code::bad_threshold,
                "'" + std::string(text) + "' is not a size (e.g. 512M, 1G, 1048576)");
  std::string unit(p, text.data() + text.size());
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() == 2 && unit.back() == 'I') unit.pop_back();
  int shift = unit.empty()  ? 0
              : unit == "K" ? 10
              : unit == "M" ? 20
              : unit == "G" ? 30
              : unit == "T" ? 40
                            : -1;
  if (shift < 0 || (unit.empty() && p != text.data() + text.size()))
    return fail(Code::bad_threshold,
                "'" + std::string(text) + "': unknown unit (K, M, G or T, powers of 1024)");
  if (shift > 0 && n > (UINT64_MAX >> shift))
    return fail(Code::bad_threshold, "'" + std::string(text) + "' is too large");
  if (n == 0) return fail(Code::bad_threshold, "a size must be > 0");
  return n << shift;
}

Result<ThresholdStore> ThresholdStore::open(std::filesystem::path file) {
  ThresholdStore s(file);
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return s;
  auto bytes = fs::read_file(file, 4 << 20);
  if (!bytes) return tl::unexpected(bytes.error());
  json j = json::parse(bytes->begin(), bytes->end(), nullptr, false);
  if (!j.is_object() || !j.contains("components") || !j["components"].is_object())
    return fail(Code::bad_file, file.string() +
                                    " is not a thresholds file ({\"version\":1,\"components\":"
                                    "{...}}): fix or remove it");
  for (const auto& [name, t] : j["components"].items()) {
    auto th = thresholds_from_json(t);
    if (!th)
      return tl::unexpected(th.error().context("reading " + file.string() + ", component " + name));
    s.by_component_[name] = *th;
  }
  return s;
}

ThresholdStore::ThresholdStore(ThresholdStore&& o) noexcept
    : file_(std::move(o.file_)), by_component_(std::move(o.by_component_)) {}

Thresholds ThresholdStore::get(const std::string& component) const {
  std::lock_guard lk(mu_);
  auto it = by_component_.find(component);
  return it == by_component_.end() ? Thresholds{} : it->second;
}

bool ThresholdStore::has(const std::string& component) const {
  std::lock_guard lk(mu_);
  return by_component_.count(component) > 0;
}

Status ThresholdStore::save(const std::map<std::string, Thresholds>& all) const {
  json comps = json::object();
  for (const auto& [name, t] : all) comps[name] = to_json(t);
  const std::string text = json{{"version", 1}, {"components", comps}}.dump(2) + "\n";
  std::error_code ec;
  std::filesystem::create_directories(file_.parent_path(), ec);
  if (ec)
    return fail(Errc::io, "cannot create " + file_.parent_path().string() + ": " + ec.message());
  return fs::write_file_atomic(file_, {reinterpret_cast<const uint8_t*>(text.data()), text.size()},
                               0644);
}

Status ThresholdStore::set(const std::string& component, const Thresholds& t) {
  std::lock_guard lk(mu_);
  auto next = by_component_;
  next[component] = t;
  MUP_TRY(save(next));
  by_component_ = std::move(next);
  return {};
}

Status ThresholdStore::reset(const std::string& component) {
  std::lock_guard lk(mu_);
  auto next = by_component_;
  next.erase(component);
  MUP_TRY(save(next));
  by_component_ = std::move(next);
  return {};
}

}  // namespace mup::health
