#include "chunk/fastcdc.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "core/sha256.hpp"
#include "test_util.hpp"

namespace mup::chunk {
namespace {

std::set<Digest> chunk_ids(const Chunker& c, const std::vector<uint8_t>& data) {
  std::set<Digest> ids;
  size_t off = 0;
  for (uint32_t len : c.split(data)) {
    ids.insert(sha256(std::span(data).subspan(off, len)));
    off += len;
  }
  return ids;
}

TEST(FastCdc, RespectsBoundsAndCoversInput) {
  Chunker c({4096, 16384, 65536});
  auto data = test::random_bytes(3 << 20, 1);
  auto sizes = c.split(data);
  EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), uint64_t{0}), data.size());
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    EXPECT_GE(sizes[i], 4096u);
    EXPECT_LE(sizes[i], 65536u);
  }
  double avg = static_cast<double>(data.size()) / static_cast<double>(sizes.size());
  EXPECT_GT(avg, 16384 * 0.6);
  EXPECT_LT(avg, 16384 * 1.6);
}

TEST(FastCdc, DeterministicAndShiftResistant) {
  Chunker c({4096, 16384, 65536});
  auto data = test::random_bytes(2 << 20, 2);
  EXPECT_EQ(c.split(data), c.split(data));
  auto shifted = data;
  auto ins = test::random_bytes(777, 3);
  shifted.insert(shifted.begin() + 100000, ins.begin(), ins.end());
  auto a = chunk_ids(c, data), b = chunk_ids(c, shifted);
  size_t common = 0;
  for (const auto& id : a) common += b.count(id);
  EXPECT_GE(common, a.size() - 3) << "an insertion must only disturb the chunks around it";
}

TEST(FastCdc, SmallAndEmptyInputs) {
  Chunker c({});
  EXPECT_TRUE(c.split({}).empty());
  auto small = test::random_bytes(100, 4);
  EXPECT_EQ(c.split(small), std::vector<uint32_t>{100});
}

TEST(FastCdc, ParamsValidation) {
  EXPECT_TRUE(ChunkParams{}.validate());
  EXPECT_FALSE((ChunkParams{1024, 1024, 4096}.validate()));
  EXPECT_FALSE((ChunkParams{10, 1024, 4096}.validate()));
  EXPECT_FALSE((ChunkParams{1024, 4096, 128u << 20}.validate()));
}

}  // namespace
}  // namespace mup::chunk
