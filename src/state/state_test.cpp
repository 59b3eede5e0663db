#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/fault.hpp"
#include "state/sqlite.hpp"
#include "state/state_db.hpp"
#include "test_util.hpp"

extern char** environ;

namespace mup::state {
namespace {

using nlohmann::json;
using test::ScratchDir;
namespace stdfs = std::filesystem;

// A deterministic clock: each reading is 1 ms after the previous one.
struct FakeClock {
  int64_t t = 1'700'000'000'000;
  NowMs fn() {
    return [this] { return t++; };
  }
};

// Direct access to the file, as an operator (or an attacker) with sqlite3 would have.
class RawDb {
 public:
  explicit RawDb(const stdfs::path& p) { sqlite3_open(p.c_str(), &db_); }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  // SQLite's result code; the error text goes to `err`.
  int exec(const std::string& sql, std::string* err = nullptr) {
    char* msg = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg);
    if (err && msg) *err = msg;
    sqlite3_free(msg);
    return rc;
  }
  std::string scalar(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string out = "<error>";
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char* p = sqlite3_column_text(st, 0);
      out = p ? reinterpret_cast<const char*>(p) : "";
    }
    sqlite3_finalize(st);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

class StateTest : public ::testing::Test {
 protected:
  StateDb open_db() {
    auto db = StateDb::open(path_, clock_.fn());
    if (!db) throw std::runtime_error(db.error().message());  // gtest reports it
    return std::move(*db);
  }

  ScratchDir dir_;
  stdfs::path path_ = dir_ / "state.db";
  FakeClock clock_;
};

#define ASSERT_OK(expr)                                             \
  do {                                                              \
    auto ok_r_ = (expr);                                            \
    ASSERT_TRUE(ok_r_) << #expr << ": " << ok_r_.error().message(); \
  } while (0)

OperationRecord op(std::string kind, std::string component, std::string to = "") {
  OperationRecord o;
  o.kind = std::move(kind);
  o.component = std::move(component);
  o.to_version = std::move(to);
  o.actor = "tester";
  return o;
}

// --- Opening and migrations ---------------------------------------------------------

TEST_F(StateTest, MigrationsApplyOnceAndReopenIsIdempotent) {
  const std::string latest = std::to_string(StateDb::latest_schema_version());
  std::string applied;
  {
    StateDb db = open_db();
    EXPECT_EQ(db.schema_version(), StateDb::latest_schema_version());
    ASSERT_OK(db.add_remote("origin", "https://repo.example/"));
    RawDb raw(path_);
    EXPECT_EQ(raw.scalar("PRAGMA user_version"), latest);
    EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM schema_migrations"), latest);
    EXPECT_EQ(raw.scalar("SELECT MAX(version) FROM schema_migrations"), latest);
    applied = raw.scalar("SELECT group_concat(applied_at) FROM schema_migrations");
  }
  clock_.t += 1'000'000;
  StateDb db = open_db();
  EXPECT_EQ(db.schema_version(), StateDb::latest_schema_version());
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM schema_migrations"), latest);
  EXPECT_EQ(raw.scalar("SELECT group_concat(applied_at) FROM schema_migrations"), applied)
      << "nothing re-applied";
  EXPECT_EQ(*db.remote_url("origin"), "https://repo.example/") << "data kept";
}

TEST_F(StateTest, EveryAppliedMigrationKeepsItsDownSql) {
  { open_db(); }
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM schema_migrations WHERE down_sql = ''"), "0");
  for (const detail::Migration& m : detail::migrations())
    EXPECT_EQ(raw.scalar("SELECT down_sql FROM schema_migrations WHERE version = " +
                         std::to_string(m.version)),
              m.down)
        << "migration " << m.version;
}

// --- Downgrades: a newer mup migrated the database, then mup was rolled back ----------

// This build's migrations and `extra`, as a newer build would have them.
std::vector<detail::Migration> newer_build(std::vector<detail::Migration> extra) {
  std::vector<detail::Migration> all(detail::migrations().begin(), detail::migrations().end());
  all.insert(all.end(), extra.begin(), extra.end());
  return all;
}

// Two migrations of a newer build; undoing them oldest first would fail (the second's down
// SQL needs the table the first one's drops).
std::vector<detail::Migration> two_newer_migrations(const char* first_down = "DROP TABLE extra;") {
  const int latest = StateDb::latest_schema_version();
  return newer_build({
      {latest + 1, "test_extra",
       "CREATE TABLE extra(id INTEGER PRIMARY KEY, note TEXT NOT NULL);"
       "INSERT INTO extra(note) VALUES ('from the newer mup');",
       first_down},
      {latest + 2, "test_extra_columns",
       "ALTER TABLE extra ADD COLUMN more TEXT NOT NULL DEFAULT '';"
       "ALTER TABLE remotes ADD COLUMN token TEXT NOT NULL DEFAULT '';",
       "ALTER TABLE remotes DROP COLUMN token; ALTER TABLE extra DROP COLUMN more;"},
  });
}

TEST_F(StateTest, OlderMupMigratesDownWithTheSqlTheNewerOneStored) {
  const int latest = StateDb::latest_schema_version();
  {
    StateDb db = open_db();
    ASSERT_OK(db.add_remote("origin", "https://repo.example/"));
    ASSERT_TRUE(db.append_audit("tester", "install", "web 1.0.0"));
  }
  const auto newer = two_newer_migrations();
  {
    auto db = StateDb::open_with_migrations_for_testing(path_, clock_.fn(), newer);
    ASSERT_TRUE(db) << db.error().message();
    EXPECT_EQ(db->schema_version(), latest + 2);
    ASSERT_OK(db->add_remote("mirror", "https://mirror.example/"));  // written by the newer mup
    ASSERT_TRUE(db->append_audit("tester", "install", "web 2.0.0"));
    RawDb raw(path_);
    EXPECT_EQ(raw.scalar("SELECT note FROM extra"), "from the newer mup");
    EXPECT_EQ(raw.scalar("SELECT down_sql FROM schema_migrations WHERE version = " +
                         std::to_string(latest + 1)),
              "DROP TABLE extra;");
  }

  StateDb db = open_db();  // this build again: mup was rolled back
  EXPECT_EQ(db.schema_version(), latest);
  EXPECT_EQ(db.downgraded(), (std::vector<int>{latest + 2, latest + 1}));
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(latest));
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'extra'"), "0");
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM pragma_table_info('remotes') WHERE name = 'token'"),
            "0");
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM schema_migrations"), std::to_string(latest));
  EXPECT_EQ(*db.remote_url("origin"), "https://repo.example/") << "data kept";
  EXPECT_EQ(*db.remote_url("mirror"), "https://mirror.example/") << "also what the newer mup wrote";
  auto report = db.verify_audit();
  ASSERT_TRUE(report && report->ok) << report->problem;
  EXPECT_EQ(report->records, 2u);
  ASSERT_OK(db.integrity_check());

  // And the newer mup, run again, migrates it up again.
  auto again = StateDb::open_with_migrations_for_testing(path_, clock_.fn(), newer);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->schema_version(), latest + 2);
}

