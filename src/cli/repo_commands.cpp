// The publisher's commands: repo init / publish / repo verify / repo serve / repo sign /
// repo rotate-key / repo expire, and keygen for device keys. They drive tuf::Repository
// (signed metadata) and the incremental engine (chunks, deltas, tree indexes) over one
// repository directory: DIR/metadata, DIR/targets (tree indexes, the TUF targets), and the
// chunk store DIR/chunks, DIR/deltas, DIR/indexes that the indexes point into. An encrypted
// publish (--encrypt-to) packs into a private plain store instead and puts only sealed
// pieces (DIR/sealed/<component>/...) and a sealed index in the repository (sealed.hpp).
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "chunk/chunk_store.hpp"
#include "chunk/cold_pack.hpp"
#include "chunk/tree_index.hpp"
#include "cli/commands.hpp"
#include "cli/repo_roles.hpp"
#include "core/fs.hpp"
#include "core/progress.hpp"
#include "crypto/crypto.hpp"
#include "delta/packer.hpp"
#include "delta/planner.hpp"
#include "delta/rebuild.hpp"
#include "engine/locks.hpp"
#include "package/bundle.hpp"
#include "package/manifest.hpp"
#include "package/sealed.hpp"
#include "rollback/judge.hpp"
#include "transfer/file_server.hpp"
#include "tuf/clock.hpp"
#include "tuf/repository.hpp"

namespace mup::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

const char* kRoles[] = {"root", "targets", "snapshot", "timestamp"};

crypto::KeyType parse_key_type(const std::string& s) {
  if (s == "ed25519") return crypto::KeyType::ed25519;
  if (s == "ecdsa") return crypto::KeyType::ecdsa_p256;
  if (s == "rsa") return crypto::KeyType::rsa_pss;
  die(Error(Errc::invalid_argument, "unknown key type \"" + s + "\" (ed25519|ecdsa|rsa)"));
}

// KEYDIR/<role>.<first 16 hex of the key id>.pem, mode 0600, in a 0700 directory.
stdfs::path save_key(const stdfs::path& keydir, const std::string& role,
                     const crypto::PrivateKey& k) {
  must(fs::create_dirs(keydir));
  ::chmod(keydir.c_str(), 0700);
  std::string id = tuf::Key::from_public(k.public_key()).keyid();
  stdfs::path p = keydir / (role + "." + id.substr(0, 16) + ".pem");
  std::string pem = k.to_pem();
  must(fs::write_file_atomic(p, {reinterpret_cast<const uint8_t*>(pem.data()), pem.size()}, 0600));
  return p;
}

// Every private key of KEYDIR, by role.
std::map<std::string, std::vector<crypto::PrivateKey>> load_keys(const stdfs::path& keydir) {
  std::map<std::string, std::vector<crypto::PrivateKey>> out;
  std::error_code ec;
  if (!stdfs::is_directory(keydir, ec))
    die(Error(Errc::not_found,
              "key directory " + keydir.string() + " does not exist (made by mup repo init)"));
  for (const auto& e : stdfs::directory_iterator(keydir)) {
    std::string name = e.path().filename().string();
    if (e.path().extension() != ".pem") continue;
    std::string role = name.substr(0, name.find('.'));
    auto bytes = must(fs::read_file(e.path(), 1 << 20));
    auto key = must(
        crypto::PrivateKey::from_pem({reinterpret_cast<const char*>(bytes.data()), bytes.size()}),
        "key " + e.path().string());
    out[role].push_back(std::move(key));
  }
  return out;
}

void add_signers(tuf::Repository& repo, const stdfs::path& keydir) {
  for (auto& [role, keys] : load_keys(keydir))
    for (auto& k : keys) repo.add_signer(role, k);
}

// "role=N" options into a map.
std::map<std::string, uint32_t> role_numbers(const std::vector<std::string>& opts,
                                             const char* flag) {
  std::map<std::string, uint32_t> out;
  for (const auto& o : opts) {
    size_t eq = o.find('=');
    std::string role = o.substr(0, eq);
    bool known = std::find(std::begin(kRoles), std::end(kRoles), role) != std::end(kRoles);
    uint32_t n = 0;
    try {
      n = eq == std::string::npos ? 0 : static_cast<uint32_t>(std::stoul(o.substr(eq + 1)));
    } catch (...) {
    }
    if (!known || n == 0)
      die(Error(Errc::invalid_argument, std::string(flag) +
                                            " wants ROLE=N with ROLE in "
                                            "root|targets|snapshot|timestamp and N >= 1, got " +
                                            o));
    out[role] = n;
  }
  return out;
}

