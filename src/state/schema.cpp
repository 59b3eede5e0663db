#include "state/schema.hpp"

#include <iterator>

namespace mup::state::detail {

namespace {

// Times are Unix milliseconds. Optional text is '' rather than NULL, so rows read back
// into plain strings.
constexpr Migration kMigrations[] = {
    {1, "journal", R"sql(
CREATE TABLE operations(
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so audit records can cite ids
  kind TEXT NOT NULL,
  component TEXT NOT NULL DEFAULT '',
  from_version TEXT NOT NULL DEFAULT '',
  to_version TEXT NOT NULL DEFAULT '',
  actor TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'undone')),
  step TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT '{}',
  started_at INTEGER NOT NULL,
  finished_at INTEGER,
  bytes INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '');
CREATE INDEX operations_by_component ON operations(component, id);
CREATE INDEX operations_running ON operations(id) WHERE state = 'running';
CREATE TABLE operation_steps(
  op_id INTEGER NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  step TEXT NOT NULL,
  detail TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (op_id, seq)) WITHOUT ROWID;
)sql",
     R"sql(
DROP TABLE operation_steps;
DROP TABLE operations;
)sql"},
    {2, "inventory", R"sql(
CREATE TABLE remotes(
  name TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  added_at INTEGER NOT NULL);
CREATE TABLE components(
  name TEXT PRIMARY KEY,
  remote TEXT NOT NULL DEFAULT '',
  type TEXT NOT NULL DEFAULT '',
  active_version TEXT NOT NULL DEFAULT '',
  previous_version TEXT NOT NULL DEFAULT '',
  pinned_version TEXT NOT NULL DEFAULT '',
  updated_at INTEGER NOT NULL);
CREATE TABLE versions(
  component TEXT NOT NULL,
  version TEXT NOT NULL,
  index_sha256 TEXT NOT NULL DEFAULT '',
  manifest TEXT NOT NULL DEFAULT '{}',
  size INTEGER NOT NULL DEFAULT 0,
  installed_at INTEGER NOT NULL,
  PRIMARY KEY (component, version)) WITHOUT ROWID;
CREATE TABLE snapshots(
  id TEXT PRIMARY KEY,
  component TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  content_hash TEXT NOT NULL DEFAULT '',
  path TEXT NOT NULL,
  files INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0);
CREATE INDEX snapshots_by_component ON snapshots(component, created_at);
)sql",
     R"sql(
DROP TABLE snapshots;
DROP TABLE versions;
DROP TABLE components;
DROP TABLE remotes;
)sql"},
    {3, "audit", R"sql(
CREATE TABLE audit(
  seq INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  signature TEXT NOT NULL DEFAULT '');
CREATE TABLE audit_head(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL);
INSERT INTO audit_head(id, seq, hash)
  VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
-- Guards against mistakes, not attackers (who can drop triggers): the hash chain and the
-- head are what detect tampering.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
)sql",
     R"sql(
DROP TRIGGER audit_no_delete;
DROP TRIGGER audit_no_update;
DROP TABLE audit_head;
DROP TABLE audit;
)sql"},
    // Each migration's down SQL, kept in the database so that an older mup can undo what
    // it does not know (StateDb::migrate fills it in for migrations 1-3 here).
    {4, "down_sql", R"sql(
ALTER TABLE schema_migrations ADD COLUMN down_sql TEXT NOT NULL DEFAULT '';
)sql",
     R"sql(
ALTER TABLE schema_migrations DROP COLUMN down_sql;
)sql"},
    // The operations engine: recovery bookkeeping and quarantine, versions on trial.
    {5, "engine", R"sql(
ALTER TABLE operations ADD COLUMN recovery_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN recovery_error TEXT NOT NULL DEFAULT '';
ALTER TABLE operations ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;
ALTER TABLE components ADD COLUMN trial_version TEXT NOT NULL DEFAULT '';
ALTER TABLE components ADD COLUMN trial TEXT NOT NULL DEFAULT '{}';
ALTER TABLE versions ADD COLUMN status TEXT NOT NULL DEFAULT 'committed'
  CHECK (status IN ('trial', 'committed', 'bad'));
)sql",
     R"sql(
ALTER TABLE versions DROP COLUMN status;
ALTER TABLE components DROP COLUMN trial;
ALTER TABLE components DROP COLUMN trial_version;
ALTER TABLE operations DROP COLUMN quarantined;
ALTER TABLE operations DROP COLUMN recovery_error;
ALTER TABLE operations DROP COLUMN recovery_attempts;
)sql"},
    // The agent's deployments (issue 9): one row per deployment, its journaled state and
    // the data it needs to resume or undo; at most one unfinished per component.
    {6, "deployments", R"sql(
CREATE TABLE deployments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  component TEXT NOT NULL,
  from_version TEXT NOT NULL DEFAULT '',
  to_version TEXT NOT NULL DEFAULT '',
  strategy TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  actor TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT '{}',
  started_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX deployments_one_unfinished ON deployments(component) WHERE finished_at = 0;
CREATE INDEX deployments_by_component ON deployments(component, id);
CREATE TABLE deployment_steps (
  deployment INTEGER NOT NULL REFERENCES deployments(id),
  seq INTEGER NOT NULL,
  state TEXT NOT NULL,
  at INTEGER NOT NULL,
  detail TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (deployment, seq)
);
)sql",
     R"sql(
DROP TABLE deployment_steps;
DROP TABLE deployments;
)sql"},
    {7, "plans", R"sql(
CREATE TABLE plans (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  state TEXT NOT NULL,
  body TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX plans_unfinished ON plans(finished_at);
)sql",
     R"sql(
DROP TABLE plans;
)sql"},
    // History retention (issue 12): gc may cut the oldest audit records off the front of
    // the chain. audit_base holds the (seq, hash) of the last record cut, where verification
    // starts; it only moves forward, and only records at or below it may be deleted. An
    // older mup (after this down SQL) sees a trimmed log as one missing its first records.
    {8, "history_retention", R"sql(
CREATE TABLE audit_base(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL);
INSERT INTO audit_base(id, seq, hash)
  VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TRIGGER audit_base_forward BEFORE UPDATE ON audit_base WHEN NEW.seq < OLD.seq
  BEGIN SELECT RAISE(ABORT, 'the audit base only moves forward'); END;
CREATE TRIGGER audit_base_no_delete BEFORE DELETE ON audit_base
  BEGIN SELECT RAISE(ABORT, 'the audit base cannot be removed'); END;
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  WHEN OLD.seq > COALESCE((SELECT seq FROM audit_base WHERE id = 1), 0)
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
)sql",
     R"sql(
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
DROP TRIGGER audit_base_no_delete;
DROP TRIGGER audit_base_forward;
DROP TABLE audit_base;
)sql"},
};

}  // namespace

std::span<const Migration> migrations() {
  return {kMigrations, std::size(kMigrations)};
}

}  // namespace mup::state::detail
