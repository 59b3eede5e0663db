// Puff/huff: a deflate stream (RFC 1951) inside a gzip member (RFC 1952) <-> token bytes.
//
// Design: puff never inflates the data; it decodes symbols and counts output bytes only
// (enough to reject distances before the start of the stream). Every choice the encoder
// made that the token sequence does not determine is written out, so huff has nothing to
// decide: block types and boundaries, stored-block padding, the code-length header
// symbols (including runs that cross from literal to distance lengths), the final padding.
// The one redundancy deflate allows in the token codes themselves, length 258 coded as
// symbol 284 with extra bits 31 instead of symbol 285, has its own escape.
//
// Untrusted input on both sides: puff reads a bit stream that may be truncated or
// hostile (every decode checks the bits used against the input); huff reads puffed bytes
// through ByteReader and checks every symbol against the code lengths in force.
#include "delta/deflate_puff.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <string>

#include "core/bytes.hpp"

namespace mup::delta::puff {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint8_t kPuffMagic = 'p';
constexpr uint8_t kPuffVersion = 1;
constexpr uint8_t kPatchVersion = 1;

constexpr uint8_t kEsc = 0xFF;
constexpr uint8_t kEscLiteral = 0x80;
constexpr uint8_t kEscEndOfBlock = 0x81;
constexpr uint8_t kEscLong258 = 0x82;

// RFC 1951 3.2.5 and 3.2.7.
constexpr int kLenCodes = 29;
constexpr std::array<uint16_t, kLenCodes> kLenBase = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                                      15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr std::array<uint8_t, kLenCodes> kLenExtra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr int kDistCodes = 30;
constexpr std::array<uint16_t, kDistCodes> kDistBase = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr std::array<uint8_t, kDistCodes> kDistExtra = {0, 0, 0,  0,  1,  1,  2,  2,  3,  3,
                                                        4, 4, 5,  5,  6,  6,  7,  7,  8,  8,
                                                        9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
constexpr std::array<uint8_t, 19> kClOrder = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                              11, 4,  12, 3, 13, 2, 14, 1, 15};
constexpr int kMaxBits = 15;
constexpr int kMaxLitSymbols = 288;  // the fixed code defines 286 and 287 too
constexpr int kMaxHlit = 286;
constexpr int kMaxHdist = 30;
constexpr int kEndOfBlock = 256;
constexpr int kLen284 = 284 - 257;  // the length code that can also spell 258

// Gzip header flags (RFC 1952 2.3.1).
constexpr uint8_t kFhcrc = 0x02, kFextra = 0x04, kFname = 0x08, kFcomment = 0x10;
constexpr uint8_t kFreserved = 0xE0;

tl::unexpected<Error> corrupt(std::string what) {
  return fail(Errc::corrupt, "deflate stream: " + std::move(what));
}

uint32_t reverse_bits(uint32_t code, int len) {
  uint32_t r = 0;
  for (int i = 0; i < len; ++i, code >>= 1) r = (r << 1) | (code & 1);
  return r;
}

// A canonical Huffman code (RFC 1951 3.2.2) from its code lengths, usable both ways:
// `rev` holds each symbol's code bit-reversed (deflate sends codes MSB first into an
// LSB-first stream), `table` maps the next max_len input bits to symbol << 4 | length,
// 0 for bit patterns an incomplete code leaves unused.
struct HuffmanCode {
  int symbols = 0;
  int max_len = 0;
  std::array<uint8_t, kMaxLitSymbols> len{};
  std::array<uint16_t, kMaxLitSymbols> rev{};
  std::vector<uint16_t> table;