struct InitArgs {
  std::string dir, keydir, key_type = "ed25519";
  std::vector<std::string> thresholds, key_counts;
};

void run_repo_init(const InitArgs& a) {
  auto thresholds = role_numbers(a.thresholds, "--threshold");
  auto counts = role_numbers(a.key_counts, "--key-count");
  tuf::InitOptions o;
  tuf::RoleSetup* setups[] = {&o.root, &o.targets, &o.snapshot, &o.timestamp};
  for (size_t i = 0; i < 4; ++i) {
    uint32_t t = thresholds.count(kRoles[i]) ? thresholds[kRoles[i]] : 1;
    uint32_t n = counts.count(kRoles[i]) ? counts[kRoles[i]] : t;
    if (n < t)
      die(Error(Errc::invalid_argument, std::string(kRoles[i]) + ": threshold " +
                                            std::to_string(t) +
                                            " needs at least as many keys (--key-count)"));
    setups[i]->threshold = t;
    for (uint32_t k = 0; k < n; ++k)
      setups[i]->keys.push_back(must(crypto::PrivateKey::generate(parse_key_type(a.key_type))));
  }
  auto rel = stdfs::weakly_canonical(stdfs::absolute(a.keydir))
                 .lexically_relative(stdfs::weakly_canonical(stdfs::absolute(a.dir)));
  if (!rel.empty() && *rel.begin() != "..")
    die(Error(Errc::invalid_argument,
              "--keys must not be inside the repository directory (private keys would be "
              "published)"));
  tuf::SystemClock clock;
  auto repo = must(tuf::Repository::init(a.dir, o, clock), "creating repository " + a.dir);
  for (size_t i = 0; i < 4; ++i)
    for (const auto& k : setups[i]->keys) save_key(a.keydir, kRoles[i], k);
  std::printf(
      "repository %s created (root v%llu, %s keys); private keys in %s (mode 0600): keep them "
      "offline\n",
      a.dir.c_str(), static_cast<unsigned long long>(repo.root().version), a.key_type.c_str(),
      a.keydir.c_str());
  std::printf("give nodes %s/metadata/1.root.json as their trusted root\n", a.dir.c_str());
}

struct PublishArgs {
  std::string dir, keydir, component, version, type, src, priority = "normal", strategy,
                                                          rollback_policy, description;
  std::vector<std::string> depends, delta_from;
  std::vector<std::string> encrypt_to;  // device public key files
  std::string plain_store;              // default KEYDIR/plain-store
  bool allow_unmet = false, json = false, rotate_data_key = false;
  bool no_cold_pack = false, no_bundles = false;
  chunk::ColdPackOptions cold_pack;
};

std::string index_target(const std::string& component, const std::string& version) {
  return component + "/" + version + "/tree.idx";
}

// The bytes of a published tree index, read from the repository and checked against its
// signed target entry in `t` (the role that lists it).
std::vector<uint8_t> read_index_target(const tuf::Repository& repo, const tuf::Targets* t,
                                       const std::string& path) {
  auto it = t->targets.find(path);
  if (it == t->targets.end())
    die(Error(Errc::not_found, path + " is not published in " + repo.dir().string()));
  stdfs::path p = repo.dir() / "targets" / path;
  if (repo.root().consistent_snapshot) {
    auto h = it->second.hashes.find("sha256");
    if (h == it->second.hashes.end())
      die(Error(Errc::corrupt, path + " has no sha256 in targets metadata"));
    p = p.parent_path() / (h->second + "." + p.filename().string());
  }
  auto bytes = must(fs::read_file(p, it->second.length));
  must(it->second.verify(bytes, path));
  return bytes;
}

// True when `path` is `dir` or inside it.
bool is_inside(const stdfs::path& path, const stdfs::path& dir) {
  auto rel = stdfs::weakly_canonical(stdfs::absolute(path))
                 .lexically_relative(stdfs::weakly_canonical(stdfs::absolute(dir)));
  return !rel.empty() && *rel.begin() != "..";
}

// What an encrypted publish needs: the recipients, the component's data key (a fresh one
// when this publish drops a recipient of the newest published version, who must not read
// what comes next), and the private store the plain pieces go to.
struct Encryption {
  std::vector<package::DevicePublic> recipients;
  std::vector<std::string> recipient_ids;
  crypto::AesKey key{};
  bool key_created = false, key_rotated = false;
  std::vector<std::string> dropped;  // key ids of the newest version no longer recipients
  stdfs::path plain_store;
};

