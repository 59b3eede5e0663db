-- schema 6 (the agent's deployments), written by DISABLED_SchemaFixture.Write at e438d7e
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL, down_sql TEXT NOT NULL DEFAULT '');
INSERT INTO schema_migrations VALUES(1,'journal',1700000001000,replace('\nDROP TABLE operation_steps;\nDROP TABLE operations;\n','\n',char(10)));
INSERT INTO schema_migrations VALUES(2,'inventory',1700000002000,replace('\nDROP TABLE snapshots;\nDROP TABLE versions;\nDROP TABLE components;\nDROP TABLE remotes;\n','\n',char(10)));
INSERT INTO schema_migrations VALUES(3,'audit',1700000003000,replace('\nDROP TRIGGER audit_no_delete;\nDROP TRIGGER audit_no_update;\nDROP TABLE audit_head;\nDROP TABLE audit;\n','\n',char(10)));
INSERT INTO schema_migrations VALUES(4,'down_sql',1700000004000,replace('\nALTER TABLE schema_migrations DROP COLUMN down_sql;\n','\n',char(10)));
INSERT INTO schema_migrations VALUES(5,'engine',1700000005000,replace('\nALTER TABLE versions DROP COLUMN status;\nALTER TABLE components DROP COLUMN trial;\nALTER TABLE components DROP COLUMN trial_version;\nALTER TABLE operations DROP COLUMN quarantined;\nALTER TABLE operations DROP COLUMN recovery_error;\nALTER TABLE operations DROP COLUMN recovery_attempts;\n','\n',char(10)));
INSERT INTO schema_migrations VALUES(6,'deployments',1700000006000,replace('\nDROP TABLE deployment_steps;\nDROP TABLE deployments;\n','\n',char(10)));
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
  error TEXT NOT NULL DEFAULT '', recovery_attempts INTEGER NOT NULL DEFAULT 0, recovery_error TEXT NOT NULL DEFAULT '', quarantined INTEGER NOT NULL DEFAULT 0);
INSERT INTO operations VALUES(1,'install','web','','1.0.0','fixture','done','activate','{"pieces":3,"staging":"components/web/.tmp-1"}',1700000008000,1700000011000,4096,'',0,'',0);
INSERT INTO operations VALUES(2,'install','web','1.0.0','1.1.0','fixture','failed','','{}',1700000016000,1700000017000,0,'signature check failed for targets.json',0,'',0);
CREATE TABLE operation_steps(
  op_id INTEGER NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  step TEXT NOT NULL,
  detail TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (op_id, seq)) WITHOUT ROWID;
INSERT INTO operation_steps VALUES(1,1,'fetch','{"pieces":3}',1700000009000);
INSERT INTO operation_steps VALUES(1,2,'activate','{"staging":"components/web/.tmp-1"}',1700000010000);
CREATE TABLE remotes(
  name TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  added_at INTEGER NOT NULL);
INSERT INTO remotes VALUES('origin','https://repo.example/',1700000007000);
CREATE TABLE components(
  name TEXT PRIMARY KEY,
  remote TEXT NOT NULL DEFAULT '',
  type TEXT NOT NULL DEFAULT '',
  active_version TEXT NOT NULL DEFAULT '',
  previous_version TEXT NOT NULL DEFAULT '',
  pinned_version TEXT NOT NULL DEFAULT '',
  updated_at INTEGER NOT NULL, trial_version TEXT NOT NULL DEFAULT '', trial TEXT NOT NULL DEFAULT '{}');
INSERT INTO components VALUES('web','origin','service','1.0.0','','',1700000013000,'','{}');
CREATE TABLE versions(
  component TEXT NOT NULL,
  version TEXT NOT NULL,
  index_sha256 TEXT NOT NULL DEFAULT '',
  manifest TEXT NOT NULL DEFAULT '{}',
  size INTEGER NOT NULL DEFAULT 0,
  installed_at INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'committed'
  CHECK (status IN ('trial', 'committed', 'bad')),
  PRIMARY KEY (component, version)) WITHOUT ROWID;
INSERT INTO versions VALUES('web','1.0.0','aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','{"name":"web","type":"service","version":"1.0.0"}',12345,1700000014000,'committed');
CREATE TABLE snapshots(
  id TEXT PRIMARY KEY,
  component TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  content_hash TEXT NOT NULL DEFAULT '',
  path TEXT NOT NULL,
  files INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0);
INSERT INTO snapshots VALUES('web-20231114-abcdef','web','1.0.0',1700000015000,'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb','snapshots/web/web-20231114-abcdef',2,10);
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
INSERT INTO audit VALUES(1,1700000012000,'fixture','install','web 1.0.0','{"op":1}','0000000000000000000000000000000000000000000000000000000000000000','f175d03a5f168fa4007ff37eac448fce1802c04c00fa900ea46c24d74315bbab','');
INSERT INTO audit VALUES(2,1700000018000,'fixture','install-failed','web 1.1.0','{"op":2}','f175d03a5f168fa4007ff37eac448fce1802c04c00fa900ea46c24d74315bbab','62d902201f747444df0914b1af6e2de2881cd9ecdf6dffddb9b416a781fb49dc','');
INSERT INTO audit VALUES(3,1700000019000,'fixture','pin','web','{"note":"café","version":"1.0.0"}','62d902201f747444df0914b1af6e2de2881cd9ecdf6dffddb9b416a781fb49dc','369dfa58b25b8f94be2475178e29e7c0679ec9e3e9c248750bd9c7f995216315','');
CREATE TABLE audit_head(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL);
INSERT INTO audit_head VALUES(1,3,'369dfa58b25b8f94be2475178e29e7c0679ec9e3e9c248750bd9c7f995216315');
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
CREATE TABLE deployment_steps (
  deployment INTEGER NOT NULL REFERENCES deployments(id),
  seq INTEGER NOT NULL,
  state TEXT NOT NULL,
  at INTEGER NOT NULL,
  detail TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (deployment, seq)
);
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('operations',2);
CREATE INDEX operations_by_component ON operations(component, id);
CREATE INDEX operations_running ON operations(id) WHERE state = 'running';
CREATE INDEX snapshots_by_component ON snapshots(component, created_at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE UNIQUE INDEX deployments_one_unfinished ON deployments(component) WHERE finished_at = 0;
CREATE INDEX deployments_by_component ON deployments(component, id);
COMMIT;
PRAGMA user_version=6;