  // False when the lengths over-subscribe the code space.
  [[nodiscard]] bool build(std::span<const uint8_t> lengths, bool with_decoder) {
    symbols = static_cast<int>(lengths.size());
    len.fill(0);  // symbols past `symbols` have no code
    std::array<int, kMaxBits + 1> count{};
    max_len = 0;
    for (int s = 0; s < symbols; ++s) {
      len[s] = lengths[s];
      ++count[len[s]];
      max_len = std::max<int>(max_len, len[s]);
    }
    count[0] = 0;
    int left = 1;
    std::array<uint32_t, kMaxBits + 2> next{};
    for (int l = 1; l <= kMaxBits; ++l) {
      left = (left << 1) - count[l];
      if (left < 0) return false;
      next[l + 1] = (next[l] + count[l]) << 1;
    }
    if (with_decoder) table.assign(size_t{1} << max_len, 0);
    for (int s = 0; s < symbols; ++s) {
      int l = len[s];
      if (l == 0) continue;
      rev[s] = static_cast<uint16_t>(reverse_bits(next[l]++, l));
      if (!with_decoder) continue;
      uint16_t entry = static_cast<uint16_t>(s << 4 | l);
      for (size_t i = rev[s]; i < table.size(); i += size_t{1} << l) table[i] = entry;
    }
    return true;
  }
};

void build_fixed(HuffmanCode& lit, HuffmanCode& dist, bool with_decoder) {
  std::array<uint8_t, kMaxLitSymbols> l{};
  std::fill(l.begin(), l.begin() + 144, 8);
  std::fill(l.begin() + 144, l.begin() + 256, 9);
  std::fill(l.begin() + 256, l.begin() + 280, 7);
  std::fill(l.begin() + 280, l.end(), 8);
  (void)lit.build(l, with_decoder);  // complete by construction
  std::array<uint8_t, kDistCodes> d{};
  d.fill(5);
  (void)dist.build(d, with_decoder);
}

// LSB-first bit reader over the deflate stream. Reads past the end see zero bits; callers
// check overrun() after each symbol, so at most one symbol's worth is ever made up.
class BitReader {
 public:
  BitReader(std::span<const uint8_t> in, size_t start) : in_(in), pos_(start) {}

  uint32_t peek(int n) {
    if (cnt_ < n) refill();
    return static_cast<uint32_t>(buf_ & ((uint64_t{1} << n) - 1));
  }
  void drop(int n) {
    buf_ >>= n;
    cnt_ -= n;
  }
  uint32_t bits(int n) {
    uint32_t v = peek(n);
    drop(n);
    return v;
  }
  // -1 when the bits do not spell a symbol of `code`.
  int decode(const HuffmanCode& code) {
    if (code.max_len == 0) return -1;
    uint16_t e = code.table[peek(code.max_len)];
    if (e == 0) return -1;
    drop(e & 15);
    return e >> 4;
  }
  size_t bit_position() const { return pos_ * 8 - static_cast<size_t>(cnt_); }
  bool overrun() const { return bit_position() > in_.size() * 8; }
  int bits_to_boundary() const { return static_cast<int>((8 - bit_position() % 8) % 8); }
  // Only at a byte boundary: continue reading at byte `byte_pos`.
  void seek_byte(size_t byte_pos) {
    pos_ = byte_pos;
    buf_ = 0;
    cnt_ = 0;
  }

 private:
  void refill() {
    while (cnt_ <= 56) {
      uint64_t b = pos_ < in_.size() ? in_[pos_] : 0;
      ++pos_;
      buf_ |= b << cnt_;
      cnt_ += 8;
    }
  }
  std::span<const uint8_t> in_;
  size_t pos_;
  uint64_t buf_ = 0;
  int cnt_ = 0;
};

// Length of the gzip member header at the start of `gz`, or an error.
Result<size_t> gzip_header_size(std::span<const uint8_t> gz) {
  if (gz.size() < 10 || gz[0] != 0x1f || gz[1] != 0x8b || gz[2] != 8)
    return fail(Errc::unsupported, "not a gzip file (no 1f 8b 08 magic)");
  uint8_t flags = gz[3];
  if (flags & kFreserved) return fail(Errc::unsupported, "gzip header: reserved flags set");
  size_t p = 10;
  if (flags & kFextra) {
    if (gz.size() < p + 2) return corrupt("gzip header: truncated FEXTRA");
    size_t xlen = gz[p] | size_t{gz[p + 1]} << 8;
    p += 2 + xlen;
  }
  for (uint8_t f : {kFname, kFcomment}) {
    if (!(flags & f)) continue;
    while (p < gz.size() && gz[p] != 0) ++p;
    ++p;  // the terminating zero
  }
  if (flags & kFhcrc) p += 2;
  if (p > gz.size()) return corrupt("gzip header: truncated");
  return p;
}

// Puffs one deflate stream starting at byte `start` of `in`; appends to `out` and returns
// the byte offset just past the final block.
class Puffer {
 public:
  Puffer(std::span<const uint8_t> in, size_t start, Bytes& out)
      : br_(in, start), in_(in), out_(out) {}

