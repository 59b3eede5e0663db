// Lowercase hex encoding of bytes, and its inverse (either case accepted); percent-decoding
// (RFC 3986 %XX escapes), which HTTP servers here share.
// from_hex errors name the offending position, never the input: hex strings may hold keys.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mup {

std::string to_hex(std::span<const uint8_t> bytes);
[[nodiscard]] Result<std::vector<uint8_t>> from_hex(std::string_view hex);
// `s` with each %XX replaced by its byte (and '+' by ' ' when plus_is_space, as in query
// strings); nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space = false);

}  // namespace mup