TEST_F(StateTest, RefusesANewerSchemaWithoutDownSqlAndChangesNothing) {
  const int latest = StateDb::latest_schema_version();
  {
    auto db = StateDb::open_with_migrations_for_testing(path_, clock_.fn(),
                                                        two_newer_migrations(/*first_down=*/""));
    ASSERT_TRUE(db) << db.error().message();
  }
  auto db = StateDb::open(path_, clock_.fn());
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code(), Errc::unsupported);
  const std::string& msg = db.error().message();
  EXPECT_NE(msg.find("schema version " + std::to_string(latest + 2)), std::string::npos) << msg;
  EXPECT_NE(msg.find(path_.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("newer mup"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no down SQL for version " + std::to_string(latest + 1)), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("restore a backup"), std::string::npos) << msg;
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(latest + 2))
      << "version " << latest + 2 << " could be undone, but is not: nothing changes";
  EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM pragma_table_info('remotes') WHERE name = 'token'"),
            "1");

  // A version above this build's with no record at all (set by hand) is refused the same way.
  ASSERT_EQ(raw.exec("PRAGMA user_version = " + std::to_string(latest + 5)), SQLITE_OK);
  auto hand = StateDb::open(path_, clock_.fn());
  ASSERT_FALSE(hand);
  EXPECT_EQ(hand.error().code(), Errc::unsupported);
  EXPECT_NE(hand.error().message().find("schema version " + std::to_string(latest + 5)),
            std::string::npos)
      << hand.error().message();
}

TEST_F(StateTest, TimesComeFromTheCoreClockGivenToOpen) {
  mup::FakeClock clock(1'234'000);
  auto db = StateDb::open(path_, clock);
  ASSERT_TRUE(db) << db.error().message();
  auto id = db->begin_operation(op("install", "web", "2.1.0"));
  ASSERT_TRUE(id);
  clock.advance(std::chrono::seconds(5));
  ASSERT_OK(db->finish_operation(*id, "done"));
  auto rec = db->operation(*id);
  ASSERT_TRUE(rec && *rec);
  EXPECT_EQ((*rec)->started_at_ms, 1'234'000);
  EXPECT_EQ((*rec)->finished_at_ms, 1'239'000);
}

TEST_F(StateTest, WalModeAndIntegrityCheck) {
  StateDb db = open_db();
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("PRAGMA journal_mode"), "wal");
  EXPECT_TRUE(stdfs::exists(path_.string() + "-wal"));
  ASSERT_OK(db.integrity_check());
}

TEST_F(StateTest, ClearErrorsForBadFileAndMissingDirectory) {
  test::write_file(path_, std::string(4096, 'x'));
  auto bad = StateDb::open(path_, clock_.fn());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Errc::corrupt) << bad.error().message();
  EXPECT_NE(bad.error().message().find(path_.string()), std::string::npos);

  auto missing = StateDb::open(dir_ / "nope" / "state.db", clock_.fn());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::not_found);
  EXPECT_NE(missing.error().message().find("does not exist"), std::string::npos);
}

// --- Journal ------------------------------------------------------------------------

TEST_F(StateTest, JournalRecordsStepsAndFinishes) {
  StateDb db = open_db();
  OperationRecord o = op("install", "web", "2.1.0");
  o.from_version = "2.0.0";
  o.detail = {{"remote", "origin"}};
  auto id = db.begin_operation(o);
  ASSERT_TRUE(id) << id.error().message();

  ASSERT_OK(db.record_step(*id, "fetch", {{"chunks", 12}}));
  ASSERT_OK(db.record_step(*id, "stage", {{"staging", "/x/.stage"}, {"chunks", 13}}));
  auto cur = db.operation(*id);
  ASSERT_TRUE(cur && *cur);
  EXPECT_EQ((*cur)->state, "running");
  EXPECT_EQ((*cur)->step, "stage");
  EXPECT_EQ((*cur)->detail, (json{{"remote", "origin"}, {"staging", "/x/.stage"}, {"chunks", 13}}))
      << "step details merge into the operation's detail";
  EXPECT_EQ((*cur)->from_version, "2.0.0");
  EXPECT_EQ((*cur)->actor, "tester");
  EXPECT_EQ((*cur)->finished_at_ms, 0);

  auto steps = db.steps(*id);
  ASSERT_TRUE(steps);
  ASSERT_EQ(steps->size(), 2u);
  EXPECT_EQ((*steps)[0].seq, 1);
  EXPECT_EQ((*steps)[0].step, "fetch");
  EXPECT_EQ((*steps)[0].detail, (json{{"chunks", 12}}));
  EXPECT_EQ((*steps)[1].step, "stage");
  EXPECT_LT((*steps)[0].at_ms, (*steps)[1].at_ms);

  ASSERT_OK(db.finish_operation(*id, "done", 4096));
  cur = db.operation(*id);
  EXPECT_EQ((*cur)->state, "done");
  EXPECT_EQ((*cur)->bytes, 4096u);
  EXPECT_GT((*cur)->finished_at_ms, (*cur)->started_at_ms);
  EXPECT_TRUE(db.unfinished_operations()->empty());

  // Misuse is refused, and says why.
  auto again = db.finish_operation(*id, "failed");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Errc::invalid_argument);
  EXPECT_NE(again.error().message().find("is done, not running"), std::string::npos);
  EXPECT_EQ(db.record_step(*id, "activate").error().code(), Errc::invalid_argument);
  EXPECT_EQ(db.record_step(999, "activate").error().code(), Errc::not_found);
  EXPECT_EQ(db.finish_operation(*id, "finished").error().code(), Errc::invalid_argument);
  OperationRecord bad = op("install", "web");
  bad.detail = json::array({1, 2});
  EXPECT_EQ(db.begin_operation(bad).error().code(), Errc::invalid_argument);
  EXPECT_EQ(db.begin_operation(op("", "web")).error().code(), Errc::invalid_argument);
}

TEST_F(StateTest, HistoryIsNewestFirstAndFilters) {
  StateDb db = open_db();
  std::vector<int64_t> ids;
  for (auto [kind, comp] : {std::pair{"install", "web"},
                            {"install", "db"},
                            {"activate", "web"},
                            {"gc", ""},
                            {"rollback", "web"}}) {
    auto id = db.begin_operation(op(kind, comp));
    ASSERT_TRUE(id);
    ids.push_back(*id);
  }
  ASSERT_OK(db.finish_operation(ids[0], "done"));
  ASSERT_OK(db.finish_operation(ids[2], "failed", 0, "health check failed"));
  ASSERT_OK(db.finish_operation(ids[3], "undone", 0, "interrupted"));

  auto all = db.history();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ(all->front().id, ids[4]);
  EXPECT_EQ(all->back().id, ids[0]);

  auto web = db.history("web");
  ASSERT_EQ(web->size(), 3u);
  EXPECT_EQ((*web)[0].kind, "rollback");
  EXPECT_EQ((*web)[1].error, "health check failed");
  EXPECT_EQ((*web)[2].kind, "install");
  EXPECT_EQ(db.history("web", 2)->size(), 2u);
  EXPECT_TRUE(db.history("nothing")->empty());

  auto open_ops = db.unfinished_operations();
  ASSERT_EQ(open_ops->size(), 2u);
  EXPECT_EQ((*open_ops)[0].id, ids[1]) << "oldest first";
  EXPECT_EQ((*open_ops)[1].id, ids[4]);
}

// An operation whose process was killed without finishing is found on the next start.
TEST_F(StateTest, OperationOfKilledProcessIsUnfinishedAfterReopen) {
  { open_db(); }  // create it here, so the child only journals
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto db = StateDb::open(path_, clock_.fn());
    if (!db) _exit(2);
    auto id = db->begin_operation(op("install", "web", "2.1.0"));
    if (!id || !db->record_step(*id, "stage", {{"staging", "x"}})) _exit(3);
    raise(SIGKILL);
    _exit(4);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;

  StateDb db = open_db();
  ASSERT_OK(db.integrity_check());
  auto open_ops = db.unfinished_operations();
  ASSERT_TRUE(open_ops);
  ASSERT_EQ(open_ops->size(), 1u);
  EXPECT_EQ((*open_ops)[0].kind, "install");
  EXPECT_EQ((*open_ops)[0].step, "stage");
  EXPECT_EQ((*open_ops)[0].detail["staging"], "x");
  ASSERT_OK(db.finish_operation((*open_ops)[0].id, "undone", 0, "interrupted; staging removed"));
}