  Result<size_t> run() {
    for (;;) {
      uint32_t bfinal = br_.bits(1);
      uint32_t btype = br_.bits(2);
      if (br_.overrun()) return corrupt("truncated block header");
      if (btype == 3) return corrupt("reserved block type 3");
      out_.push_back(static_cast<uint8_t>(bfinal | btype << 1));
      if (btype == 0) {
        MUP_TRY(stored());
      } else {
        if (btype == 1) {
          if (fixed_lit_.symbols == 0) build_fixed(fixed_lit_, fixed_dist_, true);
          MUP_TRY(tokens(fixed_lit_, fixed_dist_));
        } else {
          MUP_TRY(dynamic_header());
          MUP_TRY(tokens(lit_, dist_));
        }
      }
      if (bfinal) break;
    }
    out_.push_back(static_cast<uint8_t>(br_.bits(br_.bits_to_boundary())));
    if (br_.overrun()) return corrupt("truncated final byte");
    return br_.bit_position() / 8;
  }

 private:
  Status stored() {
    out_.push_back(static_cast<uint8_t>(br_.bits(br_.bits_to_boundary())));
    uint32_t len = br_.bits(16);
    uint32_t nlen = br_.bits(16);
    if (br_.overrun()) return corrupt("truncated stored block header");
    if ((len ^ 0xFFFF) != nlen) return corrupt("stored block LEN/NLEN mismatch");
    size_t at = br_.bit_position() / 8;
    if (in_.size() - at < len) return corrupt("truncated stored block");
    out_.push_back(static_cast<uint8_t>(len));
    out_.push_back(static_cast<uint8_t>(len >> 8));
    out_.insert(out_.end(), in_.begin() + at, in_.begin() + at + len);
    br_.seek_byte(at + len);
    produced_ += len;
    return {};
  }

  Status dynamic_header() {
    uint32_t hlit = br_.bits(5) + 257;
    uint32_t hdist = br_.bits(5) + 1;
    uint32_t hclen = br_.bits(4) + 4;
    if (hlit > kMaxHlit || hdist > kMaxHdist) return corrupt("too many length or distance codes");
    out_.push_back(static_cast<uint8_t>(hlit - 257));
    out_.push_back(static_cast<uint8_t>(hdist - 1));
    out_.push_back(static_cast<uint8_t>(hclen - 4));
    std::array<uint8_t, 19> cl{};
    for (uint32_t i = 0; i < hclen; ++i) {
      cl[kClOrder[i]] = static_cast<uint8_t>(br_.bits(3));
      out_.push_back(cl[kClOrder[i]]);
    }
    if (!cl_.build(cl, true)) return corrupt("over-subscribed code-length code");
    std::array<uint8_t, kMaxHlit + kMaxHdist> lens{};
    uint32_t n = 0;
    while (n < hlit + hdist) {
      int sym = br_.decode(cl_);
      if (br_.overrun()) return corrupt("truncated dynamic block header");
      if (sym < 0) return corrupt("bad code-length symbol");
      out_.push_back(static_cast<uint8_t>(sym));
      if (sym < 16) {
        lens[n++] = static_cast<uint8_t>(sym);
        continue;
      }
      static constexpr std::array<int, 3> kExtra = {2, 3, 7}, kMin = {3, 3, 11};
      uint32_t extra = br_.bits(kExtra[sym - 16]);
      out_.push_back(static_cast<uint8_t>(extra));
      uint32_t run = kMin[sym - 16] + extra;
      if (sym == 16 && n == 0) return corrupt("repeat of a code length with none before");
      if (n + run > hlit + hdist) return corrupt("code-length run past the end");
      uint8_t v = sym == 16 ? lens[n - 1] : 0;
      for (uint32_t k = 0; k < run; ++k) lens[n++] = v;
    }
    if (br_.overrun()) return corrupt("truncated dynamic block header");
    if (lens[kEndOfBlock] == 0) return corrupt("no code for end of block");
    if (!lit_.build(std::span(lens).first(hlit), true))
      return corrupt("over-subscribed literal/length code");
    if (!dist_.build(std::span(lens).subspan(hlit, hdist), true))
      return corrupt("over-subscribed distance code");
    return {};
  }

