// Internal to the state module: the numbered schema migrations, oldest first.
//
// Append only: a released migration is never edited; a change is a new migration with the
// next number. Each runs in its own transaction (see StateDb::migrate).
#pragma once

#include <span>

namespace mup::state::detail {

struct Migration {
  int version;       // 1, 2, ... without gaps
  const char* name;  // for error messages
  const char* sql;   // one or more statements
};

std::span<const Migration> migrations();

}  // namespace mup::state::detail
