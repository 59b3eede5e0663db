#include "delta/deflate_puff.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>

#include "test_util.hpp"

namespace mup::delta::puff {
namespace {

using Bytes = std::vector<uint8_t>;
namespace stdfs = std::filesystem;

// Compresses `data` with the gzip binary (GNU gzip, as Debian builds its .gz files).
Bytes gzip(const Bytes& data, const std::string& flags) {
  test::ScratchDir dir;
  test::write_file(dir / "in", data);
  std::string cmd =
      "gzip " + flags + " -c '" + (dir / "in").string() + "' > '" + (dir / "out.gz").string() + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return test::read_file(dir / "out.gz");
}

// The contract: whatever puff accepts, huff gives back bit for bit.
void expect_exact(const Bytes& gz, const std::string& what) {
  auto p = puff_gzip(gz);
  ASSERT_TRUE(p) << what << ": " << p.error().message();
  auto h = huff_gzip(*p);
  ASSERT_TRUE(h) << what << ": " << h.error().message();
  EXPECT_TRUE(*h == gz) << what << ": re-huffed bytes differ";
}

// On a damaged input puff may fail or succeed; if it succeeds the round trip still holds.
void expect_error_or_exact(const Bytes& gz) {
  auto p = puff_gzip(gz);
  if (!p) return;
  auto h = huff_gzip(*p);
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_TRUE(*h == gz);
}

Result<Bytes> apply_all(const Bytes& base, const Bytes& patch, uint64_t target_size) {
  Bytes out;
  auto st = apply(base, patch, target_size, [&](std::span<const uint8_t> b) -> Status {
    out.insert(out.end(), b.begin(), b.end());
    return {};
  });
  if (!st) return tl::unexpected(st.error());
  return out;
}

std::vector<stdfs::path> glob_gz(const stdfs::path& dir, const std::string& prefix, bool recurse) {
  std::vector<stdfs::path> out;
  std::error_code ec;
  auto consider = [&](const stdfs::directory_entry& e) {
    auto name = e.path().filename().string();
    if (e.is_regular_file() && name.starts_with(prefix) && name.ends_with(".gz"))
      out.push_back(e.path());
  };
  if (recurse) {
    for (auto it = stdfs::recursive_directory_iterator(dir, ec);
         !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec))
      consider(*it);
  } else {
    for (auto it = stdfs::directory_iterator(dir, ec); !ec && it != stdfs::directory_iterator();
         it.increment(ec))
      consider(*it);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Hand-made deflate streams, for the corners gzip never produces.
class DeflateWriter {
 public:
  void put(uint32_t v, int n) {
    for (int i = 0; i < n; ++i, v >>= 1) {
      if (nbits_ % 8 == 0) bytes_.push_back(0);
      bytes_.back() |= static_cast<uint8_t>((v & 1) << (nbits_ % 8));
      ++nbits_;
    }
  }
  // A Huffman code, sent most significant bit first.
  void code(uint32_t c, int len) {
    for (int i = len - 1; i >= 0; --i) put((c >> i) & 1, 1);
  }
  // Fixed-code symbol (RFC 1951 3.2.6).
  void fixed(int sym) {
    if (sym < 144)
      code(0x30 + sym, 8);
    else if (sym < 256)
      code(0x190 + sym - 144, 9);
    else if (sym < 280)
      code(sym - 256, 7);
    else
      code(0xC0 + sym - 280, 8);
  }
  // Canonical codes for `lens` (RFC 1951 3.2.2).
  static std::vector<uint32_t> canonical(const std::vector<int>& lens) {
    std::array<int, 16> count{};
    for (int l : lens) ++count[l];
    count[0] = 0;
    std::array<uint32_t, 17> next{};
    for (int l = 1; l <= 15; ++l) next[l + 1] = (next[l] + count[l]) << 1;
    std::vector<uint32_t> codes(lens.size());
    for (size_t s = 0; s < lens.size(); ++s)
      if (lens[s]) codes[s] = next[lens[s]]++;
    return codes;
  }
  // Fills the rest of the current byte with the low bits of `v`.
  void pad(uint32_t v) { put(v, static_cast<int>((8 - nbits_ % 8) % 8)); }
  Bytes gzip() const {
    const std::array<uint8_t, 10> header = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    // CRC32 and ISIZE stay zero: puff does not check them.
    Bytes out(header.size() + bytes_.size() + 8, 0);
    for (size_t i = 0; i < header.size(); ++i) out[i] = header[i];
    for (size_t i = 0; i < bytes_.size(); ++i) out[header.size() + i] = bytes_[i];
    return out;
  }

 private:
  Bytes bytes_;
  size_t nbits_ = 0;
};

// A fixed-code final block of "ab", a match (length 258 coded as 284 + 31 when `long284`,
// else normal), end of block, then `final_pad` in the unused bits.
Bytes fixed_stream(bool long284, uint32_t final_pad, int distance = 2) {
  DeflateWriter w;
  w.put(1, 1);
  w.put(1, 2);
  w.fixed('a');
  w.fixed('b');
  if (long284) {
    w.fixed(284);
    w.put(31, 5);
  } else {
    w.fixed(260);  // length 6
  }
  w.code(distance - 1, 5);  // distance codes 0..3 have no extra bits
  w.fixed(256);
  w.pad(final_pad);
  return w.gzip();
}

// A dynamic final block with an incomplete literal code, a one-symbol distance code and a
// zero run that crosses from the literal/length lengths into the distance lengths. With
// `oversubscribe`, three literal symbols get length 1; with `repeat_first` the lengths
// open with a repeat of a previous length that does not exist.
Bytes dynamic_stream(bool oversubscribe, bool repeat_first = false) {
  DeflateWriter w;
  w.put(1, 1);
  w.put(2, 2);
  const int hlit = 260, hdist = 3;
  w.put(hlit - 257, 5);
  w.put(hdist - 1, 5);
  w.put(19 - 4, 4);
  // Code-length code: 0..12 get 4 bits, 13..18 get 5 bits (complete).
  std::vector<int> cl_lens(19);
  for (int s = 0; s < 19; ++s) cl_lens[s] = s < 13 ? 4 : 5;
  const std::array<int, 19> order = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                     11, 4,  12, 3, 13, 2, 14, 1, 15};
  for (int s : order) w.put(cl_lens[s], 3);
  auto cl = DeflateWriter::canonical(cl_lens);
  auto sym = [&](int s) { w.code(cl[s], cl_lens[s]); };
  std::vector<int> lens(hlit + hdist, 0);
  lens['a'] = lens['b'] = lens[256] = 2;
  lens[257] = 3;  // 7/8 of the code space: incomplete
  if (oversubscribe) lens['a'] = lens['b'] = lens[256] = 1;
  lens[hlit + 2] = 1;  // distance code 2 (distance 3) only
  if (repeat_first) {
    sym(16);
    w.put(0, 2);
  }
  sym(18), w.put(97 - 11, 7);  // 0..96
  sym(lens['a']), sym(lens['b']);
  sym(18), w.put(127 - 11, 7);  // 99..225
  sym(18), w.put(30 - 11, 7);   // 226..255
  sym(lens[256]), sym(lens[257]);
  sym(17), w.put(4 - 3, 3);  // 258..261: two literal/length and two distance lengths
  sym(lens[hlit + 2]);
  std::vector<int> lit_lens(lens.begin(), lens.begin() + hlit);
  auto lit = DeflateWriter::canonical(lit_lens);
  for (int c : {'a', 'b', 'a'}) w.code(lit[c], lit_lens[c]);
  w.code(lit[257], lit_lens[257]);  // length 3
  w.code(0, 1);                     // distance 3
  w.code(lit[256], lit_lens[256]);
  w.pad(0);
  return w.gzip();
}

TEST(DeflatePuff, RealChangelogsAndManPagesRoundTripExactly) {
  auto files = glob_gz("/usr/share/doc", "changelog", true);
  auto man = glob_gz("/usr/share/man/man1", "", false);
  files.insert(files.end(), man.begin(), man.end());
  if (files.empty()) GTEST_SKIP() << "no .gz files under /usr/share on this machine";
  size_t n = 0;
  for (const auto& f : files) {
    expect_exact(test::read_file(f), f.string());
    if (::testing::Test::HasFailure()) break;
    ++n;
  }
  EXPECT_EQ(n, files.size());
  std::printf("round trip exact on %zu files\n", n);
}

TEST(DeflatePuff, GzipLevelsAndDataKinds) {
  const std::vector<std::pair<std::string, Bytes>> inputs = {
      {"empty", {}},
      {"one byte", {'x'}},
      {"text", test::text_bytes(300000, 1)},
      {"random (stored blocks)", test::random_bytes(200000, 2)},
      {"zeros (length 258 runs)", Bytes(500000, 0)},
      {"0xFF bytes", Bytes(3000, 0xFF)},
  };
  for (const auto& [name, data] : inputs) {
    for (const char* flags : {"-1", "-6", "-9n", "-9", "-1n"}) {
      Bytes gz = gzip(data, flags);
      expect_exact(gz, name + " gzip " + flags);
    }
  }
}

TEST(DeflatePuff, RandomDataIsStored) {
  Bytes gz = gzip(test::random_bytes(100000, 3), "-9n");
  auto p = puff_gzip(gz);
  ASSERT_TRUE(p);
  EXPECT_LT(p->size(), gz.size() + 64);  // raw blocks, not tokens
  expect_exact(gz, "random");
}

TEST(DeflatePuff, HeaderFieldsKeptRaw) {
  // FTEXT | FHCRC | FEXTRA | FNAME | FCOMMENT, then an empty fixed block.
  Bytes gz = {0x1f, 0x8b, 8,   0x1f, 1,    2,    3,    4,    0, 3, 3, 0, 'a', 'b', 'c', 'n', 'm',
              0,    'h',  'i', 0,    0xAA, 0xBB, 0x03, 0x00, 1, 2, 3, 4, 0,   0,   0,   0};
  expect_exact(gz, "all header fields");
  Bytes reserved = gz;
  reserved[3] |= 0x20;
  auto p = puff_gzip(reserved);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), Errc::unsupported);
}

