#include "chunk/fastcdc.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <string>

namespace mup::chunk {

namespace {

// 256 pseudo-random 64-bit words from splitmix64; fixed forever (changing them moves every
// chunk boundary of every published package).
constexpr std::array<uint64_t, 256> make_gear() {
  std::array<uint64_t, 256> g{};
  uint64_t x = 0x6d75702d67656172ULL;  // "mup-gear"
  for (auto& v : g) {
    x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v = z ^ (z >> 31);
  }
  return g;
}
constexpr std::array<uint64_t, 256> kGear = make_gear();

// A mask of `bits` one-bits in the high end of the word: with the shift-left Gear hash, the
// high bits mix the most recent 64 bytes.
constexpr uint64_t high_mask(int bits) {
  bits = std::clamp(bits, 1, 63);
  return ~uint64_t{0} << (64 - bits);
}

}  // namespace

Status ChunkParams::validate() const {
  if (min_size < 64 || min_size >= avg_size || avg_size >= max_size || max_size > (64u << 20))
    return fail(Errc::invalid_argument,
                "chunk sizes must satisfy 64 <= min < avg < max <= 64 MiB (got " +
                    std::to_string(min_size) + "/" + std::to_string(avg_size) + "/" +
                    std::to_string(max_size) + ")");
  return {};
}

Chunker::Chunker(ChunkParams p) : p_(p) {
  int bits = std::bit_width(p.avg_size) - 1;  // log2(avg), rounded down
  // Normalization level 2 (the paper's recommendation).
  mask_small_ = high_mask(bits + 2);
  mask_large_ = high_mask(bits - 2);
}

size_t Chunker::next_cut(std::span<const uint8_t> data) const {
  size_t n = data.size();
  if (n <= p_.min_size) return n;
  if (n > p_.max_size) n = p_.max_size;
  size_t normal = std::min<size_t>(p_.avg_size, n);
  const uint8_t* d = data.data();
  uint64_t h = 0;
  size_t i = p_.min_size;
  for (; i < normal; ++i) {
    h = (h << 1) + kGear[d[i]];
    if ((h & mask_small_) == 0) return i + 1;
  }
  for (; i < n; ++i) {
    h = (h << 1) + kGear[d[i]];
    if ((h & mask_large_) == 0) return i + 1;
  }
  return n;
}

std::vector<uint32_t> Chunker::split(std::span<const uint8_t> data) const {
  std::vector<uint32_t> out;
  out.reserve(data.size() / p_.avg_size + 1);
  while (!data.empty()) {
    size_t c = next_cut(data);
    out.push_back(static_cast<uint32_t>(c));
    data = data.subspan(c);
  }
  return out;
}

}  // namespace mup::chunk