// --- Crash at every commit ----------------------------------------------------------
//
// The child re-runs this binary with only DISABLED_CrashChild.Workload enabled and
// MUP_FAULT_AT/AFTER/ACTION=kill in its environment (a kill ends the process, so it
// cannot be the parent's). After each kill the parent reopens the file
// and checks that it holds exactly the commits before the kill.

TEST(DISABLED_CrashChild, Workload) {
  const char* db_path = std::getenv("MUP_STATE_CRASH_DB");
  ASSERT_NE(db_path, nullptr);
  auto db = StateDb::open(db_path);
  ASSERT_TRUE(db) << db.error().message();
  auto id = db->begin_operation(op("install", "web", "2.1.0"));  // commit 0
  ASSERT_TRUE(id);
  ASSERT_OK(db->record_step(*id, "stage", {{"staging", "x"}}));  // commit 1
  ASSERT_OK(db->transaction([&]() -> Status {                    // commit 2
    MUP_TRY(db->finish_operation(*id, "done", 10));
    return db->append_audit("tester", "install", "web 2.1.0", {{"op", *id}}).map([](auto&&) {});
  }));
  ASSERT_TRUE(db->append_audit("tester", "pin", "web", nullptr));  // commit 3
}

int run_crash_child(const stdfs::path& db, const std::string& point, int after) {
  std::vector<std::string> env_s = {"MUP_STATE_CRASH_DB=" + db.string(), "MUP_FAULT_AT=" + point,
                                    "MUP_FAULT_ACTION=kill",
                                    "MUP_FAULT_AFTER=" + std::to_string(after)};
  for (char** e = environ; *e; ++e)
    if (std::string_view(*e).substr(0, 10) != "MUP_FAULT_") env_s.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string a0 = "state_test", a1 = "--gtest_filter=DISABLED_CrashChild.Workload",
              a2 = "--gtest_also_run_disabled_tests";
  char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};
  pid_t pid = 0;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1000;
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1001;
  return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
}

TEST(StateCrash, KillBeforeEveryCommitLeavesAConsistentDatabase) {
  if (!fault::enabled()) GTEST_SKIP() << "built with -DMUP_FAULT_POINTS=OFF";
  // What the database holds after a kill before commit k: (operation state, step, audits).
  struct Expect {
    const char* state;
    const char* step;
    size_t audits;
  };
  const Expect expect[] = {
      {"", "", 0}, {"running", "", 0}, {"running", "stage", 0}, {"done", "stage", 1}};
  for (int k = 0; k <= 4; ++k) {
    SCOPED_TRACE("kill before commit " + std::to_string(k));
    ScratchDir dir;
    int r = run_crash_child(dir / "state.db", "state.commit", k);
    ASSERT_EQ(r, k < 4 ? -SIGKILL : 0);
    auto db = StateDb::open(dir / "state.db");
    ASSERT_TRUE(db) << db.error().message();
    ASSERT_OK(db->integrity_check());
    auto report = db->verify_audit();
    ASSERT_TRUE(report && report->ok) << report->problem;
    auto hist = db->history();
    ASSERT_TRUE(hist);
    if (k == 4) {
      EXPECT_EQ(report->records, 2u);
      continue;
    }
    EXPECT_EQ(report->records, expect[k].audits);
    if (*expect[k].state == '\0') {
      EXPECT_TRUE(hist->empty());
      continue;
    }
    ASSERT_EQ(hist->size(), 1u);
    EXPECT_EQ((*hist)[0].state, expect[k].state);
    EXPECT_EQ((*hist)[0].step, expect[k].step);
    EXPECT_EQ(db->unfinished_operations()->size(),
              std::string(expect[k].state) == "running" ? 1u : 0u);
  }
}

TEST(StateCrash, KillDuringMigrationsResumesThem) {
  if (!fault::enabled()) GTEST_SKIP() << "built with -DMUP_FAULT_POINTS=OFF";
  const int latest = StateDb::latest_schema_version();
  for (int k = 0; k < latest; ++k) {
    SCOPED_TRACE("kill before migration commit " + std::to_string(k));
    ScratchDir dir;
    ASSERT_EQ(run_crash_child(dir / "state.db", "state.migrate", k), -SIGKILL);
    {
      RawDb raw(dir / "state.db");
      EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(k));
    }
    auto db = StateDb::open(dir / "state.db");
    ASSERT_TRUE(db) << db.error().message();
    EXPECT_EQ(db->schema_version(), latest);
    ASSERT_OK(db->integrity_check());
    RawDb raw(dir / "state.db");
    EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM schema_migrations"), std::to_string(latest));
  }
}

TEST(StateCrash, KillDuringDowngradeResumesIt) {
  if (!fault::enabled()) GTEST_SKIP() << "built with -DMUP_FAULT_POINTS=OFF";
  const int latest = StateDb::latest_schema_version();
  for (int k = 0; k < 2; ++k) {
    SCOPED_TRACE("kill before downgrade commit " + std::to_string(k));
    ScratchDir dir;
    {
      auto db =
          StateDb::open_with_migrations_for_testing(dir / "state.db", {}, two_newer_migrations());
      ASSERT_TRUE(db) << db.error().message();
    }
    ASSERT_EQ(run_crash_child(dir / "state.db", "state.downgrade", k), -SIGKILL);
    {
      RawDb raw(dir / "state.db");
      EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(latest + 2 - k));
    }
    auto db = StateDb::open(dir / "state.db");
    ASSERT_TRUE(db) << db.error().message();
    EXPECT_EQ(db->schema_version(), latest);
    ASSERT_OK(db->integrity_check());
    RawDb raw(dir / "state.db");
    EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'extra'"), "0");
    EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM schema_migrations"), std::to_string(latest));
  }
}

// --- Power cut: what was not fsynced is lost ----------------------------------------
//
// A forked child runs the workload with MUP_FAULT_ACTION=powercut (so its connections go
// through the power-cut VFS) and, in a listing run, appends a "mark <n>" line to the
// MUP_FAULT_LIST file at each phase boundary; the parent reads which state.sync hits fall in
// which phase, cuts power at them in further children, and reopens the database.

// Runs `body` in a forked child with every MUP_FAULT_* variable replaced by `env` and the
// fault configuration read again. Returns the exit code (body's result) or -signal.
int in_fault_child(const std::vector<std::pair<std::string, std::string>>& env,
                   const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid < 0) return -1000;
  if (pid == 0) {
    std::vector<std::string> names;
    for (char** e = environ; *e; ++e)
      if (std::string_view(*e).starts_with("MUP_FAULT_"))
        names.emplace_back(std::string_view(*e).substr(0, std::string_view(*e).find('=')));
    for (const auto& n : names) unsetenv(n.c_str());
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    fault::reload_config_for_testing();
    _exit(body());
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1001;
  return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
}