std::optional<Encryption> setup_encryption(const PublishArgs& a, const tuf::Targets& targets) {
  if (a.encrypt_to.empty()) {
    if (!a.plain_store.empty() || a.rotate_data_key)
      die(Error(Errc::invalid_argument,
                "--plain-store and --rotate-data-key apply to encrypted publishes (--encrypt-to)"));
    return std::nullopt;
  }
  Encryption e;
  for (const auto& f : a.encrypt_to) {
    auto pub = must(package::load_device_public(f), "--encrypt-to");
    std::string id = package::device_key_id(pub);
    if (std::find(e.recipient_ids.begin(), e.recipient_ids.end(), id) != e.recipient_ids.end())
      continue;
    e.recipients.push_back(pub);
    e.recipient_ids.push_back(id);
  }
  e.plain_store =
      a.plain_store.empty() ? stdfs::path(a.keydir) / "plain-store" : stdfs::path(a.plain_store);
  if (is_inside(e.plain_store, a.dir))
    die(Error(Errc::invalid_argument,
              "--plain-store must not be inside the repository directory (plain pieces "
              "would be published)"));
  const package::Manifest* newest = nullptr;
  std::vector<package::Manifest> mine;
  for (const auto& [path, tf] : targets.targets)
    if (auto m = package::Manifest::from_json(tf.custom); m && m->component == a.component)
      mine.push_back(std::move(*m));
  for (const auto& m : mine)
    if (!newest || newest->version < m.version) newest = &m;
  if (newest)
    for (const auto& id : package::recipient_key_ids(*newest))
      if (std::find(e.recipient_ids.begin(), e.recipient_ids.end(), id) == e.recipient_ids.end())
        e.dropped.push_back(id);
  if (a.rotate_data_key || !e.dropped.empty()) {
    e.key = must(package::rotate_data_key(a.keydir, a.component), "new data key");
    e.key_rotated = true;
  } else {
    e.key = must(package::load_or_create_data_key(a.keydir, a.component, &e.key_created),
                 "data key of " + a.component);
  }
  return e;
}

