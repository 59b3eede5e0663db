// Internal to the state module: the numbered schema migrations, oldest first.
//
// Append only: a released migration is never edited; a change is a new migration with the
// next number. Each runs in its own transaction (see StateDb::migrate).
//
// Every migration has `down` SQL that undoes it. It is stored in the database with the
// migration (schema_migrations.down_sql, from version 4 on), because the build that needs
// it is an older mup, which does not know the migration: when mup is rolled back, it
// applies the stored down SQL of each version above its own, newest first. So `down` must
// work on the schema as the migration left it, keep every row that older builds can read,
// and not depend on code. Released schemas are frozen in testdata/schema_v<N>.sql (see
// state_test.cpp, SchemaFixture).
#pragma once

#include <span>

namespace mup::state::detail {

struct Migration {
  int version;       // 1, 2, ... without gaps
  const char* name;  // for error messages
  const char* sql;   // one or more statements
  const char* down;  // statements that undo `sql`
};

std::span<const Migration> migrations();

}  // namespace mup::state::detail
