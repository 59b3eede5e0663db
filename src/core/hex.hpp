// Lowercase hex encoding of bytes, and its inverse (either case accepted).
// from_hex errors name the offending position, never the input: hex strings may hold keys.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mup {

std::string to_hex(std::span<const uint8_t> bytes);
[[nodiscard]] Result<std::vector<uint8_t>> from_hex(std::string_view hex);

}  // namespace mup
