// The client workflow of TUF 1.0.x section 5, step by step (the numbers in comments are
// the spec's). Trust flows strictly downward: root -> timestamp -> snapshot -> targets ->
// delegated targets. A file is written to metadata_dir only once everything the spec asks
// of it was checked, and always from the exact bytes received.
#include "tuf/updater.hpp"

#include <algorithm>
#include <system_error>

#include "core/fs.hpp"

namespace mup::tuf {

namespace {

std::string strip_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// Each '/'-separated part of a target path percent-encoded, the separators kept.
std::string encode_target_path(std::string_view path) {
  std::string out;
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    out += transfer::percent_encode(path.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    out += '/';
    start = slash + 1;
  }
  return out;
}

tl::unexpected<Error> bad(std::string msg) {
  return fail(Errc::corrupt, std::move(msg));
}

}  // namespace

Updater::Updater(UpdaterConfig config, transfer::Fetcher& fetcher, const Clock& clock)
    : config_(std::move(config)), fetcher_(&fetcher), clock_(&clock) {
  config_.metadata_base_url = strip_slash(config_.metadata_base_url);
  config_.target_base_url = strip_slash(config_.target_base_url);
}

const Targets* Updater::targets() const {
  auto it = targets_.find("targets");
  return it == targets_.end() ? nullptr : &it->second.body();
}

std::filesystem::path Updater::local_path(const std::string& role) const {
  return config_.metadata_dir / (transfer::percent_encode(role) + ".json");
}

Status Updater::persist(const std::string& role, std::span<const uint8_t> bytes) {
  auto s = fs::write_file_atomic(local_path(role), bytes);
  if (!s) return tl::unexpected(Error(s.error()).context("saving trusted " + role + " metadata"));
  return {};
}

void Updater::forget(const std::string& role) {
  std::error_code ec;
  std::filesystem::remove(local_path(role), ec);
}

// 5.2: the trusted root, which must be signed by a threshold of its own root keys.
Result<Updater> Updater::create(UpdaterConfig config, transfer::Fetcher& fetcher,
                                const Clock& clock) {
  Updater u(std::move(config), fetcher, clock);
  auto bytes = fs::read_file(u.local_path("root"), u.config_.root_max_length);
  if (!bytes)
    return tl::unexpected(Error(bytes.error()).context("loading the trusted root metadata"));
  auto root = Metadata<Root>::parse(*bytes);
  if (!root) return tl::unexpected(Error(root.error()).context("trusted root.json"));
  const Role& rr = root->body().roles.at("root");
  if (auto s = root->verify_role(root->body().keys, rr, "trusted root.json"); !s)
    return tl::unexpected(s.error());
  u.root_ = std::move(*root);
  return u;
}

Result<std::vector<uint8_t>> Updater::fetch_metadata(const std::string& role,
                                                     std::optional<uint64_t> version,
                                                     uint64_t max_length) {
  std::string name = transfer::percent_encode(role) + ".json";
  if (version) name = std::to_string(*version) + "." + name;
  std::string url = config_.metadata_base_url + "/" + name;
  auto data = fetcher_->fetch(url, max_length);
  if (!data) return tl::unexpected(Error(data.error()).context("fetching " + name));
  return data;
}

Status Updater::refresh() {
  if (!refreshed_) refreshed_ = do_refresh();
  return *refreshed_;
}

Status Updater::do_refresh() {
  MUP_TRY(update_root());
  MUP_TRY(update_timestamp());
  MUP_TRY(update_snapshot());
  return update_targets_role("targets", "root");
}

// 5.3: root N+1, N+2, ... each verified by the previous root and by itself.
Status Updater::update_root() {
  const Root start = root_.body();
  for (uint32_t i = 0; i < config_.max_root_rotations; ++i) {
    uint64_t next = root_.body().version + 1;
    auto bytes = fetch_metadata("root", next, config_.root_max_length);
    if (!bytes) {
      if (bytes.error().code() == Errc::not_found) break;  // 5.3.3: no newer root
      return tl::unexpected(bytes.error());
    }
    std::string what = std::to_string(next) + ".root.json";
    auto md = Metadata<Root>::parse(*bytes);
    if (!md) return tl::unexpected(Error(md.error()).context(what));
    // 5.3.4: signed by a threshold of the trusted root's keys and of its own.
    MUP_TRY(
        md->verify_role(root_.body().keys, root_.body().roles.at("root"),
                        what + " with the keys of root v" + std::to_string(root_.body().version)));
    MUP_TRY(
        md->verify_role(md->body().keys, md->body().roles.at("root"), what + " with its own keys"));
    // 5.3.5: exactly the next version.
    if (md->body().version != next)
      return bad(what + " says it is version " + std::to_string(md->body().version) +
                 "; expected " + std::to_string(next) + " (rollback or mix-up); refusing it");
    // 5.3.7-8: trust it and persist it (expiry is only checked on the final root).
    MUP_TRY(persist("root", *bytes));
    root_ = std::move(*md);
  }
  // 5.3.10: the final root must not be expired (freeze attack).
  if (root_.body().is_expired(clock_->now()))
    return bad("root metadata v" + std::to_string(root_.body().version) + " expired at " +
               format_utc_time(root_.body().expires) +
               "; the repository must publish a new root (or the clock is wrong)");
  // 5.3.11: fast-forward attack recovery. Rotated timestamp or snapshot keys invalidate
  // the versions we trusted under the old keys.
  auto rotated = [&](const char* role) {
    return start.roles.at(role).keyids != root_.body().roles.at(role).keyids;
  };
  if (rotated("timestamp") || rotated("snapshot")) {
    forget("timestamp");
    forget("snapshot");
  }
  return {};
}

// Reads a local copy of a role; nullopt when absent, unreadable or not valid under the
// current trust (such a copy is just not a starting point, never an error).
template <typename T>
static std::optional<Metadata<T>> load_local_copy(const std::filesystem::path& p,
                                                  uint64_t max_length,
                                                  const std::map<std::string, Key>& keys,
                                                  const Role& role, const std::string& name) {
  auto bytes = fs::read_file(p, max_length);
  if (!bytes) return std::nullopt;
  auto md = Metadata<T>::parse(*bytes);
  if (!md) return std::nullopt;
  if (!md->verify_role(keys, role, name)) return std::nullopt;
  return std::move(*md);
}

// 5.4: timestamp.
Status Updater::update_timestamp() {
  const Root& root = root_.body();
  timestamp_ = load_local_copy<Timestamp>(local_path("timestamp"), config_.timestamp_max_length,
                                          root.keys, root.roles.at("timestamp"), "timestamp");
  auto bytes = fetch_metadata("timestamp", std::nullopt, config_.timestamp_max_length);
  if (!bytes) return tl::unexpected(bytes.error());
  auto md = Metadata<Timestamp>::parse(*bytes);
  if (!md) return tl::unexpected(Error(md.error()).context("timestamp.json"));
  // 5.4.2
  MUP_TRY(md->verify_role(root.keys, root.roles.at("timestamp"), "timestamp.json"));
  // 5.4.3: no rollback of the timestamp or of the snapshot version it names.
  if (timestamp_) {
    const Timestamp& old = timestamp_->body();
    const Timestamp& neu = md->body();
    if (neu.version < old.version)
      return bad("timestamp.json v" + std::to_string(neu.version) + " is older than trusted v" +
                 std::to_string(old.version) + " (rollback attack); refusing it");
    if (neu.version == old.version) {
      // Same version: keep what we already trust (a changed body with an unchanged
      // version is not an update).
      if (old.is_expired(clock_->now()))
        return bad("timestamp.json v" + std::to_string(old.version) + " expired at " +
                   format_utc_time(old.expires) +
                   " and no newer version is available "
                   "(freeze attack?)");
      return {};
    }
    if (neu.snapshot_meta.version < old.snapshot_meta.version)
      return bad("timestamp.json v" + std::to_string(neu.version) + " names snapshot v" +
                 std::to_string(neu.snapshot_meta.version) + ", older than trusted v" +
                 std::to_string(old.snapshot_meta.version) + " (rollback attack); refusing it");
  }
  // 5.4.4
  if (md->body().is_expired(clock_->now()))
    return bad("timestamp.json v" + std::to_string(md->body().version) + " expired at " +
               format_utc_time(md->body().expires) + " (freeze attack?); refusing it");
  MUP_TRY(persist("timestamp", *bytes));
  timestamp_ = std::move(*md);
  return {};
}

// 5.5: snapshot.
Status Updater::update_snapshot() {
  const Root& root = root_.body();
  const MetaFile& want = timestamp_->body().snapshot_meta;
  // The local snapshot (if still signed by current keys) is the reference for rollback
  // checks; if it is the version the timestamp names, and not expired, it is current.
  snapshot_ = load_local_copy<Snapshot>(local_path("snapshot"), config_.snapshot_max_length,
                                        root.keys, root.roles.at("snapshot"), "snapshot");
  if (snapshot_ && snapshot_->body().version == want.version &&
      !snapshot_->body().is_expired(clock_->now()))
    return {};

  std::optional<uint64_t> v;
  if (root.consistent_snapshot) v = want.version;
  auto bytes = fetch_metadata("snapshot", v, want.length.value_or(config_.snapshot_max_length));
  if (!bytes) return tl::unexpected(bytes.error());
  std::string what = (v ? std::to_string(*v) + "." : std::string()) + "snapshot.json";
  // 5.5.2: the hashes and length the timestamp states.
  MUP_TRY(want.verify(*bytes, what));
  auto md = Metadata<Snapshot>::parse(*bytes);
  if (!md) return tl::unexpected(Error(md.error()).context(what));
  // 5.5.3
  MUP_TRY(md->verify_role(root.keys, root.roles.at("snapshot"), what));
  // 5.5.4: the version the timestamp names.
  if (md->body().version != want.version)
    return bad(what + " is version " + std::to_string(md->body().version) +
               " but timestamp.json names version " + std::to_string(want.version) +
               " (mix-and-match attack?); refusing it");
  // 5.5.5: no targets role disappears or goes back in version.
  if (snapshot_) {
    for (const auto& [name, old] : snapshot_->body().meta) {
      auto it = md->body().meta.find(name);
      if (it == md->body().meta.end())
        return bad(what + " drops " + name + ", listed in trusted snapshot v" +
                   std::to_string(snapshot_->body().version) + " (rollback attack); refusing it");
      if (it->second.version < old.version)
        return bad(what + " lists " + name + " v" + std::to_string(it->second.version) +
                   ", older than trusted v" + std::to_string(old.version) +
                   " (rollback attack); refusing it");
    }
  }
  // 5.5.6
  if (md->body().is_expired(clock_->now()))
    return bad(what + " expired at " + format_utc_time(md->body().expires) +
               " (freeze attack?); refusing it");
  MUP_TRY(persist("snapshot", *bytes));
  snapshot_ = std::move(*md);
  return {};
}

// 5.6 (and 5.6.7 for delegated roles): `role` as delegated by `delegator` ("root" for the
// top-level targets role).
Status Updater::update_targets_role(const std::string& role, const std::string& delegator) {
  // Who may sign `role`, according to the delegator we reached it through.
  const std::map<std::string, Key>* keys = nullptr;
  const Role* signing = nullptr;
  if (delegator == "root") {
    keys = &root_.body().keys;
    signing = &root_.body().roles.at("targets");
  } else {
    const Targets& parent = targets_.at(delegator).body();
    if (parent.delegations) {
      keys = &parent.delegations->keys;
      for (const auto& r : parent.delegations->roles)
        if (r.name == role) signing = &r;
    }
    if (!signing) return fail(Errc::internal, delegator + " does not delegate to " + role);
  }
  std::string name = role + ".json";
  if (auto it = targets_.find(role); it != targets_.end()) {
    // Loaded before in this session, maybe through another delegator: it must satisfy
    // this delegator too (no authority inherited from another path).
    if (verified_via_.count({role, delegator})) return {};
    MUP_TRY(it->second.verify_role(*keys, *signing, name + " (as delegated by " + delegator + ")"));
    verified_via_.insert({role, delegator});
    return {};
  }
  auto meta_it = snapshot_->body().meta.find(name);
  if (meta_it == snapshot_->body().meta.end())
    return bad("snapshot v" + std::to_string(snapshot_->body().version) + " does not list " + name +
               "; refusing to use it");
  const MetaFile& want = meta_it->second;
  const int64_t now = clock_->now();

  if (auto local = load_local_copy<Targets>(local_path(role), config_.targets_max_length, *keys,
                                            *signing, name);
      local && local->body().version == want.version && !local->body().is_expired(now)) {
    targets_.emplace(role, std::move(*local));
    verified_via_.insert({role, delegator});
    return {};
  }

  std::optional<uint64_t> v;
  if (root_.body().consistent_snapshot) v = want.version;
  auto bytes = fetch_metadata(role, v, want.length.value_or(config_.targets_max_length));
  if (!bytes) return tl::unexpected(bytes.error());
  std::string what = (v ? std::to_string(*v) + "." : std::string()) + name;
  // 5.6.2
  MUP_TRY(want.verify(*bytes, what));
  auto md = Metadata<Targets>::parse(*bytes);
  if (!md) return tl::unexpected(Error(md.error()).context(what));
  // 5.6.3
  MUP_TRY(md->verify_role(*keys, *signing, what));
  // 5.6.4
  if (md->body().version != want.version)
    return bad(what + " is version " + std::to_string(md->body().version) + " but snapshot v" +
               std::to_string(snapshot_->body().version) + " names version " +
               std::to_string(want.version) + " (mix-and-match attack?); refusing it");
  // 5.6.5
  if (md->body().is_expired(now))
    return bad(what + " expired at " + format_utc_time(md->body().expires) +
               " (freeze attack?); refusing it");
  MUP_TRY(persist(role, *bytes));
  targets_.emplace(role, std::move(*md));
  verified_via_.insert({role, delegator});
  return {};
}

// 5.6.7: pre-order depth-first search of the delegation graph.
Result<TargetInfo> Updater::get_targetinfo(const std::string& target_path) {
  MUP_TRY(refresh());
  struct Visit {
    std::string role, delegator;
  };
  std::vector<Visit> stack{{"targets", "root"}};
  std::set<std::string> visited;
  while (!stack.empty() && visited.size() < config_.max_delegations) {
    Visit v = std::move(stack.back());
    stack.pop_back();
    if (visited.count(v.role)) continue;
    auto s = update_targets_role(v.role, v.delegator);
    if (!s) return tl::unexpected(Error(s.error()).context("looking up " + target_path));
    const Targets& t = targets_.at(v.role).body();
    if (auto it = t.targets.find(target_path); it != t.targets.end())
      return TargetInfo{target_path, it->second, v.role};
    visited.insert(v.role);
    if (!t.delegations) continue;
    std::vector<Visit> children;
    bool stop = false;
    for (const auto& d : t.delegations->roles) {
      if (!d.is_delegated_path(target_path)) continue;
      children.push_back({d.name, v.role});
      if (d.terminating) {
        stop = true;  // no other role (here or further up) is searched after this one
        break;
      }
    }
    if (stop) stack.clear();
    for (auto it = children.rbegin(); it != children.rend(); ++it) stack.push_back(*it);
  }
  return fail(Errc::not_found, "target " + target_path + " is not listed by any trusted role");
}

// Candidates from every role that may list paths with `prefix`, then each confirmed by the
// search a single lookup does, so that listing and lookup never disagree.
Result<std::vector<TargetInfo>> Updater::targets_with_prefix(const std::string& prefix) {
  MUP_TRY(refresh());
  struct Visit {
    std::string role, delegator;
  };
  std::vector<Visit> stack{{"targets", "root"}};
  std::set<std::string> visited, candidates;
  // Each role is visited once and must be in the snapshot: its size bounds the walk.
  const size_t limit = std::max<size_t>(config_.max_delegations, snapshot_->body().meta.size());
  while (!stack.empty() && visited.size() < limit) {
    Visit v = std::move(stack.back());
    stack.pop_back();
    if (!visited.insert(v.role).second) continue;
    auto s = update_targets_role(v.role, v.delegator);
    if (!s) return tl::unexpected(Error(s.error()).context("listing targets under " + prefix));
    const Targets& t = targets_.at(v.role).body();
    for (auto it = t.targets.lower_bound(prefix);
         it != t.targets.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
      candidates.insert(it->first);
    if (!t.delegations) continue;
    const auto& roles = t.delegations->roles;
    for (auto it = roles.rbegin(); it != roles.rend(); ++it)
      if (it->may_delegate_prefix(prefix)) stack.push_back({it->name, v.role});
  }
  std::vector<TargetInfo> out;
  for (const auto& path : candidates) {
    auto info = get_targetinfo(path);
    if (info) {
      out.push_back(std::move(*info));
    } else if (info.error().code() != Errc::not_found) {
      return tl::unexpected(info.error());
    }
  }
  return out;
}

bool Updater::is_cached(const TargetInfo& info, const std::filesystem::path& file) const {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return false;
  auto data = fs::read_file(file, info.file.length + 1);
  return data && info.file.verify(*data, file.string());
}

Result<std::vector<uint8_t>> Updater::fetch_target(const TargetInfo& info) {
  if (info.file.hashes.empty())
    return bad("target " + info.path + " has no hash in signed metadata");
  std::string rel;
  if (root_.body().consistent_snapshot && config_.prefix_targets_with_hash) {
    auto h = info.file.hashes.find("sha256");
    if (h == info.file.hashes.end()) h = info.file.hashes.begin();
    size_t slash = info.path.rfind('/');
    std::string dir = slash == std::string::npos ? "" : info.path.substr(0, slash + 1);
    std::string base = slash == std::string::npos ? info.path : info.path.substr(slash + 1);
    rel = encode_target_path(dir + h->second + "." + base);
  } else {
    rel = encode_target_path(info.path);
  }
  auto data = fetcher_->fetch(config_.target_base_url + "/" + rel, info.file.length);
  if (!data) return tl::unexpected(Error(data.error()).context("downloading target " + info.path));
  MUP_TRY(info.file.verify(*data, "target " + info.path));
  return data;
}

Status Updater::download_target(const TargetInfo& info, const std::filesystem::path& file) {
  auto data = fetch_target(info);
  if (!data) return tl::unexpected(data.error());
  auto s = fs::write_file_atomic(file, *data);
  if (!s) return tl::unexpected(Error(s.error()).context("saving target " + info.path));
  return {};
}

}  // namespace mup::tuf
