#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>

#include "snapshot/manifest.hpp"
#include "snapshot/snapshot_store.hpp"
#include "test_util.hpp"

extern char** environ;

namespace mup::snapshot {
namespace {

namespace stdfs = std::filesystem;

// fault::point reads MUP_FAULT_* once per process, so fault cases run in a fresh process:
// this test binary re-executed with MUP_SNAPSHOT_CHILD=<op>, which is handled here, before
// GoogleTest starts. Exit codes: 0 ok, 3 no_space, 4 other error.
int child_main(std::string_view op) {
  auto env = [](const char* k) { return std::string(std::getenv(k) ? std::getenv(k) : ""); };
  auto store = SnapshotStore::open(env("MUP_SNAPSHOT_ROOT"));
  if (!store) return 4;
  Status s;
  if (op == "create") {
    auto r = store->create("web", env("MUP_SNAPSHOT_STATE"), "1.0.0", "child");
    if (!r) s = tl::unexpected(r.error());
  } else if (op == "restore") {
    s = store->restore(env("MUP_SNAPSHOT_ID"), env("MUP_SNAPSHOT_STATE"));
  } else if (op == "remove") {
    s = store->remove(env("MUP_SNAPSHOT_ID"));
  } else {
    return 5;
  }
  if (s) return 0;
  std::fprintf(stderr, "child %s: %s\n", std::string(op).c_str(), s.error().message().c_str());
  return s.error().code() == Errc::no_space ? 3 : 4;
}

[[maybe_unused]] const int kChildHook = [] {
  if (const char* op = std::getenv("MUP_SNAPSHOT_CHILD")) {
    int rc = child_main(op);
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return 0;
}();

struct ChildResult {
  bool killed = false;
  int exit_code = -1;
};

ChildResult run_child(const std::vector<std::string>& vars) {
  std::vector<std::string> env_strings(vars);
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string_view(*e).rfind("MUP_FAULT", 0) != 0) env_strings.emplace_back(*e);
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  char arg0[] = "snapshot_test";
  char* argv[] = {arg0, nullptr};
  pid_t pid = 0;
  if (::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()) != 0) return {};
  int status = 0;
  ::waitpid(pid, &status, 0);
  ChildResult r;
  r.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::vector<std::string> names_in(const stdfs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(dir, ec))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool has_temp(const stdfs::path& dir) {
  for (const std::string& n : names_in(dir))
    if (n.find(".mup-tmp.") != std::string::npos) return true;
  return false;
}

// A reference copy of a tree (content, modes, symlinks), to compare against later.
void copy_tree(const stdfs::path& from, const stdfs::path& to) {
  struct stat st {};
  ASSERT_EQ(::lstat(from.c_str(), &st), 0) << from;
  if (S_ISLNK(st.st_mode)) {
    stdfs::create_symlink(stdfs::read_symlink(from), to);
  } else if (S_ISDIR(st.st_mode)) {
    stdfs::create_directory(to);
    ::chmod(to.c_str(), 0700);
    for (const auto& e : stdfs::directory_iterator(from))
      copy_tree(e.path(), to / e.path().filename());
    ::chmod(to.c_str(), st.st_mode & 07777);
  } else {
    stdfs::copy_file(from, to);
    ::chmod(to.c_str(), st.st_mode & 07777);
  }
}

ino_t inode(const stdfs::path& p) {
  struct stat st {};
  ::lstat(p.c_str(), &st);
  return st.st_ino;
}

uint32_t mode_of(const stdfs::path& p) {
  struct stat st {};
  ::lstat(p.c_str(), &st);
  return st.st_mode & 07777;
}

// A state tree with what services keep: nested dirs, an empty file and dir, modes, symlinks
// (one dangling, one absolute), a read-only directory.
void make_state(const stdfs::path& s) {
  test::write_file(s / "config.json", test::text_bytes(2000, 1));
  test::write_file(s / "db" / "data.bin", test::random_bytes(300'000, 2));
  test::write_file(s / "db" / "index.bin", test::random_bytes(50'000, 3));
  test::write_file(s / "a" / "b" / "c" / "deep.txt", std::string("deep\n"));
  test::write_file(s / "empty", std::string());
  test::write_file(s / "secret", std::string("k=v\n"));
  test::write_file(s / "run.sh", std::string("#!/bin/sh\n"));
  test::write_file(s / "ro" / "frozen", std::string("frozen\n"));
  stdfs::create_directories(s / "emptydir");
  stdfs::create_symlink("db/data.bin", s / "current");
  stdfs::create_symlink("/nonexistent/target", s / "dangling");
  ::chmod((s / "secret").c_str(), 0600);
  ::chmod((s / "run.sh").c_str(), 0755);
  ::chmod((s / "ro" / "frozen").c_str(), 0444);
  ::chmod((s / "ro").c_str(), 0555);
  ::chmod(s.c_str(), 0750);
}

// Changes, adds and removes files, a mode, a symlink and a directory.
void mutate_state(const stdfs::path& s) {
  test::write_file(s / "config.json", test::text_bytes(2100, 9));
  test::write_file(s / "added.txt", std::string("new\n"));
  test::write_file(s / "newdir" / "x", std::string("x"));
  stdfs::remove(s / "db" / "index.bin");
  stdfs::remove_all(s / "a");
  ::chmod((s / "secret").c_str(), 0644);
  stdfs::remove(s / "current");
  stdfs::create_symlink("config.json", s / "current");
  ::chmod(s.c_str(), 0700);
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override { reopen(); }
  void reopen() {
    store_.reset();
    auto s = SnapshotStore::open(root(), [this] { return now_ += 1500; });
    ASSERT_TRUE(s) << s.error().message();
    store_.emplace(std::move(*s));
  }
  stdfs::path root() const { return dir_ / "snapshots"; }
  stdfs::path state() const { return dir_ / "state" / "web"; }
  SnapshotInfo must_create(const stdfs::path& state_dir, std::string_view component = "web") {
    auto r = store_->create(component, state_dir, "1.0.0", "before update");
    EXPECT_TRUE(r) << r.error().message();
    return r ? *r : SnapshotInfo{};
  }
  void expect_tree(const stdfs::path& a, const stdfs::path& b) {
    std::string why;
    EXPECT_TRUE(test::trees_equal(a, b, &why)) << why;
  }
  // Rewrites a snapshot's manifest (content_hash is left as it was).
  void edit_manifest(const SnapshotInfo& info, const std::function<void(nlohmann::json&)>& f) {
    auto p = info.path / "manifest.json";
    auto bytes = test::read_file(p);
    auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
    f(j);
    ::chmod(p.c_str(), 0644);
    test::write_file(p, j.dump());
  }

  test::ScratchDir dir_;
  int64_t now_ = 1'700'000'000'000;
  std::optional<SnapshotStore> store_;
};

TEST_F(SnapshotTest, CreateListGetVerifyRestoreRoundTrip) {
  make_state(state());
  copy_tree(state(), dir_ / "ref");
  SnapshotInfo info = must_create(state());
  EXPECT_EQ(info.component, "web");
  EXPECT_EQ(info.version, "1.0.0");
  EXPECT_EQ(info.label, "before update");
  EXPECT_EQ(info.id.rfind("web-20231114T", 0), 0u) << info.id;
  EXPECT_FALSE(info.absent);
  EXPECT_EQ(info.files, 8u);
  EXPECT_EQ(info.bytes, info.bytes_copied) << "the first snapshot copies everything";
  EXPECT_EQ(info.content_hash.size(), 64u);
  expect_tree(state(), info.path / "data");
  EXPECT_EQ(mode_of(info.path / "data"), 0750u);

  auto listed = store_->list("web");
  ASSERT_TRUE(listed) << listed.error().message();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, info.id);
  EXPECT_EQ((*listed)[0].content_hash, info.content_hash);
  auto all = store_->list("");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 1u);
  auto got = store_->get(info.id);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(got->bytes, info.bytes);
  EXPECT_EQ(got->created_at_ms, info.created_at_ms);
  auto report = store_->verify(info.id);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_TRUE(report->ok()) << report->summary();
  EXPECT_EQ(report->files_checked, 8u);

  mutate_state(state());
  std::string why;
  ASSERT_FALSE(test::trees_equal(state(), dir_ / "ref", &why));
  auto r = store_->restore(info.id, state());
  ASSERT_TRUE(r) << r.error().message();
  expect_tree(state(), dir_ / "ref");
  EXPECT_EQ(mode_of(state()), 0750u);
  EXPECT_NE(inode(state() / "db" / "data.bin"), inode(info.path / "data" / "db" / "data.bin"))
      << "restored files are copies, never links into the snapshot";
  EXPECT_FALSE(has_temp(state().parent_path()));
  EXPECT_TRUE(names_in(root() / ".restores").empty());
  // The snapshot is untouched by the restore and by writes to the restored state.
  test::write_file(state() / "db" / "data.bin", std::string("overwritten"));
  auto again = store_->verify(info.id);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->ok()) << again->summary();
}

TEST_F(SnapshotTest, RestoreIntoMissingDirectoryCreatesIt) {
  make_state(state());
  SnapshotInfo info = must_create(state());
  auto other = dir_ / "elsewhere" / "web";
  ASSERT_TRUE(store_->restore(info.id, other));
  expect_tree(other, state());
}

TEST_F(SnapshotTest, SecondSnapshotCopiesOnlyWhatChanged) {
  make_state(state());
  SnapshotInfo first = must_create(state());
  test::write_file(state() / "db" / "index.bin", test::random_bytes(50'000, 77));
  SnapshotInfo second = must_create(state());
  EXPECT_EQ(second.bytes, first.bytes);
  EXPECT_EQ(second.bytes_copied, 50'000u);
  EXPECT_EQ(second.files_linked, 6u) << "all non-empty files but the changed one";
  auto d1 = first.path / "data", d2 = second.path / "data";
  EXPECT_EQ(inode(d1 / "db" / "data.bin"), inode(d2 / "db" / "data.bin"));
  EXPECT_EQ(inode(d1 / "ro" / "frozen"), inode(d2 / "ro" / "frozen"));
  EXPECT_NE(inode(d1 / "db" / "index.bin"), inode(d2 / "db" / "index.bin"));
  EXPECT_NE(first.content_hash, second.content_hash);

  // Nothing changed: nothing copied, same content hash. A mode change alone is a copy.
  SnapshotInfo third = must_create(state());
  EXPECT_EQ(third.bytes_copied, 0u);
  EXPECT_EQ(third.content_hash, second.content_hash);
  ::chmod((state() / "config.json").c_str(), 0640);
  SnapshotInfo fourth = must_create(state());
  EXPECT_EQ(fourth.bytes_copied, 2000u);
  EXPECT_EQ(mode_of(third.path / "data" / "config.json"), 0644u) << "the older copy is intact";

  auto listed = store_->list("web");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 4u);
  EXPECT_EQ((*listed)[0].id, first.id);
  EXPECT_EQ((*listed)[3].id, fourth.id);
  for (const auto& i : *listed) {
    auto v = store_->verify(i.id);
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->ok()) << v->summary();
  }
  // Each snapshot restores its own state.
  ASSERT_TRUE(store_->restore(first.id, dir_ / "r1"));
  expect_tree(dir_ / "r1", d1);
}

class SnapshotVerifyTest : public SnapshotTest {
 protected:
  void SetUp() override {
    SnapshotTest::SetUp();
    make_state(state());
    info_ = must_create(state());
    data_ = info_.path / "data";
  }
  void expect_problem(VerifyProblem::Kind kind, const std::string& path) {
    auto r = store_->verify(info_.id);
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_FALSE(r->ok());
    EXPECT_EQ(r->problems[0].kind, kind) << r->summary();
    EXPECT_EQ(r->problems[0].path, path) << r->summary();
    EXPECT_NE(r->summary().find(path), std::string::npos) << r->summary();
    copy_tree(state(), dir_ / "before");
    auto s = store_->restore(info_.id, state());
    ASSERT_FALSE(s) << "a damaged snapshot is not restored";
    EXPECT_EQ(s.error().code(), Errc::corrupt);
    EXPECT_NE(s.error().message().find(path), std::string::npos) << s.error().message();
    expect_tree(state(), dir_ / "before");
    EXPECT_FALSE(has_temp(state().parent_path()));
  }
  SnapshotInfo info_;
  stdfs::path data_;
};

TEST_F(SnapshotVerifyTest, DetectsModifiedByte) {
  auto bytes = test::read_file(data_ / "db" / "data.bin");
  bytes[123'456] ^= 1;
  test::write_file(data_ / "db" / "data.bin", bytes);
  expect_problem(VerifyProblem::Kind::content, "db/data.bin");
}

TEST_F(SnapshotVerifyTest, DetectsRemovedFile) {
  stdfs::remove(data_ / "a" / "b" / "c" / "deep.txt");
  expect_problem(VerifyProblem::Kind::missing, "a/b/c/deep.txt");
}

TEST_F(SnapshotVerifyTest, DetectsAddedFile) {
  test::write_file(data_ / "emptydir" / "intruder", std::string("x"));
  expect_problem(VerifyProblem::Kind::unexpected, "emptydir/intruder");
}

TEST_F(SnapshotVerifyTest, DetectsChangedMode) {
  ::chmod((data_ / "secret").c_str(), 0666);
  expect_problem(VerifyProblem::Kind::mode, "secret");
}

TEST_F(SnapshotVerifyTest, DetectsChangedSymlink) {
  stdfs::remove(data_ / "current");
  stdfs::create_symlink("/etc/passwd", data_ / "current");
  expect_problem(VerifyProblem::Kind::target, "current");
}

TEST_F(SnapshotVerifyTest, DetectsEditedManifest) {
  edit_manifest(info_, [](nlohmann::json& j) {
    for (auto& e : j["entries"])
      if (e["path"] == "secret") e["mode"] = "0666";
  });
  ::chmod((data_ / "secret").c_str(), 0666);  // data and manifest agree; the hash does not
  expect_problem(VerifyProblem::Kind::manifest, "");
}

TEST_F(SnapshotTest, RestoreRejectsUnsafeManifestPaths) {
  make_state(state());
  SnapshotInfo info = must_create(state());
  for (const char* bad : {"../escape", "/etc/evil", "a//b", "a/./b", "db/../../x", ""}) {
    edit_manifest(info, [&](nlohmann::json& j) {
      j["entries"].push_back({{"path", bad},
                              {"type", "file"},
                              {"mode", "0644"},
                              {"uid", 0},
                              {"gid", 0},
                              {"size", 1},
                              {"sha256", std::string(64, '0')}});
    });
    copy_tree(state(), dir_ / "before");
    auto s = store_->restore(info.id, state());
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code(), Errc::corrupt) << s.error().message();
    EXPECT_NE(s.error().message().find("unsafe path"), std::string::npos) << s.error().message();
    expect_tree(state(), dir_ / "before");
    stdfs::remove_all(dir_ / "before");
    edit_manifest(info, [](nlohmann::json& j) { j["entries"].erase(j["entries"].size() - 1); });
  }
  EXPECT_FALSE(stdfs::exists(dir_ / "state" / "escape"));
  EXPECT_FALSE(stdfs::exists(dir_ / "x"));
  // An entry under a symlink ("current" -> db/data.bin) is refused too.
  edit_manifest(info, [](nlohmann::json& j) {
    auto& entries = j["entries"];
    auto it = std::find_if(entries.begin(), entries.end(),
                           [](const nlohmann::json& e) { return e["path"] == "current"; });
    ASSERT_NE(it, entries.end());
    nlohmann::json under_link = {
        {"path", "current/x"}, {"type", "dir"}, {"mode", "0755"}, {"uid", 0}, {"gid", 0}};
    entries.insert(it + 1, under_link);
  });
  auto s = store_->restore(info.id, state());
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("not a directory entry"), std::string::npos)
      << s.error().message();
}

TEST_F(SnapshotTest, AbsentStateIsAStateOfItsOwn) {
  SnapshotInfo absent = must_create(state());  // state/web does not exist
  EXPECT_TRUE(absent.absent);
  EXPECT_EQ(absent.files, 0u);
  stdfs::create_directories(state());
  SnapshotInfo empty = must_create(state());
  EXPECT_FALSE(empty.absent);
  EXPECT_NE(absent.content_hash, empty.content_hash);
  auto v = store_->verify(absent.id);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok()) << v->summary();

  make_state(state());
  ASSERT_TRUE(store_->restore(absent.id, state()));
  EXPECT_FALSE(stdfs::exists(state()));
  EXPECT_FALSE(has_temp(state().parent_path()));
  ASSERT_TRUE(store_->restore(absent.id, state())) << "absent onto absent is a no-op";
  ASSERT_TRUE(store_->restore(empty.id, state()));
  EXPECT_TRUE(stdfs::is_directory(state()));
  EXPECT_TRUE(stdfs::is_empty(state()));
}

TEST_F(SnapshotTest, RefusesSpecialFilesAndBadStateDirs) {
  make_state(state());
  ASSERT_EQ(::mkfifo((state() / "db" / "pipe").c_str(), 0600), 0);
  auto r = store_->create("web", state(), "1.0.0", "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::unsupported);
  EXPECT_NE(r.error().message().find("db/pipe is a FIFO"), std::string::npos)
      << r.error().message();
  EXPECT_TRUE(names_in(root() / "web").empty()) << "no snapshot and no temp left";

  stdfs::create_directory_symlink(state(), dir_ / "link");
  auto l = store_->create("web", dir_ / "link", "1.0.0", "");
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message().find("a symlink"), std::string::npos) << l.error().message();

  for (const stdfs::path& overlap : {dir_.path(), root(), root() / "web"}) {
    auto o = store_->create("web", overlap, "1", "");
    ASSERT_FALSE(o) << overlap;
    EXPECT_NE(o.error().message().find("overlap"), std::string::npos) << o.error().message();
  }
  EXPECT_FALSE(store_->create("system", state(), "1", ""));
  EXPECT_FALSE(store_->create("../web", state(), "1", ""));
  for (const char* id : {"../web-20231114T221320-abcdef", "web", "web-20231114T221320-ABCDEF",
                         "web-2023111xT221320-abcdef/../x", ""}) {
    auto g = store_->get(id);
    ASSERT_FALSE(g) << id;
    EXPECT_EQ(g.error().code(), Errc::invalid_argument) << id;
  }
  SnapshotInfo ok = must_create(dir_ / "nothing");
  auto over_store = store_->restore(ok.id, dir_.path());
  ASSERT_FALSE(over_store);
  EXPECT_EQ(over_store.error().code(), Errc::invalid_argument);
  auto missing = store_->get("web-20231114T221320-abcdef");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::not_found);
}

TEST_F(SnapshotTest, RestoresOwnership) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  make_state(state());
  ASSERT_EQ(::lchown((state() / "secret").c_str(), 1234, 4321), 0);
  ASSERT_EQ(::lchown((state() / "current").c_str(), 1234, 4321), 0);
  ASSERT_EQ(::chown((state() / "a").c_str(), 99, 98), 0);
  SnapshotInfo info = must_create(state());
  ASSERT_TRUE(store_->restore(info.id, dir_ / "restored"));
  struct stat st {};
  ASSERT_EQ(::lstat((dir_ / "restored" / "secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 4321u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::lstat((dir_ / "restored" / "current").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  ASSERT_EQ(::lstat((dir_ / "restored" / "a").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 99u);
}

TEST_F(SnapshotTest, InjectedNoSpaceDuringCreateLeavesNothing) {
  make_state(state());
  auto r = run_child({"MUP_SNAPSHOT_CHILD=create", "MUP_SNAPSHOT_ROOT=" + root().string(),
                      "MUP_SNAPSHOT_STATE=" + state().string(), "MUP_FAULT_AT=snapshot.create.copy",
                      "MUP_FAULT_AFTER=2"});
  EXPECT_EQ(r.exit_code, 3) << "the child's create failed with no_space";
  auto listed = store_->list("web");
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  EXPECT_TRUE(names_in(root() / "web").empty()) << "no snapshot and no temp";
}

TEST_F(SnapshotTest, KilledCreateIsInvisibleAndSwept) {
  make_state(state());
  for (const char* point : {"snapshot.create.copy", "snapshot.create.before_rename"}) {
    auto r = run_child({"MUP_SNAPSHOT_CHILD=create", "MUP_SNAPSHOT_ROOT=" + root().string(),
                        "MUP_SNAPSHOT_STATE=" + state().string(),
                        std::string("MUP_FAULT_AT=") + point, "MUP_FAULT_ACTION=kill"});
    EXPECT_TRUE(r.killed) << point;
    EXPECT_TRUE(has_temp(root() / "web")) << point;
    auto listed = store_->list("web");
    ASSERT_TRUE(listed) << listed.error().message();
    EXPECT_TRUE(listed->empty()) << point;
    reopen();
    EXPECT_TRUE(names_in(root() / "web").empty()) << point << ": open() swept the temp";
  }
}

class SnapshotKillRestoreTest : public SnapshotTest,
                                public ::testing::WithParamInterface<const char*> {};

TEST_P(SnapshotKillRestoreTest, StateIsOldOrNewAndTempsAreSwept) {
  const std::string point = GetParam();
  make_state(state());
  SnapshotInfo info = must_create(state());
  mutate_state(state());
  copy_tree(state(), dir_ / "old");
  auto r = run_child({"MUP_SNAPSHOT_CHILD=restore", "MUP_SNAPSHOT_ROOT=" + root().string(),
                      "MUP_SNAPSHOT_STATE=" + state().string(), "MUP_SNAPSHOT_ID=" + info.id,
                      "MUP_FAULT_AT=" + point, "MUP_FAULT_ACTION=kill"});
  ASSERT_TRUE(r.killed) << point << " exit " << r.exit_code;
  const bool swapped = point == "snapshot.restore.after_swap";
  expect_tree(state(), swapped ? info.path / "data" : dir_ / "old");
  EXPECT_TRUE(has_temp(state().parent_path())) << "the killed restore left a temp tree";
  EXPECT_FALSE(names_in(root() / ".restores").empty()) << "and its intent record";
  reopen();
  EXPECT_EQ(names_in(state().parent_path()), std::vector<std::string>{"web"});
  EXPECT_TRUE(names_in(root() / ".restores").empty());
  expect_tree(state(), swapped ? info.path / "data" : dir_ / "old");
  // And the restore can simply run again.
  ASSERT_TRUE(store_->restore(info.id, state()));
  expect_tree(state(), info.path / "data");
}

INSTANTIATE_TEST_SUITE_P(Points, SnapshotKillRestoreTest,
                         ::testing::Values("snapshot.restore.copy", "snapshot.restore.before_swap",
                                           "snapshot.restore.after_swap"));

TEST_F(SnapshotTest, RemoveIsAllOrNothing) {
  make_state(state());
  SnapshotInfo keep = must_create(state());
  SnapshotInfo gone = must_create(state());
  auto r = run_child({"MUP_SNAPSHOT_CHILD=remove", "MUP_SNAPSHOT_ROOT=" + root().string(),
                      "MUP_SNAPSHOT_ID=" + gone.id, "MUP_FAULT_AT=snapshot.remove",
                      "MUP_FAULT_ACTION=kill"});
  EXPECT_TRUE(r.killed);
  auto listed = store_->list("web");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, keep.id);
  EXPECT_TRUE(has_temp(root() / "web"));
  reopen();
  EXPECT_EQ(names_in(root() / "web"), std::vector<std::string>{keep.id});

  ASSERT_TRUE(store_->remove(keep.id));
  EXPECT_TRUE(names_in(root() / "web").empty());
  auto again = store_->remove(keep.id);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Errc::not_found);
}

TEST_F(SnapshotTest, SystemSnapshotRestoresEveryComponent) {
  auto db_state = dir_ / "state" / "db";
  make_state(state());
  test::write_file(db_state / "wal", test::random_bytes(10'000, 5));
  auto sys = store_->create_system({{"web", state(), "2.0.0"}, {"db", db_state, "14.1"}}, "pre");
  ASSERT_TRUE(sys) << sys.error().message();
  EXPECT_EQ(sys->id.rfind("system-", 0), 0u);
  ASSERT_EQ(sys->members.size(), 2u);
  EXPECT_EQ(sys->members[1].component, "db");
  EXPECT_EQ(sys->members[1].version, "14.1");
  copy_tree(state(), dir_ / "web-ref");
  copy_tree(db_state, dir_ / "db-ref");

  mutate_state(state());
  stdfs::remove_all(db_state);
  auto listed = store_->list_system();
  ASSERT_TRUE(listed) << listed.error().message();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, sys->id);
  auto all = store_->list("");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 2u);

  auto member_remove = store_->remove(sys->members[0].id);
  ASSERT_FALSE(member_remove);
  EXPECT_NE(member_remove.error().message().find(sys->id), std::string::npos);

  ASSERT_TRUE(store_->restore_system(sys->id));
  expect_tree(state(), dir_ / "web-ref");
  expect_tree(db_state, dir_ / "db-ref");

  // A damaged member: nothing is restored.
  mutate_state(state());
  copy_tree(state(), dir_ / "web-mutated");
  test::write_file(sys->members[1].path / "data" / "wal", std::string("torn"));
  auto bad = store_->restore_system(sys->id);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Errc::corrupt);
  EXPECT_NE(bad.error().message().find("wal"), std::string::npos) << bad.error().message();
  expect_tree(state(), dir_ / "web-mutated");

  ASSERT_TRUE(store_->remove_system(sys->id));
  auto none = store_->list_system();
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto left = store_->list("");
  ASSERT_TRUE(left);
  EXPECT_TRUE(left->empty()) << "members are removed with their group";
}

TEST_F(SnapshotTest, FailedSystemSnapshotLeavesNoMembers) {
  make_state(state());
  auto bad_state = dir_ / "state" / "bad";
  stdfs::create_directories(bad_state);
  ASSERT_EQ(::mkfifo((bad_state / "fifo").c_str(), 0600), 0);
  auto sys = store_->create_system({{"web", state(), "1"}, {"bad", bad_state, "1"}}, "");
  ASSERT_FALSE(sys);
  auto left = store_->list("");
  ASSERT_TRUE(left);
  EXPECT_TRUE(left->empty());
  EXPECT_FALSE(store_->create_system({}, ""));
  EXPECT_FALSE(store_->create_system({{"web", state(), "1"}, {"web", state(), "2"}}, ""));
}

}  // namespace
}  // namespace mup::snapshot
