// Encrypted packages end to end: `mup publish --encrypt-to` puts nothing plain in the
// repository and reuses sealed pieces across versions; a node holding a recipient's device
// key opens the index and every piece through package/sealed.hpp (fetched over HTTP from a
// real server, verified with TUF) and rebuilds the exact tree; other devices are refused;
// `mup check --device-key` lists the update.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "chunk/chunk_store.hpp"
#include "delta/planner.hpp"
#include "delta/rebuild.hpp"
#include "package/sealed.hpp"
#include "test_util.hpp"
#include "transfer/fetcher.hpp"
#include "transfer/file_server.hpp"
#include "tuf/clock.hpp"
#include "tuf/updater.hpp"

namespace mup::test {
namespace {

using nlohmann::json;

const std::string kMarker = "PLAINTEXT-MARKER-7f3c9a";
const std::string kSecretName = "launch-codes-q7z.txt";

// Incompressible bytes with the marker in the middle: zstd stores such data raw, so the
// marker is there to find in any plain store.
std::vector<uint8_t> with_marker(size_t n, uint64_t seed) {
  auto b = random_bytes(n, seed);
  std::copy(kMarker.begin(), kMarker.end(), b.begin() + static_cast<ptrdiff_t>(n / 2));
  return b;
}

bool contains(const std::vector<uint8_t>& hay, const std::string& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

// Every file under `dir` that contains `needle` (in its bytes or its path).
std::vector<std::string> files_containing(const stdfs::path& dir, const std::string& needle) {
  std::vector<std::string> out;
  for (auto& e : stdfs::recursive_directory_iterator(dir)) {
    if (e.path().string().find(needle) != std::string::npos) out.push_back(e.path().string());
    if (e.is_regular_file() && contains(read_file(e.path()), needle))
      out.push_back(e.path().string());
  }
  return out;
}

class EncryptCli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(d_ / "v1/bin/app", with_marker(300000, 1));
    write_file(d_ / "v1/etc/app.conf", text_bytes(20000, 2));
    write_file(d_ / "v1/share" / kSecretName, with_marker(5000, 3));
    stdfs::copy(d_ / "v1", d_ / "v2", stdfs::copy_options::recursive);
    auto app = with_marker(300000, 1);
    for (size_t i = 1000; i < 1100; ++i) app[i] ^= 0x33;
    write_file(d_ / "v2/bin/app", app);
    write_file(d_ / "v2/etc/new.conf", text_bytes(8000, 4));

    ok({"repo", "init", s("repo"), "--keys", s("keys")});
    ok({"keygen", "--device", "dev-a", "--out", s("dev")});
    ok({"keygen", "--device", "dev-b", "--out", s("dev")});
    v1_ = json::parse(
        ok({"publish", s("repo"), s("v1"), "--keys", s("keys"), "--component", "app", "--version",
            "1.0.0", "--type", "service", "--encrypt-to", s("dev/dev-a.pub"), "--json"})
            .out);
    v2_ = json::parse(ok({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "app",
                          "--version", "1.1.0", "--type", "service", "--delta-from", "1.0.0",
                          "--encrypt-to", s("dev/dev-a.pub"), "--json"})
                          .out);
    server_ = std::move(*transfer::FileServer::start(d_ / "repo", "127.0.0.1:0"));
  }

