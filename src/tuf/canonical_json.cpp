#include "tuf/canonical_json.hpp"

namespace mup::tuf {

namespace {

using json = nlohmann::json;

// Appends the canonical form of `v` to `out`; false on a value canonical JSON cannot hold.
bool write(const json& v, std::string& out) {
  switch (v.type()) {
    case json::value_t::null: out += "null"; return true;
    case json::value_t::boolean: out += v.get<bool>() ? "true" : "false"; return true;
    case json::value_t::number_integer: out += std::to_string(v.get<int64_t>()); return true;
    case json::value_t::number_unsigned: out += std::to_string(v.get<uint64_t>()); return true;
    case json::value_t::string: {
      out += '"';
      for (char c : v.get_ref<const std::string&>()) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      out += '"';
      return true;
    }
    case json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ',';
        first = false;
        if (!write(e, out)) return false;
      }
      out += ']';
      return true;
    }
    case json::value_t::object: {
      // nlohmann::json keeps object members in a std::map: already sorted by key bytes.
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (!first) out += ',';
        first = false;
        if (!write(json(k), out)) return false;
        out += ':';
        if (!write(e, out)) return false;
      }
      out += '}';
      return true;
    }
    case json::value_t::number_float:
    case json::value_t::binary:
    case json::value_t::discarded: return false;
  }
  return false;
}

}  // namespace

Result<std::string> canonical_json(const nlohmann::json& value) {
  std::string out;
  if (!write(value, out))
    return fail(Errc::invalid_argument,
                "canonical JSON holds only integers, strings, booleans, null, arrays and "
                "objects (found a floating-point or binary value)");
  return out;
}

Result<std::vector<uint8_t>> canonical_json_bytes(const nlohmann::json& value) {
  auto s = canonical_json(value);
  if (!s) return tl::unexpected(s.error());
  return std::vector<uint8_t>(s->begin(), s->end());
}

}  // namespace mup::tuf
