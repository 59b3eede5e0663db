#include "delta/piece.hpp"

#include <algorithm>

#include "core/zstd.hpp"
#include "delta/deflate_puff.hpp"
#include "delta/tensor_delta.hpp"

namespace mup::delta {

namespace {
constexpr uint8_t kMagic[4] = {'M', 'U', 'P', 'D'};
constexpr size_t kHeader = 5;

Piece wrap(DeltaKind kind, std::span<const uint8_t> payload) {
  Piece p{kind, {}};
  p.bytes.reserve(kHeader + payload.size());
  p.bytes.insert(p.bytes.end(), kMagic, kMagic + 4);
  p.bytes.push_back(static_cast<uint8_t>(kind));
  p.bytes.insert(p.bytes.end(), payload.begin(), payload.end());
  return p;
}
}  // namespace

std::string_view kind_name(uint8_t kind) {
  switch (static_cast<DeltaKind>(kind)) {
    case DeltaKind::bsdiff: return "bsdiff";
    case DeltaKind::zstd_patch: return "zstd-patch";
    case DeltaKind::tensor: return "tensor";
    case DeltaKind::puff: return "puff";
  }
  return "unknown";
}

std::string piece_rel_path(const Digest& base, const Digest& target) {
  std::string b = base.hex();
  return "deltas/" + b.substr(0, 2) + "/" + b + "-" + target.hex();
}

Result<std::optional<Piece>> make_best(std::span<const uint8_t> base,
                                       std::span<const uint8_t> target, int level) {
  if (target.empty() || base.empty()) return std::optional<Piece>{};
  std::optional<Piece> best;
  auto consider = [&](DeltaKind kind, Result<std::vector<uint8_t>> payload) -> Status {
    if (!payload)
      return tl::unexpected(
          payload.error().context(std::string(kind_name(static_cast<uint8_t>(kind)))));
    if (!best || payload->size() + kHeader < best->bytes.size()) best = wrap(kind, *payload);
    return {};
  };
  if (tensor::applicable(base, target)) {
    MUP_TRY(consider(DeltaKind::tensor, tensor::make(base, target, level)));
    return best;
  }
  auto poor = [&] {
    return !best || static_cast<double>(best->bytes.size()) >
                        kSecondOpinionRatio * static_cast<double>(target.size());
  };
  // The puffed form is at most ~16x the .gz, and bsdiff indexes it: bound the base.
  if (puff::applicable(base, target) && base.size() <= kBsdiffMaxBase / 16) {
    auto p = puff::make(base, target, level);
    if (p || p.error().code() != Errc::unsupported)
      MUP_TRY(consider(DeltaKind::puff, std::move(p)));
  }
  if (poor() && base.size() <= kBsdiffMaxBase) {
    MUP_TRY(consider(DeltaKind::bsdiff, bsdiff::make(base, target, level)));
  }
  if (poor()) {
    MUP_TRY(consider(DeltaKind::zstd_patch, zstd::compress_with_prefix(target, base, level)));
  }
  return best;
}

Status apply_piece(std::span<const uint8_t> piece, uint8_t expected_kind,
                   std::span<const uint8_t> base, uint64_t target_size, const Sink& sink) {
  if (piece.size() < kHeader || !std::equal(kMagic, kMagic + 4, piece.begin()))
    return fail(Errc::corrupt, "delta piece has a bad header");
  if (piece[4] != expected_kind)
    return fail(Errc::corrupt, "delta piece is of kind " + std::string(kind_name(piece[4])) +
                                   ", index says " + std::string(kind_name(expected_kind)));
  auto payload = piece.subspan(kHeader);
  switch (static_cast<DeltaKind>(expected_kind)) {
    case DeltaKind::bsdiff: return bsdiff::apply(base, payload, target_size, sink);
    case DeltaKind::tensor: return tensor::apply(base, payload, target_size, sink);
    case DeltaKind::puff: return puff::apply(base, payload, target_size, sink);
    case DeltaKind::zstd_patch: {
      // Streamed: memory is the decoder's window, bounded by the base's size, never by the
      // target's (a 1 TB target would otherwise be decompressed whole in memory).
      uint64_t got = 0;
      MUP_TRY(zstd::decompress_to(payload, target_size, base, [&](std::span<const uint8_t> b) {
        got += b.size();
        return sink(b);
      }));
      if (got != target_size)
        return fail(Errc::corrupt, "zstd delta gives a file of the wrong size");
      return {};
    }
  }
  return fail(Errc::unsupported,
              "unknown delta kind " + std::to_string(expected_kind) + "; upgrade mup");
}

}  // namespace mup::delta
