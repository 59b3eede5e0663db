// Readers of JSON this module did not build (the proxy's statistics, a process that may run
// another version of mup; the supervisor's instances; a deployment's detail): a missing or
// mistyped field gives the default. Never throw (nlohmann's value() does, on a type mismatch).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace mup::health {

// j[key] when j is an object holding key, else null.
inline const nlohmann::json& field(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}
inline std::string str_of(const nlohmann::json& j, const char* key, const std::string& def = "") {
  const auto& v = field(j, key);
  return v.is_string() ? v.get<std::string>() : def;
}
inline double num_of(const nlohmann::json& j, const char* key, double def = 0) {
  const auto& v = field(j, key);
  return v.is_number() ? v.get<double>() : def;
}
inline int64_t int_of(const nlohmann::json& j, const char* key, int64_t def = 0) {
  const auto& v = field(j, key);
  return v.is_number_integer() ? v.get<int64_t>() : def;
}
inline uint64_t uint_of(const nlohmann::json& j, const char* key, uint64_t def = 0) {
  const auto& v = field(j, key);
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  return def;
}

}  // namespace mup::health