  std::string s(const std::string& rel) { return (d_ / rel).string(); }
  RunResult ok(const std::vector<std::string>& args) {
    auto r = run_mup(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r;
  }

  // The signed manifest of app@version and its verified TUF target bytes, as a node sees
  // them through the TUF client.
  std::pair<package::Manifest, std::vector<uint8_t>> fetch_package(const std::string& version) {
    stdfs::create_directories(d_ / "node/tuf");
    if (!stdfs::exists(d_ / "node/tuf/root.json"))
      stdfs::copy_file(d_ / "repo/metadata/1.root.json", d_ / "node/tuf/root.json");
    tuf::UpdaterConfig cfg;
    cfg.metadata_dir = d_ / "node/tuf";
    cfg.metadata_base_url = server_->base_url() + "/metadata";
    cfg.target_base_url = server_->base_url() + "/targets";
    auto up = tuf::Updater::create(cfg, fetcher_, clock_);
    EXPECT_TRUE(up) << up.error().message();
    auto refreshed = up->refresh();
    EXPECT_TRUE(refreshed) << refreshed.error().message();
    auto info = up->get_targetinfo("app/" + version + "/tree.idx");
    EXPECT_TRUE(info) << info.error().message();
    auto m = package::Manifest::from_json(info->file.custom);
    EXPECT_TRUE(m) << m.error().message();
    auto bytes = up->fetch_target(*info);
    EXPECT_TRUE(bytes) << bytes.error().message();
    return {*m, *bytes};
  }

  // What the installer will do: unwrap, open the index, plan against `seeds`, fetch and open
  // the pieces into a local store, unpack into `out`. Returns the pieces fetched.
  std::vector<package::PieceRef> install(const std::string& version,
                                         const std::vector<stdfs::path>& seeds,
                                         const stdfs::path& out) {
    auto [m, target] = fetch_package(version);
    auto device = package::load_device_key(d_ / "dev/dev-a.key");
    EXPECT_TRUE(device) << device.error().message();
    auto key = package::unwrap_data_key(m, *device);
    EXPECT_TRUE(key) << key.error().message();
    auto index_file = package::open_index(m, target, &*key);
    EXPECT_TRUE(index_file) << index_file.error().message();
    auto index = chunk::TreeIndex::parse(*index_file);
    EXPECT_TRUE(index);
    auto plan = delta::plan(*index, target.size(), seeds);
    EXPECT_TRUE(plan);
    auto store = chunk::ChunkStore::open(d_ / "node/store", true);
    auto pieces = package::pieces_to_fetch(*index, *plan);
    for (const auto& p : pieces) {
      std::string url =
          server_->base_url() + "/" + package::piece_download_path(m, &*key, p.rel_path);
      auto got = fetcher_.fetch(url, p.stored_size + package::kSealOverhead);
      EXPECT_TRUE(got) << p.rel_path << ": " << got.error().message();
      auto stored = package::open_piece(m, &*key, p.rel_path, std::move(*got));
      EXPECT_TRUE(stored) << stored.error().message();
      EXPECT_TRUE(store->put_blob(p.rel_path, *stored));
    }
    auto st = delta::unpack(*index, *plan, *store, out, {});
    EXPECT_TRUE(st) << st.error().message();
    return pieces;
  }

  ScratchDir d_;
  json v1_, v2_;
  std::unique_ptr<transfer::FileServer> server_;
  transfer::HttpFetcher fetcher_;
  tuf::SystemClock clock_;
};

TEST_F(EncryptCli, NothingPlainReachesTheRepositoryAndPiecesAreReused) {
  EXPECT_TRUE(v1_["encrypted"]);
  EXPECT_TRUE(v1_["encryption"]["data_key_created"]);
  EXPECT_GT(v1_["encryption"]["sealed_written"].get<uint64_t>(), 0u);
  EXPECT_EQ(v1_["encryption"]["sealed_reused"], 0);
  ASSERT_EQ(v1_["encryption"]["recipients"].size(), 1u);
  EXPECT_GT(v2_["deltas"].get<uint64_t>(), 0u) << v2_.dump();
  EXPECT_GT(v2_["encryption"]["sealed_reused"].get<uint64_t>(), 0u) << v2_.dump();
  EXPECT_FALSE(v2_["encryption"]["data_key_rotated"]);

  for (const std::string& needle : {kMarker, kSecretName})
    EXPECT_EQ(files_containing(d_ / "repo", needle), std::vector<std::string>{}) << needle;
  // The scan would have found them: the publisher's private plain store has the marker.
  EXPECT_FALSE(files_containing(d_ / "keys/plain-store", kMarker).empty());
  for (const char* plain_dir : {"chunks", "deltas", "indexes"})
    EXPECT_FALSE(stdfs::exists(d_ / "repo" / plain_dir)) << plain_dir;
  EXPECT_TRUE(stdfs::exists(d_ / "repo/sealed/app"));
  // The data key stays with the publisher, private.
  EXPECT_EQ(stdfs::status(d_ / "keys/data/app.key").permissions() & stdfs::perms::all,
            stdfs::perms::owner_read | stdfs::perms::owner_write);
  EXPECT_TRUE(json::parse(ok({"repo", "verify", s("repo"), "--json"}).out)["ok"]);
}

TEST_F(EncryptCli, ARecipientNodeRebuildsBothVersionsExactly) {
  auto full = install("1.1.0", {}, d_ / "node/full-1.1.0");
  std::string why;
  EXPECT_TRUE(trees_equal(d_ / "v2", d_ / "node/full-1.1.0", &why)) << why;

  // A node on 1.0.0 updates by sealed delta pieces.
  install("1.0.0", {}, d_ / "node/1.0.0");
  EXPECT_TRUE(trees_equal(d_ / "v1", d_ / "node/1.0.0", &why)) << why;
  stdfs::remove_all(d_ / "node/store");
  auto update = install("1.1.0", {d_ / "node/1.0.0"}, d_ / "node/1.1.0");
  EXPECT_TRUE(trees_equal(d_ / "v2", d_ / "node/1.1.0", &why)) << why;
  bool any_delta = std::any_of(update.begin(), update.end(),
                               [](const auto& p) { return p.rel_path.rfind("deltas/", 0) == 0; });
  EXPECT_TRUE(any_delta);
  EXPECT_LT(update.size(), full.size());
}

TEST_F(EncryptCli, OtherDevicesAreRefusedClearly) {
  auto [m, target] = fetch_package("1.1.0");
  auto b = package::load_device_key(d_ / "dev/dev-b.key");
  ASSERT_TRUE(b);
  auto r = package::unwrap_data_key(m, *b);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::not_found);
  std::string a_id = v2_["encryption"]["recipients"][0];
  EXPECT_NE(r.error().message().find(a_id), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(package::device_key_id(b->public_key)), std::string::npos);
  EXPECT_FALSE(package::open_index(m, target, nullptr));
}

TEST_F(EncryptCli, AnAlteredSealedPieceIsDetected) {
  // Flip one byte of every sealed file: the node's first piece fails, naming it.
  for (auto& e : stdfs::recursive_directory_iterator(d_ / "repo/sealed")) {
    if (!e.is_regular_file()) continue;
    auto bytes = read_file(e.path());
    bytes[bytes.size() / 3] ^= 0x04;
    write_file(e.path(), bytes);
  }
  auto [m, target] = fetch_package("1.0.0");
  auto key = package::unwrap_data_key(m, *package::load_device_key(d_ / "dev/dev-a.key"));
  ASSERT_TRUE(key);
  auto index = chunk::TreeIndex::parse(*package::open_index(m, target, &*key));
  auto plan = delta::plan(*index, target.size(), std::vector<stdfs::path>{});
  auto p = package::pieces_to_fetch(*index, *plan).front();
  auto got = fetcher_.fetch(
      server_->base_url() + "/" + package::piece_download_path(m, &*key, p.rel_path), 1 << 24);
  ASSERT_TRUE(got);
  auto opened = package::open_piece(m, &*key, p.rel_path, std::move(*got));
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), Errc::corrupt);
  EXPECT_NE(opened.error().message().find(p.rel_path), std::string::npos);
}