void run_publish(const PublishArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  must(package::validate_component_name(a.component));
  package::Manifest m;
  m.component = a.component;
  m.version = must(package::Version::parse(a.version), "--version");
  m.type = must(package::parse_type(a.type), "--type");
  m.priority = must(package::parse_priority(a.priority), "--priority");
  m.description = a.description;
  m.strategy = a.strategy.empty() ? std::string(package::default_strategy(m.type)) : a.strategy;
  if (std::find(std::begin(package::kStrategies), std::end(package::kStrategies), m.strategy) ==
      std::end(package::kStrategies))
    die(Error(Errc::invalid_argument, "unknown --strategy " + m.strategy +
                                          " (immediate|rolling|blue-green|canary|scheduled)"));
  for (const auto& d : a.depends)
    m.depends.push_back(must(package::Dependency::parse(d), "--depends"));
  if (!a.rollback_policy.empty()) {
    auto bytes = must(fs::read_file(a.rollback_policy, 1 << 20), "--rollback-policy");
    m.rollback_policy = json::parse(bytes.begin(), bytes.end(), nullptr, false);
    if (!m.rollback_policy.is_object())
      die(Error(Errc::invalid_argument,
                a.rollback_policy + " is not a JSON object (the rollback policy)"));
    // The agent's judge reads it: refused here, naming the field, rather than at deploy time.
    if (auto p = rollback::policy_from_json(m.rollback_policy); !p)
      die(p.error().context(a.rollback_policy));
  }
  // One publisher per repository at a time (two would sign competing metadata versions).
  std::error_code ec;
  if (!stdfs::is_directory(a.dir, ec))
    die(Error(Errc::not_found, "no repository at " + a.dir + " (create one with mup repo init)"));
  auto publishing = must(engine::LockFile::try_acquire(stdfs::path(a.dir) / ".mup-publish.lock",
                                                       engine::LockFile::Mode::exclusive,
                                                       "repository " + a.dir + " (a publish)"));
  tuf::SystemClock clock;
  auto repo = must(tuf::Repository::open(a.dir, clock), "opening repository " + a.dir);
  add_signers(repo, a.keydir);
  m.index_target = index_target(m.component, m.version.str());
  // The component's own role (delegated from its bin on its first publish): all this publish
  // reads and rewrites of the targets metadata besides its bin and the dependencies' roles.
  const ComponentRole placed = must(ensure_component_role(repo, m.component, clock.now()));
  const std::string& role = placed.role;
  const tuf::Targets* targets = must(repo.load_targets(role));
  if (targets->targets.count(m.index_target))
    die(Error(Errc::already_exists,
              m.id() + " is already published; versions are immutable, publish a new "
                       "version"));
  // Dependencies must be satisfiable by what the repository offers.
  std::vector<std::string> dep_names;
  for (const auto& d : m.depends) dep_names.push_back(d.name);
  auto offered = must(offered_versions(repo, dep_names), "reading the dependencies' roles");
  for (const auto& d : m.depends) {
    bool ok = false;
    for (const auto& v : offered[d.name]) ok = ok || d.constraint.matches(v);
    if (!ok && !a.allow_unmet)
      die(Error(Errc::invalid_argument,
                "dependency " + d.str() + " of " + m.id() +
                    " is not satisfied by any version in the repository; publish it "
                    "first (or --allow-unmet-deps)"));
  }
  auto enc = setup_encryption(a, *targets);
  // Plain pieces of an encrypted package never go to the repository directory.
  auto store = must(chunk::ChunkStore::open(enc ? enc->plain_store : stdfs::path(a.dir), true));
  // Base versions for deltas: rebuilt into temp space from the store that holds their plain
  // pieces (the repository's, or the plain store for an encrypted base).
  delta::PackOptions o;
  // A publish killed or cut off by a power loss may have left torn pieces under their final
  // names: this one reads back every piece it reuses.
  o.verify_reused = must(store.begin_batch(), "recording the publish in " + store.root().string());
  if (o.verify_reused && !a.json)
    std::fprintf(stderr, "an earlier publish did not finish: checking the pieces it reuses\n");
  std::vector<fs::TempDir> base_dirs;
  std::vector<std::vector<uint8_t>> base_files;
  for (const auto& bv : a.delta_from) {
    auto v = must(package::Version::parse(bv), "--delta-from");
    std::string base_target = index_target(m.component, v.str());
    auto bytes = read_index_target(repo, targets, base_target);
    auto base_m = must(package::Manifest::from_json(targets->targets.at(base_target).custom),
                       "manifest of " + base_target);
    std::optional<chunk::ChunkStore> base_store;
    if (package::is_encrypted(base_m)) {
      if (!enc)
        die(Error(Errc::invalid_argument,
                  "base " + base_m.id() +
                      " is encrypted: a plain version's deltas would reveal it; publish with "
                      "--encrypt-to too, or without --delta-from " +
                      v.str()));
      std::optional<std::vector<uint8_t>> opened;
      for (const auto& k : must(package::load_data_keys(a.keydir, m.component)))
        if (auto o2 = package::open_index(base_m, bytes, &k)) opened = std::move(*o2);
      if (!opened)
        die(Error(Errc::not_found, "no data key in " + a.keydir + "/data opens the index of " +
                                       base_m.id() + "; it was published with other keys"));
      bytes = std::move(*opened);
      base_store = must(chunk::ChunkStore::open(enc->plain_store, false), "plain store");
    } else {
      base_store = must(chunk::ChunkStore::open(a.dir, false), "repository store");
    }
    auto idx = must(chunk::TreeIndex::parse(bytes));
    auto tmp = must(fs::TempDir::create(stdfs::temp_directory_path() /
                                        ("mup-base-" + m.component + "-" + v.str())));
    auto plan = must(delta::plan(idx, 0, std::vector<stdfs::path>{}));
    stdfs::path tree = tmp.path() / "tree";
    must(delta::unpack(idx, plan, *base_store, tree, {}), "rebuilding base " + v.str());
    o.bases.push_back({std::move(idx), tree});
    base_files.push_back(std::move(bytes));
    base_dirs.push_back(std::move(tmp));
    m.delta_from.push_back(v.str());
  }
  o.progress = !a.json;
  delta::PackStats st;
  auto idx = must(delta::pack(a.src, store, o, &st), "packing " + a.src);
  auto idx_file = idx.serialize();
  // No index deltas for encrypted packages: nodes could not use them without the plain index.
  for (const auto& base : base_files) {
    if (enc) break;
    auto d = must(chunk::make_index_delta(base, idx_file));
    must(store.put_blob(chunk::index_delta_rel_path(sha256(base), sha256(idx_file)), d));
  }
  must(store.sync());
  m.size = idx.total_file_bytes();
  m.index_sha256 = sha256(idx_file).hex();
  m.index_body_size = must(chunk::index_body_size(idx_file));
  // Update bundles: for each --delta-from version, what a node holding only it downloads (the
  // node's own planner against that version), in a few large files.
  uint64_t bundle_bytes = 0;
  for (size_t b = 0; b < o.bases.size() && !enc && !a.no_bundles; ++b) {
    const delta::BaseTree& base = o.bases[b];
    auto pieces = must(package::bundle_pieces(idx, base.tree, base.index),
                       "planning the update bundle from " + m.delta_from[b]);
    if (pieces.empty()) continue;
    package::Bundle bundle{m.delta_from[b],
                           must(package::write_bundle(pieces, store),
                                "writing the update bundle from " + m.delta_from[b])};
    bundle_bytes += bundle.bytes();
    m.bundles.push_back(std::move(bundle));
  }
  // The cold pack: what a node holding little of this version downloads (not for encrypted
  // packages: their pieces are sealed one by one).
  if (!enc && !a.no_cold_pack) {
    chunk::ColdPackOptions co = a.cold_pack;
    co.verify_reused = o.verify_reused;
    if (!a.json)
      std::fprintf(stderr, "writing the cold pack (zstd -%d, %s segments)...\n", co.level,
                   human_bytes(co.segment_bytes).c_str());
    m.pack = must(chunk::write_cold_pack(idx, store, co), "writing the cold pack of " + m.id());
  }
  const uint64_t cold_pack_bytes = chunk::segments_size(m.pack);
  package::SealStats sealed;
  if (enc) {
    // Pieces first, durable, then the signed metadata that names them.
    sealed = must(package::seal_pieces(idx, m.component, enc->key, store, a.dir, o.verify_reused),
                  "sealing the pieces of " + m.id());
    m.encryption = must(package::make_encryption(enc->key, enc->recipients));
    auto sealed_idx = must(package::seal_index(m, enc->key, idx_file));
    must(repo.add_target(m.index_target, sealed_idx, m.to_json(), role));
  } else {
    must(repo.add_target(m.index_target, idx_file, m.to_json(), role));
  }
  must(repo.publish(), "signing the new metadata");
  must(store.end_batch());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    json out = {{"id", m.id()},
                {"target", m.index_target},
                {"files", st.files},
                {"size", m.size},
                {"new_chunks", st.new_chunks},
                {"new_chunk_bytes", st.new_chunk_bytes},
                {"deltas", st.deltas},
                {"delta_bytes", st.delta_bytes},
                {"cold_pack_segments", m.pack.size()},
                {"cold_pack_bytes", cold_pack_bytes},
                {"bundles", m.bundles.size()},
                {"bundle_bytes", bundle_bytes},
                {"encrypted", bool(enc)},
                {"targets_version", repo.targets()->version},
                {"role", role},
                {"role_version", repo.targets(role)->version},
                {"role_created", placed.created},
                {"bin", placed.delegator == "targets" ? json(nullptr) : json(placed.delegator)},
                {"snapshot_version", repo.snapshot().version},
                {"timestamp_version", repo.timestamp().version},
                {"seconds", secs}};
    if (enc)
      out["encryption"] = {{"recipients", enc->recipient_ids},
                           {"data_key_created", enc->key_created},
                           {"data_key_rotated", enc->key_rotated},
                           {"dropped_recipients", enc->dropped},
                           {"sealed_pieces", sealed.pieces},
                           {"sealed_written", sealed.written},
                           {"sealed_written_bytes", sealed.written_bytes},
                           {"sealed_reused", sealed.reused},
                           {"sealed_reused_bytes", sealed.reused_bytes}};
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf(
      "published %s (%s, %s, %llu files, %s): %llu new chunks (%s), %llu deltas (%s), cold pack "
      "%s; targets v%llu, snapshot v%llu, timestamp v%llu, in %.2fs\n",
      m.id().c_str(), a.type.c_str(), m.strategy.c_str(), static_cast<unsigned long long>(st.files),
      human_bytes(m.size).c_str(), static_cast<unsigned long long>(st.new_chunks),
      human_bytes(st.new_chunk_bytes).c_str(), static_cast<unsigned long long>(st.deltas),
      human_bytes(st.delta_bytes).c_str(),
      m.pack.empty() ? "none" : human_bytes(cold_pack_bytes).c_str(),
      static_cast<unsigned long long>(repo.targets()->version),
      static_cast<unsigned long long>(repo.snapshot().version),
      static_cast<unsigned long long>(repo.timestamp().version), secs);
  if (enc) {
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
      return s;
    };
    std::string ids = join(enc->recipient_ids);
    std::printf(
        "encrypted for %zu device(s) (%s): %llu sealed pieces written (%s), %llu reused from "
        "earlier versions (%s)%s\n",
        enc->recipient_ids.size(), ids.c_str(), static_cast<unsigned long long>(sealed.written),
        human_bytes(sealed.written_bytes).c_str(), static_cast<unsigned long long>(sealed.reused),
        human_bytes(sealed.reused_bytes).c_str(),
        enc->key_rotated ? "; new data key for the component (no reuse across it)" : "");
    if (!enc->dropped.empty())
      std::printf("dropped recipients since the previous version, hence the new data key: %s\n",
                  join(enc->dropped).c_str());
  }
}