  Status tokens(const HuffmanCode& lit, const HuffmanCode& dist) {
    for (;;) {
      int sym = br_.decode(lit);
      if (br_.overrun()) return corrupt("truncated block");
      if (sym < 0) return corrupt("bad literal/length symbol");
      if (sym < 256) {
        if (sym == kEsc) {
          out_.push_back(kEsc);
          out_.push_back(kEscLiteral);
        } else {
          out_.push_back(static_cast<uint8_t>(sym));
        }
        ++produced_;
        continue;
      }
      if (sym == kEndOfBlock) {
        out_.push_back(kEsc);
        out_.push_back(kEscEndOfBlock);
        return {};
      }
      int lc = sym - 257;
      if (lc >= kLenCodes) return corrupt("reserved length symbol");
      uint32_t extra = br_.bits(kLenExtra[lc]);
      uint32_t length = kLenBase[lc] + extra;
      int dc = br_.decode(dist);
      if (dc < 0 || dc >= kDistCodes) return corrupt("bad distance symbol");
      uint32_t distance = kDistBase[dc] + br_.bits(kDistExtra[dc]);
      if (br_.overrun()) return corrupt("truncated match");
      if (distance > produced_) return corrupt("distance too far back");
      uint32_t d = distance - 1;
      out_.push_back(kEsc);
      if (lc == kLen284 && length == 258) {
        out_.push_back(kEscLong258);
        out_.push_back(static_cast<uint8_t>(d >> 8));
        out_.push_back(static_cast<uint8_t>(d));
      } else {
        out_.push_back(static_cast<uint8_t>(d >> 8));
        out_.push_back(static_cast<uint8_t>(d));
        out_.push_back(static_cast<uint8_t>(length - 3));
      }
      produced_ += length;
    }
  }

  BitReader br_;
  std::span<const uint8_t> in_;
  Bytes& out_;
  uint64_t produced_ = 0;
  HuffmanCode cl_, lit_, dist_, fixed_lit_, fixed_dist_;
};

class BitWriter {
 public:
  explicit BitWriter(Bytes& out) : out_(out) {}
  // `v` must fit in `n` bits (n <= 32).
  void put(uint32_t v, int n) {
    buf_ |= uint64_t{v} << cnt_;
    cnt_ += n;
    while (cnt_ >= 8) {
      out_.push_back(static_cast<uint8_t>(buf_));
      buf_ >>= 8;
      cnt_ -= 8;
    }
  }
  int bits_to_boundary() const { return (8 - cnt_) % 8; }

 private:
  Bytes& out_;
  uint64_t buf_ = 0;
  int cnt_ = 0;
};

std::array<uint8_t, 259> make_length_code_table() {
  std::array<uint8_t, 259> t{};
  for (int c = 0; c < kLenCodes; ++c)
    for (int l = kLenBase[c]; l < kLenBase[c] + (1 << kLenExtra[c]) && l <= 258; ++l)
      t[l] = static_cast<uint8_t>(c);
  t[258] = kLenCodes - 1;  // symbol 285, unless the puffed stream says otherwise
  return t;
}
constexpr int dist_code(uint32_t distance) {
  uint32_t x = distance - 1;
  if (x < 2) return static_cast<int>(x);
  int l = std::bit_width(x) - 1;
  return 2 * l + static_cast<int>((x >> (l - 1)) & 1);
}

// Re-encodes puffed bytes; the mirror of Puffer, checking what Puffer guaranteed.
class Huffer {
 public:
  Huffer(ByteReader& in, Bytes& out) : in_(in), bw_(out) {}