TEST(DeflatePuff, HandMadeCorners) {
  expect_exact(fixed_stream(false, 0), "fixed block");
  expect_exact(fixed_stream(false, 0x3), "fixed block, junk in the final padding");
  Bytes long284 = fixed_stream(true, 0x5);
  expect_exact(long284, "length 258 as 284 + 31");
  auto p = puff_gzip(long284);
  ASSERT_TRUE(p);
  const std::array<uint8_t, 2> esc = {0xFF, 0x82};
  EXPECT_NE(std::search(p->begin(), p->end(), esc.begin(), esc.end()), p->end());
  expect_exact(dynamic_stream(false), "dynamic block, run crossing into distances");

  // A non-final stored block with junk in its padding bits, then a fixed block.
  DeflateWriter w;
  w.put(0, 1);
  w.put(0, 2);
  w.put(0x15, 5);  // padding to the boundary
  w.put(3, 16);
  w.put(3 ^ 0xFFFF, 16);
  for (uint32_t b : {0x78u, 0x79u, 0xFFu}) w.put(b, 8);
  w.put(1, 1);
  w.put(1, 2);
  w.fixed(256);
  expect_exact(w.gzip(), "stored block with junk padding");
}

TEST(DeflatePuff, CorruptStreamsAreErrors) {
  // `why` is part of the message, so each case fails for the reason it is meant to.
  auto expect_corrupt = [](const Bytes& gz, const std::string& why) {
    auto p = puff_gzip(gz);
    ASSERT_FALSE(p) << why;
    EXPECT_EQ(p.error().code(), Errc::corrupt) << why;
    EXPECT_NE(p.error().message().find(why), std::string::npos) << p.error().message();
  };
  expect_corrupt(fixed_stream(false, 0, 3), "distance too far back");
  expect_corrupt(dynamic_stream(true), "over-subscribed literal/length code");
  expect_corrupt(dynamic_stream(false, true), "repeat of a code length with none before");
  Bytes bad_type = fixed_stream(false, 0);
  bad_type[10] |= 0x06;  // BTYPE 3
  expect_corrupt(bad_type, "reserved block type");
  Bytes no_cl = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00};
  expect_corrupt(no_cl, "bad code-length symbol");  // the code-length code has no codes
  Bytes bad_nlen = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0x01, 0x01, 0x00, 0xFF, 0xFF, 'x'};
  expect_corrupt(bad_nlen, "LEN/NLEN mismatch");
  Bytes cut = fixed_stream(false, 0);
  cut.resize(cut.size() - 9);  // drop the trailer and the last deflate byte
  expect_corrupt(cut, "truncated");
  auto np = puff_gzip(Bytes{'P', 'K', 3, 4});
  ASSERT_FALSE(np);
  EXPECT_EQ(np.error().code(), Errc::unsupported);
}

