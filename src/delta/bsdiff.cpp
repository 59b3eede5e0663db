// bsdiff-style delta: suffix-array matching with mismatch tolerance, zstd streams.
//
// Patch format (all integers LEB128 varints unless said otherwise):
//
//   "MBD1"                       4 bytes magic
//   target_size                  must equal the size the caller expects
//   ctrl_len diff_len extra_len  compressed sizes of the three frames that follow
//   ctrl frame                   zstd; triples (add, copy, zigzag(seek)) as varints
//   diff frame                   zstd; add-many bytes target - base per triple
//   extra frame                  zstd; copy-many literal target bytes per triple
//
// Applying a triple: pos += seek (so the first seek is from 0); out += base[pos .. pos+add) + diff
// (bytewise, mod 256); pos += add; out += copy extra bytes. pos starts at 0. Every triple makes
// progress (add + copy > 0), so a hostile ctrl stream cannot spin; pos must stay inside [0, |base|]
// and the output must come out at exactly target_size with all three frames fully consumed.
//
// The scan loop follows Colin Percival's bsdiff: at each target position find the longest
// exact match in the base; accept it only when it beats, by more than 8 bytes, simply
// continuing the previous alignment ("oldscore"); then grow the previous alignment forward
// and the new one backward where at least half the bytes agree, and split any overlap
// where the two disagree least. Two guards keep it near-linear on repetitive input, where
// the classic loop goes quadratic: the suffix-array search skips the prefix it already
// knows to match (lcp of the interval ends), and a long match that does not beat the
// previous alignment moves the scan near its end instead of one byte at a time. Targets
// over 1 MiB are cut into segments scanned in parallel against the one suffix array (the
// search is bound by cache misses); each segment restarts the alignment, which costs
// under 0.01% in patch size on rebuilt binaries.
#include "delta/bsdiff.hpp"

#include <divsufsort.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <string>

#include "core/bytes.hpp"
#include "core/parallel.hpp"
#include "core/zstd.hpp"

