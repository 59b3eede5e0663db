// Test helpers for the TUF module (header-only, used by *_test.cpp only): an in-memory
// repository generator signing with real keys, served through a fake Fetcher that records
// every request, so each clause of the client workflow can be attacked on purpose.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/fs.hpp"
#include "core/sha256.hpp"
#include "transfer/fetcher.hpp"
#include "tuf/clock.hpp"
#include "tuf/metadata.hpp"
#include "tuf/updater.hpp"

namespace mup::tuf::testing {

inline constexpr int64_t kNow = 1'700'000'000;
inline constexpr int64_t kDay = 86400;

inline crypto::PrivateKey new_key() {
  auto k = crypto::PrivateKey::generate();
  EXPECT_TRUE(k.has_value());
  return *k;
}

inline std::vector<uint8_t> bytes_of(std::string_view s) {
  return {s.begin(), s.end()};
}

// A repository in memory. Bodies are edited freely by tests; publish() signs and stores.
class SimRepo : public transfer::Fetcher {
 public:
  SimRepo() {
    for (const char* role : {"root", "timestamp", "snapshot", "targets"}) {
      auto k = new_key();
      root.add_key(role, Key::from_public(k.public_key()));
      signers[role] = {k};
    }
    root.expires = timestamp.expires = snapshot.expires = kNow + 30 * kDay;
    targets["targets"].expires = kNow + 30 * kDay;
    root.version = 0;
    publish_root();
    publish({"targets", "snapshot", "timestamp"});
  }

  // --- the fake network ---
  Result<std::vector<uint8_t>> fetch(const std::string& url, uint64_t max_bytes) override {
    std::string prefix = "http://repo/";
    std::string path = url.substr(0, prefix.size()) == prefix ? url.substr(prefix.size()) : url;
    requests.push_back(path);
    auto it = files.find(path);
    if (it == files.end()) return fail(Errc::not_found, url + ": 404");
    if (it->second.size() > max_bytes) return fail(Errc::corrupt, url + ": longer than limit");
    return it->second;
  }

  template <typename T>
  std::vector<uint8_t> sign(const T& body, const std::vector<crypto::PrivateKey>& keys) {
    auto md = Metadata<T>::from_body(body);
    EXPECT_TRUE(md.has_value());
    for (const auto& k : keys) EXPECT_TRUE(md->sign(k).has_value());
    return md->to_bytes();
  }

  // Root version + 1, signed by signers["root"] and extra_root_signers.
  void publish_root() {
    root.version += 1;
    auto keys = signers["root"];
    keys.insert(keys.end(), extra_root_signers.begin(), extra_root_signers.end());
    files["metadata/" + std::to_string(root.version) + ".root.json"] = sign(root, keys);
  }

  // Bumps and signs the named targets roles, then snapshot and timestamp if named.
  void publish(const std::vector<std::string>& roles) {
    auto has = [&](const char* r) {
      return std::find(roles.begin(), roles.end(), r) != roles.end();
    };
    for (const auto& r : roles) {
      if (r == "snapshot" || r == "timestamp" || r == "root") continue;
      Targets& t = targets[r];
      t.version = published_targets_.count(r) ? t.version + 1 : t.version;
      published_targets_.insert(r);
      files["metadata/" + std::to_string(t.version) + "." + transfer::percent_encode(r) + ".json"] =
          sign(t, signers[r]);
    }
    if (has("snapshot")) {
      if (rebuild_snapshot_meta)
        for (const auto& r : published_targets_)
          snapshot.meta[r + ".json"].version = targets[r].version;
      snapshot.version = snapshot_published_ ? snapshot.version + 1 : 1;
      snapshot_published_ = true;
      files["metadata/" + std::to_string(snapshot.version) + ".snapshot.json"] =
          sign(snapshot, signers["snapshot"]);
    }
    if (has("timestamp")) {
      timestamp.snapshot_meta.version = snapshot.version;
      if (timestamp_hashes) {
        const auto& sb = files["metadata/" + std::to_string(snapshot.version) + ".snapshot.json"];
        timestamp.snapshot_meta.length = sb.size();
        timestamp.snapshot_meta.hashes = {{"sha256", sha256(sb).hex()}};
      }
      timestamp.version = timestamp_published_ ? timestamp.version + 1 : 1;
      timestamp_published_ = true;
      files["metadata/timestamp.json"] = sign(timestamp, signers["timestamp"]);
    }
  }