TEST_F(EncryptCli, CheckListsTheUpdateForARecipientOnly) {
  std::string url = server_->base_url();
  auto r = ok({"check", "--repo", url, "--trusted-root", s("repo/metadata/1.root.json"), "--root",
               s("node-a"), "--device-key", s("dev/dev-a.key"), "--json"});
  auto j = json::parse(r.out);
  ASSERT_EQ(j["updates"].size(), 1u) << r.out;
  EXPECT_EQ(j["updates"][0]["available"], "1.1.0");
  EXPECT_TRUE(j["updates"][0]["encrypted"]);
  EXPECT_TRUE(j["updates"][0]["readable"]);
  EXPECT_GT(j["updates"][0]["download_bytes"].get<uint64_t>(), 300000u);
  // The default key location is ROOT/device.key.
  stdfs::copy_file(d_ / "dev/dev-a.key", d_ / "node-a/device.key");
  auto text = ok({"check", "--repo", url, "--root", s("node-a")});
  EXPECT_NE(text.out.find("(encrypted)"), std::string::npos) << text.out;

  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{}, std::vector<std::string>{"--device-key", s("dev/dev-b.key")}}) {
    std::vector<std::string> args = {
        "check",  "--repo",   url, "--trusted-root", s("repo/metadata/1.root.json"),
        "--root", s("node-b")};
    args.insert(args.end(), extra.begin(), extra.end());
    auto b = ok(args);
    EXPECT_NE(b.out.find("encrypted for other devices"), std::string::npos) << b.out;
  }
  auto missing =
      run_mup({"check", "--repo", url, "--root", s("node-b"), "--device-key", s("dev/none.key")});
  EXPECT_EQ(missing.exit_code, 1);
}