  Status run() {
    for (;;) {
      uint8_t bh = in_.u8();
      if (in_.failed()) return corrupt("puffed: truncated before the final block");
      uint32_t bfinal = bh & 1, btype = bh >> 1;
      if (btype > 2) return corrupt("puffed: bad block header byte");
      bw_.put(bfinal, 1);
      bw_.put(btype, 2);
      if (btype == 0) {
        MUP_TRY(stored());
      } else {
        if (btype == 1) {
          if (fixed_lit_.symbols == 0) build_fixed(fixed_lit_, fixed_dist_, false);
          MUP_TRY(tokens(fixed_lit_, fixed_dist_));
        } else {
          MUP_TRY(dynamic_header());
          MUP_TRY(tokens(lit_, dist_));
        }
      }
      if (bfinal) break;
    }
    return padding();
  }

 private:
  Status padding() {
    int n = bw_.bits_to_boundary();
    uint8_t pad = in_.u8();
    if (in_.failed() || pad >> n) return corrupt("puffed: bad padding bits");
    bw_.put(pad, n);
    return {};
  }

  Status stored() {
    MUP_TRY(padding());
    uint32_t len = in_.u8();
    len |= uint32_t{in_.u8()} << 8;
    auto data = in_.bytes(len);
    if (in_.failed()) return corrupt("puffed: truncated stored block");
    bw_.put(len, 16);
    bw_.put(len ^ 0xFFFF, 16);
    for (uint8_t b : data) bw_.put(b, 8);
    produced_ += len;
    return {};
  }

  Status dynamic_header() {
    uint32_t hlit = in_.u8() + 257u;
    uint32_t hdist = in_.u8() + 1u;
    uint32_t hclen = in_.u8() + 4u;
    if (in_.failed() || hlit > kMaxHlit || hdist > kMaxHdist || hclen > 19)
      return corrupt("puffed: bad dynamic block header");
    bw_.put(hlit - 257, 5);
    bw_.put(hdist - 1, 5);
    bw_.put(hclen - 4, 4);
    std::array<uint8_t, 19> cl{};
    for (uint32_t i = 0; i < hclen; ++i) {
      uint8_t v = in_.u8();
      if (v > 7) return corrupt("puffed: bad code-length code length");
      cl[kClOrder[i]] = v;
      bw_.put(v, 3);
    }
    if (!cl_.build(cl, false)) return corrupt("puffed: over-subscribed code-length code");
    std::array<uint8_t, kMaxHlit + kMaxHdist> lens{};
    uint32_t n = 0;
    while (n < hlit + hdist) {
      uint8_t sym = in_.u8();
      if (in_.failed() || sym > 18 || cl_.len[sym] == 0)
        return corrupt("puffed: bad code-length symbol");
      bw_.put(cl_.rev[sym], cl_.len[sym]);
      if (sym < 16) {
        lens[n++] = sym;
        continue;
      }
      static constexpr std::array<int, 3> kExtra = {2, 3, 7}, kMin = {3, 3, 11};
      uint8_t extra = in_.u8();
      if (in_.failed() || extra >> kExtra[sym - 16]) return corrupt("puffed: bad repeat count");
      bw_.put(extra, kExtra[sym - 16]);
      uint32_t run = kMin[sym - 16] + extra;
      if ((sym == 16 && n == 0) || n + run > hlit + hdist)
        return corrupt("puffed: bad code-length run");
      uint8_t v = sym == 16 ? lens[n - 1] : 0;
      for (uint32_t k = 0; k < run; ++k) lens[n++] = v;
    }
    if (lens[kEndOfBlock] == 0 || !lit_.build(std::span(lens).first(hlit), false) ||
        !dist_.build(std::span(lens).subspan(hlit, hdist), false))
      return corrupt("puffed: bad code lengths");
    return {};
  }