  void rotate(const std::string& role) {
    for (const auto& id : std::vector<std::string>(root.roles[role].keyids))
      root.remove_key(role, id);
    auto k = new_key();
    root.add_key(role, Key::from_public(k.public_key()));
    if (role == "root") extra_root_signers = signers["root"];
    signers[role] = {k};
  }

  // Adds a delegation from `delegator` to a new role with its own key.
  void delegate(const std::string& delegator, DelegatedRole role) {
    auto k = new_key();
    Targets& parent = targets[delegator];
    if (!parent.delegations) parent.delegations.emplace();
    Key key = Key::from_public(k.public_key());
    parent.delegations->keys[key.keyid()] = key;
    role.keyids = {key.keyid()};
    parent.delegations->roles.push_back(role);
    signers[role.name].push_back(k);
    targets[role.name].expires = kNow + 30 * kDay;
  }

  void add_target(const std::string& role, const std::string& path, std::string_view content) {
    TargetFile f = TargetFile::for_data(bytes_of(content));
    targets[role].targets[path] = f;
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    files["targets/" + dir + f.hashes["sha256"] + "." + base] = bytes_of(content);
  }

  size_t count_requests(const std::string& path) const {
    return std::count(requests.begin(), requests.end(), path);
  }

  Root root;
  Timestamp timestamp;
  Snapshot snapshot;
  std::map<std::string, Targets> targets;
  std::map<std::string, std::vector<crypto::PrivateKey>> signers;
  std::vector<crypto::PrivateKey> extra_root_signers;
  std::map<std::string, std::vector<uint8_t>> files;
  std::vector<std::string> requests;
  bool timestamp_hashes = false;
  bool rebuild_snapshot_meta = true;  // false: publish snapshot.meta as the test left it

 private:
  std::set<std::string> published_targets_;
  bool snapshot_published_ = false, timestamp_published_ = false;
};

// A client directory initialised with the repository's version-1 root.
class SimClient {
 public:
  explicit SimClient(SimRepo& repo) : repo_(repo) {
    dir_ = std::filesystem::temp_directory_path() /
           ("mup-tuf-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "metadata");
    std::filesystem::create_directories(dir_ / "targets");
    EXPECT_TRUE(fs::write_file_atomic(dir_ / "metadata" / "root.json",
                                      repo.files.at("metadata/1.root.json"))
                    .has_value());
  }
  ~SimClient() { std::filesystem::remove_all(dir_); }

  UpdaterConfig config() const {
    UpdaterConfig c;
    c.metadata_dir = dir_ / "metadata";
    c.metadata_base_url = "http://repo/metadata";
    c.target_base_url = "http://repo/targets/";
    return c;
  }
  // One run of the client, as the conformance entry point does it: a fresh Updater.
  Status refresh() {
    auto u = Updater::create(config(), repo_, clock);
    if (!u) return tl::unexpected(u.error());
    return u->refresh();
  }
  Status download(const std::string& target) {
    auto u = Updater::create(config(), repo_, clock);
    if (!u) return tl::unexpected(u.error());
    auto info = u->get_targetinfo(target);
    if (!info) return tl::unexpected(info.error());
    return u->download_target(*info, target_file(target));
  }
  std::filesystem::path target_file(const std::string& target) const {
    return dir_ / "targets" / transfer::percent_encode(target);
  }
  // Version of the trusted copy of `role`, 0 when there is none.
  uint64_t version(const std::string& role) const {
    auto b = fs::read_file(dir_ / "metadata" / (transfer::percent_encode(role) + ".json"));
    if (!b) return 0;
    auto j = nlohmann::json::parse(b->begin(), b->end(), nullptr, false);
    return j.is_discarded() ? 0 : j["signed"]["version"].get<uint64_t>();
  }
  std::vector<uint8_t> local_bytes(const std::string& role) const {
    auto b = fs::read_file(dir_ / "metadata" / (role + ".json"));
    return b ? *b : std::vector<uint8_t>{};
  }
  std::vector<std::string> metadata_files() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "metadata"))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  const std::filesystem::path& dir() const { return dir_; }

  FakeClock clock{kNow};

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  SimRepo& repo_;
  std::filesystem::path dir_;
};

}  // namespace mup::tuf::testing
