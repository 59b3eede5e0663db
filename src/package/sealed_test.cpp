#include "package/sealed.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>

#include "core/sha256.hpp"
#include "delta/packer.hpp"
#include "test_util.hpp"

namespace mup::package {
namespace {

namespace stdfs = std::filesystem;
using test::ScratchDir;

crypto::AesKey key_of(uint8_t seed) {
  crypto::AesKey k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(seed + i);
  return k;
}

Manifest manifest(const std::string& component, const std::string& version) {
  Manifest m;
  m.component = component;
  m.version = *Version::parse(version);
  m.strategy = "immediate";
  m.index_target = component + "/" + version + "/tree.idx";
  return m;
}

class Sealed : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_file(d_ / "src/bin/app", test::random_bytes(200000, 7));
    test::write_file(d_ / "src/etc/app.conf", test::text_bytes(30000, 8));
    plain_ = *chunk::ChunkStore::open(d_ / "plain", true);
    delta::PackOptions o;
    o.params = {4096, 16384, 65536};
    auto idx = delta::pack(d_ / "src", *plain_, o);
    ASSERT_TRUE(idx) << idx.error().message();
    index_ = std::move(*idx);
    index_file_ = index_.serialize();
    a_ = *crypto::DeviceKey::generate();
    b_ = *crypto::DeviceKey::generate();
    m_ = manifest("app", "1.0.0");
    m_.index_sha256 = sha256(index_file_).hex();
    m_.encryption = *make_encryption(key_, {a_.public_key});
  }
  stdfs::path repo() const { return d_ / "repo"; }

  ScratchDir d_;
  std::optional<chunk::ChunkStore> plain_;
  chunk::TreeIndex index_;
  std::vector<uint8_t> index_file_;
  crypto::DeviceKey a_, b_;
  crypto::AesKey key_ = key_of(1);
  Manifest m_;
};

TEST_F(Sealed, PiecesRoundTripAndAreSealedOnce) {
  auto st = seal_pieces(index_, "app", key_, *plain_, repo());
  ASSERT_TRUE(st) << st.error().message();
  auto pieces = referenced_pieces(index_);
  ASSERT_GT(pieces.size(), 2u);
  EXPECT_EQ(st->pieces, pieces.size());
  EXPECT_EQ(st->written, pieces.size());
  EXPECT_EQ(st->reused, 0u);

  auto key = unwrap_data_key(m_, a_);
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(*key, key_);
  for (const auto& p : pieces) {
    std::string path = piece_download_path(m_, &*key, p.rel_path);
    EXPECT_EQ(path, sealed_rel_path("app", key_, p.rel_path));
    auto sealed = test::read_file(repo() / path);
    EXPECT_EQ(sealed.size(), p.stored_size + kSealOverhead);
    auto opened = open_piece(m_, &*key, p.rel_path, sealed);
    ASSERT_TRUE(opened) << opened.error().message();
    EXPECT_EQ(*opened, *plain_->get_blob(p.rel_path, p.stored_size)) << p.rel_path;
  }
  // Nothing in the repository names a chunk id.
  for (auto& e : stdfs::recursive_directory_iterator(repo()))
    for (const auto& p : pieces)
      EXPECT_EQ(e.path().string().find(p.rel_path.substr(p.rel_path.rfind('/') + 1)),
                std::string::npos);

  auto again = seal_pieces(index_, "app", key_, *plain_, repo());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->written, 0u);
  EXPECT_EQ(again->reused, pieces.size());
}