void mark(const stdfs::path& list, int n) {
  if (list.empty()) return;
  int fd = ::open(list.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  std::string line = "mark " + std::to_string(n) + "\n";
  if (fd >= 0 && ::write(fd, line.data(), line.size()) < 0) _exit(90);
  if (fd >= 0) ::close(fd);
}

// Phases, separated by marks: 0 open and migrations, 1 T1 (an operation begins, audited), 2
// [checkpoint], 3 T2 (it finishes, audited), 4 close. With `checkpoint`, phase 2 copies the
// WAL into the database so that T2 restarts the WAL, overwriting synced frames.
int power_cut_workload(const stdfs::path& db_path, const stdfs::path& list, bool checkpoint) {
  auto db = StateDb::open(db_path);
  if (!db) return 10;
  mark(list, 1);
  int64_t id = 0;
  if (!db->transaction([&]() -> Status {
        auto r = db->begin_operation(op("install", "web", "2.1.0"));
        if (!r) return tl::unexpected(r.error());
        id = *r;
        return db->append_audit("tester", "install", "web 2.1.0", nullptr).map([](auto&&) {});
      }))
    return 11;
  mark(list, 2);
  if (checkpoint) {
    auto c = detail::Conn::open(db_path, 1000);
    if (!c || !(*c)->exec("PRAGMA wal_checkpoint(PASSIVE)", "checkpoint")) return 12;
  }
  mark(list, 3);
  if (!db->transaction([&]() -> Status {
        MUP_TRY(db->finish_operation(id, "done", 10));
        return db->append_audit("tester", "pin", "web", nullptr).map([](auto&&) {});
      }))
    return 13;
  mark(list, 4);
  return 0;
}

struct SyncHit {
  int phase;
  long hit;
};

// The state.sync hits of one uncut run, with their phases.
std::vector<SyncHit> list_sync_hits(const stdfs::path& db, const stdfs::path& list,
                                    bool checkpoint) {
  int r = in_fault_child({{"MUP_FAULT_ACTION", "powercut"}, {"MUP_FAULT_LIST", list.string()}},
                         [&] { return power_cut_workload(db, list, checkpoint); });
  EXPECT_EQ(r, 0) << "listing run";
  std::vector<SyncHit> hits;
  std::ifstream in(list);
  std::string name;
  long n = 0;
  int phase = 0;
  while (in >> name >> n) {
    if (name == "mark") phase = static_cast<int>(n);
    if (name == "state.sync") hits.push_back({phase, n});
  }
  return hits;
}

int cut_at_sync(const stdfs::path& db, long hit, bool checkpoint) {
  return in_fault_child({{"MUP_FAULT_ACTION", "powercut"},
                         {"MUP_FAULT_AT", "state.sync"},
                         {"MUP_FAULT_AFTER", std::to_string(hit)}},
                        [&] { return power_cut_workload(db, {}, checkpoint); });
}

// What a reopened database holds: the operation's state ("" when absent) and the audit
// records; checks integrity and the audit chain on the way.
void expect_after_cut(const stdfs::path& path, const std::string& op_state, uint64_t audits) {
  auto db = StateDb::open(path);
  ASSERT_TRUE(db) << db.error().message();
  ASSERT_OK(db->integrity_check());
  auto report = db->verify_audit();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->records, audits);
  auto hist = db->history();
  ASSERT_TRUE(hist);
  if (op_state.empty()) {
    EXPECT_TRUE(hist->empty());
  } else {
    ASSERT_EQ(hist->size(), 1u);
    EXPECT_EQ((*hist)[0].state, op_state);
  }
}

TEST(StatePowerCut, CutBeforeTheCommitSyncLosesOnlyThatTransaction) {
  if (!fault::enabled()) GTEST_SKIP() << "built with -DMUP_FAULT_POINTS=OFF";
  ScratchDir list_dir;
  auto hits = list_sync_hits(list_dir / "state.db", list_dir / "faults", false);
  auto t2 = std::find_if(hits.rbegin(), hits.rend(), [](auto& h) { return h.phase == 3; });
  ASSERT_NE(t2, hits.rend()) << "T2's commit passes no state.sync";
  // The last sync of T2 is its commit's: every frame is written, none is durable.
  ScratchDir dir;
  ASSERT_EQ(cut_at_sync(dir / "state.db", t2->hit, false), -SIGKILL);
  EXPECT_GT(stdfs::file_size(dir / "state.db-wal"), 0u) << "T1's frames were synced";
  expect_after_cut(dir / "state.db", "running", 1);
}

TEST(StatePowerCut, CutAtEverySyncKeepsExactlyTheSyncedCommits) {
  if (!fault::enabled()) GTEST_SKIP() << "built with -DMUP_FAULT_POINTS=OFF";
  ScratchDir list_dir;
  auto hits = list_sync_hits(list_dir / "state.db", list_dir / "faults", true);
  ASSERT_TRUE(std::any_of(hits.begin(), hits.end(), [](auto& h) { return h.phase == 3; }));
  for (const SyncHit& h : hits) {
    SCOPED_TRACE("power cut at state.sync hit " + std::to_string(h.hit) + " in phase " +
                 std::to_string(h.phase));
    ScratchDir dir;
    ASSERT_EQ(cut_at_sync(dir / "state.db", h.hit, true), -SIGKILL);
    if (h.phase <= 1) expect_after_cut(dir / "state.db", "", 0);
    if (h.phase == 2 || h.phase == 3) expect_after_cut(dir / "state.db", "running", 1);
    if (h.phase == 4) expect_after_cut(dir / "state.db", "done", 2);
  }
}

TEST(StatePowerCut, OnlyThePowercutActionUsesTheShim) {
  if (!fault::enabled()) GTEST_SKIP() << "built with -DMUP_FAULT_POINTS=OFF";
  // The VFS name of a state connection, and whether a commit passed state.sync.
  auto probe = [](const std::string& action, std::string* vfs, bool* synced) {
    ScratchDir dir;
    stdfs::path out = dir / "vfs", list = dir / "faults";
    std::vector<std::pair<std::string, std::string>> env = {{"MUP_FAULT_LIST", list.string()}};
    if (!action.empty()) env.emplace_back("MUP_FAULT_ACTION", action);
    int r = in_fault_child(env, [&] {
      auto db = StateDb::open(dir / "state.db");
      if (!db || !db->append_audit("tester", "pin", "web", nullptr)) return 10;
      auto c = detail::Conn::open(dir / "state.db", 1000);
      if (!c) return 11;
      char* name = nullptr;
      sqlite3_file_control((*c)->handle(), "main", SQLITE_FCNTL_VFSNAME, &name);
      std::ofstream(out) << (name ? name : "");
      sqlite3_free(name);
      return 0;
    });
    EXPECT_EQ(r, 0);
    std::ifstream(out) >> *vfs;
    std::stringstream faults;
    faults << std::ifstream(list).rdbuf();
    *synced = faults.str().find("state.sync") != std::string::npos;
  };
  const std::string dflt = sqlite3_vfs_find(nullptr)->zName;
  std::string vfs;
  bool synced = true;
  probe("", &vfs, &synced);
  EXPECT_EQ(vfs, dflt);
  EXPECT_FALSE(synced);
  probe("kill", &vfs, &synced);
  EXPECT_EQ(vfs, dflt);
  EXPECT_FALSE(synced);
  probe("powercut", &vfs, &synced);
  EXPECT_EQ(vfs, "mup-powercut/" + dflt);
  EXPECT_TRUE(synced);
}

// --- Transactions -------------------------------------------------------------------

TEST_F(StateTest, TransactionsGroupWritesAndNest) {
  StateDb db = open_db();
  auto id = db.begin_operation(op("activate", "web", "2.1.0"));
  ASSERT_TRUE(id);
  // A failing body rolls back everything it wrote, the audit record included.
  auto r = db.transaction([&]() -> Status {
    MUP_TRY(db.finish_operation(*id, "done"));
    MUP_TRY(db.append_audit("tester", "activate", "web 2.1.0", {{"op", *id}}));
    return fail(Errc::io, "switch failed");
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "switch failed");
  EXPECT_FALSE(db.in_transaction());
  EXPECT_EQ((*db.operation(*id))->state, "running");
  EXPECT_EQ(db.verify_audit()->records, 0u);

  // Nested levels are savepoints: an inner rollback keeps the outer writes.
  ASSERT_OK(db.begin());
  ASSERT_OK(db.add_remote("a", "https://a/"));
  ASSERT_OK(db.begin());
  ASSERT_OK(db.add_remote("b", "https://b/"));
  db.rollback();
  ASSERT_OK(db.commit());
  EXPECT_FALSE(db.in_transaction());
  auto rs = db.remotes();
  ASSERT_EQ(rs->size(), 1u);
  EXPECT_EQ((*rs)[0].first, "a");
}

// --- Inventory ----------------------------------------------------------------------

TEST_F(StateTest, Remotes) {
  StateDb db = open_db();
  ASSERT_OK(db.add_remote("origin", "https://repo.example/"));
  ASSERT_OK(db.add_remote("mirror", "https://mirror.example/"));
  auto dup = db.add_remote("origin", "https://other/");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), Errc::already_exists);
  EXPECT_NE(dup.error().message().find("already exists"), std::string::npos);
  EXPECT_EQ(*db.remote_url("origin"), "https://repo.example/") << "duplicate changed nothing";
  EXPECT_FALSE(db.remote_url("nope")->has_value());
  auto all = db.remotes();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].first, "mirror");
  EXPECT_TRUE(*db.remove_remote("mirror"));
  EXPECT_FALSE(*db.remove_remote("mirror"));
  EXPECT_EQ(db.remotes()->size(), 1u);
}

