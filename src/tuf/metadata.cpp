// Parsing is written defensively: every field of untrusted metadata is looked up with a
// type check, and nothing from nlohmann::json that could throw (at(), get<T>() on a wrong
// type, parse()) is called on data that was not checked first.
#include "tuf/metadata.hpp"

#include <fnmatch.h>
#include <openssl/evp.h>

#include <algorithm>

#include "core/sha256.hpp"
#include "tuf/canonical_json.hpp"
#include "tuf/clock.hpp"

namespace mup::tuf {

namespace {

using json = nlohmann::json;

tl::unexpected<Error> bad(std::string msg) {
  return fail(Errc::corrupt, std::move(msg));
}

Result<const json*> member(const json& obj, const char* name, json::value_t type,
                           const char* type_name, std::string_view where) {
  auto it = obj.find(name);
  if (it == obj.end()) return bad(std::string(where) + ": missing field \"" + name + "\"");
  bool ok = it->type() == type ||
            (type == json::value_t::number_unsigned && it->type() == json::value_t::number_integer);
  if (!ok) return bad(std::string(where) + ": \"" + name + "\" must be " + type_name);
  return &*it;
}

Result<std::string> get_string(const json& obj, const char* name, std::string_view where) {
  auto v = member(obj, name, json::value_t::string, "a string", where);
  if (!v) return tl::unexpected(v.error());
  return (*v)->get<std::string>();
}

// A non-negative integer (nlohmann gives non-negative literals as number_unsigned).
Result<uint64_t> get_uint(const json& obj, const char* name, std::string_view where) {
  auto v = member(obj, name, json::value_t::number_unsigned, "a non-negative integer", where);
  if (!v) return tl::unexpected(v.error());
  if ((*v)->is_number_integer() && !(*v)->is_number_unsigned() && (*v)->get<int64_t>() < 0)
    return bad(std::string(where) + ": \"" + name + "\" must not be negative");
  return (*v)->get<uint64_t>();
}

Result<bool> get_bool(const json& obj, const char* name, std::string_view where) {
  auto v = member(obj, name, json::value_t::boolean, "true or false", where);
  if (!v) return tl::unexpected(v.error());
  return (*v)->get<bool>();
}

Result<const json*> get_object(const json& obj, const char* name, std::string_view where) {
  return member(obj, name, json::value_t::object, "an object", where);
}

Result<std::vector<std::string>> get_unique_strings(const json& obj, const char* name,
                                                    std::string_view where) {
  auto v = member(obj, name, json::value_t::array, "an array", where);
  if (!v) return tl::unexpected(v.error());
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& e : **v) {
    if (!e.is_string())
      return bad(std::string(where) + ": \"" + name + "\" must hold only strings");
    if (!seen.insert(e.get<std::string>()).second)
      return bad(std::string(where) + ": \"" + name + "\" lists \"" + e.get<std::string>() +
                 "\" twice");
    out.push_back(e.get<std::string>());
  }
  return out;
}

json unrecognized_of(const json& obj, std::initializer_list<std::string_view> known) {
  json out = json::object();
  for (const auto& [k, v] : obj.items())
    if (std::find(known.begin(), known.end(), k) == known.end()) out[k] = v;
  return out;
}

void merge_unrecognized(json& out, const json& extra) {
  if (!extra.is_object()) return;
  for (const auto& [k, v] : extra.items())
    if (!out.contains(k)) out[k] = v;
}

Result<std::map<std::string, std::string>> parse_hashes(const json& obj, std::string_view where) {
  auto h = get_object(obj, "hashes", where);
  if (!h) return tl::unexpected(h.error());
  std::map<std::string, std::string> out;
  for (const auto& [alg, v] : (*h)->items()) {
    if (!v.is_string()) return bad(std::string(where) + ": hash \"" + alg + "\" must be a string");
    out[alg] = v.get<std::string>();
  }
  if (out.empty()) return bad(std::string(where) + ": \"hashes\" must not be empty");
  return out;
}

Result<Common> parse_common(const json& j, std::string_view type) {
  std::string where = std::string(type) + " metadata";
  if (!j.is_object()) return bad(where + ": \"signed\" must be an object");
  auto t = get_string(j, "_type", where);
  if (!t) return tl::unexpected(t.error());
  if (*t != type)
    return bad("expected " + std::string(type) + " metadata, got _type \"" + t->substr(0, 40) +
               "\"");
  Common c;
  auto sv = get_string(j, "spec_version", where);
  if (!sv) return tl::unexpected(sv.error());
  {
    // "MAJOR.MINOR" or "MAJOR.MINOR.PATCH", digits only; we implement major 1.
    std::vector<std::string> parts(1);
    for (char ch : *sv) {
      if (ch == '.')
        parts.emplace_back();
      else if (ch >= '0' && ch <= '9')
        parts.back() += ch;
      else
        parts.clear(), parts.emplace_back("x");
    }
    bool well_formed = (parts.size() == 2 || parts.size() == 3) &&
                       std::none_of(parts.begin(), parts.end(),
                                    [](const std::string& p) { return p.empty() || p == "x"; });
    if (!well_formed)
      return bad(where + ": spec_version \"" + sv->substr(0, 40) + "\" is malformed");
    if (parts[0] != "1")
      return fail(Errc::unsupported,
                  where + ": spec_version " + *sv + " is not 1.x; this client implements TUF 1.0");
  }
  c.spec_version = *sv;
  auto v = get_uint(j, "version", where);
  if (!v) return tl::unexpected(v.error());
  if (*v == 0) return bad(where + ": version must be at least 1");
  c.version = *v;
  auto e = get_string(j, "expires", where);
  if (!e) return tl::unexpected(e.error());
  auto ex = parse_utc_time(*e);
  if (!ex) return tl::unexpected(Error(ex.error()).context(where));
  c.expires = *ex;
  return c;
}

void common_to_json(const Common& c, std::string_view type, json& out) {
  out["_type"] = type;
  out["spec_version"] = c.spec_version;
  out["version"] = c.version;
  out["expires"] = format_utc_time(c.expires);
}

Result<Key> parse_key(const json& j, std::string_view where) {
  if (!j.is_object()) return bad(std::string(where) + " must be an object");
  Key k;
  auto kt = get_string(j, "keytype", where);
  if (!kt) return tl::unexpected(kt.error());
  auto sc = get_string(j, "scheme", where);
  if (!sc) return tl::unexpected(sc.error());
  auto kv = get_object(j, "keyval", where);
  if (!kv) return tl::unexpected(kv.error());
  auto pub = get_string(**kv, "public", where);
  if (!pub) return tl::unexpected(pub.error());
  k.keytype = *kt;
  k.scheme = *sc;
  k.public_value = *pub;
  k.unrecognized = unrecognized_of(j, {"keytype", "scheme", "keyval"});
  return k;
}

// The SHA-256 of a key's canonical form: of the whole key object, or of its keytype, scheme
// and keyval only (implementations differ on whether fields such as keyid_hash_algorithms
// count; both are the key's own hash).
std::string core_keyid(const Key& k) {
  auto c = canonical_json_bytes(
      json{{"keytype", k.keytype}, {"scheme", k.scheme}, {"keyval", {{"public", k.public_value}}}});
  return c ? sha256(*c).hex() : std::string();
}

// TUF 1.0: a key ID is the hash of its key. One that is not could name a key twice (under
// two IDs) and make one signature count twice toward a threshold: refused, naming it.
Result<std::map<std::string, Key>> parse_keys(const json& obj, std::string_view where) {
  auto ks = get_object(obj, "keys", where);
  if (!ks) return tl::unexpected(ks.error());
  std::map<std::string, Key> out;
  for (const auto& [id, v] : (*ks)->items()) {
    auto k = parse_key(v, std::string(where) + ": key " + id.substr(0, 16));
    if (!k) return tl::unexpected(k.error());
    if (id != k->keyid() && id != core_keyid(*k))
      return bad(std::string(where) + ": key ID " + id.substr(0, 16) +
                 "... is not the SHA-256 of its key (" + core_keyid(*k).substr(0, 16) +
                 "...): TUF key IDs are the hashes of their keys; refusing it");
    out.emplace(id, std::move(*k));
  }
  return out;
}

json keys_to_json(const std::map<std::string, Key>& keys) {
  json out = json::object();
  for (const auto& [id, k] : keys) out[id] = k.to_json();
  return out;
}

Result<Role> parse_role(const json& j, std::string_view where) {
  if (!j.is_object()) return bad(std::string(where) + " must be an object");
  Role r;
  auto ids = get_unique_strings(j, "keyids", where);
  if (!ids) return tl::unexpected(ids.error());
  auto th = get_uint(j, "threshold", where);
  if (!th) return tl::unexpected(th.error());
  if (*th < 1 || *th > UINT32_MAX)
    return bad(std::string(where) + ": threshold must be at least 1");
  r.keyids = std::move(*ids);
  r.threshold = static_cast<uint32_t>(*th);
  return r;
}

void role_to_json(const Role& r, json& out) {
  out["keyids"] = r.keyids;
  out["threshold"] = r.threshold;
}

Result<MetaFile> parse_metafile(const json& j, std::string_view where) {
  if (!j.is_object()) return bad(std::string(where) + " must be an object");
  MetaFile m;
  auto v = get_uint(j, "version", where);
  if (!v) return tl::unexpected(v.error());
  if (*v == 0) return bad(std::string(where) + ": version must be at least 1");
  m.version = *v;
  if (j.contains("length")) {
    auto l = get_uint(j, "length", where);
    if (!l) return tl::unexpected(l.error());
    m.length = *l;
  }
  if (j.contains("hashes")) {
    auto h = parse_hashes(j, where);
    if (!h) return tl::unexpected(h.error());
    m.hashes = std::move(*h);
  }
  return m;
}

json metafile_to_json(const MetaFile& m) {
  json out = json::object();
  out["version"] = m.version;
  if (m.length) out["length"] = *m.length;
  if (!m.hashes.empty()) out["hashes"] = m.hashes;
  return out;
}

Status verify_length_and_hashes(std::span<const uint8_t> data, std::optional<uint64_t> length,
                                const std::map<std::string, std::string>& hashes,
                                std::string_view what) {
  if (length && data.size() != *length)
    return bad(std::string(what) + ": length is " + std::to_string(data.size()) +
               " bytes, signed metadata says " + std::to_string(*length));
  for (const auto& [alg, expected] : hashes) {
    auto got = hash_hex(alg, data);
    if (!got) return bad(std::string(what) + ": cannot check hash: " + got.error().message());
    std::string lower = expected;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (*got != lower)
      return bad(std::string(what) + ": " + alg + " is " + got->substr(0, 16) +
                 "..., signed metadata says " + lower.substr(0, 16) + "...");
  }
  return {};
}

Result<DelegatedRole> parse_delegated_role(const json& j) {
  if (!j.is_object()) return bad("delegated role must be an object");
  auto name = get_string(j, "name", "delegated role");
  if (!name) return tl::unexpected(name.error());
  std::string where = "delegated role \"" + name->substr(0, 64) + "\"";
  if (*name == "root" || *name == "timestamp" || *name == "snapshot" || *name == "targets")
    return bad(where + ": a top-level role name cannot be delegated");
  auto r = parse_role(j, where);
  if (!r) return tl::unexpected(r.error());
  DelegatedRole d;
  static_cast<Role&>(d) = std::move(*r);
  d.name = *name;
  auto term = get_bool(j, "terminating", where);
  if (!term) return tl::unexpected(term.error());
  d.terminating = *term;
  bool has_paths = j.contains("paths"), has_prefixes = j.contains("path_hash_prefixes");
  if (has_paths == has_prefixes)
    return bad(where + ": exactly one of \"paths\" and \"path_hash_prefixes\" must be set");
  if (has_paths) {
    auto p = member(j, "paths", json::value_t::array, "an array", where);
    if (!p) return tl::unexpected(p.error());
    d.paths.emplace();
    for (const auto& e : **p) {
      if (!e.is_string()) return bad(where + ": \"paths\" must hold only strings");
      d.paths->push_back(e.get<std::string>());
    }
  } else {
    auto p = member(j, "path_hash_prefixes", json::value_t::array, "an array", where);
    if (!p) return tl::unexpected(p.error());
    d.path_hash_prefixes.emplace();
    for (const auto& e : **p) {
      if (!e.is_string()) return bad(where + ": \"path_hash_prefixes\" must hold only strings");
      d.path_hash_prefixes->push_back(e.get<std::string>());
    }
  }
  return d;
}

// One '/'-free part of a target path against one part of a pattern.
bool part_matches(const std::string& pattern, const std::string& part) {
  return ::fnmatch(pattern.c_str(), part.c_str(), FNM_NOESCAPE) == 0;
}

std::vector<std::string> split_slash(std::string_view s) {
  std::vector<std::string> parts(1);
  for (char c : s) {
    if (c == '/')
      parts.emplace_back();
    else
      parts.back() += c;
  }
  return parts;
}

Result<std::vector<Signature>> parse_signatures(const json& env) {
  auto sigs = member(env, "signatures", json::value_t::array, "an array", "metadata");
  if (!sigs) return tl::unexpected(sigs.error());
  std::vector<Signature> out;
  std::set<std::string> seen;
  for (const auto& s : **sigs) {
    if (!s.is_object()) return bad("metadata: each signature must be an object");
    auto id = get_string(s, "keyid", "signature");
    if (!id) return tl::unexpected(id.error());
    auto sig = get_string(s, "sig", "signature");
    if (!sig) return tl::unexpected(sig.error());
    if (!seen.insert(*id).second)
      return bad("metadata: key " + id->substr(0, 16) +
                 " signed twice: a key id may appear once in \"signatures\"");
    out.push_back({*id, *sig});
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Small value types

Key Key::from_public(const crypto::PublicKey& k) {
  Key out;
  out.keytype = k.keytype();
  out.scheme = k.scheme();
  out.public_value = k.public_value();
  return out;
}

json Key::to_json() const {
  json out = json::object();
  out["keytype"] = keytype;
  out["scheme"] = scheme;
  out["keyval"] = json{{"public", public_value}};
  merge_unrecognized(out, unrecognized);
  return out;
}

std::string Key::keyid() const {
  auto c = canonical_json_bytes(to_json());
  return c ? sha256(*c).hex() : std::string();
}

Result<crypto::PublicKey> Key::public_key() const {
  return crypto::PublicKey::from_tuf(keytype, scheme, public_value);
}

bool DelegatedRole::is_delegated_path(std::string_view target_path) const {
  if (paths) {
    auto target_parts = split_slash(target_path);
    for (const auto& pattern : *paths) {
      auto pattern_parts = split_slash(pattern);
      if (pattern_parts.size() != target_parts.size()) continue;
      bool all = true;
      for (size_t i = 0; i < pattern_parts.size() && all; ++i)
        all = part_matches(pattern_parts[i], target_parts[i]);
      if (all) return true;
    }
    return false;
  }
  if (path_hash_prefixes) {
    std::string h =
        sha256({reinterpret_cast<const uint8_t*>(target_path.data()), target_path.size()}).hex();
    for (const auto& p : *path_hash_prefixes)
      if (h.compare(0, p.size(), p) == 0) return true;
  }
  return false;
}

bool DelegatedRole::may_delegate_prefix(std::string_view prefix) const {
  if (!paths) return path_hash_prefixes.has_value();
  for (const auto& pattern : *paths) {
    size_t i = 0;
    for (; i < pattern.size() && i < prefix.size(); ++i) {
      char c = pattern[i];
      if (c == '*' || c == '?' || c == '[') return true;
      if (c != prefix[i]) break;
    }
    if (i == prefix.size()) return true;
  }
  return false;
}

Status MetaFile::verify(std::span<const uint8_t> data, std::string_view what) const {
  return verify_length_and_hashes(data, length, hashes, what);
}

TargetFile TargetFile::for_data(std::span<const uint8_t> data, nlohmann::json custom) {
  TargetFile t;
  t.length = data.size();
  t.hashes["sha256"] = sha256(data).hex();
  t.custom = std::move(custom);
  return t;
}

Status TargetFile::verify(std::span<const uint8_t> data, std::string_view what) const {
  if (hashes.empty()) return bad(std::string(what) + ": signed metadata lists no hash");
  return verify_length_and_hashes(data, length, hashes, what);
}

void Root::add_key(const std::string& role, const Key& key) {
  std::string id = key.keyid();
  keys.emplace(id, key);
  auto& ids = roles[role].keyids;
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

void Root::remove_key(const std::string& role, const std::string& keyid) {
  auto& ids = roles[role].keyids;
  ids.erase(std::remove(ids.begin(), ids.end(), keyid), ids.end());
  for (const auto& [name, r] : roles)
    if (std::find(r.keyids.begin(), r.keyids.end(), keyid) != r.keyids.end()) return;
  keys.erase(keyid);
}

Result<std::string> hash_hex(std::string_view algorithm, std::span<const uint8_t> data) {
  const EVP_MD* md = nullptr;
  if (algorithm == "sha256")
    md = EVP_sha256();
  else if (algorithm == "sha512")
    md = EVP_sha512();
  else if (algorithm == "sha384")
    md = EVP_sha384();
  else if (algorithm == "sha224")
    md = EVP_sha224();
  else
    return fail(Errc::unsupported,
                "unknown hash algorithm \"" + std::string(algorithm.substr(0, 32)) + "\"");
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), out, &n, md, nullptr) != 1)
    return fail(Errc::internal, "EVP_Digest failed");
  return crypto::to_hex({out, n});
}

// ---------------------------------------------------------------------------------------
// Bodies <-> JSON

json to_json(const Root& r) {
  json out = json::object();
  common_to_json(r, Root::kType, out);
  out["consistent_snapshot"] = r.consistent_snapshot;
  out["keys"] = keys_to_json(r.keys);
  json roles = json::object();
  for (const auto& [name, role] : r.roles) role_to_json(role, roles[name]);
  out["roles"] = roles;
  merge_unrecognized(out, r.unrecognized);
  return out;
}

json to_json(const Timestamp& t) {
  json out = json::object();
  common_to_json(t, Timestamp::kType, out);
  out["meta"] = json{{"snapshot.json", metafile_to_json(t.snapshot_meta)}};
  merge_unrecognized(out, t.unrecognized);
  return out;
}

json to_json(const Snapshot& s) {
  json out = json::object();
  common_to_json(s, Snapshot::kType, out);
  json meta = json::object();
  for (const auto& [name, m] : s.meta) meta[name] = metafile_to_json(m);
  out["meta"] = meta;
  merge_unrecognized(out, s.unrecognized);
  return out;
}

json to_json(const Targets& t) {
  json out = json::object();
  common_to_json(t, Targets::kType, out);
  json targets = json::object();
  for (const auto& [path, f] : t.targets) {
    json e = json::object();
    e["length"] = f.length;
    e["hashes"] = f.hashes;
    if (!f.custom.is_null()) e["custom"] = f.custom;
    targets[path] = e;
  }
  out["targets"] = targets;
  if (t.delegations) {
    json d = json::object();
    d["keys"] = keys_to_json(t.delegations->keys);
    json roles = json::array();
    for (const auto& r : t.delegations->roles) {
      json e = json::object();
      e["name"] = r.name;
      role_to_json(r, e);
      e["terminating"] = r.terminating;
      if (r.paths) e["paths"] = *r.paths;
      if (r.path_hash_prefixes) e["path_hash_prefixes"] = *r.path_hash_prefixes;
      roles.push_back(e);
    }
    d["roles"] = roles;
    out["delegations"] = d;
  }
  merge_unrecognized(out, t.unrecognized);
  return out;
}

Result<Root> root_from_json(const json& j) {
  auto c = parse_common(j, Root::kType);
  if (!c) return tl::unexpected(c.error());
  Root r;
  static_cast<Common&>(r) = std::move(*c);
  if (j.contains("consistent_snapshot")) {
    auto cs = get_bool(j, "consistent_snapshot", "root metadata");
    if (!cs) return tl::unexpected(cs.error());
    r.consistent_snapshot = *cs;
  } else {
    r.consistent_snapshot = false;
  }
  auto keys = parse_keys(j, "root metadata");
  if (!keys) return tl::unexpected(keys.error());
  r.keys = std::move(*keys);
  auto roles = get_object(j, "roles", "root metadata");
  if (!roles) return tl::unexpected(roles.error());
  for (const auto& [name, v] : (*roles)->items()) {
    auto role = parse_role(v, "root metadata: role " + name.substr(0, 32));
    if (!role) return tl::unexpected(role.error());
    r.roles.emplace(name, std::move(*role));
  }
  for (const char* want : {"root", "timestamp", "snapshot", "targets"})
    if (!r.roles.count(want))
      return bad(std::string("root metadata: role \"") + want + "\" is missing");
  if (r.roles.size() != 4)
    return bad("root metadata: \"roles\" must hold exactly root, timestamp, snapshot, targets");
  r.unrecognized = unrecognized_of(
      j, {"_type", "spec_version", "version", "expires", "consistent_snapshot", "keys", "roles"});
  return r;
}

Result<Timestamp> timestamp_from_json(const json& j) {
  auto c = parse_common(j, Timestamp::kType);
  if (!c) return tl::unexpected(c.error());
  Timestamp t;
  static_cast<Common&>(t) = std::move(*c);
  auto meta = get_object(j, "meta", "timestamp metadata");
  if (!meta) return tl::unexpected(meta.error());
  auto it = (*meta)->find("snapshot.json");
  if (it == (*meta)->end()) return bad("timestamp metadata: meta has no \"snapshot.json\"");
  auto m = parse_metafile(*it, "timestamp metadata: snapshot.json");
  if (!m) return tl::unexpected(m.error());
  t.snapshot_meta = std::move(*m);
  t.unrecognized = unrecognized_of(j, {"_type", "spec_version", "version", "expires", "meta"});
  return t;
}

Result<Snapshot> snapshot_from_json(const json& j) {
  auto c = parse_common(j, Snapshot::kType);
  if (!c) return tl::unexpected(c.error());
  Snapshot s;
  static_cast<Common&>(s) = std::move(*c);
  auto meta = get_object(j, "meta", "snapshot metadata");
  if (!meta) return tl::unexpected(meta.error());
  for (const auto& [name, v] : (*meta)->items()) {
    auto m = parse_metafile(v, "snapshot metadata: " + name.substr(0, 64));
    if (!m) return tl::unexpected(m.error());
    s.meta.emplace(name, std::move(*m));
  }
  s.unrecognized = unrecognized_of(j, {"_type", "spec_version", "version", "expires", "meta"});
  return s;
}

Result<Targets> targets_from_json(const json& j) {
  auto c = parse_common(j, Targets::kType);
  if (!c) return tl::unexpected(c.error());
  Targets t;
  static_cast<Common&>(t) = std::move(*c);
  auto targets = get_object(j, "targets", "targets metadata");
  if (!targets) return tl::unexpected(targets.error());
  for (const auto& [path, v] : (*targets)->items()) {
    std::string where = "targets metadata: target " + path.substr(0, 64);
    if (!v.is_object()) return bad(where + " must be an object");
    TargetFile f;
    auto len = get_uint(v, "length", where);
    if (!len) return tl::unexpected(len.error());
    f.length = *len;
    auto h = parse_hashes(v, where);
    if (!h) return tl::unexpected(h.error());
    f.hashes = std::move(*h);
    if (auto it = v.find("custom"); it != v.end()) {
      if (!it->is_object()) return bad(where + ": \"custom\" must be an object");
      f.custom = *it;
    }
    t.targets.emplace(path, std::move(f));
  }
  if (auto it = j.find("delegations"); it != j.end()) {
    if (!it->is_object()) return bad("targets metadata: \"delegations\" must be an object");
    if (it->contains("succinct_roles"))
      return fail(Errc::unsupported,
                  "targets metadata: succinct_roles delegations (TAP 15) "
                  "are not supported");
    Delegations d;
    auto keys = parse_keys(*it, "targets metadata: delegations");
    if (!keys) return tl::unexpected(keys.error());
    d.keys = std::move(*keys);
    auto roles = member(*it, "roles", json::value_t::array, "an array", "delegations");
    if (!roles) return tl::unexpected(roles.error());
    std::set<std::string> names;
    for (const auto& rj : **roles) {
      auto r = parse_delegated_role(rj);
      if (!r) return tl::unexpected(r.error());
      if (!names.insert(r->name).second)
        return bad("targets metadata: role \"" + r->name.substr(0, 64) + "\" delegated twice");
      d.roles.push_back(std::move(*r));
    }
    t.delegations = std::move(d);
  }
  t.unrecognized =
      unrecognized_of(j, {"_type", "spec_version", "version", "expires", "targets", "delegations"});
  return t;
}

// ---------------------------------------------------------------------------------------
// The envelope

namespace {

Result<Root> body_from_json(const json& j, Root*) {
  return root_from_json(j);
}
Result<Timestamp> body_from_json(const json& j, Timestamp*) {
  return timestamp_from_json(j);
}
Result<Snapshot> body_from_json(const json& j, Snapshot*) {
  return snapshot_from_json(j);
}
Result<Targets> body_from_json(const json& j, Targets*) {
  return targets_from_json(j);
}

}  // namespace

template <typename T>
Result<Metadata<T>> Metadata<T>::parse(std::span<const uint8_t> bytes) {
  json env = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (env.is_discarded()) return bad(std::string(T::kType) + " metadata is not valid JSON");
  if (!env.is_object()) return bad(std::string(T::kType) + " metadata must be a JSON object");
  auto sj = get_object(env, "signed", std::string(T::kType) + " metadata");
  if (!sj) return tl::unexpected(sj.error());
  auto sigs = parse_signatures(env);
  if (!sigs) return tl::unexpected(Error(sigs.error()).context(std::string(T::kType)));
  auto body = body_from_json(**sj, static_cast<T*>(nullptr));
  if (!body) return tl::unexpected(body.error());
  auto cb = canonical_json_bytes(**sj);
  if (!cb) return bad(std::string(T::kType) + " metadata: " + cb.error().message());
  Metadata md;
  md.body_ = std::move(*body);
  md.signed_bytes_ = std::move(*cb);
  md.signatures_ = std::move(*sigs);
  return md;
}

template <typename T>
Result<Metadata<T>> Metadata<T>::from_body(T body) {
  Metadata md;
  auto cb = canonical_json_bytes(to_json(body));
  if (!cb) return fail(Errc::invalid_argument, cb.error().message());
  md.signed_bytes_ = std::move(*cb);
  md.body_ = std::move(body);
  return md;
}

template <typename T>
json Metadata<T>::signed_json() const {
  return json::parse(signed_bytes_.begin(), signed_bytes_.end(), nullptr, false);
}

template <typename T>
Status Metadata<T>::sign(const crypto::PrivateKey& key) {
  auto sig = key.sign(signed_bytes_);
  if (!sig) return tl::unexpected(Error(sig.error()).context("signing " + std::string(T::kType)));
  std::string id = Key::from_public(key.public_key()).keyid();
  std::erase_if(signatures_, [&](const Signature& s) { return s.keyid == id; });
  signatures_.push_back({id, crypto::to_hex(*sig)});
  return {};
}

template <typename T>
Status Metadata<T>::verify_role(const std::map<std::string, Key>& keys, const Role& role,
                                std::string_view role_name) const {
  // Counted per key, not per key ID: one key listed under two IDs counts once.
  std::set<std::string> counted;
  for (const auto& id : role.keyids) {
    auto kit = keys.find(id);
    if (kit == keys.end()) continue;
    const std::string key = core_keyid(kit->second);
    if (counted.count(key)) continue;
    auto sit = std::find_if(signatures_.begin(), signatures_.end(),
                            [&](const Signature& s) { return s.keyid == id; });
    if (sit == signatures_.end()) continue;
    auto pk = kit->second.public_key();
    if (!pk) continue;
    auto sig = crypto::from_hex(sit->sig);
    if (!sig) continue;
    if (pk->verify(signed_bytes_, *sig)) counted.insert(key);
  }
  if (counted.size() < role.threshold)
    return bad("signature check failed for " + std::string(role_name) + " (" +
               std::string(T::kType) + " v" + std::to_string(body_.version) + "): threshold " +
               std::to_string(role.threshold) + ", valid " + std::to_string(counted.size()) +
               "; refusing it");
  return {};
}

template <typename T>
std::vector<uint8_t> Metadata<T>::to_bytes() const {
  // {"signatures":[...],"signed":<signed_bytes_>}: canonical JSON sorts the two keys so, and
  // "signed" is canonical already (no second serialisation of a large body).
  json sigs = json::array();
  for (const auto& s : signatures_) sigs.push_back(json{{"keyid", s.keyid}, {"sig", s.sig}});
  auto sb = canonical_json_bytes(sigs);
  if (!sb) return {};  // hex strings only: cannot fail
  static constexpr std::string_view kHead = "{\"signatures\":", kMid = ",\"signed\":";
  std::vector<uint8_t> out;
  out.reserve(kHead.size() + sb->size() + kMid.size() + signed_bytes_.size() + 1);
  out.insert(out.end(), kHead.begin(), kHead.end());
  out.insert(out.end(), sb->begin(), sb->end());
  out.insert(out.end(), kMid.begin(), kMid.end());
  out.insert(out.end(), signed_bytes_.begin(), signed_bytes_.end());
  out.push_back('}');
  return out;
}

template class Metadata<Root>;
template class Metadata<Timestamp>;
template class Metadata<Snapshot>;
template class Metadata<Targets>;

}  // namespace mup::tuf