TEST_F(Sealed, AnAlteredByteOfASealedPieceIsCorruptNamingThePiece) {
  ASSERT_TRUE(seal_pieces(index_, "app", key_, *plain_, repo()));
  const PieceRef p = referenced_pieces(index_).front();
  auto sealed = test::read_file(repo() / sealed_rel_path("app", key_, p.rel_path));
  for (size_t at : {size_t{0}, size_t{13}, sealed.size() / 2, sealed.size() - 1}) {
    auto bad = sealed;
    bad[at] ^= 0x01;
    auto r = open_piece(m_, &key_, p.rel_path, bad);
    ASSERT_FALSE(r) << "byte " << at;
    EXPECT_EQ(r.error().code(), Errc::corrupt);
    EXPECT_NE(r.error().message().find(p.rel_path), std::string::npos) << r.error().message();
  }
  // Truncated, and moved to another piece's name (the AAD binds the name).
  EXPECT_FALSE(open_piece(m_, &key_, p.rel_path, {sealed.begin(), sealed.end() - 1}));
  EXPECT_FALSE(open_piece(m_, &key_, referenced_pieces(index_).back().rel_path, sealed));
  EXPECT_FALSE(open_piece(m_, nullptr, p.rel_path, sealed));
  // A plain package passes bytes through.
  Manifest plain = manifest("app", "1.0.0");
  EXPECT_EQ(*open_piece(plain, nullptr, p.rel_path, sealed), sealed);
  EXPECT_EQ(piece_download_path(plain, nullptr, p.rel_path), p.rel_path);
}

// A power cut can leave a sealed piece of the right size holding other bytes (zeros): kept
// by its size alone, sealed again when the publish checks what it reuses.
TEST_F(Sealed, AfterAnUnfinishedPublishAPieceOfTheRightSizeThatDoesNotOpenIsResealed) {
  ASSERT_TRUE(seal_pieces(index_, "app", key_, *plain_, repo()));
  const PieceRef p = referenced_pieces(index_).front();
  stdfs::path f = repo() / sealed_rel_path("app", key_, p.rel_path);
  test::write_file(f, std::vector<uint8_t>(test::read_file(f).size(), 0));
  auto trusting = seal_pieces(index_, "app", key_, *plain_, repo());
  ASSERT_TRUE(trusting);
  EXPECT_EQ(trusting->written, 0u);
  EXPECT_FALSE(open_piece(m_, &key_, p.rel_path, test::read_file(f)));
  auto checking = seal_pieces(index_, "app", key_, *plain_, repo(), true);
  ASSERT_TRUE(checking);
  EXPECT_EQ(checking->written, 1u);
  EXPECT_EQ(checking->reused, referenced_pieces(index_).size() - 1);
  EXPECT_TRUE(open_piece(m_, &key_, p.rel_path, test::read_file(f)));
}

TEST_F(Sealed, ResealsAPieceWhoseSealedSizeIsWrong) {
  ASSERT_TRUE(seal_pieces(index_, "app", key_, *plain_, repo()));
  const PieceRef p = referenced_pieces(index_).front();
  stdfs::path f = repo() / sealed_rel_path("app", key_, p.rel_path);
  test::write_file(f, std::string("short"));
  auto st = seal_pieces(index_, "app", key_, *plain_, repo());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->written, 1u);
  EXPECT_TRUE(open_piece(m_, &key_, p.rel_path, test::read_file(f)));
}

TEST_F(Sealed, AnotherDeviceGetsAClearError) {
  auto r = unwrap_data_key(m_, b_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::not_found);
  const std::string& msg = r.error().message();
  EXPECT_NE(msg.find(device_key_id(b_.public_key)), std::string::npos) << msg;
  EXPECT_NE(msg.find(device_key_id(a_.public_key)), std::string::npos) << msg;
  EXPECT_NE(msg.find("app@1.0.0"), std::string::npos) << msg;
  // Two recipients: both open the same key.
  Manifest both = m_;
  both.encryption = *make_encryption(key_, {a_.public_key, b_.public_key, a_.public_key});
  EXPECT_EQ(recipient_key_ids(both).size(), 2u);
  EXPECT_EQ(*unwrap_data_key(both, a_), key_);
  EXPECT_EQ(*unwrap_data_key(both, b_), key_);
  // A wrapped key moved to another recipient's entry does not open.
  auto swapped = both.encryption;
  std::swap(swapped["recipients"][0]["wrapped"], swapped["recipients"][1]["wrapped"]);
  both.encryption = swapped;
  auto s = unwrap_data_key(both, a_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::corrupt);
  EXPECT_FALSE(unwrap_data_key(manifest("app", "1.0.0"), a_));
}

