#include "chunk/chunk_store.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "test_util.hpp"

namespace mup::chunk {
namespace {

TEST(ChunkStore, PutGetAndDedup) {
  test::ScratchDir dir;
  auto store = ChunkStore::open(dir / "s", true);
  ASSERT_TRUE(store);
  auto data = test::text_bytes(50000, 1);
  Digest id = sha256(data);
  auto n = store->put_chunk(id, data, 3);
  ASSERT_TRUE(n);
  EXPECT_LT(*n, data.size());
  EXPECT_TRUE(store->has_chunk(id));
  EXPECT_EQ(store->chunk_path(id).parent_path().filename(), id.hex().substr(0, 2));
  auto again = store->put_chunk(id, data, 19);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *n) << "an existing chunk is not rewritten";
  auto back = store->get_chunk(id, static_cast<uint32_t>(data.size()));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, data);
}

// What a power cut between rename and sync leaves: an empty or torn chunk under its final
// name. Reused as it is by default; Existing::verify reads it back and stores it again.
TEST(ChunkStore, VerifyRewritesATornChunkAndKeepsAGoodOne) {
  test::ScratchDir dir;
  auto store = ChunkStore::open(dir / "s", true);
  ASSERT_TRUE(store);
  auto data = test::random_bytes(60000, 3);
  const Digest id = sha256(data);
  ASSERT_TRUE(store->put_chunk(id, data, 3));
  const auto good = test::read_file(store->chunk_path(id));
  for (size_t keep : {size_t{0}, good.size() / 2}) {
    test::write_file(store->chunk_path(id),
                     std::vector<uint8_t>(good.begin(), good.begin() + keep));
    ASSERT_TRUE(store->put_chunk(id, data, 3));  // keep: trusted by name
    EXPECT_FALSE(store->get_chunk(id, static_cast<uint32_t>(data.size())));
    auto n = store->put_chunk(id, data, 3, ChunkStore::Existing::verify);
    ASSERT_TRUE(n) << n.error().message();
    auto back = store->get_chunk(id, static_cast<uint32_t>(data.size()));
    ASSERT_TRUE(back) << "torn at " << keep << " bytes: " << back.error().message();
    EXPECT_EQ(*back, data);
  }
  // A good chunk is reused, not rewritten (same inode).
  struct stat before {
  }, after{};
  ASSERT_EQ(::stat(store->chunk_path(id).c_str(), &before), 0);
  ASSERT_TRUE(store->put_chunk(id, data, 19, ChunkStore::Existing::verify));
  ASSERT_EQ(::stat(store->chunk_path(id).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
}

// begin_batch() says whether an earlier batch never ended; end_batch() clears the record.
TEST(ChunkStore, ABatchThatNeverEndedIsReportedToTheNextWriter) {
  test::ScratchDir dir;
  auto store = ChunkStore::open(dir / "s", true);
  ASSERT_TRUE(store);
  auto first = store->begin_batch();
  ASSERT_TRUE(first);
  EXPECT_FALSE(*first);
  EXPECT_TRUE(std::filesystem::exists(store->batch_marker()));
  // The writer dies here; the next one is told.
  auto second = store->begin_batch();
  ASSERT_TRUE(second);
  EXPECT_TRUE(*second);
  ASSERT_TRUE(store->end_batch());
  EXPECT_FALSE(std::filesystem::exists(store->batch_marker()));
  auto third = store->begin_batch();
  ASSERT_TRUE(third);
  EXPECT_FALSE(*third);
}

TEST(ChunkStore, OpenMissingWithoutCreateFails) {
  test::ScratchDir dir;
  auto s = ChunkStore::open(dir / "none", false);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::not_found);
}

class ChunkStoreCorruption : public ::testing::Test {
 protected:
  void SetUp() override {
    store_.emplace(*ChunkStore::open(dir_ / "s", true));
    data_ = test::text_bytes(40000, 2);
    id_ = sha256(data_);
    ASSERT_TRUE(store_->put_chunk(id_, data_, 3));
  }
  void expect_corrupt(const std::string& why) {
    auto r = store_->get_chunk(id_, static_cast<uint32_t>(data_.size()));
    ASSERT_FALSE(r) << why;
    EXPECT_EQ(r.error().code(), Errc::corrupt) << why;
    EXPECT_NE(r.error().message().find(id_.hex()), std::string::npos)
        << "the error names the chunk";
  }
  test::ScratchDir dir_;
  std::optional<ChunkStore> store_;
  std::vector<uint8_t> data_;
  Digest id_;
};

TEST_F(ChunkStoreCorruption, FlippedByte) {
  auto p = store_->chunk_path(id_);
  auto z = test::read_file(p);
  z[z.size() / 2] ^= 0x40;
  test::write_file(p, z);
  expect_corrupt("flipped byte");
}

TEST_F(ChunkStoreCorruption, Truncated) {
  auto p = store_->chunk_path(id_);
  auto z = test::read_file(p);
  z.resize(z.size() - 5);
  test::write_file(p, z);
  expect_corrupt("truncated");
}

TEST_F(ChunkStoreCorruption, OtherValidChunkUnderThisName) {
  auto other = test::text_bytes(40000, 3);
  ChunkStore s2 = *ChunkStore::open(dir_ / "s2", true);
  ASSERT_TRUE(s2.put_chunk(sha256(other), other, 3));
  std::filesystem::copy_file(s2.chunk_path(sha256(other)), store_->chunk_path(id_),
                             std::filesystem::copy_options::overwrite_existing);
  expect_corrupt("a well-formed chunk with other content");
}

TEST_F(ChunkStoreCorruption, WrongStatedSize) {
  auto r = store_->get_chunk(id_, static_cast<uint32_t>(data_.size() - 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
}

TEST(ChunkStore, MissingChunkIsNotFound) {
  test::ScratchDir dir;
  auto store = ChunkStore::open(dir / "s", true);
  auto r = store->get_chunk(sha256({}), 10);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::not_found);
}

}  // namespace
}  // namespace mup::chunk