  Status tokens(const HuffmanCode& lit, const HuffmanCode& dist) {
    static const std::array<uint8_t, 259> kLengthCode = make_length_code_table();
    for (;;) {
      uint8_t b = in_.u8();
      if (in_.failed()) return corrupt("puffed: truncated block");
      if (b != kEsc) {
        MUP_TRY(literal(lit, b));
        continue;
      }
      uint8_t c = in_.u8();
      if (c == kEscLiteral) {
        MUP_TRY(literal(lit, kEsc));
        continue;
      }
      if (c == kEscEndOfBlock) {
        if (in_.failed()) return corrupt("puffed: truncated block");
        bw_.put(lit.rev[kEndOfBlock], lit.len[kEndOfBlock]);
        return {};
      }
      uint32_t length, len_code, d;
      if (c == kEscLong258) {
        d = uint32_t{in_.u8()} << 8;
        d |= in_.u8();
        length = 258;
        len_code = kLen284;
      } else {
        d = uint32_t{c} << 8 | in_.u8();
        length = in_.u8() + 3u;
        len_code = kLengthCode[length];
      }
      if (in_.failed() || d >= 0x8000) return corrupt("puffed: bad match");
      uint32_t distance = d + 1;
      int dc = dist_code(distance);
      int ls = static_cast<int>(len_code) + 257;
      if (distance > produced_ || lit.len[ls] == 0 || dc >= dist.symbols || dist.len[dc] == 0)
        return corrupt("puffed: match not codable in this block");
      bw_.put(lit.rev[ls], lit.len[ls]);
      bw_.put(length - kLenBase[len_code], kLenExtra[len_code]);
      bw_.put(dist.rev[dc], dist.len[dc]);
      bw_.put(distance - kDistBase[dc], kDistExtra[dc]);
      produced_ += length;
    }
  }

  Status literal(const HuffmanCode& lit, uint8_t b) {
    if (lit.len[b] == 0) return corrupt("puffed: literal not codable in this block");
    bw_.put(lit.rev[b], lit.len[b]);
    ++produced_;
    return {};
  }

  ByteReader& in_;
  BitWriter bw_;
  uint64_t produced_ = 0;
  HuffmanCode cl_, lit_, dist_, fixed_lit_, fixed_dist_;
};

// Worst case growth of puff: a literal 0xFF or a match coded in 1-2 bits becomes 2-4
// bytes, 16 bytes per input byte; headers and trailer add their varints and the magic.
constexpr uint64_t kMaxGrowth = 16;
constexpr uint64_t kMaxOverhead = 64;
constexpr uint64_t kMaxTarget = uint64_t{1} << 36;

}  // namespace

Result<Bytes> puff_gzip(std::span<const uint8_t> gz) {
  auto header = gzip_header_size(gz);
  if (!header) return tl::unexpected(std::move(header).error());
  ByteWriter w;
  w.buffer().reserve(gz.size() * 4 + kMaxOverhead);
  w.u8(kPuffMagic);
  w.u8(kPuffVersion);
  w.varint(*header);
  w.bytes(gz.first(*header));
  auto end = Puffer(gz, *header, w.buffer()).run();
  if (!end) return tl::unexpected(std::move(end).error());
  w.varint(gz.size() - *end);
  w.bytes(gz.subspan(*end));
  return w.take();
}