TEST_F(StateTest, ComponentsVersionsSnapshots) {
  StateDb db = open_db();
  ComponentRow c{"web", "origin", "service", "2.0.0", "", "", 0, "", {}};
  ASSERT_OK(db.upsert_component(c));
  ASSERT_OK(db.upsert_component({"db", "origin", "service", "1.0.0", "", "", 0, "", {}}));
  c.previous_version = "2.0.0";
  c.active_version = "2.1.0";
  c.pinned_version = "2.1.0";
  ASSERT_OK(db.upsert_component(c));
  auto got = db.component("web");
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->active_version, "2.1.0");
  EXPECT_EQ((*got)->previous_version, "2.0.0");
  EXPECT_EQ((*got)->pinned_version, "2.1.0");
  EXPECT_GT((*got)->updated_at_ms, 0);
  EXPECT_FALSE(db.component("nope")->has_value());
  auto comps = db.components();
  ASSERT_EQ(comps->size(), 2u);
  EXPECT_EQ((*comps)[0].name, "db");

  VersionRow v1{"web", "2.0.0", std::string(64, 'a'), {{"version", "2.0.0"}}, 100, 1000};
  VersionRow v2{"web", "2.1.0", std::string(64, 'b'), {{"version", "2.1.0"}}, 200, 2000};
  ASSERT_OK(db.put_version(v1));
  ASSERT_OK(db.put_version(v2));
  v2.size = 250;
  ASSERT_OK(db.put_version(v2));  // replace
  auto vs = db.versions("web");
  ASSERT_EQ(vs->size(), 2u);
  EXPECT_EQ((*vs)[0].version, "2.1.0") << "newest first";
  EXPECT_EQ((*vs)[0].size, 250u);
  EXPECT_EQ((*vs)[1].manifest, (json{{"version", "2.0.0"}}));
  EXPECT_TRUE(*db.delete_version("web", "2.0.0"));
  EXPECT_FALSE(*db.delete_version("web", "2.0.0")) << "repeatable";
  EXPECT_EQ(db.versions("web")->size(), 1u);
  EXPECT_TRUE(db.versions("db")->empty());

  SnapshotRow s1{"s1", "web", "2.0.0", 1000, "h1", "/root/snapshots/s1", 3, 300};
  SnapshotRow s2{"s2", "", "", 2000, "h2", "/root/snapshots/s2", 9, 900};
  ASSERT_OK(db.add_snapshot(s1));
  ASSERT_OK(db.add_snapshot(s2));
  EXPECT_EQ(db.add_snapshot(s1).error().code(), Errc::already_exists);
  auto all = db.snapshots();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, "s2");
  auto web = db.snapshots("web");
  ASSERT_EQ(web->size(), 1u);
  EXPECT_EQ((*web)[0].path, "/root/snapshots/s1");
  EXPECT_EQ((*web)[0].bytes, 300u);
  EXPECT_TRUE(*db.delete_snapshot("s1"));
  EXPECT_FALSE(*db.delete_snapshot("s1"));
  EXPECT_EQ(db.snapshots()->size(), 1u);
  ASSERT_OK(db.integrity_check());
}

// --- Audit --------------------------------------------------------------------------

class AuditTest : public StateTest {
 protected:
  void SetUp() override {
    db_ = std::make_unique<StateDb>(open_db());
    ASSERT_OK(db_->transaction([&]() -> Status {  // one commit: keeps the tests fast
      for (int i = 1; i <= 5; ++i)
        MUP_TRY(db_->append_audit("tester", "install", "web " + std::to_string(i), {{"n", i}}));
      return {};
    }));
  }
  // Runs SQL on the file with the append-only triggers out of the way.
  void tamper(const std::string& sql) {
    RawDb raw(path_);
    std::string err;
    ASSERT_EQ(raw.exec("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; " + sql, &err),
              SQLITE_OK)
        << err;
  }
  AuditReport verify(const crypto::PublicKey* key = nullptr) {
    auto r = db_->verify_audit(key);
    EXPECT_TRUE(r) << r.error().message();
    return r ? *r : AuditReport{};
  }

  std::unique_ptr<StateDb> db_;
};

TEST_F(AuditTest, ChainVerifies) {
  auto report = verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 5u);
  auto recs = db_->audit();
  ASSERT_EQ(recs->size(), 5u);
  const AuditRecord& last = recs->front();
  EXPECT_EQ(last.seq, 5) << "newest first";
  EXPECT_EQ(last.detail, (json{{"n", 5}}));
  EXPECT_EQ((*recs)[1].hash, last.prev_hash);
  EXPECT_EQ(recs->back().prev_hash, std::string(64, '0'));
  EXPECT_EQ(last.hash, audit_record_hash(last.seq, last.at_ms, last.actor, last.action,
                                         last.subject, last.detail.dump(), last.prev_hash));
  EXPECT_EQ(db_->audit(2)->size(), 2u);
  // The file refuses plain edits.
  RawDb raw(path_);
  std::string err;
  EXPECT_NE(raw.exec("UPDATE audit SET detail = '{}' WHERE seq = 2", &err), SQLITE_OK);
  EXPECT_NE(err.find("append-only"), std::string::npos) << err;
  EXPECT_NE(raw.exec("DELETE FROM audit WHERE seq = 5"), SQLITE_OK);
}

TEST_F(AuditTest, EditedRecordIsNamed) {
  tamper(R"(UPDATE audit SET detail = '{"n":30}' WHERE seq = 3)");
  auto report = verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.bad_seq, 3);
  EXPECT_EQ(report.problem, "record 3 was edited (hash mismatch)");
}

TEST_F(AuditTest, RewrittenRecordIsCaughtByItsSuccessor) {
  // Edit record 3 and fix its own hash: record 4 no longer links to it.
  auto recs = *db_->audit();
  const AuditRecord& r3 = recs[2];
  std::string h =
      audit_record_hash(3, r3.at_ms, r3.actor, r3.action, r3.subject, R"({"n":30})", r3.prev_hash);
  tamper(R"(UPDATE audit SET detail = '{"n":30}', hash = ')" + h + "' WHERE seq = 3");
  auto report = verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.bad_seq, 4);
  EXPECT_NE(report.problem.find("prev_hash does not match record 3"), std::string::npos)
      << report.problem;
}

TEST_F(AuditTest, DeletedMiddleRecordIsNamed) {
  tamper("DELETE FROM audit WHERE seq = 3");
  auto report = verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.bad_seq, 3);
  EXPECT_EQ(report.problem, "record 3 is missing (seq jumps 2 -> 4)");
}