namespace mup::delta::bsdiff {
namespace {

constexpr uint8_t kMagic[4] = {'M', 'B', 'D', '1'};
constexpr size_t kOutBlock = size_t{1} << 20;
// A non-improving match at least this long moves the scan to kLongMatch/2 before its end.
constexpr size_t kLongMatch = 256;
// Targets are scanned in segments of at least this size, up to 4 per thread for balance.
constexpr size_t kMinParallelSegment = size_t{1} << 20;

// Length of the common prefix of a[0, an) and b[0, bn).
size_t common_prefix(const uint8_t* a, size_t an, const uint8_t* b, size_t bn) {
  const size_t n = std::min(an, bn);
  size_t i = 0;
  if constexpr (std::endian::native == std::endian::little) {
    for (; i + 8 <= n; i += 8) {
      uint64_t x, y;
      std::memcpy(&x, a + i, 8);
      std::memcpy(&y, b + i, 8);
      if (x != y) return i + static_cast<size_t>(std::countr_zero(x ^ y)) / 8;
    }
  }
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

// Suffix array of the base with a two-byte bucket index to shorten the binary search.
class SuffixIndex {
 public:
  static Result<SuffixIndex> build(std::span<const uint8_t> base) {
    SuffixIndex ix;
    ix.base_ = base;
    const size_t n = base.size();
    if (n == 0) return ix;
    ix.sa_.resize(n);
    if (divsufsort(base.data(), ix.sa_.data(), static_cast<saidx_t>(n)) != 0)
      return fail(Errc::internal, "divsufsort failed on a base of " + std::to_string(n) + " bytes");
    // Suffixes with two-byte prefix k occupy sa_[start_[k], start_[k+1]). The one suffix of
    // length 1 sorts before every longer suffix starting with the same byte.
    ix.start_.assign(65537, 0);
    std::vector<uint32_t> count(65536, 0);
    for (size_t i = 0; i + 1 < n; ++i) ++count[(size_t{base[i]} << 8) | base[i + 1]];
    uint32_t acc = 0;
    const size_t short_key = size_t{base[n - 1]} << 8;  // "c" sorts just before "c\0"
    for (size_t k = 0; k < 65536; ++k) {
      if (k == short_key) ++acc;
      ix.start_[k] = acc;
      acc += count[k];
    }
    ix.start_[65536] = acc;
    return ix;
  }

  // Longest prefix of `pat` that occurs in the base; its base offset goes to *pos.
  size_t longest_match(std::span<const uint8_t> pat, size_t* pos) const {
    *pos = 0;
    const size_t n = base_.size();
    if (n == 0 || pat.empty()) return 0;
    size_t lo = 0, hi = n - 1;
    if (pat.size() >= 2) {
      const size_t k = (size_t{pat[0]} << 8) | pat[1];
      if (start_[k + 1] > start_[k]) {
        lo = start_[k];
        hi = start_[k + 1] - 1;
      }
    }
    auto lcp_at = [&](size_t idx, size_t skip) {
      const size_t p = static_cast<size_t>(sa_[idx]);
      return skip + common_prefix(base_.data() + p + skip, n - p - skip, pat.data() + skip,
                                  pat.size() - skip);
    };
    size_t llcp = lcp_at(lo, 0);
    if (lo == hi) {
      *pos = static_cast<size_t>(sa_[lo]);
      return llcp;
    }
    size_t rlcp = lcp_at(hi, 0);
    // Invariant: suffix(lo) <= pat-ish <= suffix(hi); everything between shares
    // min(llcp, rlcp) bytes with the pattern.
    while (hi - lo > 1) {
      const size_t mid = lo + (hi - lo) / 2;
      const size_t l = lcp_at(mid, std::min(llcp, rlcp));
      const size_t p = static_cast<size_t>(sa_[mid]);
      if (l == pat.size()) {
        *pos = p;
        return l;
      }
      if (p + l == n || base_[p + l] < pat[l]) {
        lo = mid;
        llcp = l;
      } else {
        hi = mid;
        rlcp = l;
      }
    }
    if (llcp >= rlcp) {
      *pos = static_cast<size_t>(sa_[lo]);
      return llcp;
    }
    *pos = static_cast<size_t>(sa_[hi]);
    return rlcp;
  }

 private:
  std::span<const uint8_t> base_;
  std::vector<saidx_t> sa_;
  std::vector<uint32_t> start_;
};

// What the scan of one target segment found: steps in order, and their diff and extra bytes.
struct Segment {
  struct Step {
    uint64_t from;  // base offset the add run starts at
    uint64_t add;
    uint64_t copy;
  };
  std::vector<Step> steps;
  std::vector<uint8_t> diff;
  std::vector<uint8_t> extra;

  void emit(std::span<const uint8_t> base, const uint8_t* target, int64_t from, int64_t add,
            int64_t copy) {
    if (add == 0 && copy == 0) return;
    steps.push_back(
        {static_cast<uint64_t>(from), static_cast<uint64_t>(add), static_cast<uint64_t>(copy)});
    const uint8_t* old = base.data() + from;
    const size_t d = diff.size();
    diff.resize(d + static_cast<size_t>(add));
    for (size_t i = 0; i < static_cast<size_t>(add); ++i)
      diff[d + i] = static_cast<uint8_t>(target[i] - old[i]);
    extra.insert(extra.end(), target + add, target + add + copy);
  }
};

// Percival's scan over one target segment (matches do not cross its ends).
void scan_segment(std::span<const uint8_t> base_span, std::span<const uint8_t> target_span,
                  const SuffixIndex& index, Segment& out) {
  const uint8_t* old = base_span.data();
  const uint8_t* neu = target_span.data();
  const int64_t oldsize = static_cast<int64_t>(base_span.size());
  const int64_t newsize = static_cast<int64_t>(target_span.size());
  int64_t scan = 0, len = 0, pos = 0;
  int64_t lastscan = 0, lastpos = 0, lastoffset = 0;
  auto agrees_last = [&](int64_t at) {  // does the previous alignment predict neu[at]?
    return at + lastoffset >= 0 && at + lastoffset < oldsize && old[at + lastoffset] == neu[at];
  };

  while (scan < newsize) {
    int64_t oldscore = 0;
    int64_t scsc = scan += len;
    for (; scan < newsize; ++scan) {
      size_t p = 0;
      len = static_cast<int64_t>(
          index.longest_match(target_span.subspan(static_cast<size_t>(scan)), &p));
      pos = static_cast<int64_t>(p);
      for (; scsc < scan + len; ++scsc)
        if (agrees_last(scsc)) ++oldscore;
      if ((len == oldscore && len != 0) || len > oldscore + 8) break;
      if (agrees_last(scan)) --oldscore;
      if (len >= static_cast<int64_t>(kLongMatch)) {
        // The previous alignment explains this long match to within 8 bytes, and trying
        // every position inside it costs O(len) each. Resume close to its end, keeping
        // oldscore the count of agreeing bytes over [scan, scsc).
        const int64_t next = scan + len - static_cast<int64_t>(kLongMatch / 2);
        for (int64_t j = scan + 1; j < next; ++j)
          if (agrees_last(j)) --oldscore;
        scan = next - 1;  // the loop's ++scan lands on `next`
      }
    }

    if (len != oldscore || scan == newsize) {
      // Grow the previous alignment forward while at least half of the bytes agree.
      int64_t s = 0, best = 0, lenf = 0;
      for (int64_t i = 0; lastscan + i < scan && lastpos + i < oldsize;) {
        if (old[lastpos + i] == neu[lastscan + i]) ++s;
        ++i;
        if (s * 2 - i > best * 2 - lenf) {
          best = s;
          lenf = i;
        }
      }
      // Grow the new match backward likewise.
      int64_t lenb = 0;
      if (scan < newsize) {
        s = 0;
        best = 0;
        for (int64_t i = 1; scan >= lastscan + i && pos >= i; ++i) {
          if (old[pos - i] == neu[scan - i]) ++s;
          if (s * 2 - i > best * 2 - lenb) {
            best = s;
            lenb = i;
          }
        }
      }
      // Where they overlap, cut at the point that keeps the most agreeing bytes.
      if (lastscan + lenf > scan - lenb) {
        const int64_t overlap = (lastscan + lenf) - (scan - lenb);
        s = 0;
        best = 0;
        int64_t lens = 0;
        for (int64_t i = 0; i < overlap; ++i) {
          if (neu[lastscan + lenf - overlap + i] == old[lastpos + lenf - overlap + i]) ++s;
          if (neu[scan - lenb + i] == old[pos - lenb + i]) --s;
          if (s > best) {
            best = s;
            lens = i + 1;
          }
        }
        lenf += lens - overlap;
        lenb -= lens;
      }
      out.emit(base_span, neu + lastscan, lastpos, lenf, (scan - lenb) - (lastscan + lenf));
      lastscan = scan - lenb;
      lastpos = pos - lenb;
      lastoffset = pos - scan;
    }
  }
}

struct DctxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

// Pulls decompressed bytes of one zstd frame on demand, so apply() never holds a whole
// decompressed stream. Any malformed, short or overlong frame is Errc::corrupt.
class FrameReader {
 public:
  FrameReader(std::span<const uint8_t> frame, const char* name)
      : dctx_(ZSTD_createDCtx()), in_{frame.data(), frame.size(), 0}, name_(name) {}

  Status read(uint8_t* out, size_t n) {
    while (n > 0) {
      if (pos_ == end_) MUP_TRY(refill_some());
      const size_t k = std::min(n, end_ - pos_);
      std::memcpy(out, buf_.data() + pos_, k);
      pos_ += k;
      out += k;
      n -= k;
    }
    return {};
  }

  Result<uint64_t> varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ == end_) MUP_TRY(refill_some());
      const uint8_t b = buf_[pos_++];
      if (shift == 63 && b > 1) break;
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) return v;
    }
    return fail(Errc::corrupt, std::string("bsdiff patch: bad varint in the ") + name_ + " stream");
  }

  // OK only if the frame ended exactly where the reader stopped, with nothing after it.
  Status finish() {
    if (pos_ != end_) return overlong();
    while (!done_) {
      MUP_TRY(refill());
      if (end_ != 0) return overlong();
    }
    if (in_.pos != in_.size) return overlong();
    return {};
  }

 private:
  Status overlong() {
    return fail(Errc::corrupt, std::string("bsdiff patch: the ") + name_ +
                                   " stream holds more data than the control stream uses");
  }
  Status short_stream() {
    return fail(Errc::corrupt, std::string("bsdiff patch: the ") + name_ + " stream ends early");
  }

  // Like refill(), for callers that need at least one more byte.
  Status refill_some() {
    MUP_TRY(refill());
    if (end_ == 0) return short_stream();
    return {};
  }

  // Decompresses the next piece into buf_. At the end of the frame, leaves buf_ empty and
  // done_ set.
  Status refill() {
    if (!dctx_) return fail(Errc::internal, "out of memory for a zstd decoder");
    if (buf_.empty()) buf_.resize(ZSTD_DStreamOutSize());
    pos_ = end_ = 0;
    while (!done_) {
      ZSTD_outBuffer ob{buf_.data(), buf_.size(), 0};
      const size_t in_before = in_.pos;
      const size_t r = ZSTD_decompressStream(dctx_.get(), &ob, &in_);
      if (ZSTD_isError(r))
        return fail(Errc::corrupt,
                    std::string("bsdiff patch: ") + name_ + " stream: " + ZSTD_getErrorName(r));
      if (r == 0) done_ = true;
      end_ = ob.pos;
      if (end_ > 0) return {};
      if (!done_ && in_.pos == in_before && in_.pos == in_.size) return short_stream();
    }
    return {};
  }

  std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx_;
  ZSTD_inBuffer in_;
  const char* name_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0, end_ = 0;
  bool done_ = false;
};

