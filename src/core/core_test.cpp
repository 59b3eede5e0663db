#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <new>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>

#include "core/bytes.hpp"
#include "core/clock.hpp"
#include "core/fault.hpp"
#include "core/fs.hpp"
#include "core/parallel.hpp"
#include "core/sha256.hpp"
#include "core/zstd.hpp"
#include "test_util.hpp"

namespace mup {
namespace {

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256({}).hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256(as_bytes("abc")).hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.update(as_bytes("a"));
  h.update(as_bytes("bc"));
  EXPECT_EQ(h.finish(), sha256(as_bytes("abc")));
  EXPECT_EQ(h.finish(), sha256({})) << "finish() resets the hasher";
}

TEST(Digest, HexRoundTripAndRejects) {
  Digest d = sha256(as_bytes("x"));
  auto back = Digest::from_hex(d.hex());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, d);
  EXPECT_FALSE(Digest::from_hex("abc"));
  EXPECT_FALSE(Digest::from_hex(std::string(64, 'g')));
}

TEST(ByteReader, BoundsAndVarints) {
  ByteWriter w;
  w.varint(0);
  w.varint(300);
  w.varint(UINT64_MAX);
  w.str("hello");
  auto buf = w.take();
  ByteReader r(buf);
  EXPECT_EQ(r.varint(), 0u);
  EXPECT_EQ(r.varint(), 300u);
  EXPECT_EQ(r.varint(), UINT64_MAX);
  EXPECT_EQ(r.str(10), "hello");
  EXPECT_TRUE(r.at_end());
  EXPECT_FALSE(r.failed());
  r.u8();
  EXPECT_TRUE(r.failed()) << "reading past the end must fail, not crash";

  ByteReader r2(buf);
  r2.varint();
  r2.varint();
  r2.varint();
  r2.str(3);  // longer than allowed
  EXPECT_TRUE(r2.failed());

  std::vector<uint8_t> endless(20, 0xff);  // a varint that never ends
  ByteReader r3(endless);
  r3.varint();
  EXPECT_TRUE(r3.failed());
}

TEST(Zstd, RoundTripAndBounds) {
  auto data = test::text_bytes(100000, 1);
  auto z = zstd::compress(data, 3);
  ASSERT_TRUE(z);
  EXPECT_LT(z->size(), data.size());
  auto back = zstd::decompress(*z, data.size());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, data);

  auto small = zstd::decompress(*z, data.size() - 1);
  ASSERT_FALSE(small) << "a frame larger than the stated size must be refused";
  EXPECT_EQ(small.error().code(), Errc::corrupt);

  std::vector<uint8_t> truncated(z->begin(), z->begin() + static_cast<long>(z->size() / 2));
  auto t = zstd::decompress(truncated, data.size());
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), Errc::corrupt);

  auto garbage = zstd::decompress(test::random_bytes(100, 2), 1000);
  EXPECT_FALSE(garbage);
}

TEST(Zstd, PrefixDeltaNeedsTheSamePrefix) {
  auto base = test::random_bytes(200000, 3);
  auto target = base;
  target[1000] ^= 1;
  auto z = zstd::compress_with_prefix(target, base, 19);
  ASSERT_TRUE(z);
  EXPECT_LT(z->size(), 1000u);
  auto back = zstd::decompress(*z, target.size(), base);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, target);
}

// decompress_to() streams: the output arrives in pieces of at most 1 MiB, whatever its size.
TEST(Zstd, StreamingDecompressionDeliversBoundedPieces) {
  auto base = test::random_bytes(100000, 4);
  std::vector<uint8_t> target(5 << 20, 1);
  std::copy(base.begin(), base.end(), target.begin() + 1000);
  auto z = zstd::compress_with_prefix(target, base, 3);
  ASSERT_TRUE(z);
  std::vector<uint8_t> out;
  size_t largest = 0;
  ASSERT_TRUE(zstd::decompress_to(*z, target.size(), base, [&](std::span<const uint8_t> b) {
    largest = std::max(largest, b.size());
    out.insert(out.end(), b.begin(), b.end());
    return Status{};
  }));
  EXPECT_EQ(out, target);
  EXPECT_LE(largest, size_t{1} << 20);
  auto none = [](std::span<const uint8_t>) { return Status{}; };
  EXPECT_FALSE(zstd::decompress_to(*z, target.size() - 1, base, none)) << "longer than allowed";
  std::vector<uint8_t> truncated(z->begin(), z->end() - 10);
  EXPECT_FALSE(zstd::decompress_to(truncated, target.size(), base, none));
  EXPECT_FALSE(zstd::decompress_to(test::random_bytes(100, 5), 1000, base, none));
}

