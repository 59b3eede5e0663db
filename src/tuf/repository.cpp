// Publisher side. Everything is signed in memory first and written only when every role
// that changes can meet its threshold, then written bottom-up (targets files, delegated
// roles, targets, snapshot, timestamp) so that a client reading the repository at any
// instant sees a consistent set: the timestamp it fetches names only files already there.
#include "tuf/repository.hpp"

#include <algorithm>
#include <charconv>
#include <set>
#include <system_error>

#include "core/fs.hpp"
#include "core/sha256.hpp"
#include "transfer/fetcher.hpp"

namespace mup::tuf {

namespace stdfs = std::filesystem;

int64_t ExpiryPolicy::for_role(std::string_view role) const {
  if (role == "root") return root_s;
  if (role == "snapshot") return snapshot_s;
  if (role == "timestamp") return timestamp_s;
  return targets_s;
}

namespace {

bool is_top_level(std::string_view role) {
  return role == "root" || role == "timestamp" || role == "snapshot" || role == "targets";
}

Status check_target_path(const std::string& p) {
  auto bad = [&](const char* why) {
    return fail(Errc::invalid_argument, "target path \"" + p + "\" " + why);
  };
  if (p.empty()) return bad("is empty");
  if (p.front() == '/') return bad("must be relative");
  if (p.find('\0') != std::string::npos || p.find('\\') != std::string::npos)
    return bad("must not contain NUL or backslash");
  size_t start = 0;
  while (true) {
    size_t slash = p.find('/', start);
    std::string part = p.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..")
      return bad("must not have empty, \".\" or \"..\" parts");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return {};
}

// Where a target's bytes live under DIR/targets.
stdfs::path target_file_path(const stdfs::path& dir, const std::string& target_path,
                             const TargetFile& f, bool consistent) {
  stdfs::path p = dir / "targets" / target_path;
  if (consistent) p = p.parent_path() / (f.hashes.at("sha256") + "." + p.filename().string());
  return p;
}

template <typename T>
Result<Metadata<T>> read_metadata(const stdfs::path& p) {
  auto bytes = fs::read_file(p, 64ull << 20);
  if (!bytes) return tl::unexpected(bytes.error());
  auto md = Metadata<T>::parse(*bytes);
  if (!md) return tl::unexpected(Error(md.error()).context(p.filename().string()));
  return md;
}

// The highest N with DIR/metadata/N.root.json, from a listing of the directory (verify: a
// gap in the chain is then a finding).
uint64_t newest_root_version(const stdfs::path& metadata_dir) {
  uint64_t best = 0;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(metadata_dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.size() < 11 || n.substr(n.size() - 10) != ".root.json") continue;
    uint64_t v = 0;
    auto [ptr, err] = std::from_chars(n.data(), n.data() + n.size() - 10, v);
    if (err == std::errc() && ptr == n.data() + n.size() - 10) best = std::max(best, v);
  }
  return best;
}

// The same, probing 1.root.json, 2.root.json ... in order as clients do (roots are never
// removed): what open() uses, as a listing costs every old metadata file the repository
// holds (20,000 after 10,000 publishes), on every publish.
uint64_t chained_root_version(const stdfs::path& metadata_dir) {
  uint64_t v = 0;
  std::error_code ec;
  while (stdfs::exists(metadata_dir / (std::to_string(v + 1) + ".root.json"), ec)) ++v;
  return v;
}

}  // namespace

Repository::Repository(Repository&&) noexcept = default;
Repository& Repository::operator=(Repository&&) noexcept = default;
Repository::~Repository() = default;

stdfs::path Repository::metadata_path(std::string_view role, uint64_t version) const {
  stdfs::path m = dir_ / "metadata";
  if (role == "timestamp") return m / "timestamp.json";
  std::string name = transfer::percent_encode(role) + ".json";
  if (role == "root" || root_.body().consistent_snapshot)
    name = std::to_string(version) + "." + name;
  return m / name;
}

void Repository::add_signer(const std::string& role, crypto::PrivateKey key) {
  signers_[role].push_back(std::move(key));
}

const Targets* Repository::targets(const std::string& role) const {
  auto it = targets_.find(role);
  return it == targets_.end() ? nullptr : &it->second.staged;
}

Result<Repository::TargetsRole*> Repository::load_role(const std::string& role) {
  if (auto it = targets_.find(role); it != targets_.end()) return &it->second;
  auto m = snapshot_.body().meta.find(role + ".json");
  if (m == snapshot_.body().meta.end())
    return fail(Errc::not_found, "no targets role \"" + role + "\" in " + dir_.string() +
                                     " (snapshot v" + std::to_string(snapshot_.body().version) +
                                     " names none)");
  auto t = read_metadata<Targets>(metadata_path(role, m->second.version));
  if (!t) return tl::unexpected(Error(t.error()).context("loading targets role " + role));
  Targets staged = t->body();
  auto [it, added] =
      targets_.emplace(role, TargetsRole{std::move(*t), std::move(staged), false, true});
  return &it->second;
}

Result<const Targets*> Repository::load_targets(const std::string& role) {
  auto r = load_role(role);
  if (!r) return tl::unexpected(r.error());
  return &(*r)->staged;
}

Status Repository::load_all_roles() {
  for (const auto& name : targets_roles()) MUP_TRY(load_role(name));
  return {};
}

std::vector<std::string> Repository::delegated_roles(const std::string& delegator) const {
  std::vector<std::string> out;
  const Targets* t = targets(delegator);
  if (t && t->delegations)
    for (const auto& r : t->delegations->roles) out.push_back(r.name);
  return out;
}

std::vector<std::string> Repository::targets_roles() const {
  std::set<std::string> names;
  for (const auto& [file, meta] : snapshot_.body().meta)
    if (file.size() > 5 && file.compare(file.size() - 5, 5, ".json") == 0)
      names.insert(file.substr(0, file.size() - 5));
  for (const auto& [name, t] : targets_) names.insert(name);
  names.erase("targets");
  std::vector<std::string> out{"targets"};
  out.insert(out.end(), names.begin(), names.end());
  return out;
}

Result<size_t> Repository::move_targets(const std::string& prefix, const std::string& from,
                                        const std::string& to) {
  auto src = load_role(from);
  if (!src) return tl::unexpected(src.error());
  auto dst = load_role(to);
  if (!dst) return tl::unexpected(dst.error());
  size_t n = 0;
  auto& entries = (*src)->staged.targets;
  for (auto it = entries.lower_bound(prefix);
       it != entries.end() && it->first.compare(0, prefix.size(), prefix) == 0;) {
    (*dst)->staged.targets[it->first] = std::move(it->second);
    it = entries.erase(it);
    ++n;
  }
  if (n) (*src)->dirty = (*dst)->dirty = true;
  return n;
}

Result<std::pair<const std::map<std::string, Key>*, const Role*>> Repository::role_keys(
    const std::string& role) const {
  if (is_top_level(role)) return std::make_pair(&root_.body().keys, &root_.body().roles.at(role));
  for (const auto& [name, t] : targets_) {
    if (!t.staged.delegations) continue;
    for (const auto& r : t.staged.delegations->roles)
      if (r.name == role) return std::make_pair(&t.staged.delegations->keys, &r);
  }
  return fail(Errc::not_found, "no role \"" + role + "\" in this repository");
}

template <typename T>
Result<Metadata<T>> Repository::sign_new(T body, const std::string& role,
                                         const Metadata<Root>* previous_root) const {
  auto md = Metadata<T>::from_body(std::move(body));
  if (!md) return tl::unexpected(md.error());
  // The roles whose thresholds this file must meet, with their key sets.
  std::vector<std::pair<const std::map<std::string, Key>*, const Role*>> checks;
  if constexpr (std::is_same_v<T, Root>) {
    checks.emplace_back(&md->body().keys, &md->body().roles.at("root"));
    if (previous_root)
      checks.emplace_back(&previous_root->body().keys, &previous_root->body().roles.at("root"));
  } else {
    auto rk = role_keys(role);
    if (!rk) return tl::unexpected(rk.error());
    checks.push_back(*rk);
  }
  // A delegated role may be signed by the targets keys too, when its delegation lists them.
  std::vector<const crypto::PrivateKey*> candidates;
  for (const std::string& from : {role, std::string(is_top_level(role) ? "" : "targets")})
    if (auto it = signers_.find(from); it != signers_.end())
      for (const auto& key : it->second) candidates.push_back(&key);
  std::set<std::string> signed_by;
  for (const crypto::PrivateKey* key : candidates) {
    std::string id = Key::from_public(key->public_key()).keyid();
    bool listed = std::any_of(checks.begin(), checks.end(), [&](const auto& c) {
      return std::find(c.second->keyids.begin(), c.second->keyids.end(), id) !=
             c.second->keyids.end();
    });
    if (listed && signed_by.insert(id).second) MUP_TRY(md->sign(*key));
  }
  for (const auto& [keys, r] : checks) {
    if (auto s = md->verify_role(*keys, *r, role); !s)
      return fail(Errc::invalid_argument,
                  s.error().message() + " (give the repository more " + role + " signing keys)");
  }
  return md;
}

template <typename T>
Status Repository::write_metadata(const Metadata<T>& md, const std::string& role) {
  auto p = metadata_path(role, md.body().version);
  auto s = fs::write_file_atomic(p, md.to_bytes());
  if (!s) return tl::unexpected(Error(s.error()).context("writing " + p.filename().string()));
  return {};
}

Result<Repository> Repository::init(const stdfs::path& dir, const InitOptions& options,
                                    const Clock& clock) {
  if (stdfs::exists(dir / "metadata" / "1.root.json") ||
      stdfs::exists(dir / "metadata" / "timestamp.json"))
    return fail(Errc::already_exists, dir.string() + " already holds TUF metadata");
  MUP_TRY(fs::create_dirs(dir / "metadata"));
  MUP_TRY(fs::create_dirs(dir / "targets"));
  Repository repo;
  repo.dir_ = dir;
  repo.clock_ = &clock;
  repo.expiry_ = options.expiry;
  const int64_t now = clock.now();

  Root root;
  root.consistent_snapshot = options.consistent_snapshot;
  root.expires = now + options.expiry.root_s;
  const std::pair<const char*, const RoleSetup*> setups[] = {{"root", &options.root},
                                                             {"targets", &options.targets},
                                                             {"snapshot", &options.snapshot},
                                                             {"timestamp", &options.timestamp}};
  for (const auto& [name, setup] : setups) {
    if (setup->threshold < 1 || setup->keys.size() < setup->threshold)
      return fail(Errc::invalid_argument, std::string(name) + " role: threshold " +
                                              std::to_string(setup->threshold) +
                                              " needs at least that many keys (have " +
                                              std::to_string(setup->keys.size()) + ")");
    root.roles[name].threshold = setup->threshold;
    for (const auto& k : setup->keys) {
      root.add_key(name, Key::from_public(k.public_key()));
      repo.add_signer(name, k);
    }
  }
  auto root_md = repo.sign_new(std::move(root), "root");
  if (!root_md) return tl::unexpected(root_md.error());
  repo.root_ = std::move(*root_md);

  Targets targets;
  targets.expires = now + options.expiry.targets_s;
  auto targets_md = repo.sign_new(targets, "targets");
  if (!targets_md) return tl::unexpected(targets_md.error());
  repo.targets_["targets"] = TargetsRole{*targets_md, targets_md->body(), false, true};

  Snapshot snapshot;
  snapshot.version = 0;  // write_snapshot_and_timestamp() makes it 1
  repo.snapshot_ = *Metadata<Snapshot>::from_body(snapshot);
  Timestamp timestamp;
  timestamp.version = 0;
  repo.timestamp_ = *Metadata<Timestamp>::from_body(timestamp);

  MUP_TRY(repo.write_metadata(repo.root_, "root"));
  MUP_TRY(repo.write_metadata(repo.targets_.at("targets").md, "targets"));
  MUP_TRY(repo.write_snapshot_and_timestamp());
  return repo;
}

Result<Repository> Repository::open(const stdfs::path& dir, const Clock& clock,
                                    ExpiryPolicy expiry) {
  Repository repo;
  repo.dir_ = dir;
  repo.clock_ = &clock;
  repo.expiry_ = expiry;
  stdfs::path m = dir / "metadata";
  uint64_t rv = chained_root_version(m);
  if (rv == 0)
    return fail(Errc::not_found, dir.string() + " holds no N.root.json: not a repository");
  auto root = read_metadata<Root>(m / (std::to_string(rv) + ".root.json"));
  if (!root) return tl::unexpected(root.error());
  repo.root_ = std::move(*root);
  auto ts = read_metadata<Timestamp>(m / "timestamp.json");
  if (!ts) return tl::unexpected(ts.error());
  repo.timestamp_ = std::move(*ts);
  auto snap = read_metadata<Snapshot>(
      repo.metadata_path("snapshot", repo.timestamp_.body().snapshot_meta.version));
  if (!snap) return tl::unexpected(snap.error());
  repo.snapshot_ = std::move(*snap);
  // Delegated roles are loaded when first needed (load_role).
  if (!repo.snapshot_.body().meta.count("targets.json"))
    return fail(Errc::corrupt, "snapshot names no targets.json: not a complete repository");
  if (auto t = repo.load_role("targets"); !t) return tl::unexpected(t.error());
  return repo;
}

Status Repository::add_target(const std::string& target_path, std::span<const uint8_t> content,
                              const nlohmann::json& custom, const std::string& role) {
  MUP_TRY(check_target_path(target_path));
  auto loaded = load_role(role);
  if (!loaded) return tl::unexpected(loaded.error());
  TargetsRole& tr = **loaded;
  if (!custom.is_null() && !custom.is_object())
    return fail(Errc::invalid_argument, "custom data of " + target_path + " must be an object");
  TargetFile f = TargetFile::for_data(content, custom);
  stdfs::path p = target_file_path(dir_, target_path, f, root_.body().consistent_snapshot);
  MUP_TRY(fs::create_dirs(p.parent_path()));
  MUP_TRY(fs::write_file_atomic(p, content));
  tr.staged.targets[target_path] = std::move(f);
  tr.dirty = true;
  return {};
}

Status Repository::add_target_file(const std::string& target_path, const stdfs::path& source,
                                   const nlohmann::json& custom, const std::string& role) {
  auto data = fs::read_file(source);
  if (!data) return tl::unexpected(data.error());
  return add_target(target_path, *data, custom, role);
}

Status Repository::remove_target(const std::string& target_path, const std::string& role) {
  auto loaded = load_role(role);
  if (!loaded || !(*loaded)->staged.targets.erase(target_path))
    return fail(Errc::not_found, "role " + role + " has no target " + target_path);
  (*loaded)->dirty = true;
  return {};
}

Status Repository::add_delegation(const std::string& delegator, const DelegatedRole& role,
                                  const std::vector<crypto::PublicKey>& keys) {
  auto loaded = load_role(delegator);
  if (!loaded) return tl::unexpected(loaded.error());
  if (is_top_level(role.name) || targets_.count(role.name) ||
      snapshot_.body().meta.count(role.name + ".json") || role.name.empty())
    return fail(Errc::invalid_argument, "cannot delegate to \"" + role.name + "\": name in use");
  // Role names become file names that any static HTTP server must find: keep them to
  // characters that need no percent-encoding (clients accept any name; we write safe ones).
  if (transfer::percent_encode(role.name) != role.name || role.name == "." || role.name == "..")
    return fail(Errc::invalid_argument,
                "delegated role name \"" + role.name +
                    "\": use only letters, digits, '-', '_', '.' and '~' (it names a file)");
  if (role.paths.has_value() == role.path_hash_prefixes.has_value())
    return fail(Errc::invalid_argument,
                "delegation " + role.name + ": give exactly one of paths and path_hash_prefixes");
  if (role.threshold < 1 || keys.size() < role.threshold)
    return fail(Errc::invalid_argument, "delegation " + role.name + ": threshold " +
                                            std::to_string(role.threshold) +
                                            " needs that many keys");
  Targets& parent = (*loaded)->staged;
  if (!parent.delegations) parent.delegations.emplace();
  DelegatedRole r = role;
  r.keyids.clear();
  for (const auto& k : keys) {
    Key key = Key::from_public(k);
    std::string id = key.keyid();
    parent.delegations->keys.emplace(id, key);
    if (std::find(r.keyids.begin(), r.keyids.end(), id) == r.keyids.end()) r.keyids.push_back(id);
  }
  parent.delegations->roles.push_back(std::move(r));
  (*loaded)->dirty = true;
  TargetsRole child;
  child.staged.expires = clock_->now() + expiry_.targets_s;
  child.dirty = true;
  child.on_disk = false;
  targets_[role.name] = std::move(child);
  return {};
}

Status Repository::add_delegated_paths(const std::string& delegator, const std::string& role,
                                       const std::vector<std::string>& paths) {
  auto loaded = load_role(delegator);
  if (!loaded) return tl::unexpected(loaded.error());
  Targets& parent = (*loaded)->staged;
  DelegatedRole* d = nullptr;
  if (parent.delegations)
    for (auto& r : parent.delegations->roles)
      if (r.name == role) d = &r;
  if (!d) return fail(Errc::not_found, delegator + " does not delegate to \"" + role + "\"");
  if (!d->paths)
    return fail(Errc::invalid_argument,
                "delegation " + role + " uses path_hash_prefixes: it takes no paths patterns");
  for (const auto& p : paths) {
    if (std::find(d->paths->begin(), d->paths->end(), p) != d->paths->end()) continue;
    d->paths->push_back(p);
    (*loaded)->dirty = true;
  }
  return {};
}

Status Repository::publish() {
  const int64_t now = clock_->now();
  // A changed role's keys are in its delegator, which may not be loaded (nested delegation).
  for (const auto& [name, t] : targets_)
    if (t.dirty && !role_keys(name)) {
      MUP_TRY(load_all_roles());
      break;
    }
  // Sign every changed role first: nothing is written unless all of them can be.
  std::vector<std::pair<std::string, Metadata<Targets>>> signed_roles;
  for (auto& [name, t] : targets_) {
    if (!t.dirty) continue;
    Targets body = t.staged;
    body.version = t.on_disk ? t.md.body().version + 1 : 1;
    body.expires = now + expiry_.for_role(name);
    auto md = sign_new(std::move(body), name);
    if (!md) return tl::unexpected(md.error());
    signed_roles.emplace_back(name, std::move(*md));
  }
  // Delegated roles before "targets", so that the top-level file comes last.
  std::stable_partition(signed_roles.begin(), signed_roles.end(),
                        [](const auto& e) { return e.first != "targets"; });
  for (auto& [name, md] : signed_roles) {
    MUP_TRY(write_metadata(md, name));
    TargetsRole& t = targets_.at(name);
    t.staged.version = md.body().version;  // the rest is what was signed (no copy back)
    t.staged.expires = md.body().expires;
    t.md = std::move(md);
    t.dirty = false;
    t.on_disk = true;
  }
  return write_snapshot_and_timestamp();
}

Status Repository::write_snapshot_and_timestamp(bool new_snapshot) {
  const int64_t now = clock_->now();
  std::optional<Metadata<Snapshot>> snap;
  if (new_snapshot) {
    Snapshot s = snapshot_.body();
    s.version += 1;
    s.expires = now + expiry_.snapshot_s;
    // Roles never loaded stay at the versions the snapshot named.
    for (const auto& [name, t] : targets_) {
      if (!t.on_disk) continue;
      MetaFile f;
      f.version = t.md.body().version;
      s.meta[name + ".json"] = std::move(f);
    }
    auto md = sign_new(std::move(s), "snapshot");
    if (!md) return tl::unexpected(md.error());
    snap = std::move(*md);
  }
  const Metadata<Snapshot>& current = snap ? *snap : snapshot_;
  std::vector<uint8_t> snap_bytes = current.to_bytes();
  Timestamp t = timestamp_.body();
  t.version += 1;
  t.expires = now + expiry_.timestamp_s;
  t.snapshot_meta.version = current.body().version;
  t.snapshot_meta.length = snap_bytes.size();
  t.snapshot_meta.hashes = {{"sha256", sha256(snap_bytes).hex()}};
  auto ts = sign_new(std::move(t), "timestamp");
  if (!ts) return tl::unexpected(ts.error());
  if (snap) {
    MUP_TRY(write_metadata(*snap, "snapshot"));
    snapshot_ = std::move(*snap);
  }
  MUP_TRY(write_metadata(*ts, "timestamp"));
  timestamp_ = std::move(*ts);
  return {};
}

Status Repository::write_new_root(Root body) {
  body.version = root_.body().version + 1;
  body.expires = clock_->now() + expiry_.root_s;
  auto md = sign_new(std::move(body), "root", &root_);
  if (!md) return tl::unexpected(md.error());
  MUP_TRY(write_metadata(*md, "root"));
  root_ = std::move(*md);
  return {};
}

Status Repository::rotate_keys(const std::string& role,
                               const std::vector<crypto::PublicKey>& new_keys, uint32_t threshold) {
  if (!is_top_level(role))
    return fail(Errc::invalid_argument, "rotate_keys: \"" + role +
                                            "\" is not a top-level role (root, targets, snapshot, "
                                            "timestamp)");
  if (threshold < 1 || new_keys.size() < threshold)
    return fail(Errc::invalid_argument, "rotate_keys: threshold " + std::to_string(threshold) +
                                            " needs at least that many keys");
  // The role's current metadata is re-signed by the new keys right after the new root (a
  // client that reads root N+1 would refuse metadata signed by the old ones): their private
  // halves must be signers already, a threshold of them, or nothing is written.
  if (role != "root") {
    std::set<std::string> fresh;
    for (const auto& k : new_keys) fresh.insert(Key::from_public(k).keyid());
    uint32_t have = 0;
    if (auto it = signers_.find(role); it != signers_.end())
      for (const auto& key : it->second)
        have += fresh.count(Key::from_public(key.public_key()).keyid()) ? 1 : 0;
    if (have < threshold)
      return fail(Errc::invalid_argument,
                  "rotate_keys: " + std::to_string(have) + " of the new " + role +
                      " keys can sign here, the threshold is " + std::to_string(threshold) +
                      " (add their private keys as signers first); nothing written");
  }
  if (role == "targets") MUP_TRY(load_all_roles());
  const Role old = root_.body().roles.at(role);
  Root body = root_.body();
  for (const auto& id : std::vector<std::string>(body.roles.at(role).keyids))
    body.remove_key(role, id);
  for (const auto& k : new_keys) body.add_key(role, Key::from_public(k));
  body.roles[role].threshold = threshold;
  MUP_TRY(write_new_root(std::move(body)));
  if (role == "root") return {};
  if (role == "targets") redelegate_to_new_targets_keys(old, root_.body());
  return refresh_expiry(role).map_error(
      [&](Error e) { return e.context("re-signing " + role + " with its new keys"); });
}

// Delegations that trusted exactly the old targets keys (mup's bins and per-component
// roles, from top-level targets or from a bin) trust the new ones instead, and their roles
// are re-signed: a retired targets key signs nothing a client would accept any more. Every
// targets role must be loaded (rotate_keys loads them).
void Repository::redelegate_to_new_targets_keys(const Role& old_targets, const Root& new_root) {
  const Role& fresh = new_root.roles.at("targets");
  const std::set<std::string> old_ids(old_targets.keyids.begin(), old_targets.keyids.end());
  for (auto& [name, delegator] : targets_) {
    if (!delegator.staged.delegations) continue;
    Delegations& d = *delegator.staged.delegations;
    for (DelegatedRole& r : d.roles) {
      if (std::set<std::string>(r.keyids.begin(), r.keyids.end()) != old_ids) continue;
      r.keyids = fresh.keyids;
      r.threshold = fresh.threshold;
      for (const auto& id : fresh.keyids) d.keys[id] = new_root.keys.at(id);
      if (auto it = targets_.find(r.name); it != targets_.end()) it->second.dirty = true;
      delegator.dirty = true;
    }
    std::set<std::string> used;
    for (const DelegatedRole& r : d.roles) used.insert(r.keyids.begin(), r.keyids.end());
    std::erase_if(d.keys, [&](const auto& kv) { return !used.count(kv.first); });
  }
}

Result<std::vector<stdfs::path>> Repository::unneeded_metadata(uint64_t keep_snapshots) const {
  std::vector<stdfs::path> out;
  if (!root_.body().consistent_snapshot) return out;
  const uint64_t current = snapshot_.body().version;
  const uint64_t oldest = current > keep_snapshots ? current - keep_snapshots + 1 : 1;
  std::set<std::string> needed;
  for (uint64_t v = oldest; v <= current; ++v) {
    stdfs::path sp = metadata_path("snapshot", v);
    auto snap = v == current ? Result<Metadata<Snapshot>>(snapshot_) : read_metadata<Snapshot>(sp);
    if (!snap) {
      if (snap.error().code() == Errc::not_found) continue;  // pruned before
      return tl::unexpected(snap.error().context("reading a snapshot the prune keeps"));
    }
    needed.insert(sp.filename().string());
    for (const auto& [file, meta] : snap->body().meta)
      if (file.size() > 5)
        needed.insert(
            metadata_path(file.substr(0, file.size() - 5), meta.version).filename().string());
  }
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(dir_ / "metadata", ec)) {
    std::string n = e.path().filename().string();
    size_t dot = n.find('.');
    if (dot == std::string::npos || dot == 0 || n.size() < 6 ||
        n.compare(n.size() - 5, 5, ".json") != 0)
      continue;
    if (!std::all_of(n.begin(), n.begin() + dot, [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    if (n.compare(dot, std::string::npos, ".root.json") == 0 || needed.count(n)) continue;
    out.push_back(e.path());
  }
  if (ec) return fail(Errc::io, "listing " + (dir_ / "metadata").string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

Status Repository::refresh_expiry(const std::string& role) {
  if (role == "root") return write_new_root(root_.body());
  if (role == "timestamp") return write_snapshot_and_timestamp(false);
  if (role == "snapshot") return write_snapshot_and_timestamp(true);
  MUP_TRY(renew(role));
  return publish();
}

Status Repository::renew(const std::string& role) {
  auto loaded = load_role(role);
  if (!loaded) return tl::unexpected(loaded.error());
  (*loaded)->dirty = true;
  return {};
}

Status Repository::sign_existing(const std::string& role, const crypto::PrivateKey& key) {
  std::string id = Key::from_public(key.public_key()).keyid();
  auto add = [&]<typename T>(Metadata<T>& md, const Role& r, const Role* also) -> Status {
    bool listed =
        std::find(r.keyids.begin(), r.keyids.end(), id) != r.keyids.end() ||
        (also && std::find(also->keyids.begin(), also->keyids.end(), id) != also->keyids.end());
    if (!listed)
      return fail(Errc::invalid_argument,
                  "key " + id.substr(0, 12) + " is not a " + role + " key; not signing");
    MUP_TRY(md.sign(key));
    return write_metadata(md, role);
  };
  if (role == "root") {
    std::optional<Metadata<Root>> prev;
    if (root_.body().version > 1) {
      auto p = read_metadata<Root>(metadata_path("root", root_.body().version - 1));
      if (p) prev = std::move(*p);
    }
    return add(root_, root_.body().roles.at("root"),
               prev ? &prev->body().roles.at("root") : nullptr);
  }
  if (role == "timestamp") return add(timestamp_, root_.body().roles.at("timestamp"), nullptr);
  if (role == "snapshot") {
    MUP_TRY(add(snapshot_, root_.body().roles.at("snapshot"), nullptr));
    // The snapshot's bytes changed: the timestamp must state the new length and hash.
    return write_snapshot_and_timestamp(false);
  }
  if (auto loaded = load_role(role); !loaded) return tl::unexpected(loaded.error());
  if (!role_keys(role)) MUP_TRY(load_all_roles());
  auto rk = role_keys(role);
  if (!rk) return tl::unexpected(rk.error());
  auto it = targets_.find(role);
  if (it == targets_.end() || !it->second.on_disk)
    return fail(Errc::not_found, "role " + role + " has not been published");
  return add(it->second.md, *rk->second, nullptr);
}

// ---------------------------------------------------------------------------------------

Result<VerifyReport> Repository::verify(const stdfs::path& dir, const Clock& clock) {
  VerifyReport rep;
  stdfs::path m = dir / "metadata";
  uint64_t newest = newest_root_version(m);
  if (newest == 0)
    return fail(Errc::not_found, dir.string() + " holds no 1.root.json: not a repository");
  const int64_t now = clock.now();
  auto problem = [&](std::string s) { rep.problems.push_back(std::move(s)); };
  auto expiry_check = [&](const Common& c, const std::string& what) {
    if (c.is_expired(now))
      problem(what + " expired at " + format_utc_time(c.expires));
    else if (c.expires - now < 86400)
      rep.warnings.push_back(what + " expires within a day, at " + format_utc_time(c.expires));
  };

  // The root chain.
  std::optional<Metadata<Root>> root;
  for (uint64_t v = 1; v <= newest; ++v) {
    std::string what = std::to_string(v) + ".root.json";
    auto md = read_metadata<Root>(m / what);
    if (!md) {
      problem(md.error().message());
      return rep;
    }
    if (md->body().version != v)
      problem(what + " says it is version " + std::to_string(md->body().version));
    if (auto s = md->verify_role(md->body().keys, md->body().roles.at("root"), what); !s)
      problem(s.error().message());
    if (root)
      if (auto s = md->verify_role(root->body().keys, root->body().roles.at("root"),
                                   what + " with the previous root's keys");
          !s)
        problem(s.error().message());
    root = std::move(*md);
  }
  rep.root_version = root->body().version;
  expiry_check(root->body(), std::to_string(newest) + ".root.json");
  const Root& r = root->body();
  auto path_of = [&](const std::string& role, uint64_t v) {
    std::string name = transfer::percent_encode(role) + ".json";
    if (r.consistent_snapshot) name = std::to_string(v) + "." + name;
    return m / name;
  };

  auto ts = read_metadata<Timestamp>(m / "timestamp.json");
  if (!ts) {
    problem(ts.error().message());
    return rep;
  }
  rep.timestamp_version = ts->body().version;
  if (auto s = ts->verify_role(r.keys, r.roles.at("timestamp"), "timestamp.json"); !s)
    problem(s.error().message());
  expiry_check(ts->body(), "timestamp.json");

  const MetaFile& sm = ts->body().snapshot_meta;
  stdfs::path sp = path_of("snapshot", sm.version);
  auto sbytes = fs::read_file(sp);
  if (!sbytes) {
    problem(sbytes.error().message());
    return rep;
  }
  if (auto s = sm.verify(*sbytes, sp.filename().string()); !s) problem(s.error().message());
  auto snap = Metadata<Snapshot>::parse(*sbytes);
  if (!snap) {
    problem(snap.error().message());
    return rep;
  }
  rep.snapshot_version = snap->body().version;
  if (snap->body().version != sm.version)
    problem(sp.filename().string() + " is version " + std::to_string(snap->body().version) +
            ", timestamp names " + std::to_string(sm.version));
  if (auto s = snap->verify_role(r.keys, r.roles.at("snapshot"), sp.filename().string()); !s)
    problem(s.error().message());
  expiry_check(snap->body(), sp.filename().string());

  // Targets roles, walking the delegation graph from "targets".
  std::set<std::string> seen;
  struct Todo {
    std::string role;
    const std::map<std::string, Key>* keys;
    Role signing;
  };
  std::vector<Metadata<Targets>> loaded;
  loaded.reserve(snap->body().meta.size() + 1);
  std::vector<Todo> todo{{"targets", &r.keys, r.roles.at("targets")}};
  while (!todo.empty()) {
    Todo t = std::move(todo.back());
    todo.pop_back();
    if (!seen.insert(t.role).second) continue;
    auto mit = snap->body().meta.find(t.role + ".json");
    if (mit == snap->body().meta.end()) {
      problem("snapshot does not list " + t.role + ".json");
      continue;
    }
    stdfs::path tp = path_of(t.role, mit->second.version);
    std::string what = tp.filename().string();
    auto tbytes = fs::read_file(tp);
    if (!tbytes) {
      problem(tbytes.error().message());
      continue;
    }
    if (auto s = mit->second.verify(*tbytes, what); !s) problem(s.error().message());
    auto md = Metadata<Targets>::parse(*tbytes);
    if (!md) {
      problem(md.error().message());
      continue;
    }
    if (md->body().version != mit->second.version)
      problem(what + " is version " + std::to_string(md->body().version) + ", snapshot names " +
              std::to_string(mit->second.version));
    if (auto s = md->verify_role(*t.keys, t.signing, what); !s) problem(s.error().message());
    expiry_check(md->body(), what);
    if (t.role == "targets") rep.targets_version = md->body().version;
    for (const auto& [path, f] : md->body().targets) {
      ++rep.target_count;
      stdfs::path fp = dir / "targets" / path;
      if (r.consistent_snapshot) {
        auto h = f.hashes.count("sha256") ? f.hashes.find("sha256") : f.hashes.begin();
        fp = fp.parent_path() / (h->second + "." + fp.filename().string());
      }
      auto data = fs::read_file(fp, f.length + 1);
      if (!data) {
        problem("target " + path + ": " + data.error().message());
        continue;
      }
      if (auto s = f.verify(*data, "target " + path); !s) problem(s.error().message());
    }
    loaded.push_back(std::move(*md));
    const Targets& body = loaded.back().body();
    if (body.delegations)
      for (const auto& d : body.delegations->roles)
        todo.push_back({d.name, &body.delegations->keys, d});
  }
  for (const auto& [file, meta] : snap->body().meta) {
    std::string role = file.size() > 5 ? file.substr(0, file.size() - 5) : file;
    if (!seen.count(role))
      rep.warnings.push_back("snapshot lists " + file + ", which no role delegates to");
  }
  return rep;
}

}  // namespace mup::tuf