void run_repo_verify(const std::string& dir, bool as_json) {
  tuf::SystemClock clock;
  auto r = must(tuf::Repository::verify(dir, clock));
  if (as_json) {
    std::printf("%s\n", json({{"ok", r.ok()},
                              {"root_version", r.root_version},
                              {"timestamp_version", r.timestamp_version},
                              {"snapshot_version", r.snapshot_version},
                              {"targets_version", r.targets_version},
                              {"targets", r.target_count},
                              {"problems", r.problems},
                              {"warnings", r.warnings}})
                            .dump(2)
                            .c_str());
  } else {
    std::printf("%s: root v%llu, timestamp v%llu, snapshot v%llu, targets v%llu, %zu targets\n",
                dir.c_str(), static_cast<unsigned long long>(r.root_version),
                static_cast<unsigned long long>(r.timestamp_version),
                static_cast<unsigned long long>(r.snapshot_version),
                static_cast<unsigned long long>(r.targets_version), r.target_count);
    for (const auto& w : r.warnings) std::printf("warning: %s\n", w.c_str());
    for (const auto& p : r.problems) std::printf("PROBLEM: %s\n", p.c_str());
    std::printf("%s\n", r.ok() ? "repository verified: OK" : "repository verification FAILED");
  }
  if (!r.ok()) throw CliExit{1};
}