Status corrupt(const std::string& what) {
  return fail(Errc::corrupt, "bsdiff patch: " + what);
}

}  // namespace

Result<std::vector<uint8_t>> make(std::span<const uint8_t> base, std::span<const uint8_t> target,
                                  int level) {
  if (base.size() >= kMaxBase)  // divsufsort's indices are int32
    return fail(Errc::invalid_argument, "bsdiff: base of " + std::to_string(base.size()) +
                                            " bytes is not under the " + std::to_string(kMaxBase) +
                                            "-byte limit; use a chunked delta instead");
  // The scan is bound by cache misses in the suffix array; segments of the target scan in
  // parallel against the shared index (each segment restarts the alignment, a negligible
  // loss at these sizes).
  const unsigned threads = default_threads();
  const size_t nseg = std::max<size_t>(
      1, std::min<size_t>(size_t{4} * threads, target.size() / kMinParallelSegment));
  std::vector<Segment> segments(target.empty() ? 0 : nseg);
  if (!target.empty()) {
    if (base.empty()) {
      segments.resize(1);
      segments[0].emit(base, target.data(), 0, 0, static_cast<int64_t>(target.size()));
    } else {
      auto index = SuffixIndex::build(base);
      if (!index) return tl::unexpected(index.error());
      const size_t per = target.size() / nseg;
      parallel_for(nseg, threads, [&](size_t k) {
        const size_t begin = k * per, end = k + 1 == nseg ? target.size() : begin + per;
        segments[k].diff.reserve(end - begin);
        scan_segment(base, target.subspan(begin, end - begin), *index, segments[k]);
      });
    }
  }
  ByteWriter ctrl_raw;
  std::vector<uint8_t> diff_raw, extra_raw;
  uint64_t cursor = 0;
  for (const Segment& seg : segments) {
    for (const Segment::Step& step : seg.steps) {
      const int64_t seek = static_cast<int64_t>(step.from - cursor);
      ctrl_raw.varint(step.add);
      ctrl_raw.varint(step.copy);
      ctrl_raw.varint((static_cast<uint64_t>(seek) << 1) ^ static_cast<uint64_t>(seek >> 63));
      cursor = step.from + step.add;
    }
  }
  if (segments.size() == 1) {
    diff_raw = std::move(segments[0].diff);
    extra_raw = std::move(segments[0].extra);
  } else {
    for (Segment& seg : segments) {
      diff_raw.insert(diff_raw.end(), seg.diff.begin(), seg.diff.end());
      extra_raw.insert(extra_raw.end(), seg.extra.begin(), seg.extra.end());
      seg = Segment();
    }
  }
  auto ctrl = zstd::compress(ctrl_raw.buffer(), level);
  if (!ctrl) return tl::unexpected(ctrl.error());
  auto diff = zstd::compress(diff_raw, level);
  if (!diff) return tl::unexpected(diff.error());
  auto extra = zstd::compress(extra_raw, level);
  if (!extra) return tl::unexpected(extra.error());

  ByteWriter w;
  w.bytes(kMagic);
  w.varint(target.size());
  w.varint(ctrl->size());
  w.varint(diff->size());
  w.varint(extra->size());
  w.buffer().reserve(w.buffer().size() + ctrl->size() + diff->size() + extra->size());
  w.bytes(*ctrl);
  w.bytes(*diff);
  w.bytes(*extra);
  return w.take();
}

