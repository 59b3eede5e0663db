// Canonical JSON (OLPC / securesystemslib "canonicaljson"): the byte form TUF signs and
// hashes into key ids.
//
// Rules: object keys sorted by their UTF-8 bytes, no insignificant whitespace, integers
// only (a float anywhere is an error), strings written as raw UTF-8 with only '\' and '"'
// escaped, true/false/null as usual. Pure functions, thread-safe, nothing throws.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace mup::tuf {

// Errc::invalid_argument if `value` holds a floating-point number.
[[nodiscard]] Result<std::string> canonical_json(const nlohmann::json& value);
[[nodiscard]] Result<std::vector<uint8_t>> canonical_json_bytes(const nlohmann::json& value);

}  // namespace mup::tuf