TEST(DeflatePuff, TruncatedAndBitFlippedInputsNeverBreakTheContract) {
  Bytes gz = gzip(test::text_bytes(20000, 4), "-9n");
  for (size_t n = 0; n < gz.size() - 8; n += 7) {
    auto p = puff_gzip(std::span(gz).first(n));
    EXPECT_FALSE(p) << "prefix of " << n << " bytes";
  }
  for (size_t bit = 80; bit < gz.size() * 8; bit += 13) {
    Bytes bad = gz;
    bad[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
    expect_error_or_exact(bad);
  }
}

TEST(DeflatePuff, DamagedPuffedStreamsAreErrorsOrValidBits) {
  Bytes gz = gzip(test::text_bytes(20000, 5), "-9n");
  auto p = puff_gzip(gz);
  ASSERT_TRUE(p);
  for (size_t n = 0; n < p->size(); n += 5) EXPECT_FALSE(huff_gzip(std::span(*p).first(n)));
  auto noise = test::random_bytes(4096, 6);
  for (size_t i = 0; i < 2000; ++i) {
    Bytes bad = *p;
    size_t at = (noise[i % 4096] * 7919 + i * 104729) % bad.size();
    bad[at] = noise[(i + 1) % 4096];
    (void)huff_gzip(bad);  // must not crash or read out of bounds (ASan build)
  }
}

TEST(DeflatePuff, MakeApplyTextEditIsSmall) {
  Bytes text = test::text_bytes(200000, 7);
  Bytes edited = text;
  const std::string news = "mup (1.2-3) unstable; urgency=medium\n  * Fix the thing.\n";
  edited.insert(edited.begin() + 1000, news.begin(), news.end());
  for (size_t at = 50000; at < edited.size(); at += 40000) edited[at] ^= 0x20;
  Bytes base = gzip(text, "-9n"), target = gzip(edited, "-9n");
  ASSERT_TRUE(applicable(base, target));
  auto patch = make(base, target, 19);
  ASSERT_TRUE(patch) << patch.error().message();
  auto out = apply_all(base, *patch, target.size());
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_TRUE(*out == target);
  auto raw = bsdiff::make(base, target, 19);
  ASSERT_TRUE(raw);
  std::printf("puff delta %zu bytes, bsdiff on the .gz %zu bytes, target %zu bytes\n",
              patch->size(), raw->size(), target.size());
  EXPECT_LT(patch->size() * 5, raw->size());
}

TEST(DeflatePuff, MakeRefusesWhatItCannotPuff) {
  Bytes gz = gzip(test::text_bytes(5000, 8), "-9n");
  Bytes not_gz = test::random_bytes(5000, 9);
  EXPECT_FALSE(applicable(gz, not_gz));
  EXPECT_FALSE(applicable(not_gz, gz));
  Bytes broken = gz;
  broken.resize(gz.size() / 2);
  EXPECT_TRUE(applicable(gz, broken));
  auto p = make(gz, broken, 3);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), Errc::unsupported);
}

TEST(DeflatePuff, ApplyRejectsBadPatchesAndWrongBase) {
  Bytes base = gzip(test::text_bytes(50000, 10), "-9n");
  Bytes target = gzip(test::text_bytes(50000, 11), "-9n");
  auto patch = make(base, target, 3);
  ASSERT_TRUE(patch);
  auto wrong_size = apply_all(base, *patch, target.size() + 1);
  ASSERT_FALSE(wrong_size);
  EXPECT_EQ(wrong_size.error().code(), Errc::corrupt);
  auto wrong_base = apply_all(test::random_bytes(100, 12), *patch, target.size());
  ASSERT_FALSE(wrong_base);
  EXPECT_EQ(wrong_base.error().code(), Errc::corrupt);
  for (size_t n = 0; n < patch->size(); n += 97)
    EXPECT_FALSE(apply_all(base, Bytes(patch->begin(), patch->begin() + n), target.size()));
  Bytes huge = {1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F};  // puffed size far beyond the target
  EXPECT_FALSE(apply_all(base, huge, target.size()));
}

}  // namespace
}  // namespace mup::delta::puff