Status apply(std::span<const uint8_t> base, std::span<const uint8_t> patch, uint64_t target_size,
             const Sink& sink) {
  ByteReader r(patch);
  auto magic = r.bytes(4);
  if (r.failed() || !std::equal(magic.begin(), magic.end(), kMagic))
    return corrupt("bad magic (not a mup bsdiff patch)");
  const uint64_t stated = r.varint();
  const uint64_t lens[3] = {r.varint(), r.varint(), r.varint()};
  if (r.failed()) return corrupt("truncated header");
  if (stated != target_size)
    return corrupt("made for a target of " + std::to_string(stated) + " bytes, expected " +
                   std::to_string(target_size));
  std::span<const uint8_t> frames[3];
  for (int i = 0; i < 3; ++i) {
    if (lens[i] > r.remaining()) return corrupt("truncated stream");
    frames[i] = r.bytes(static_cast<size_t>(lens[i]));
  }
  if (!r.at_end()) return corrupt("trailing bytes after the streams");

  FrameReader ctrl(frames[0], "control"), diff(frames[1], "diff"), extra(frames[2], "extra");
  std::vector<uint8_t> block(static_cast<size_t>(std::min<uint64_t>(target_size, kOutBlock)));
  size_t fill = 0;
  uint64_t produced = 0;
  uint64_t pos = 0;  // base cursor, always within [0, |base|]
  auto flush = [&]() -> Status {
    if (fill == 0) return {};
    MUP_TRY(sink(std::span<const uint8_t>(block.data(), fill)));
    fill = 0;
    return {};
  };

  while (produced < target_size) {
    auto add = ctrl.varint();
    if (!add) return tl::unexpected(add.error());
    auto copy = ctrl.varint();
    if (!copy) return tl::unexpected(copy.error());
    auto seek = ctrl.varint();
    if (!seek) return tl::unexpected(seek.error());
    const uint64_t left = target_size - produced;
    if (*add == 0 && *copy == 0) return corrupt("empty control triple");
    if (*add > left || *copy > left - *add) return corrupt("control triple overruns the target");
    const int64_t s = static_cast<int64_t>(*seek >> 1) ^ -static_cast<int64_t>(*seek & 1);
    if (s < 0 ? static_cast<uint64_t>(-(s + 1)) + 1 > pos
              : static_cast<uint64_t>(s) > base.size() - pos)
      return corrupt("seek moves outside the base");
    pos = static_cast<uint64_t>(static_cast<int64_t>(pos) + s);
    if (*add > base.size() - pos) return corrupt("diff run reads past the end of the base");

    for (uint64_t n = *add; n > 0;) {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(n, block.size() - fill));
      MUP_TRY(diff.read(block.data() + fill, k));
      const uint8_t* b = base.data() + pos;
      for (size_t i = 0; i < k; ++i) block[fill + i] = static_cast<uint8_t>(block[fill + i] + b[i]);
      fill += k;
      pos += k;
      n -= k;
      if (fill == block.size()) MUP_TRY(flush());
    }
    for (uint64_t n = *copy; n > 0;) {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(n, block.size() - fill));
      MUP_TRY(extra.read(block.data() + fill, k));
      fill += k;
      n -= k;
      if (fill == block.size()) MUP_TRY(flush());
    }
    produced += *add + *copy;
  }
  MUP_TRY(flush());
  MUP_TRY(ctrl.finish());
  MUP_TRY(diff.finish());
  MUP_TRY(extra.finish());
  return {};
}

}  // namespace mup::delta::bsdiff