// A frame may ask the decoder for a window of up to 2 GiB; against a small base no honest
// delta needs more than prefix_window_log_max(), so a larger one is refused before it is
// allocated.
TEST(Zstd, AFrameAskingForAWindowBeyondItsPrefixIsRefused) {
  auto base = test::random_bytes(4096, 6);
  std::vector<uint8_t> data(1000, 9);
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, 31);  // no pledged size: the window stays 2 GiB
  std::vector<uint8_t> out(ZSTD_compressBound(data.size()) + 64);
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  ZSTD_inBuffer ib{data.data(), data.size(), 0};
  ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_continue);  // not ZSTD_e_end: the size stays unknown
  ZSTD_inBuffer none{nullptr, 0, 0};
  ASSERT_EQ(ZSTD_compressStream2(c, &ob, &none, ZSTD_e_end), 0u);
  ZSTD_freeCCtx(c);
  out.resize(ob.pos);
  auto r =
      zstd::decompress_to(out, 1 << 20, base, [](std::span<const uint8_t>) { return Status{}; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
  EXPECT_NE(r.error().message().find("window"), std::string::npos) << r.error().message();
  EXPECT_EQ(zstd::prefix_window_log_max(4096), 27);
  EXPECT_EQ(zstd::prefix_window_log_max(size_t{1} << 30), 31);
}

TEST(Fs, AtomicWriteReplacesAndLeavesNoTemp) {
  test::ScratchDir dir;
  auto p = dir / "file";
  ASSERT_TRUE(fs::write_file_atomic(p, as_bytes("one")));
  ASSERT_TRUE(fs::write_file_atomic(p, as_bytes("two"), 0600));
  EXPECT_EQ(test::read_file(p), std::vector<uint8_t>({'t', 'w', 'o'}));
  struct stat st {};
  ::stat(p.c_str(), &st);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) (void)e, ++n;
  EXPECT_EQ(n, 1u);
  auto missing = fs::read_file(dir / "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::not_found);
}

TEST(Fs, ReadFileRefusesOversize) {
  test::ScratchDir dir;
  test::write_file(dir / "f", std::string(100, 'a'));
  auto r = fs::read_file(dir / "f", 10);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
}

TEST(Fs, TempDirIsRemovedAndStaleOnesSwept) {
  test::ScratchDir dir;
  auto final_path = dir / "out";
  std::filesystem::path kept;
  {
    auto t = fs::TempDir::create(final_path);
    ASSERT_TRUE(t);
    kept = t->path();
    EXPECT_TRUE(std::filesystem::is_directory(kept));
  }
  EXPECT_FALSE(std::filesystem::exists(kept));
  // A temp dir of a process that no longer runs (pid 2^22-1 is above any default pid_max).
  auto stale = dir / ".out.mup-tmp.4194303.0";
  std::filesystem::create_directories(stale / "sub");
  auto mine = dir / (".out.mup-tmp." + std::to_string(::getpid()) + ".99");
  std::filesystem::create_directories(mine);
  fs::sweep_stale_temps(final_path);
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(mine)) << "a live process's temp dir must be left alone";
}