TEST_F(AuditTest, ReorderedRecordsAreDetected) {
  tamper(
      "UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; "
      "UPDATE audit SET seq = 4 WHERE seq = -1");
  auto report = verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.bad_seq, 3);
  EXPECT_NE(report.problem.find("record 3 is out of order"), std::string::npos) << report.problem;
}

TEST_F(AuditTest, RemovedTailIsDetectedByTheHead) {
  tamper("DELETE FROM audit WHERE seq = 5");
  auto report = verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.bad_seq, 5);
  EXPECT_EQ(report.problem, "the log ends at 4 but the head says 5 (records removed from the end)");
}

TEST_F(AuditTest, SignedLogVerifiesWithTheNodeKeyOnly) {
  auto key = crypto::PrivateKey::generate();
  auto other = crypto::PrivateKey::generate();
  ASSERT_TRUE(key && other);
  // A fresh log, all signed.
  ScratchDir dir;
  auto db = StateDb::open(dir / "state.db", clock_.fn());
  ASSERT_TRUE(db);
  db->set_audit_key(*key);
  for (int i = 1; i <= 3; ++i) {
    auto r = db->append_audit("agent", "rollback", "web", {{"n", i}});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->signature.size(), 128u) << "ed25519, hex";
  }
  auto ok = db->verify_audit(&key->public_key());
  ASSERT_TRUE(ok && ok->ok) << ok->problem;
  auto wrong = db->verify_audit(&other->public_key());
  EXPECT_FALSE(wrong->ok);
  EXPECT_EQ(wrong->problem, "signature of record 1 does not verify");

  {
    RawDb raw(dir / "state.db");
    std::string sig = raw.scalar("SELECT signature FROM audit WHERE seq = 2");
    sig[10] = sig[10] == '0' ? '1' : '0';
    ASSERT_EQ(raw.exec("DROP TRIGGER audit_no_update; UPDATE audit SET signature = '" + sig +
                       "' WHERE seq = 2"),
              SQLITE_OK);
  }
  auto edited = db->verify_audit(&key->public_key());
  EXPECT_FALSE(edited->ok);
  EXPECT_EQ(edited->bad_seq, 2);
  EXPECT_EQ(edited->problem, "signature of record 2 does not verify");
  EXPECT_TRUE(db->verify_audit()->ok) << "the chain itself is intact";

  // The fixture's log is unsigned: with a key, that is a failure (at its last record).
  auto unsigned_log = verify(&key->public_key());
  EXPECT_FALSE(unsigned_log.ok);
  EXPECT_NE(unsigned_log.problem.find("is not signed"), std::string::npos);

  // Unsigned records from before the key, then signed ones: verifies; an unsigned record
  // after a signed one does not.
  ScratchDir dir2;
  auto db2 = StateDb::open(dir2 / "state.db", clock_.fn());
  ASSERT_TRUE(db2);
  ASSERT_TRUE(db2->append_audit("agent", "install", "web", nullptr));
  db2->set_audit_key(*key);
  ASSERT_TRUE(db2->append_audit("agent", "audit-key-created", "", nullptr));
  auto mixed = db2->verify_audit(&key->public_key());
  ASSERT_TRUE(mixed && mixed->ok) << mixed->problem;
  db2->set_audit_key(std::nullopt);
  ASSERT_TRUE(db2->append_audit("mallory", "install", "web", nullptr));
  auto tail = db2->verify_audit(&key->public_key());
  EXPECT_FALSE(tail->ok);
  EXPECT_EQ(tail->problem, "record 3 is not signed");
  ASSERT_OK(db_->integrity_check());
}

TEST_F(AuditTest, TrimmedChainVerifiesFromItsBase) {
  HistoryRetention keep;
  keep.audit = 2;
  keep.dry_run = true;
  auto dry = db_->trim_history(keep);
  ASSERT_TRUE(dry) << dry.error().message();
  EXPECT_EQ(dry->audit, 3u);
  EXPECT_EQ(db_->audit()->size(), 5u) << "a dry run changes nothing";
  keep.dry_run = false;
  auto t = db_->trim_history(keep);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->audit, 3u);
  EXPECT_EQ(t->audit_base, 3);
  EXPECT_TRUE(t->audit_problem.empty()) << t->audit_problem;
  auto recs = *db_->audit();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs.back().seq, 4);
  auto report = verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 2u);
  EXPECT_EQ(report.base, 3);
  // Appending goes on from the head; a second trim moves the base forward only.
  ASSERT_TRUE(db_->append_audit("tester", "gc", "", nullptr));
  EXPECT_EQ(db_->trim_history(keep)->audit, 1u);
  EXPECT_TRUE(verify().ok);
  EXPECT_EQ(verify().base, 4);
  keep.audit = 10;
  EXPECT_EQ(db_->trim_history(keep)->audit, 0u) << "fewer than 10 left: nothing to cut";

  RawDb raw(path_);
  std::string err;
  EXPECT_NE(raw.exec("DELETE FROM audit WHERE seq = 5", &err), SQLITE_OK) << "above the base";
  EXPECT_NE(err.find("append-only"), std::string::npos) << err;
  EXPECT_NE(raw.exec("UPDATE audit_base SET seq = 1 WHERE id = 1", &err), SQLITE_OK);
  EXPECT_NE(err.find("only moves forward"), std::string::npos) << err;
  EXPECT_NE(raw.exec("DELETE FROM audit_base"), SQLITE_OK);
  // The first kept record no longer linking to the base is named.
  tamper("UPDATE audit SET prev_hash = '" + std::string(64, 'f') + "' WHERE seq = 5");
  auto bad = verify();
  EXPECT_FALSE(bad.ok);
  EXPECT_EQ(bad.bad_seq, 5);
  EXPECT_NE(bad.problem.find("does not follow the audit base (record 4"), std::string::npos)
      << bad.problem;
}

TEST_F(AuditTest, ABrokenChainIsNeverTrimmed) {
  tamper(R"(UPDATE audit SET detail = '{"n":20}' WHERE seq = 2)");
  HistoryRetention keep;
  keep.audit = 1;
  auto t = db_->trim_history(keep);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->audit, 0u);
  EXPECT_EQ(t->audit_problem, "record 2 was edited (hash mismatch)");
  EXPECT_EQ(db_->audit()->size(), 5u) << "the evidence stays";
  // Nor a signed log that does not verify under the node's key (this one is unsigned).
  ScratchDir dir;
  auto db = StateDb::open(dir / "state.db", clock_.fn());
  ASSERT_TRUE(db);
  auto key = crypto::PrivateKey::generate();
  ASSERT_TRUE(key);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(db->append_audit("agent", "install", "web", nullptr));
  auto unsigned_log = db->trim_history(keep, &key->public_key());
  ASSERT_TRUE(unsigned_log);
  EXPECT_EQ(unsigned_log->audit, 0u);
  EXPECT_NE(unsigned_log->audit_problem.find("not signed"), std::string::npos);
  db->set_audit_key(*key);
  ASSERT_TRUE(db->append_audit("agent", "audit-key-created", "", nullptr));
  ASSERT_TRUE(db->append_audit("agent", "install", "web", nullptr));
  auto signed_log = db->trim_history(keep, &key->public_key());
  ASSERT_TRUE(signed_log) << signed_log.error().message();
  EXPECT_EQ(signed_log->audit, 4u) << signed_log->audit_problem;
  auto after = db->verify_audit(&key->public_key());
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->ok) << after->problem;
}