TEST_F(Sealed, NamesAreDeterministicPerKeyAndDifferAcrossKeys) {
  std::string rel = referenced_pieces(index_).front().rel_path;
  std::string n1 = sealed_rel_path("app", key_, rel);
  EXPECT_EQ(n1, sealed_rel_path("app", key_, rel));
  ASSERT_EQ(n1.size(), std::string("sealed/app/").size() + 3 + 64) << n1;
  EXPECT_EQ(n1.substr(0, 11), "sealed/app/");
  EXPECT_EQ(n1.substr(11, 2), n1.substr(14, 2));
  // Another component has another key: the same piece gets an unrelated name.
  std::string n2 = sealed_rel_path("web", key_of(2), rel);
  EXPECT_NE(n1.substr(14), n2.substr(14));
  EXPECT_NE(n1.substr(14), sealed_rel_path("app", key_, rel + "x").substr(14));
  // The name hides the chunk id.
  EXPECT_EQ(n1.find(rel.substr(rel.rfind('/') + 1)), std::string::npos);
}

TEST_F(Sealed, OpenIndexChecksTheManifestChecksum) {
  auto sealed = seal_index(m_, key_, index_file_);
  ASSERT_TRUE(sealed);
  EXPECT_EQ(sealed->size(), index_file_.size() + kSealOverhead);
  auto opened = open_index(m_, *sealed, &key_);
  ASSERT_TRUE(opened) << opened.error().message();
  EXPECT_EQ(*opened, index_file_);
  EXPECT_TRUE(chunk::TreeIndex::parse(*opened));

  auto no_key = open_index(m_, *sealed, nullptr);
  ASSERT_FALSE(no_key);
  EXPECT_EQ(no_key.error().code(), Errc::invalid_argument);
  auto other_key = key_of(9);
  EXPECT_EQ(open_index(m_, *sealed, &other_key).error().code(), Errc::corrupt);
  // Sealed for another version: the AAD differs.
  Manifest v2 = m_;
  v2.version = *Version::parse("2.0.0");
  EXPECT_EQ(open_index(v2, *sealed, &key_).error().code(), Errc::corrupt);
  auto bad = *sealed;
  bad[bad.size() / 2] ^= 0x80;
  EXPECT_EQ(open_index(m_, bad, &key_).error().code(), Errc::corrupt);
  // The checksum is checked after opening...
  Manifest wrong_sum = m_;
  wrong_sum.index_sha256 = sha256(bad).hex();
  auto sealed2 = *seal_index(wrong_sum, key_, index_file_);
  auto r = open_index(wrong_sum, sealed2, &key_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::corrupt);
  EXPECT_NE(r.error().message().find("app@1.0.0"), std::string::npos);
  // ...and for plain packages too.
  Manifest plain = manifest("app", "1.0.0");
  plain.index_sha256 = m_.index_sha256;
  EXPECT_EQ(*open_index(plain, index_file_, nullptr), index_file_);
  auto tampered = index_file_;
  tampered.back() ^= 1;
  EXPECT_EQ(open_index(plain, tampered, nullptr).error().code(), Errc::corrupt);
}

TEST_F(Sealed, PiecesToFetchFollowThePlan) {
  auto plan = delta::plan(index_, index_file_.size(), std::vector<stdfs::path>{});
  ASSERT_TRUE(plan);
  auto fetch = pieces_to_fetch(index_, *plan);
  EXPECT_EQ(fetch.size(), plan->chunks);
  uint64_t stored = 0;
  for (const auto& p : fetch) stored += p.stored_size;
  EXPECT_EQ(plan->bytes_to_fetch, index_file_.size() + stored);
  uint64_t before = plan->bytes_to_fetch, full = plan->full_bytes;
  add_seal_overhead(index_, *plan);
  EXPECT_EQ(plan->bytes_to_fetch, before + kSealOverhead * fetch.size());
  EXPECT_EQ(plan->full_bytes, full + kSealOverhead * fetch.size());
  // A ChunkStore keeps a chunk at its rel path.
  const auto& c = index_.entries.back().chunks.front();
  EXPECT_EQ(plain_->blob_path(chunk_rel_path(c.id)), plain_->chunk_path(c.id));
}