std::atomic<bool> g_stop{false};

void run_repo_serve(const std::string& dir, const std::string& listen) {
  auto server = must(transfer::FileServer::start(dir, listen));
  std::printf("serving %s at %s (Ctrl-C to stop)\n", dir.c_str(), server->base_url().c_str());
  std::fflush(stdout);
  std::signal(SIGINT, [](int) { g_stop = true; });
  std::signal(SIGTERM, [](int) { g_stop = true; });
  while (!g_stop) ::usleep(100000);
  server->stop();
}

void run_repo_sign(const std::string& dir, const std::string& keydir, const std::string& role) {
  tuf::SystemClock clock;
  auto repo = must(tuf::Repository::open(dir, clock));
  auto keys = load_keys(keydir);
  if (!keys.count(role)) die(Error(Errc::not_found, "no " + role + " key in " + keydir));
  for (const auto& k : keys[role]) must(repo.sign_existing(role, k), "signing " + role);
  std::printf("signed the current %s metadata with %zu key(s)\n", role.c_str(), keys[role].size());
}

// Every command that rewrites metadata ends with the offline verification; a failure says
// what to do (the command's own change is written: the repository is in that state).
void verify_after(const std::string& dir, const std::string& what) {
  tuf::SystemClock clock;
  auto r = tuf::Repository::verify(dir, clock);
  if (!r) die(r.error().context("verifying the repository after " + what));
  for (const auto& w : r->warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (r->ok()) return;
  for (const auto& p : r->problems) std::fprintf(stderr, "PROBLEM: %s\n", p.c_str());
  std::fprintf(stderr,
               "mup: the repository does not verify after %s: nodes will refuse it. Fix what "
               "is listed (mup repo expire DIR --role ROLE re-signs a role; mup repo verify "
               "DIR checks again) before serving it.\n",
               what.c_str());
  throw CliExit{1};
}

void run_repo_rotate(const std::string& dir, const std::string& keydir, const std::string& role,
                     uint32_t threshold, uint32_t count, const std::string& key_type) {
  tuf::SystemClock clock;
  auto repo = must(tuf::Repository::open(dir, clock));
  add_signers(repo, keydir);
  std::vector<crypto::PrivateKey> fresh;
  std::vector<crypto::PublicKey> pubs;
  for (uint32_t i = 0; i < std::max(count, threshold); ++i) {
    fresh.push_back(must(crypto::PrivateKey::generate(parse_key_type(key_type))));
    pubs.push_back(fresh.back().public_key());
    // root N+1 is signed by old and new keys; another role's metadata by its new keys
    repo.add_signer(role, fresh.back());
  }
  must(repo.rotate_keys(role, pubs, threshold), "rotating " + role + " keys");
  // Keep the old key files (renamed) so that the rotation can be audited, and store the new ones.
  for (const auto& e : stdfs::directory_iterator(keydir)) {
    std::string name = e.path().filename().string();
    if (name.rfind(role + ".", 0) == 0 && e.path().extension() == ".pem")
      stdfs::rename(e.path(), e.path().parent_path() / ("retired-" + name));
  }
  for (const auto& k : fresh) save_key(keydir, role, k);
  std::printf("rotated %s keys: root is now v%llu%s; old keys kept as %s/retired-%s.*.pem\n",
              role.c_str(), static_cast<unsigned long long>(repo.root().version),
              role == "root" ? "" : (", " + role + " re-signed by the new keys").c_str(),
              keydir.c_str(), role.c_str());
  verify_after(dir, "rotating " + role + " keys");
}

void run_repo_expire(const std::string& dir, const std::string& keydir, const std::string& role) {
  tuf::SystemClock clock;
  auto repo = must(tuf::Repository::open(dir, clock));
  add_signers(repo, keydir);
  must(repo.refresh_expiry(role), "refreshing the expiry of " + role);
  std::printf("refreshed the expiry of %s\n", role.c_str());
  verify_after(dir, "refreshing " + role);
}

void run_keygen(const std::string& device, const std::string& out) {
  must(package::validate_component_name(device), "--device");
  auto k = must(crypto::DeviceKey::generate());
  must(fs::create_dirs(out));
  std::string priv = crypto::to_hex(k.private_key) + "\n",
              pub = crypto::to_hex(k.public_key) + "\n";
  stdfs::path pp = stdfs::path(out) / (device + ".key"),
              pubp = stdfs::path(out) / (device + ".pub");
  if (stdfs::exists(pp))
    die(Error(Errc::already_exists, pp.string() + " exists; refusing to replace a device key"));
  must(fs::write_file_atomic(pp, {reinterpret_cast<const uint8_t*>(priv.data()), priv.size()},
                             0600));
  must(fs::write_file_atomic(pubp, {reinterpret_cast<const uint8_t*>(pub.data()), pub.size()},
                             0644));
  std::printf(
      "device key for %s: private %s (mode 0600, stays on the device), public %s (give it to "
      "publishers)\n",
      device.c_str(), pp.c_str(), pubp.c_str());
}

}  // namespace