Result<Bytes> huff_gzip(std::span<const uint8_t> puffed) {
  ByteReader in(puffed);
  if (in.u8() != kPuffMagic || in.u8() != kPuffVersion)
    return fail(Errc::corrupt, "puffed stream: bad magic or version");
  Bytes out;
  out.reserve(puffed.size());
  uint64_t header_len = in.varint();
  auto header = in.bytes(header_len > in.remaining() ? in.remaining() + 1 : header_len);
  if (in.failed()) return fail(Errc::corrupt, "puffed stream: truncated gzip header");
  out.insert(out.end(), header.begin(), header.end());
  MUP_TRY(Huffer(in, out).run());
  uint64_t trailer_len = in.varint();
  auto trailer = in.bytes(trailer_len > in.remaining() ? in.remaining() + 1 : trailer_len);
  if (in.failed() || !in.at_end()) return fail(Errc::corrupt, "puffed stream: bad trailer");
  out.insert(out.end(), trailer.begin(), trailer.end());
  return out;
}

bool applicable(std::span<const uint8_t> base, std::span<const uint8_t> target) {
  auto gz = [](std::span<const uint8_t> b) {
    return b.size() >= 18 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8;
  };
  return gz(base) && gz(target);
}

Result<Bytes> make(std::span<const uint8_t> base, std::span<const uint8_t> target, int level) {
  auto puff_exact = [](std::span<const uint8_t> gz, const char* which) -> Result<Bytes> {
    auto p = puff_gzip(gz);
    if (p) {
      auto h = huff_gzip(*p);
      if (h && std::equal(h->begin(), h->end(), gz.begin(), gz.end())) return p;
      return fail(Errc::unsupported, std::string(which) + " does not re-huff to the same bytes");
    }
    return fail(Errc::unsupported, std::string(which) + ": " + p.error().message());
  };
  auto pb = puff_exact(base, "base");
  if (!pb) return tl::unexpected(std::move(pb).error().context("puff delta"));
  auto pt = puff_exact(target, "target");
  if (!pt) return tl::unexpected(std::move(pt).error().context("puff delta"));
  if (pb->size() > bsdiff::kMaxBase)
    return fail(Errc::unsupported, "puff delta: puffed base of " + std::to_string(pb->size()) +
                                       " bytes is too large for bsdiff");
  auto diff = bsdiff::make(*pb, *pt, level);
  if (!diff) return tl::unexpected(std::move(diff).error().context("puff delta"));
  ByteWriter w;
  w.u8(kPatchVersion);
  w.varint(pt->size());
  w.bytes(*diff);
  return w.take();
}

Status apply(std::span<const uint8_t> base, std::span<const uint8_t> patch, uint64_t target_size,
             const Sink& sink) {
  ByteReader in(patch);
  uint8_t version = in.u8();
  uint64_t puffed_size = in.varint();
  if (in.failed() || version != kPatchVersion)
    return fail(Errc::corrupt, "puff delta: bad patch header");
  if (target_size > kMaxTarget || puffed_size > target_size * kMaxGrowth + kMaxOverhead)
    return fail(Errc::corrupt, "puff delta: puffed size " + std::to_string(puffed_size) +
                                   " impossible for a target of " + std::to_string(target_size));
  auto pb = puff_gzip(base);
  if (!pb)
    return fail(Errc::corrupt,
                "puff delta: base does not puff (" + pb.error().message() + "); wrong base file?");
  Bytes puffed;
  puffed.reserve(std::min<uint64_t>(puffed_size, uint64_t{64} << 20));
  auto st = bsdiff::apply(*pb, patch.subspan(in.position()), puffed_size,
                          [&](std::span<const uint8_t> b) -> Status {
                            puffed.insert(puffed.end(), b.begin(), b.end());
                            return {};
                          });
  if (!st) return tl::unexpected(std::move(st).error().context("puff delta"));
  auto out = huff_gzip(puffed);
  if (!out) return tl::unexpected(std::move(out).error().context("puff delta"));
  if (out->size() != target_size)
    return fail(Errc::corrupt, "puff delta: rebuilt " + std::to_string(out->size()) +
                                   " bytes, expected " + std::to_string(target_size));
  constexpr size_t kBlock = size_t{1} << 20;
  for (size_t at = 0; at < out->size(); at += kBlock)
    MUP_TRY(sink(std::span(*out).subspan(at, std::min(kBlock, out->size() - at))));
  return {};
}

}  // namespace mup::delta::puff