TEST_F(StateTest, TrimHistoryKeepsTheNewestOperationsAndEveryRunningOne) {
  StateDb db = open_db();
  auto running = db.begin_operation(op("install", "web", "9.0.0"));  // oldest, never finished
  ASSERT_TRUE(running);
  ASSERT_OK(db.record_step(*running, "fetch"));
  std::vector<int64_t> ids;
  for (int i = 0; i < 10; ++i) {
    auto id = db.begin_operation(op("activate", "web", "1.0." + std::to_string(i)));
    ASSERT_TRUE(id);
    ASSERT_OK(db.record_step(*id, "activate"));
    ASSERT_OK(db.record_step(*id, "commit"));
    ASSERT_OK(db.finish_operation(*id, "done"));
    ids.push_back(*id);
  }
  HistoryRetention keep;
  keep.operations = 4;
  keep.steps = 2;
  keep.dry_run = true;
  auto dry = db.trim_history(keep);
  ASSERT_TRUE(dry) << dry.error().message();
  EXPECT_EQ(dry->operations, 6u);
  EXPECT_EQ(dry->steps, 16u) << "2 steps of each of the 8 finished operations past the newest 2";
  EXPECT_EQ(db.history()->size(), 11u) << "a dry run changes nothing";
  keep.dry_run = false;
  auto t = db.trim_history(keep);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->operations, 6u);
  EXPECT_EQ(t->steps, 16u);
  auto h = *db.history();
  ASSERT_EQ(h.size(), 5u);
  EXPECT_EQ(h.back().id, *running) << "a running operation is never trimmed";
  EXPECT_EQ(h.front().id, ids.back());
  EXPECT_EQ(h[3].id, ids[6]);
  EXPECT_EQ(db.steps(ids[9])->size(), 2u);
  EXPECT_EQ(db.steps(ids[8])->size(), 2u);
  EXPECT_TRUE(db.steps(ids[7])->empty()) << "kept in the history, without its steps";
  EXPECT_EQ(db.steps(*running)->size(), 1u);
  ASSERT_EQ(db.unfinished_operations()->size(), 1u);
  // 0 keeps all of a kind; the newest operation's id is not reused after trimming.
  EXPECT_EQ(db.trim_history(HistoryRetention{})->operations, 0u);
  auto next = db.begin_operation(op("gc", ""));
  ASSERT_TRUE(next);
  EXPECT_GT(*next, ids.back());
  ASSERT_OK(db.integrity_check());
}

// --- Released schemas, frozen ---------------------------------------------------------
//
// testdata/schema_v<N>.sql is a database as the mup that introduced schema N wrote it,
// holding what write_fixture_workload() writes. Each is loaded and opened by this build:
// the migrations must apply and every row, the audit chain included, must survive.
//
// To freeze a schema when releasing it (one file per released schema, never edited):
//   MUP_STATE_FIXTURE_DB=/tmp/v.db build/tests/state_test
//       --gtest_also_run_disabled_tests --gtest_filter=DISABLED_SchemaFixture.Write
//   { echo "-- <what it is, from which commit>"; sqlite3 /tmp/v.db .dump;
//     echo "PRAGMA user_version=<N>;"; } > src/state/testdata/schema_v<N>.sql
// (.dump does not carry user_version.) schema_v3.sql was written this way by 0e9889e.

void write_fixture_workload(StateDb& db) {
  ASSERT_OK(db.add_remote("origin", "https://repo.example/"));
  OperationRecord install = op("install", "web", "1.0.0");
  install.actor = "fixture";
  auto id = db.begin_operation(install);
  ASSERT_TRUE(id);
  ASSERT_OK(db.record_step(*id, "fetch", {{"pieces", 3}}));
  ASSERT_OK(db.record_step(*id, "activate", {{"staging", "components/web/.tmp-1"}}));
  ASSERT_OK(db.transaction([&]() -> Status {
    MUP_TRY(db.finish_operation(*id, "done", 4096));
    return db.append_audit("fixture", "install", "web 1.0.0", {{"op", *id}}).map([](auto&&) {});
  }));
  ComponentRow c;
  c.name = "web";
  c.remote = "origin";
  c.type = "service";
  c.active_version = "1.0.0";
  ASSERT_OK(db.upsert_component(c));
  VersionRow v;
  v.component = "web";
  v.version = "1.0.0";
  v.index_sha256 = std::string(64, 'a');
  v.manifest = {{"name", "web"}, {"version", "1.0.0"}, {"type", "service"}};
  v.size = 12345;
  ASSERT_OK(db.put_version(v));
  SnapshotRow snap;
  snap.id = "web-20231114-abcdef";
  snap.component = "web";
  snap.version = "1.0.0";
  snap.content_hash = std::string(64, 'b');
  snap.path = "snapshots/web/web-20231114-abcdef";
  snap.files = 2;
  snap.bytes = 10;
  ASSERT_OK(db.add_snapshot(snap));
  OperationRecord upgrade = op("install", "web", "1.1.0");
  upgrade.actor = "fixture";
  upgrade.from_version = "1.0.0";
  auto id2 = db.begin_operation(upgrade);
  ASSERT_TRUE(id2);
  ASSERT_OK(db.transaction([&]() -> Status {
    MUP_TRY(db.finish_operation(*id2, "failed", 0, "signature check failed for targets.json"));
    return db.append_audit("fixture", "install-failed", "web 1.1.0", {{"op", *id2}})
        .map([](auto&&) {});
  }));
  ASSERT_TRUE(
      db.append_audit("fixture", "pin", "web", {{"version", "1.0.0"}, {"note", "caf\xc3\xa9"}}));
}

TEST(DISABLED_SchemaFixture, Write) {
  const char* path = std::getenv("MUP_STATE_FIXTURE_DB");
  ASSERT_NE(path, nullptr) << "set MUP_STATE_FIXTURE_DB to the database file to write";
  int64_t t = 1'700'000'000'000;
  auto db = StateDb::open(path, [&] { return t += 1000; });
  ASSERT_TRUE(db) << db.error().message();
  write_fixture_workload(*db);
}

void expect_fixture_workload(StateDb& db) {
  auto report = db.verify_audit();
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->records, 3u);
  auto audit = db.audit();
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 3u);
  EXPECT_EQ((*audit)[0].action, "pin");
  EXPECT_EQ((*audit)[0].detail["note"], "caf\xc3\xa9");
  EXPECT_EQ((*audit)[2].subject, "web 1.0.0");

  auto hist = db.history();
  ASSERT_TRUE(hist);
  ASSERT_EQ(hist->size(), 2u);
  EXPECT_EQ((*hist)[0].state, "failed");
  EXPECT_EQ((*hist)[0].error, "signature check failed for targets.json");
  EXPECT_EQ((*hist)[1].state, "done");
  EXPECT_EQ((*hist)[1].bytes, 4096u);
  EXPECT_EQ((*hist)[1].detail["staging"], "components/web/.tmp-1");
  auto steps = db.steps((*hist)[1].id);
  ASSERT_TRUE(steps);
  ASSERT_EQ(steps->size(), 2u);
  EXPECT_EQ((*steps)[0].step, "fetch");
  EXPECT_TRUE(db.unfinished_operations()->empty());

  EXPECT_EQ(*db.remote_url("origin"), "https://repo.example/");
  auto web = db.component("web");
  ASSERT_TRUE(web && *web);
  EXPECT_EQ((*web)->active_version, "1.0.0");
  EXPECT_EQ((*web)->type, "service");
  auto versions = db.versions("web");
  ASSERT_TRUE(versions);
  ASSERT_EQ(versions->size(), 1u);
  EXPECT_EQ((*versions)[0].index_sha256, std::string(64, 'a'));
  EXPECT_EQ((*versions)[0].manifest["type"], "service");
  EXPECT_EQ((*versions)[0].size, 12345u);
  auto snaps = db.snapshots("web");
  ASSERT_TRUE(snaps);
  ASSERT_EQ(snaps->size(), 1u);
  EXPECT_EQ((*snaps)[0].id, "web-20231114-abcdef");

  // Ids go on from the fixture's, never reused (AUTOINCREMENT survived the dump).
  auto next = db.begin_operation(op("activate", "web", "1.0.0"));
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, 3);
  ASSERT_TRUE(db.append_audit("tester", "activate", "web 1.0.0"));
  EXPECT_TRUE(db.verify_audit()->ok) << "the chain goes on from the fixture's head";
}