// For repo_prune.cpp.
void add_repo_signers(tuf::Repository& repo, const stdfs::path& keydir) {
  add_signers(repo, keydir);
}
void verify_repo_after(const std::string& dir, const std::string& what) {
  verify_after(dir, what);
}
void register_repo_prune(CLI::App& repo);

void register_repo_commands(CLI::App& app) {
  auto* repo =
      app.add_subcommand("repo", "Create, check, sign and serve a signed (TUF) repository");
  repo->require_subcommand(1);

  auto ia = std::make_shared<InitArgs>();
  auto* init = repo->add_subcommand(
      "init", "Create a repository with root, targets, snapshot and timestamp roles");
  init->add_option("DIR", ia->dir, "Repository directory")->required();
  init->add_option("--keys", ia->keydir, "Directory for the private keys (not inside DIR)")
      ->required();
  init->add_option("--key-type", ia->key_type, "ed25519|ecdsa|rsa")->capture_default_str();
  init->add_option("--threshold", ia->thresholds, "ROLE=N signatures required (default 1)");
  init->add_option("--key-count", ia->key_counts, "ROLE=N keys to create (default: the threshold)");
  init->callback([ia] { run_repo_init(*ia); });

  auto vd = std::make_shared<std::string>();
  auto vj = std::make_shared<bool>(false);
  auto* verify = repo->add_subcommand(
      "verify", "Check a whole repository offline (signatures, versions, hashes)");
  verify->add_option("DIR", *vd, "Repository directory")->required();
  verify->add_flag("--json", *vj, "Print JSON");
  verify->callback([vd, vj] { run_repo_verify(*vd, *vj); });

  auto sd = std::make_shared<std::string>();
  auto sl = std::make_shared<std::string>("127.0.0.1:8080");
  auto* serve =
      repo->add_subcommand("serve", "Serve a repository over HTTP (any static server works too)");
  serve->add_option("DIR", *sd, "Repository directory")->required();
  serve->add_option("--listen", *sl, "HOST:PORT")->capture_default_str();
  serve->callback([sd, sl] { run_repo_serve(*sd, *sl); });

  struct RoleArgs {
    std::string dir, keydir, role, key_type = "ed25519";
    uint32_t threshold = 1, count = 0;
  };
  auto ra = std::make_shared<RoleArgs>();
  auto* sign = repo->add_subcommand("sign", "Add signatures to the current metadata of a role");
  sign->add_option("DIR", ra->dir)->required();
  sign->add_option("--keys", ra->keydir)->required();
  sign->add_option("--role", ra->role, "root|targets|snapshot|timestamp")->required();
  sign->callback([ra] { run_repo_sign(ra->dir, ra->keydir, ra->role); });
  auto* rot = repo->add_subcommand("rotate-key",
                                   "Replace a role's keys (writes root N+1, chained from root N)");
  rot->add_option("DIR", ra->dir)->required();
  rot->add_option("--keys", ra->keydir)->required();
  rot->add_option("--role", ra->role, "root|targets|snapshot|timestamp")->required();
  rot->add_option("--threshold", ra->threshold)->capture_default_str();
  rot->add_option("--key-count", ra->count, "Keys to create (default: the threshold)");
  rot->add_option("--key-type", ra->key_type)->capture_default_str();
  rot->callback([ra] {
    run_repo_rotate(ra->dir, ra->keydir, ra->role, ra->threshold, ra->count, ra->key_type);
  });
  auto* exp = repo->add_subcommand("expire", "Re-sign a role with a fresh expiry date");
  exp->add_option("DIR", ra->dir)->required();
  exp->add_option("--keys", ra->keydir)->required();
  exp->add_option("--role", ra->role,
                  "root|targets|snapshot|timestamp, or a component (its delegated role)")
      ->required();
  exp->callback([ra] { run_repo_expire(ra->dir, ra->keydir, ra->role); });
  register_repo_prune(*repo);

  auto pa = std::make_shared<PublishArgs>();
  auto* pub =
      app.add_subcommand("publish", "Publish a version of a component to a repository, signed");
  pub->add_option("DIR", pa->dir, "Repository directory")->required();
  pub->add_option("SRC", pa->src, "The component's files (a directory, or one file)")->required();
  pub->add_option("--keys", pa->keydir, "Key directory")->required();
  pub->add_option("--component", pa->component, "Component name")->required();
  pub->add_option("--version", pa->version, "Semantic version")->required();
  pub->add_option("--type", pa->type, "kernel|service|ai-model|application|config|security")
      ->required();
  pub->add_option("--depends", pa->depends, "Dependency, e.g. 'db>=2.0,<3' (repeatable)");
  pub->add_option("--priority", pa->priority, "critical|high|normal|low")->capture_default_str();
  pub->add_option("--strategy", pa->strategy,
                  "immediate|rolling|blue-green|canary|scheduled (default by type)");
  pub->add_option("--rollback-policy", pa->rollback_policy, "JSON file with the rollback policy");
  pub->add_option("--delta-from", pa->delta_from,
                  "Published version to compute deltas from (repeatable)");
  pub->add_option("--description", pa->description, "One line for people");
  pub->add_option("--encrypt-to", pa->encrypt_to,
                  "Encrypt for the device with this public key file (NAME.pub from mup keygen; "
                  "repeatable)");
  pub->add_option("--plain-store", pa->plain_store,
                  "Private store for the plain pieces of encrypted packages (default "
                  "KEYDIR/plain-store; never inside DIR)");
  pub->add_flag("--rotate-data-key", pa->rotate_data_key,
                "Give the component a new data key (automatic when a recipient is dropped)");
  pub->add_flag("--allow-unmet-deps", pa->allow_unmet,
                "Publish even if no published version satisfies a dependency");
  pub->add_flag("--no-cold-pack", pa->no_cold_pack,
                "Do not write the cold pack (solid segments for nodes that hold little of "
                "this version)");
  pub->add_flag("--no-bundles", pa->no_bundles,
                "Do not write update bundles (the pieces an update from each --delta-from "
                "version needs, in a few large files)");
  pub->add_option("--cold-pack-level", pa->cold_pack.level, "zstd level of the cold pack")
      ->capture_default_str()
      ->check(CLI::Range(1, 22));
  pub->add_option("--cold-pack-segment", pa->cold_pack.segment_bytes,
                  "Plain bytes per cold pack segment (cut at chunk boundaries)")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1} << 16, uint64_t{1} << 27));
  pub->add_flag("--json", pa->json, "Print a JSON summary");
  pub->callback([pa] { run_publish(*pa); });

  auto kd = std::make_shared<std::string>();
  auto ko = std::make_shared<std::string>(".");
  auto* keygen =
      app.add_subcommand("keygen", "Make an X25519 key pair for a device (for encrypted packages)");
  keygen->add_option("--device", *kd, "Device name")->required();
  keygen->add_option("--out", *ko, "Where to write NAME.key and NAME.pub")->capture_default_str();
  keygen->callback([kd, ko] { run_keygen(*kd, *ko); });
}

}  // namespace mup::cli
