// TUF 1.0 metadata: the four top-level roles, delegations, the signed envelope, strict
// parsing of untrusted bytes, signing and threshold verification.
//
// Parsing (Metadata<T>::parse) accepts only well-formed metadata of the expected _type:
// every required field present with the right JSON type, spec_version major 1, expires
// in "YYYY-MM-DDTHH:MM:SSZ", integers only, each keyid at most once in "signatures" and in
// every role's "keyids" (duplicates are an error, never a way to reach a threshold).
// Unknown fields are tolerated and kept: the envelope keeps the "signed" object exactly as
// parsed, and signatures are checked over its canonical JSON.
//
// Errors: Errc::corrupt for malformed or wrongly typed metadata, Errc::unsupported for a
// spec_version we do not know, Errc::invalid_argument for bad arguments when writing.
// All types are plain values; const functions are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "crypto/crypto.hpp"

namespace mup::tuf {

inline constexpr std::string_view kSpecVersion = "1.0.31";

// A public key as TUF writes it: {"keytype", "scheme", "keyval": {"public"}}.
struct Key {
  std::string keytype;
  std::string scheme;
  std::string public_value;
  nlohmann::json unrecognized = nlohmann::json::object();  // other fields, kept verbatim

  static Key from_public(const crypto::PublicKey& k);
  nlohmann::json to_json() const;
  // sha256 of the canonical JSON of to_json(): the key id TUF tools compute.
  std::string keyid() const;
  [[nodiscard]] Result<crypto::PublicKey> public_key() const;
  bool operator==(const Key&) const = default;
};

// Who may sign a role: key ids and how many distinct ones must sign.
struct Role {
  std::vector<std::string> keyids;
  uint32_t threshold = 1;
  bool operator==(const Role&) const = default;
};

struct DelegatedRole : Role {
  std::string name;
  bool terminating = false;
  // Exactly one of these is set.
  std::optional<std::vector<std::string>> paths;
  std::optional<std::vector<std::string>> path_hash_prefixes;

  // True when this role is trusted for `target_path`: a "paths" pattern matches it
  // (shell-style: '*' and '?' never match '/', "[...]" classes, same number of
  // '/'-separated parts), or the hex sha256 of the path starts with a hash prefix.
  bool is_delegated_path(std::string_view target_path) const;
  // True when this role may be trusted for some path that starts with `prefix` (a paths
  // pattern whose literal start agrees with it, or any hash prefixes): whether a search
  // for such paths must visit the role. Conservative: wildcards count as matching.
  bool may_delegate_prefix(std::string_view prefix) const;
  bool operator==(const DelegatedRole&) const = default;
};

struct Delegations {
  std::map<std::string, Key> keys;
  std::vector<DelegatedRole> roles;  // in priority order
  bool operator==(const Delegations&) const = default;
};

// A metadata file named in timestamp ("snapshot.json") or snapshot ("<role>.json").
struct MetaFile {
  uint64_t version = 1;
  std::optional<uint64_t> length;
  std::map<std::string, std::string> hashes;  // algorithm -> lowercase hex; may be empty

  // Errc::corrupt on a length or hash mismatch, or a hash algorithm we cannot compute.
  [[nodiscard]] Status verify(std::span<const uint8_t> data, std::string_view what) const;
  bool operator==(const MetaFile&) const = default;
};

// A target file: its exact length and at least one hash (all are checked).
struct TargetFile {
  uint64_t length = 0;
  std::map<std::string, std::string> hashes;
  nlohmann::json custom;  // null when absent

  // A TargetFile for `data` with a sha256 hash (and `custom`, if not null).
  static TargetFile for_data(std::span<const uint8_t> data, nlohmann::json custom = nullptr);
  [[nodiscard]] Status verify(std::span<const uint8_t> data, std::string_view what) const;
  bool operator==(const TargetFile&) const = default;
};

// Fields every role has.
struct Common {
  std::string spec_version{kSpecVersion};
  uint64_t version = 1;
  int64_t expires = 0;                                     // unix seconds
  nlohmann::json unrecognized = nlohmann::json::object();  // other top-level fields