TEST(SealedKeys, DataKeysAreCreatedOnceRotatedAndKept) {
  ScratchDir d;
  bool created = false;
  auto k1 = load_or_create_data_key(d / "keys", "app", &created);
  ASSERT_TRUE(k1) << k1.error().message();
  EXPECT_TRUE(created);
  struct stat st {};
  ASSERT_EQ(::stat((d / "keys/data/app.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((d / "keys/data").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(*load_or_create_data_key(d / "keys", "app", &created), *k1);
  EXPECT_FALSE(created);
  EXPECT_NE(*load_or_create_data_key(d / "keys", "web"), *k1);

  auto k2 = rotate_data_key(d / "keys", "app");
  ASSERT_TRUE(k2) << k2.error().message();
  EXPECT_NE(*k2, *k1);
  EXPECT_EQ(*load_or_create_data_key(d / "keys", "app"), *k2);
  auto all = load_data_keys(d / "keys", "app");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0], *k2);
  EXPECT_EQ((*all)[1], *k1);
  EXPECT_TRUE(load_data_keys(d / "keys", "none")->empty());
  EXPECT_FALSE(load_or_create_data_key(d / "keys", "../evil"));
}

TEST(SealedKeys, DeviceKeyFilesAsKeygenWritesThem) {
  ScratchDir d;
  auto k = *crypto::DeviceKey::generate();
  test::write_file(d / "dev.key", to_hex(k.private_key) + "\n");
  test::write_file(d / "dev.pub", to_hex(k.public_key) + "\n");
  auto loaded = load_device_key(d / "dev.key");
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->public_key, k.public_key);
  EXPECT_EQ(*load_device_public(d / "dev.pub"), k.public_key);
  // A private key given where a public one belongs is refused.
  auto wrong = load_device_public(d / "dev.key");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message().find("private"), std::string::npos);
  test::write_file(d / "short.key", std::string("abcd\n"));
  EXPECT_FALSE(load_device_key(d / "short.key"));
  test::write_file(d / "nothex.key", std::string(64, 'z'));
  auto nh = load_device_key(d / "nothex.key");
  ASSERT_FALSE(nh);
  EXPECT_EQ(nh.error().message().find("zzzz"), std::string::npos) << "never echo key material";
  EXPECT_FALSE(load_device_key(d / "missing.key"));
}

TEST(SealedManifest, EncryptionFieldIsValidatedStrictly) {
  auto key = key_of(3);
  auto dev = *crypto::DeviceKey::generate();
  Manifest m = manifest("app", "1.0.0");
  m.index_sha256 = std::string(64, 'a');
  m.encryption = *make_encryption(key, {dev.public_key});
  auto good = Manifest::from_json(m.to_json());
  ASSERT_TRUE(good) << good.error().message();
  EXPECT_EQ(good->encryption, m.encryption);
  EXPECT_EQ(good->to_json(), m.to_json());
  EXPECT_TRUE(is_encrypted(*good));

  auto with = [&](auto mutate) {
    auto j = m.to_json();
    mutate(j["encryption"]);
    return Manifest::from_json(j);
  };
  using nlohmann::json;
  EXPECT_TRUE(with([](json& e) { e = nullptr; }));
  EXPECT_FALSE(is_encrypted(*with([](json& e) { e = nullptr; })));
  EXPECT_FALSE(with([](json& e) { e = "yes"; }));
  EXPECT_FALSE(with([](json& e) { e["extra"] = 1; }));
  EXPECT_FALSE(with([](json& e) { e.erase("recipients"); }));
  EXPECT_FALSE(with([](json& e) { e["recipients"] = json::array(); }));
  EXPECT_FALSE(with([](json& e) { e["recipients"] = json::object(); }));
  EXPECT_FALSE(with([](json& e) { e["recipients"][0]["note"] = "x"; }));
  EXPECT_FALSE(with([](json& e) { e["recipients"][0]["key_id"] = "ABCDEF0123456789"; }));
  EXPECT_FALSE(with([](json& e) { e["recipients"][0]["key_id"] = "abc"; }));
  EXPECT_FALSE(with([](json& e) { e["recipients"][0]["wrapped"] = "00"; }));
  EXPECT_FALSE(with([](json& e) { e["recipients"][0]["wrapped"] = 5; }));
  EXPECT_FALSE(with([](json& e) { e["recipients"].push_back(e["recipients"][0]); }));
  auto unknown = with([](json& e) { e["scheme"] = "mup-sealed-v9"; });
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Errc::unsupported);
  EXPECT_FALSE(with([](json& e) { e["scheme"] = 1; }));
}

}  // namespace
}  // namespace mup::package
