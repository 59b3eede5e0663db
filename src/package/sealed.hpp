// Encrypted packages ("mup-sealed-v1"): a package only the devices it names can install.
//
// Scheme. Each component has one AES-256 data key, kept by the publisher (KEYDIR/data/
// <component>.key). A package's pieces (the chunks and delta pieces its tree index names,
// as stored in the publisher's private plain store) are sealed one by one into the
// repository at
//     sealed/<component>/<hh>/<hex HMAC-SHA256(data_key, rel_path)>
// as crypto::seal(data_key, stored piece bytes, aad = rel_path), where rel_path is the
// piece's path in a ChunkStore ("chunks/ab/<id>", "deltas/..."). The TUF target of the
// package is its sealed tree index, seal(data_key, index file, aad = "index:<id>"); the
// manifest's index_sha256 is the SHA-256 of the plain index, checked after opening. The
// manifest's "encryption" field wraps the data key for every recipient device:
//     {"scheme": "mup-sealed-v1",
//      "recipients": [{"key_id": <16 hex of sha256(device public)>,
//                      "wrapped": <hex of crypto::wrap_key(data_key, device public)>}]}
// Nothing plain of an encrypted package reaches the repository: no chunks, deltas, plain
// index or index deltas. A node unwraps the data key with its device key, opens the index,
// plans as usual, downloads each piece from piece_download_path() and stores what
// open_piece() returns at rel_path in its own ChunkStore; from there on nothing differs
// from a plain package (ChunkStore and unpack verify every piece against the index).
//
// Why one key per component and HMAC names: equal pieces in two versions of a component
// get the same sealed name and are stored and downloaded once (deduplication within the
// component's history survives); the HMAC keeps chunk ids, which are hashes of plaintext,
// out of the repository, so nobody without the key can test a guess of the content.
// AES-GCM authenticates every piece and binds it to its name (aad): any altered byte,
// or a sealed piece moved to another name, fails to open (Errc::corrupt).
//
// What it does not hide (by design): the component name, version and manifest (signed
// metadata that every node must read to plan, not secret), including the SHA-256 of the
// plain index (it confirms a guess of the whole tree, nothing less) and the recipients'
// key ids; how many pieces a version has and their sizes; and which sealed pieces repeat
// between versions of one component (that is the deduplication). Together these show the
// shape of a change, never its content, and a network observer would see as much from
// which objects a node downloads. A device dropped from the recipients keeps the data key
// it had; the publisher therefore gives the component a new data key when a publish drops
// a recipient of the previous version (rotate_data_key), at the cost of deduplication
// with the versions before.
//
// All functions are thread-safe (no shared state); the publisher's functions write files.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "chunk/chunk_store.hpp"
#include "chunk/tree_index.hpp"
#include "core/error.hpp"
#include "crypto/crypto.hpp"
#include "delta/planner.hpp"
#include "package/manifest.hpp"

