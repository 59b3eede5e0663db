// FastCDC content-defined chunking (Xia et al. 2016/2020): Gear rolling hash with
// normalized chunking.
//
// Boundaries depend only on content, so an insertion shifts at most the chunks around it
// and the rest of a file keeps its chunk ids across versions. Normalization uses a
// stricter mask before the average size and a looser one after, which narrows the size
// distribution around `avg`. The same parameters must be used on both sides of a
// comparison: a TreeIndex records them. Chunker is a stateless value; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.hpp"

namespace mup::chunk {

struct ChunkParams {
  uint32_t min_size = 16 * 1024;
  uint32_t avg_size = 64 * 1024;
  uint32_t max_size = 256 * 1024;

  // min >= 64, min < avg < max, max <= 64 MiB.
  [[nodiscard]] Status validate() const;
  bool operator==(const ChunkParams&) const = default;
};

class Chunker {
 public:
  explicit Chunker(ChunkParams p);

  // Length of the first chunk of `data` (all of it when shorter than min_size).
  size_t next_cut(std::span<const uint8_t> data) const;
  // Lengths of all chunks of `data`, in order; they sum to data.size().
  std::vector<uint32_t> split(std::span<const uint8_t> data) const;

  const ChunkParams& params() const { return p_; }

 private:
  ChunkParams p_;
  uint64_t mask_small_;  // stricter, used before avg_size
  uint64_t mask_large_;  // looser, used after avg_size
};

}  // namespace mup::chunk