std::vector<stdfs::path> schema_fixtures() {
  std::vector<stdfs::path> out;
  const stdfs::path dir = stdfs::path(__FILE__).parent_path() / "testdata";
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind("schema_v", 0) == 0 && e.path().extension() == ".sql")
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(SchemaFixture, EveryReleasedSchemaMigratesWithItsRowsIntact) {
  const auto fixtures = schema_fixtures();
  ASSERT_FALSE(fixtures.empty()) << "no testdata/schema_v*.sql beside " << __FILE__;
  for (const stdfs::path& fixture : fixtures) {
    SCOPED_TRACE(fixture.filename().string());
    std::ifstream in(fixture);
    std::stringstream sql;
    sql << in.rdbuf();
    ScratchDir dir;
    {
      RawDb raw(dir / "state.db");
      std::string err;
      ASSERT_EQ(raw.exec(sql.str(), &err), SQLITE_OK) << err;
      ASSERT_NE(raw.scalar("PRAGMA user_version"), "0") << "the fixture must set user_version";
    }
    auto db = StateDb::open(dir / "state.db");
    ASSERT_TRUE(db) << db.error().message();
    EXPECT_EQ(db->schema_version(), StateDb::latest_schema_version());
    ASSERT_OK(db->integrity_check());
    {
      RawDb raw(dir / "state.db");
      EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM schema_migrations"),
                std::to_string(StateDb::latest_schema_version()));
      EXPECT_EQ(raw.scalar("SELECT COUNT(*) FROM schema_migrations WHERE down_sql = ''"), "0");
    }
    expect_fixture_workload(*db);
  }
}

}  // namespace
}  // namespace mup::state

namespace mup::state {
namespace {

TEST_F(StateTest, PlansAreJournaledAndTheUnfinishedOnesListed) {
  StateDb db = open_db();
  PlanRow p;
  p.body = {{"atomic", true}, {"items", nlohmann::json::array()}};
  auto a = db.begin_plan(p);
  auto b = db.begin_plan(p);
  ASSERT_TRUE(a && b);
  EXPECT_LT(*a, *b);
  auto open = db.unfinished_plans();
  ASSERT_TRUE(open);
  ASSERT_EQ(open->size(), 2u);
  EXPECT_EQ((*open)[0].state, "running");
  EXPECT_EQ((*open)[0].body["atomic"], true);
  PlanRow end = (*open)[0];
  end.state = "committed";
  end.body["items"] = {{{"state", "committed"}}};
  end.finished_at_ms = 1234;
  ASSERT_TRUE(db.update_plan(end));
  open = db.unfinished_plans();
  ASSERT_TRUE(open);
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].id, *b);
  auto read = db.plan(*a);
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((**read).state, "committed");
  EXPECT_EQ((**read).finished_at_ms, 1234);
  EXPECT_EQ((**read).body["items"][0]["state"], "committed");
  auto none = db.plan(*b + 1);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  PlanRow ghost;
  ghost.id = *b + 1;
  ghost.state = "failed";
  auto missing = db.update_plan(ghost);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::not_found);
}

TEST_F(StateTest, TrimHistoryKeepsTheNewestFinishedDeploymentsAndPlans) {
  StateDb db = open_db();
  DeploymentRow live;  // the oldest, still running: never trimmed
  live.component = "db";
  live.strategy = "canary";
  live.state = "install";
  auto live_id = db.begin_deployment(live);
  ASSERT_TRUE(live_id);
  std::vector<int64_t> done;
  for (int i = 0; i < 5; ++i) {
    DeploymentRow d;
    d.component = "web";
    d.strategy = "rolling";
    d.state = "install";
    auto id = db.begin_deployment(d);
    ASSERT_TRUE(id) << id.error().message();
    d.id = *id;
    d.state = "committed";
    d.finished_at_ms = 100 + i;
    ASSERT_OK(db.update_deployment(d));
    done.push_back(*id);
  }
  PlanRow open_plan;
  auto open_id = db.begin_plan(open_plan);
  ASSERT_TRUE(open_id);
  for (int i = 0; i < 4; ++i) {
    auto id = db.begin_plan(PlanRow{});
    ASSERT_TRUE(id);
    PlanRow p;
    p.id = *id;
    p.state = "committed";
    p.finished_at_ms = 200 + i;
    ASSERT_OK(db.update_plan(p));
  }
  HistoryRetention keep;
  keep.deployments = 2;
  keep.plans = 1;
  auto t = db.trim_history(keep);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->deployments, 3u);
  EXPECT_EQ(t->plans, 3u);
  auto rows = *db.deployments();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].id, done[4]);
  EXPECT_EQ(rows[1].id, done[3]);
  EXPECT_EQ(rows[2].id, *live_id);
  EXPECT_TRUE(db.deployment_steps(done[0])->empty()) << "its steps went with it";
  EXPECT_EQ(db.deployment_steps(done[4])->size(), 2u);
  EXPECT_FALSE(*db.plan(*open_id + 1)) << "an old finished plan";
  EXPECT_TRUE(*db.plan(*open_id + 4)) << "the newest finished plan";
  EXPECT_TRUE(*db.plan(*open_id)) << "a running plan is never trimmed";
  ASSERT_OK(db.integrity_check());
}

TEST_F(StateTest, DeploymentsJournalTheirStatesOneUnfinishedPerComponent) {
  StateDb db = open_db();
  DeploymentRow d;
  d.component = "web";
  d.from_version = "1.0.0";
  d.strategy = "blue-green";
  d.state = "install";
  d.detail = {{"keep_old_ms", 600000}};
  auto id = db.begin_deployment(d);
  ASSERT_TRUE(id) << id.error().message();
  auto second = db.begin_deployment(d);
  ASSERT_FALSE(second) << "one unfinished deployment per component";
  EXPECT_EQ(second.error().code(), Errc::busy);
  DeploymentRow other = d;
  other.component = "db";
  ASSERT_TRUE(db.begin_deployment(other));

  auto row = db.deployment(*id);
  ASSERT_TRUE(row && *row);
  DeploymentRow r = **row;
  EXPECT_EQ(r.detail["keep_old_ms"], 600000);
  r.to_version = "2.0.0";
  r.state = "start-new";
  ASSERT_OK(db.update_deployment(r));
  r.detail["note"] = "same state: no step";
  ASSERT_OK(db.update_deployment(r));
  r.state = "committed";
  r.finished_at_ms = 42;
  ASSERT_OK(db.update_deployment(r));
  auto steps = db.deployment_steps(*id);
  ASSERT_TRUE(steps);
  ASSERT_EQ(steps->size(), 3u);
  EXPECT_EQ((*steps)[0].step, "install");
  EXPECT_EQ((*steps)[1].step, "start-new");
  EXPECT_EQ((*steps)[2].step, "committed");

  auto unfinished = db.unfinished_deployments();
  ASSERT_TRUE(unfinished);
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].component, "db");
  ASSERT_TRUE(db.begin_deployment(d)) << "the finished one no longer blocks a new one";
  auto web = db.deployments("web");
  ASSERT_TRUE(web);
  ASSERT_EQ(web->size(), 2u);
  EXPECT_GT((*web)[0].id, (*web)[1].id) << "newest first";
  EXPECT_EQ((*web)[1].to_version, "2.0.0");
  EXPECT_EQ((*web)[1].finished_at_ms, 42);
  DeploymentRow missing;
  missing.id = 999;
  EXPECT_FALSE(db.update_deployment(missing));
}

}  // namespace
}  // namespace mup::state