namespace mup::package {

// Bytes a sealed piece or index has beyond its plain bytes (nonce + tag).
inline constexpr uint64_t kSealOverhead = 28;

using DevicePublic = std::array<uint8_t, 32>;

// ---- Both sides ----

bool is_encrypted(const Manifest& m);
// First 16 hex digits of SHA-256(device public key): how a manifest names a recipient.
std::string device_key_id(std::span<const uint8_t> device_public);

// A piece of a package as a ChunkStore holds it.
struct PieceRef {
  std::string rel_path;  // "chunks/ab/<id>" or piece_rel_path(...)
  uint64_t stored_size = 0;
  // What the signed index says the piece is: a chunk's id (SHA-256 of its plain_size
  // plain bytes), or the SHA-256 of a delta piece's stored bytes.
  bool is_chunk = false;
  Digest digest;
  uint32_t plain_size = 0;  // chunks only
  bool operator==(const PieceRef&) const = default;
};

// Checks a piece's stored bytes (as downloaded and opened) against its PieceRef: a chunk
// must decompress to plain_size bytes hashing to its id, a delta piece must hash to its
// digest. Errc::corrupt, naming the piece, otherwise.
[[nodiscard]] Status verify_piece(const PieceRef& piece, std::span<const uint8_t> stored);
// ChunkStore's relative path of a chunk (its chunk_path() under the root).
std::string chunk_rel_path(const Digest& id);
// The piece a chunk is.
PieceRef chunk_piece(const chunk::ChunkRef& c);
// Every piece the index names (each chunk and delta piece once), in index order.
std::vector<PieceRef> referenced_pieces(const chunk::TreeIndex& index);
// The pieces a node must download to carry out `plan` (chunks not found in seeds, delta
// pieces), each once.
std::vector<PieceRef> pieces_to_fetch(const chunk::TreeIndex& index, const delta::Plan& plan);
// Adds the seal overhead of every fetched piece to the plan's byte counts (for an
// encrypted package; plan() counts stored sizes, and index_bytes should already be the
// sealed index's size).
void add_seal_overhead(const chunk::TreeIndex& index, delta::Plan& plan);

// ---- Node side ----

// The data key of an encrypted package for this device, or an error naming the device key
// id and the recipients (Errc::not_found: not a recipient; Errc::corrupt: the wrapped key
// does not open; Errc::invalid_argument: not an encrypted package).
[[nodiscard]] Result<crypto::AesKey> unwrap_data_key(const Manifest& m,
                                                     const crypto::DeviceKey& device);
// Plain tree index bytes from the TUF target's bytes: opens a sealed index (needs key) or
// passes plain through; in both cases checks SHA-256 == m.index_sha256 (Errc::corrupt
// otherwise).
[[nodiscard]] Result<std::vector<uint8_t>> open_index(const Manifest& m,
                                                      std::span<const uint8_t> target_bytes,
                                                      const crypto::AesKey* key);
// Repository-relative path to download a piece from: rel_path itself for plain packages,
// the sealed name for encrypted ones. For an encrypted package `key` must not be null
// (without a key there is nothing to download; rel_path is returned, which does not exist).
std::string piece_download_path(const Manifest& m, const crypto::AesKey* key,
                                const std::string& rel_path);
// The piece's stored bytes (what ChunkStore holds at rel_path) from downloaded bytes:
// opens sealed bytes (Errc::corrupt on any altered byte, naming rel_path) or passes plain
// through.
[[nodiscard]] Result<std::vector<uint8_t>> open_piece(const Manifest& m, const crypto::AesKey* key,
                                                      const std::string& rel_path,
                                                      std::vector<uint8_t> downloaded);
// Loading a device key file written by `mup keygen --device` (NAME.key hex).
[[nodiscard]] Result<crypto::DeviceKey> load_device_key(const std::filesystem::path& key_file);

// ---- Publisher side ----

// A device public key file written by `mup keygen --device` (NAME.pub hex).
[[nodiscard]] Result<DevicePublic> load_device_public(const std::filesystem::path& pub_file);

// The component's current data key, KEYDIR/data/<component>.key (hex, mode 0600 in a 0700
// directory), made on first use; `created` tells whether this call made it.
[[nodiscard]] Result<crypto::AesKey> load_or_create_data_key(const std::filesystem::path& keydir,
                                                             const std::string& component,
                                                             bool* created = nullptr);
// Gives the component a fresh data key; the old one moves to
// KEYDIR/data/retired/<component>/<16 hex of its sha256>.key (older versions stay readable
// for --delta-from).
[[nodiscard]] Result<crypto::AesKey> rotate_data_key(const std::filesystem::path& keydir,
                                                     const std::string& component);
// Every data key the component ever had: the current one first, then the retired ones.
// Empty when the component has none.
[[nodiscard]] Result<std::vector<crypto::AesKey>> load_data_keys(
    const std::filesystem::path& keydir, const std::string& component);

// The manifest's "encryption" value: the data key wrapped for each recipient (duplicates
// dropped), in the given order.
[[nodiscard]] Result<nlohmann::json> make_encryption(const crypto::AesKey& data_key,
                                                     const std::vector<DevicePublic>& recipients);
// The recipients' key ids of an encrypted manifest (empty for a plain one).
std::vector<std::string> recipient_key_ids(const Manifest& m);

// "sealed/<component>/<hh>/<hex HMAC-SHA256(key, rel_path)>".
std::string sealed_rel_path(const std::string& component, const crypto::AesKey& key,
                            const std::string& rel_path);

struct SealStats {
  uint64_t pieces = 0;   // pieces the index names
  uint64_t written = 0;  // sealed files written by this call
  uint64_t written_bytes = 0;
  uint64_t reused = 0;  // already in the repository (an earlier version had them)
  uint64_t reused_bytes = 0;
};

// Seals every piece `index` names from `plain` into repo_dir/sealed/<component>/...; a
// sealed file already there with the expected size is kept (deduplication). Pieces are
// checked against the index first (size; delta pieces also SHA-256). Written files are
// durable when this returns (one syncfs). With `verify_reused` (an earlier publish did not
// finish: ChunkStore::begin_batch), a kept file must also open under the key, else it is
// sealed again.
[[nodiscard]] Result<SealStats> seal_pieces(const chunk::TreeIndex& index,
                                            const std::string& component, const crypto::AesKey& key,
                                            const chunk::ChunkStore& plain,
                                            const std::filesystem::path& repo_dir,
                                            bool verify_reused = false, unsigned threads = 0);
// The TUF target of an encrypted package: seal(key, index_file, aad = "index:" + m.id()).
[[nodiscard]] Result<std::vector<uint8_t>> seal_index(const Manifest& m, const crypto::AesKey& key,
                                                      std::span<const uint8_t> index_file);

}  // namespace mup::package