TEST(Parallel, RunsEveryItemAndReportsLowestError) {
  std::atomic<int> sum{0};
  parallel_for(1000, 4, [&](size_t i) { sum += static_cast<int>(i); });
  EXPECT_EQ(sum, 999 * 1000 / 2);
  auto s = try_parallel_for(100, 1, [&](size_t i) -> Status {
    if (i == 7 || i == 50) return fail(Errc::io, "item " + std::to_string(i));
    return {};
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "item 7");
}

TEST(Parallel, AWorkersExceptionIsAnErrorNotATerminate) {
  auto s = try_parallel_for(64, 4, [&](size_t i) -> Status {
    if (i == 9) throw std::bad_alloc();
    if (i == 20) throw std::runtime_error("boom");
    return {};
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::internal);
  EXPECT_NE(s.error().message().find("out of memory"), std::string::npos) << s.error().message();
  EXPECT_THROW(parallel_for(64, 4,
                            [&](size_t i) {
                              if (i == 5) throw std::runtime_error("in a worker");
                            }),
               std::runtime_error);
}

TEST(Error, ContextPrepends) {
  Error e(Errc::corrupt, "bad chunk");
  EXPECT_EQ(e.context("while unpacking").message(), "while unpacking: bad chunk");
  EXPECT_EQ(errc_name(e.code()), "corrupt");
}

// A module's codes, declared as a module would (see core/error.hpp).
namespace testmod {
enum class Code { pinned = 1, stale = 2 };
std::string_view code_name(int v) {
  switch (static_cast<Code>(v)) {
    case Code::pinned: return "pinned";
    case Code::stale: return "stale";
  }
  return "";
}
const ErrorCategory& category() {
  static const ErrorCategory c{"testmod", &code_name};
  return c;
}
const ErrorCategory& error_category(Code) {
  return category();
}
constexpr Errc errc_for(Code c) {
  return c == Code::pinned ? Errc::invalid_argument : Errc::corrupt;
}
}  // namespace testmod

static_assert(has_error_category<testmod::Code>);
static_assert(has_error_category<Errc>);
static_assert(!has_error_category<int>);
static_assert(std::is_copy_constructible_v<Error> && std::is_copy_assignable_v<Error>);

TEST(Error, PlainErrorsAreInTheCoreCategory) {
  Error e(Errc::no_space, "disk full");
  EXPECT_EQ(&e.category(), &core_category());
  EXPECT_EQ(e.category().name, "core");
  EXPECT_EQ(e.value(), static_cast<int>(Errc::no_space));
  EXPECT_EQ(e.code_string(), "core.no_space");
  EXPECT_TRUE(e.is(Errc::no_space));
  EXPECT_TRUE(e.is(core_category(), static_cast<int>(Errc::no_space)));
  EXPECT_FALSE(e.is(Errc::io));
  EXPECT_FALSE(e.is(testmod::Code::pinned));
  auto f = fail(Errc::busy, "locked");
  EXPECT_EQ(f.value().code_string(), "core.busy");
}

TEST(Error, ModuleCodesCarryTheirCategoryAndAnErrc) {
  auto r = []() -> Status { return fail(testmod::Code::pinned, "web is pinned to 2.0.0"); }();
  ASSERT_FALSE(r);
  const Error& e = r.error();
  EXPECT_EQ(e.code(), Errc::invalid_argument) << "callers that know only Errc still branch";
  EXPECT_EQ(&e.category(), &testmod::category());
  EXPECT_EQ(e.value(), 1);
  EXPECT_TRUE(e.is(testmod::Code::pinned));
  EXPECT_FALSE(e.is(testmod::Code::stale));
  EXPECT_FALSE(e.is(Errc::invalid_argument)) << "is() asks for the exact module code";
  EXPECT_EQ(e.code_string(), "testmod.pinned");
  EXPECT_EQ(e.message(), "web is pinned to 2.0.0");
  Error where = e.context("while installing web");
  EXPECT_TRUE(where.is(testmod::Code::pinned)) << "context() keeps the codes";
  EXPECT_EQ(where.message(), "while installing web: web is pinned to 2.0.0");

  Error built(Errc::corrupt, testmod::category(), 2, "index changed");
  EXPECT_TRUE(built.is(testmod::Code::stale));
  EXPECT_EQ(make_error(testmod::Code::stale, "x").code(), Errc::corrupt);
  EXPECT_EQ(Error(Errc::io, testmod::category(), 42, "?").code_string(), "testmod.42")
      << "a value without a name is printed as a number";
}

TEST(Error, CleanupFailuresAreChainedNotDropped) {
  const Error first(Errc::no_space, "write web/2.1.0/bin/app: no space left on device");
  Error both = first.followed_by(Error(Errc::io, "remove .web.mup-tmp.7: Device or resource busy"))
                   .followed_by(make_error(testmod::Code::stale, "journal row 3 left running"));
  EXPECT_EQ(both.message(),
            "write web/2.1.0/bin/app: no space left on device; and then, while cleaning up: "
            "remove .web.mup-tmp.7: Device or resource busy; and then, while cleaning up: "
            "journal row 3 left running");
  EXPECT_EQ(both.code(), Errc::no_space) << "the first error decides the code";
  EXPECT_TRUE(both.is(Errc::no_space));
  ASSERT_EQ(both.followed().size(), 2u);
  EXPECT_EQ(both.followed()[0].code(), Errc::io);
  EXPECT_TRUE(both.followed()[1].is(testmod::Code::stale));
  EXPECT_TRUE(first.followed().empty()) << "the original is unchanged";
  EXPECT_EQ(first.message(), "write web/2.1.0/bin/app: no space left on device");

  Error copy = both;
  EXPECT_EQ(copy.followed().size(), 2u);
  Error moved = std::move(copy).context("while installing web 2.1.0");
  EXPECT_EQ(moved.followed().size(), 2u);
  EXPECT_EQ(moved.message().rfind("while installing web 2.1.0: write", 0), 0u);
}

// --- Clock ---------------------------------------------------------------------------

TEST(FakeClock, AdvanceMovesWallAndMonotonicTogether) {
  FakeClock clock(1'700'000'000'123);
  EXPECT_EQ(clock.wall_ms(), 1'700'000'000'123);
  EXPECT_EQ(clock.wall_s(), 1'700'000'000);
  const auto t0 = clock.monotonic();
  EXPECT_NE(t0, std::chrono::steady_clock::time_point()) << "not mistaken for an unset time";
  clock.advance(std::chrono::milliseconds(1'500));
  EXPECT_EQ(clock.wall_ms(), 1'700'000'001'623);
  EXPECT_EQ(clock.monotonic() - t0, std::chrono::milliseconds(1'500));
  clock.advance(std::chrono::microseconds(600));  // below a millisecond: kept, not lost
  clock.advance(std::chrono::microseconds(600));
  EXPECT_EQ(clock.wall_ms(), 1'700'000'001'624);
  EXPECT_EQ(clock.monotonic() - t0, std::chrono::microseconds(1'501'200));
}

TEST(FakeClock, SetWallJumpsTheWallClockOnly) {
  FakeClock clock;
  EXPECT_EQ(clock.wall_ms(), FakeClock::kDefaultWallMs);
  const auto t0 = clock.monotonic();
  clock.set_wall_ms(1'000);  // an NTP step back to 1970
  EXPECT_EQ(clock.wall_ms(), 1'000);
  EXPECT_EQ(clock.monotonic(), t0);
  clock.advance(std::chrono::seconds(2));
  EXPECT_EQ(clock.wall_ms(), 3'000);
  EXPECT_EQ(clock.monotonic() - t0, std::chrono::seconds(2));
}

TEST(FakeClock, WholeSecondsRoundDownBeforeTheEpoch) {
  FakeClock clock(-1);
  EXPECT_EQ(clock.wall_s(), -1);
  clock.set_wall_ms(-1'000);
  EXPECT_EQ(clock.wall_s(), -1);
  clock.set_wall_ms(999);
  EXPECT_EQ(clock.wall_s(), 0);
}

TEST(FakeClock, IsSafeToAdvanceFromManyThreads) {
  FakeClock clock(0);
  const auto t0 = clock.monotonic();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10'000; ++i) {
        clock.advance(std::chrono::milliseconds(1));
        (void)clock.wall_ms();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(clock.wall_ms(), 40'000);
  EXPECT_EQ(clock.monotonic() - t0, std::chrono::seconds(40));
}

TEST(SystemClock, ReadsTheRealClocks) {
  const Clock& clock = system_clock();
  EXPECT_EQ(&clock, &system_clock());
  using namespace std::chrono;
  const int64_t real_ms =
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  EXPECT_LE(std::abs(clock.wall_ms() - real_ms), 5'000);
  const auto a = clock.monotonic();
  const auto b = clock.monotonic();
  EXPECT_LE(a, b);
  EXPECT_LE(std::abs(clock.wall_s() - clock.wall_ms() / 1000), 1);
}

// --- Fault points ---------------------------------------------------------------------

// Sets exactly the given MUP_FAULT_* variables for the life of the object (the others are
// unset) and makes the fault points read them again, with every hit count back at 0.
class FaultEnv {
 public:
  FaultEnv(std::initializer_list<std::pair<const char*, std::string>> vars) {
    clear();
    for (const auto& [k, v] : vars) ::setenv(k, v.c_str(), 1);
    fault::reload_config_for_testing();
  }
  ~FaultEnv() {
    clear();
    fault::reload_config_for_testing();
  }
  FaultEnv(const FaultEnv&) = delete;
  FaultEnv& operator=(const FaultEnv&) = delete;

 private:
  static void clear() {
    for (const char* k : {"MUP_FAULT_AT", "MUP_FAULT_AFTER", "MUP_FAULT_ACTION", "MUP_FAULT_LIST"})
      ::unsetenv(k);
  }
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

#define SKIP_WITHOUT_FAULT_POINTS() \
  if (!fault::enabled()) GTEST_SKIP() << "built with -DMUP_FAULT_POINTS=OFF"

TEST(FaultPoint, ActsAtExactlyTheNthHitAndNotAfter) {
  SKIP_WITHOUT_FAULT_POINTS();
  FaultEnv env({{"MUP_FAULT_AT", "test.write"}, {"MUP_FAULT_AFTER", "2"}});
  EXPECT_TRUE(fault::point("test.write"));
  EXPECT_TRUE(fault::point("test.write"));
  auto hit = fault::point("test.write");
  ASSERT_FALSE(hit);
  EXPECT_EQ(hit.error().code(), Errc::no_space);
  EXPECT_EQ(hit.error().message(), "injected fault at test.write hit 2: no space left on device");
  EXPECT_TRUE(fault::point("test.write")) << "later hits (cleanup paths) pass";
  EXPECT_TRUE(fault::point("test.write"));
}

TEST(FaultPoint, DefaultsToTheFirstHit) {
  SKIP_WITHOUT_FAULT_POINTS();
  FaultEnv env({{"MUP_FAULT_AT", "test.p"}});
  EXPECT_FALSE(fault::point("test.p"));
  EXPECT_TRUE(fault::point("test.p"));
  EXPECT_TRUE(fault::point("test.other"));
}

TEST(FaultPoint, CountsHitsPerPoint) {
  SKIP_WITHOUT_FAULT_POINTS();
  FaultEnv env({{"MUP_FAULT_AT", "test.b"}, {"MUP_FAULT_AFTER", "1"}});
  EXPECT_TRUE(fault::point("test.a"));   // a 0
  EXPECT_TRUE(fault::point("test.b"));   // b 0
  EXPECT_TRUE(fault::point("test.a"));   // a 1: another point's hits do not count
  EXPECT_TRUE(fault::point("test.a"));   // a 2
  EXPECT_FALSE(fault::point("test.b"));  // b 1
  EXPECT_TRUE(fault::point("test.a"));
}

TEST(FaultPoint, ReloadForgetsHits) {
  SKIP_WITHOUT_FAULT_POINTS();
  FaultEnv env({{"MUP_FAULT_AT", "test.p"}});
  EXPECT_FALSE(fault::point("test.p"));
  fault::reload_config_for_testing();
  EXPECT_FALSE(fault::point("test.p")) << "hit 0 again";
}

TEST(FaultPoint, ListFileHasOneLinePerHit) {
  SKIP_WITHOUT_FAULT_POINTS();
  test::ScratchDir dir;
  const auto list = dir / "points";
  test::write_file(list, std::string("earlier 0\n"));  // appended to, not truncated
  {
    FaultEnv env({{"MUP_FAULT_LIST", list.string()}});
    EXPECT_TRUE(fault::point("test.a"));
    EXPECT_TRUE(fault::point("test.b"));
    EXPECT_TRUE(fault::point("test.a"));
  }
  EXPECT_EQ(slurp(list), "earlier 0\ntest.a 0\ntest.b 0\ntest.a 1\n");
}

TEST(FaultPoint, ListLineOfTheFailingHitIsWritten) {
  SKIP_WITHOUT_FAULT_POINTS();
  test::ScratchDir dir;
  const auto list = dir / "points";
  {
    FaultEnv env(
        {{"MUP_FAULT_LIST", list.string()}, {"MUP_FAULT_AT", "test.a"}, {"MUP_FAULT_AFTER", "1"}});
    EXPECT_TRUE(fault::point("test.a"));
    EXPECT_FALSE(fault::point("test.a"));
    EXPECT_TRUE(fault::point("test.a"));
  }
  EXPECT_EQ(slurp(list), "test.a 0\ntest.a 1\ntest.a 2\n");
}

TEST(FaultPoint, UnopenableListFailsLoudly) {
  SKIP_WITHOUT_FAULT_POINTS();
  test::ScratchDir dir;
  FaultEnv env({{"MUP_FAULT_LIST", (dir / "no" / "such" / "dir").string()}});
  auto r = fault::point("test.a");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("MUP_FAULT_LIST"), std::string::npos) << r.error().message();
}

TEST(FaultPoint, BadActionOrAfterIsNamed) {
  SKIP_WITHOUT_FAULT_POINTS();
  {
    FaultEnv env({{"MUP_FAULT_AT", "test.a"}, {"MUP_FAULT_ACTION", "explode"}});
    auto r = fault::point("test.a");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Errc::invalid_argument);
    EXPECT_NE(r.error().message().find("MUP_FAULT_ACTION=explode"), std::string::npos);
  }
  FaultEnv env({{"MUP_FAULT_AT", "test.a"}, {"MUP_FAULT_AFTER", "two"}});
  auto r = fault::point("test.a");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("MUP_FAULT_AFTER=two"), std::string::npos);
}

// kill and powercut end the process, so they run in a death-test child.
TEST(FaultPointDeathTest, KillAtTheHitAfterItsListLine) {
  SKIP_WITHOUT_FAULT_POINTS();
  test::ScratchDir dir;
  const auto list = dir / "points";
  EXPECT_EXIT(
      {
        FaultEnv env({{"MUP_FAULT_LIST", list.string()},
                      {"MUP_FAULT_AT", "test.k"},
                      {"MUP_FAULT_AFTER", "1"},
                      {"MUP_FAULT_ACTION", "kill"}});
        (void)fault::point("test.k");
        (void)fault::point("test.other");
        (void)fault::point("test.k");
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "");
  EXPECT_EQ(slurp(list), "test.k 0\ntest.other 0\ntest.k 1\n");
}

TEST(FaultPointDeathTest, PowerCutRunsTheHooksThenKills) {
  SKIP_WITHOUT_FAULT_POINTS();
  test::ScratchDir dir;
  const auto list = dir / "points";
  const auto lost = dir / "lost";
  EXPECT_EXIT(
      {
        fault::on_power_cut([&] { test::write_file(lost, std::string("first")); });
        fault::on_power_cut([&] {
          std::ofstream(lost, std::ios::app) << " second";
          (void)fault::point("test.in_hook");  // a hook may pass fault points itself
        });
        FaultEnv env({{"MUP_FAULT_LIST", list.string()},
                      {"MUP_FAULT_AT", "test.p"},
                      {"MUP_FAULT_ACTION", "powercut"}});
        (void)fault::point("test.p");
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "");
  EXPECT_EQ(slurp(lost), "first second") << "hooks ran, in order";
  EXPECT_EQ(slurp(list), "test.p 0\ntest.in_hook 0\n");
}

}  // namespace
}  // namespace mup

namespace mup {
namespace {

TEST(Rfc3339, ParsesUtcOffsetsAndFractionsAndRefusesTheRest) {
  EXPECT_EQ(parse_rfc3339("2026-12-01T21:19:00Z"), int64_t{1796159940000});
  EXPECT_EQ(parse_rfc3339("2026-12-01T23:19:00+02:00"), int64_t{1796159940000});
  EXPECT_EQ(parse_rfc3339("2026-12-01t21:19:00.25z"), int64_t{1796159940250});
  EXPECT_EQ(parse_rfc3339("2026-12-01T20:19:00-01:00"), int64_t{1796159940000});
  EXPECT_EQ(iso_utc(*parse_rfc3339("2024-02-29T00:00:00Z")), "2024-02-29T00:00:00Z");
  for (const char* bad : {"2026-12-01", "2026-12-01T21:19:00", "2026-13-01T00:00:00Z",
                          "2025-02-29T00:00:00Z", "2026-12-01T24:00:00Z", "2026-12-01T21:19:00Zx",
                          "2026-12-01T21:19:00+2:00", "tomorrow", ""})
    EXPECT_FALSE(parse_rfc3339(bad)) << bad;
}

}  // namespace
}  // namespace mup