  bool is_expired(int64_t now) const { return now >= expires; }
};

struct Root : Common {
  static constexpr std::string_view kType = "root";
  bool consistent_snapshot = true;
  std::map<std::string, Key> keys;
  std::map<std::string, Role> roles;  // exactly root, timestamp, snapshot, targets

  // Adds `key` (if new) to keys and to role's keyids (if not there yet).
  void add_key(const std::string& role, const Key& key);
  // Removes the key id from role; drops the key when no role uses it any more.
  void remove_key(const std::string& role, const std::string& keyid);
};

struct Timestamp : Common {
  static constexpr std::string_view kType = "timestamp";
  MetaFile snapshot_meta;  // meta["snapshot.json"]
};

struct Snapshot : Common {
  static constexpr std::string_view kType = "snapshot";
  std::map<std::string, MetaFile> meta;  // "targets.json", "<delegated role>.json"
};

struct Targets : Common {
  static constexpr std::string_view kType = "targets";
  std::map<std::string, TargetFile> targets;
  std::optional<Delegations> delegations;
};

struct Signature {
  std::string keyid;
  std::string sig;  // hex
  bool operator==(const Signature&) const = default;
};

// The signed envelope {"signed": ..., "signatures": [...]} around a role's body.
template <typename T>
class Metadata {
 public:
  // Strictly parses untrusted bytes (see the contract at the top of this file).
  [[nodiscard]] static Result<Metadata> parse(std::span<const uint8_t> bytes);
  // New, unsigned metadata for `body`.
  [[nodiscard]] static Result<Metadata> from_body(T body);

  const T& body() const { return body_; }
  const std::vector<Signature>& signatures() const { return signatures_; }
  // "signed" as JSON, unknown fields included (parsed again from signed_bytes(): not kept,
  // a role of many targets is large).
  nlohmann::json signed_json() const;
  // The canonical JSON of "signed": what signatures cover.
  const std::vector<uint8_t>& signed_bytes() const { return signed_bytes_; }

  // Adds (or replaces) the signature of `key` over signed_bytes().
  [[nodiscard]] Status sign(const crypto::PrivateKey& key);
  // Drops every signature.
  void clear_signatures() { signatures_.clear(); }

  // Checks that `role` (named `role_name` in messages) is met: at least role.threshold
  // distinct key ids from role.keyids, each found in `keys`, with a valid signature.
  // Signatures by key ids outside the role, unknown key types and bad signatures are
  // ignored (they just do not count).
  [[nodiscard]] Status verify_role(const std::map<std::string, Key>& keys, const Role& role,
                                   std::string_view role_name) const;

  // The envelope as written to disk: {"signatures":[...],"signed":{...}}, canonical JSON
  // (compact, sorted), which parse() reads back to an equal value.
  std::vector<uint8_t> to_bytes() const;

 private:
  T body_;
  std::vector<uint8_t> signed_bytes_;
  std::vector<Signature> signatures_;
};

extern template class Metadata<Root>;
extern template class Metadata<Timestamp>;
extern template class Metadata<Snapshot>;
extern template class Metadata<Targets>;

// Conversions between bodies and their "signed" JSON (used by Metadata and the fuzzer).
nlohmann::json to_json(const Root& r);
nlohmann::json to_json(const Timestamp& t);
nlohmann::json to_json(const Snapshot& s);
nlohmann::json to_json(const Targets& t);
[[nodiscard]] Result<Root> root_from_json(const nlohmann::json& j);
[[nodiscard]] Result<Timestamp> timestamp_from_json(const nlohmann::json& j);
[[nodiscard]] Result<Snapshot> snapshot_from_json(const nlohmann::json& j);
[[nodiscard]] Result<Targets> targets_from_json(const nlohmann::json& j);

// Hex digest of `data` with a TUF hash algorithm name ("sha256", "sha512", "sha384",
// "sha224"); Errc::unsupported for any other name.
[[nodiscard]] Result<std::string> hash_hex(std::string_view algorithm,
                                           std::span<const uint8_t> data);

}  // namespace mup::tuf
