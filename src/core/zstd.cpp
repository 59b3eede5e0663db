#include "core/zstd.hpp"

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <memory>
#include <string>

namespace mup::zstd {

namespace {
// ZSTD_WINDOWLOG_MAX_64, which zstd.h only exposes to static linking.
constexpr int kMaxWindowLog = 31;

struct CctxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DctxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

int window_log_for(size_t total) {
  int log = 10;
  while (log < kMaxWindowLog && (size_t{1} << log) < total) ++log;
  return log;
}

Result<std::vector<uint8_t>> run_compress(ZSTD_CCtx* cctx, std::span<const uint8_t> in) {
  std::vector<uint8_t> out(ZSTD_compressBound(in.size()));
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n))
    return fail(Errc::internal, std::string("zstd compress: ") + ZSTD_getErrorName(n));
  out.resize(n);
  out.shrink_to_fit();
  return out;
}
}  // namespace

Result<std::vector<uint8_t>> compress(std::span<const uint8_t> in, int level) {
  std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 0);
  ZSTD_CCtx_setPledgedSrcSize(cctx.get(), in.size());
  return run_compress(cctx.get(), in);
}

Result<std::vector<uint8_t>> compress_with_prefix(std::span<const uint8_t> in,
                                                  std::span<const uint8_t> prefix, int level) {
  std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 0);
  int wlog = std::min(window_log_for(prefix.size() + in.size()),
                      prefix.empty() ? kMaxWindowLog : prefix_window_log_max(prefix.size()));
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, std::max(wlog, 10));
  if (prefix.size() > (size_t{1} << 24))
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_enableLongDistanceMatching, 1);
  ZSTD_CCtx_setPledgedSrcSize(cctx.get(), in.size());
  if (!prefix.empty()) {
    size_t r = ZSTD_CCtx_refPrefix(cctx.get(), prefix.data(), prefix.size());
    if (ZSTD_isError(r))
      return fail(Errc::internal, std::string("zstd prefix: ") + ZSTD_getErrorName(r));
  }
  return run_compress(cctx.get(), in);
}

Result<std::vector<uint8_t>> compress_solid(std::span<const uint8_t> in, int level) {
  std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 0);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog,
                         std::min(window_log_for(in.size()), prefix_window_log_max(0)));
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_enableLongDistanceMatching, 1);
  ZSTD_CCtx_setPledgedSrcSize(cctx.get(), in.size());
  return run_compress(cctx.get(), in);
}

int prefix_window_log_max(size_t prefix_size) {
  return std::min(kMaxWindowLog, std::max(27, window_log_for(prefix_size) + 1));
}

namespace {
using Dctx = std::unique_ptr<ZSTD_DCtx, DctxDeleter>;

// A decoder for one frame whose stated content size (or ZSTD_CONTENTSIZE_UNKNOWN) is within
// max_size, with its window capped and `prefix` referenced.
Result<std::pair<Dctx, unsigned long long>> open_frame(std::span<const uint8_t> in,
                                                       uint64_t max_size,
                                                       std::span<const uint8_t> prefix,
                                                       int window_log_max) {
  unsigned long long stated = ZSTD_getFrameContentSize(in.data(), in.size());
  if (stated == ZSTD_CONTENTSIZE_ERROR) return fail(Errc::corrupt, "not a zstd frame");
  if (stated != ZSTD_CONTENTSIZE_UNKNOWN && stated > max_size)
    return fail(Errc::corrupt, "zstd frame claims " + std::to_string(stated) +
                                   " bytes, more than the " + std::to_string(max_size) +
                                   " expected");
  Dctx dctx(ZSTD_createDCtx());
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, window_log_max);
  if (!prefix.empty()) {
    size_t r = ZSTD_DCtx_refPrefix(dctx.get(), prefix.data(), prefix.size());
    if (ZSTD_isError(r))
      return fail(Errc::internal, std::string("zstd prefix: ") + ZSTD_getErrorName(r));
  }
  return std::pair<Dctx, unsigned long long>(std::move(dctx), stated);
}
}  // namespace

Result<std::vector<uint8_t>> decompress(std::span<const uint8_t> in, size_t max_size,
                                        std::span<const uint8_t> prefix) {
  auto frame = open_frame(in, max_size, prefix, kMaxWindowLog);
  if (!frame) return tl::unexpected(frame.error());
  auto& [dctx, stated] = *frame;
  size_t cap = stated != ZSTD_CONTENTSIZE_UNKNOWN ? static_cast<size_t>(stated) : max_size;
  std::vector<uint8_t> out(cap);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  size_t r = 0;
  do {
    r = ZSTD_decompressStream(dctx.get(), &ob, &ib);
    if (ZSTD_isError(r)) return fail(Errc::corrupt, std::string("zstd: ") + ZSTD_getErrorName(r));
    if (r != 0 && ob.pos == ob.size) {
      // Output full but the frame goes on: either it is longer than allowed, or truncated.
      uint8_t probe;
      ZSTD_outBuffer pb{&probe, 1, 0};
      r = ZSTD_decompressStream(dctx.get(), &pb, &ib);
      if (ZSTD_isError(r)) return fail(Errc::corrupt, std::string("zstd: ") + ZSTD_getErrorName(r));
      if (pb.pos > 0)
        return fail(Errc::corrupt, "zstd frame expands beyond the " + std::to_string(max_size) +
                                       " bytes expected");
      if (r != 0 && ib.pos == ib.size) return fail(Errc::corrupt, "zstd frame is truncated");
    }
    if (r != 0 && ib.pos == ib.size && ob.pos < ob.size)
      return fail(Errc::corrupt, "zstd frame is truncated");
  } while (r != 0);
  if (ib.pos != ib.size) return fail(Errc::corrupt, "trailing bytes after the zstd frame");
  out.resize(ob.pos);
  return out;
}

Status decompress_to(std::span<const uint8_t> in, uint64_t max_size,
                     std::span<const uint8_t> prefix, const Sink& sink) {
  const int wmax = prefix_window_log_max(prefix.size());
  auto frame = open_frame(in, max_size, prefix, wmax);
  if (!frame) return tl::unexpected(frame.error());
  auto& dctx = frame->first;
  std::vector<uint8_t> out(size_t{1} << 20);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  uint64_t total = 0;
  size_t r = 1;
  while (r != 0) {
    ZSTD_outBuffer ob{out.data(), out.size(), 0};
    r = ZSTD_decompressStream(dctx.get(), &ob, &ib);
    if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
      return fail(Errc::corrupt, "zstd frame asks for a window above 2^" + std::to_string(wmax) +
                                     " bytes (the most a delta against " +
                                     std::to_string(prefix.size()) + " bytes needs)");
    if (ZSTD_isError(r)) return fail(Errc::corrupt, std::string("zstd: ") + ZSTD_getErrorName(r));
    total += ob.pos;
    if (total > max_size)
      return fail(Errc::corrupt,
                  "zstd frame expands beyond the " + std::to_string(max_size) + " bytes expected");
    if (ob.pos > 0) MUP_TRY(sink(std::span<const uint8_t>(out.data(), ob.pos)));
    if (r != 0 && ib.pos == ib.size && ob.pos < ob.size)
      return fail(Errc::corrupt, "zstd frame is truncated");
  }
  if (ib.pos != ib.size) return fail(Errc::corrupt, "trailing bytes after the zstd frame");
  return {};
}

}  // namespace mup::zstd