TEST_F(EncryptCli, DroppingARecipientRotatesTheDataKey) {
  auto v3 = json::parse(ok({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component",
                            "app", "--version", "1.2.0", "--type", "service", "--delta-from",
                            "1.1.0", "--encrypt-to", s("dev/dev-b.pub"), "--json"})
                            .out);
  EXPECT_TRUE(v3["encryption"]["data_key_rotated"]);
  EXPECT_EQ(v3["encryption"]["dropped_recipients"], v2_["encryption"]["recipients"]);
  EXPECT_EQ(v3["encryption"]["sealed_reused"], 0) << "a new key shares nothing with the old";
  auto [m, target] = fetch_package("1.2.0");
  auto a = package::load_device_key(d_ / "dev/dev-a.key");
  auto b = package::load_device_key(d_ / "dev/dev-b.key");
  EXPECT_FALSE(package::unwrap_data_key(m, *a));
  auto kb = package::unwrap_data_key(m, *b);
  ASSERT_TRUE(kb);
  // The old key of 1.1.0 does not open 1.2.0.
  auto [m2, target2] = fetch_package("1.1.0");
  auto old = package::unwrap_data_key(m2, *a);
  ASSERT_TRUE(old);
  EXPECT_NE(*old, *kb);
  EXPECT_FALSE(package::open_index(m, target, &*old));
  EXPECT_TRUE(package::open_index(m, target, &*kb));
}

TEST_F(EncryptCli, UnsafeOptionsAreRefused) {
  // A plain version with deltas against an encrypted base would reveal the base.
  auto plain = run_mup({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "app",
                        "--version", "1.3.0", "--type", "service", "--delta-from", "1.1.0"});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_NE(plain.err.find("encrypted"), std::string::npos) << plain.err;
  auto inside = run_mup({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "app",
                         "--version", "1.3.0", "--type", "service", "--encrypt-to",
                         s("dev/dev-a.pub"), "--plain-store", s("repo/plain")});
  EXPECT_EQ(inside.exit_code, 1);
  EXPECT_FALSE(stdfs::exists(d_ / "repo/plain"));
  auto priv =
      run_mup({"publish", s("repo"), s("v2"), "--keys", s("keys"), "--component", "app",
               "--version", "1.3.0", "--type", "service", "--encrypt-to", s("dev/dev-a.key")});
  EXPECT_EQ(priv.exit_code, 1);
  EXPECT_NE(priv.err.find("NAME.pub"), std::string::npos) << priv.err;
}

}  // namespace
}  // namespace mup::test
