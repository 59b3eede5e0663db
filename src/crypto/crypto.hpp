// Public-key signatures, authenticated encryption and key agreement (OpenSSL 3 EVP).
//
// Keys are represented as The Update Framework writes them: a key type, a signature
// scheme and a public value (hex for ed25519, PEM SubjectPublicKeyInfo for ecdsa and rsa).
// Verification supports the three schemes TUF clients must know: "ed25519",
// "ecdsa-sha2-nistp256" (DER signatures over SHA-256) and "rsassa-pss-sha256" (salt length
// = digest length). Signing is done with private keys stored as PKCS#8 PEM; new keys are
// Ed25519 unless asked otherwise.
//
// Encryption of update pieces: AES-256-GCM with a random 96-bit nonce per message; a
// per-package data key is wrapped for each recipient device with X25519 (ephemeral key)
// + HKDF-SHA256 + AES-256-GCM.
//
// All types are immutable values once built; every function is thread-safe. Nothing
// throws; failures are Errc::invalid_argument (malformed key, bad sizes) or Errc::corrupt
// (authentication failed).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/hex.hpp"

namespace mup::crypto {

enum class KeyType { ed25519, ecdsa_p256, rsa_pss };

class PublicKey {
 public:
  // From TUF's fields, e.g. ("ed25519", "ed25519", "<64 hex>") or
  // ("ecdsa", "ecdsa-sha2-nistp256", "-----BEGIN PUBLIC KEY-----..."); the key types
  // "ecdsa-sha2-nistp256" and "rsa" are accepted as TUF tools write them.
  [[nodiscard]] static Result<PublicKey> from_tuf(std::string_view keytype, std::string_view scheme,
                                                  std::string_view public_value);
  PublicKey();
  ~PublicKey();
  PublicKey(const PublicKey&);
  PublicKey& operator=(const PublicKey&);
  PublicKey(PublicKey&&) noexcept;  // the moved-from key verifies nothing
  PublicKey& operator=(PublicKey&&) noexcept;

  // True only for a valid signature of `message` under this key and scheme; false (never
  // an error) for garbage of any length, and for a default-constructed key.
  [[nodiscard]] bool verify(std::span<const uint8_t> message,
                            std::span<const uint8_t> signature) const;

  KeyType type() const { return type_; }
  // keytype, scheme and public value exactly as given to from_tuf (TUF key ids hash
  // them), e.g. keytype "ecdsa-sha2-nistp256" stays so; type() is the normalised kind.
  // Keys made by PrivateKey use "ed25519", "ecdsa" and "rsa".
  const std::string& keytype() const { return keytype_; }
  const std::string& scheme() const { return scheme_; }
  const std::string& public_value() const { return public_; }

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
  KeyType type_ = KeyType::ed25519;
  std::string keytype_, scheme_, public_;
};

class PrivateKey {
 public:
  [[nodiscard]] static Result<PrivateKey> generate(KeyType type = KeyType::ed25519);
  [[nodiscard]] static Result<PrivateKey> from_pem(std::string_view pkcs8_pem);
  PrivateKey();
  ~PrivateKey();
  PrivateKey(const PrivateKey&);
  PrivateKey& operator=(const PrivateKey&);
  PrivateKey(PrivateKey&&) noexcept;  // the moved-from key cannot sign
  PrivateKey& operator=(PrivateKey&&) noexcept;

  std::string to_pem() const;  // PKCS#8, unencrypted: store with mode 0600
  const PublicKey& public_key() const { return public_; }
  [[nodiscard]] Result<std::vector<uint8_t>> sign(std::span<const uint8_t> message) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
  PublicKey public_;
};

// Cryptographically secure random bytes.
[[nodiscard]] Result<std::vector<uint8_t>> random_bytes(size_t n);

using AesKey = std::array<uint8_t, 32>;

// AES-256-GCM. seal() output: 12-byte nonce | ciphertext | 16-byte tag; `aad` is
// authenticated, not stored. open() fails with Errc::corrupt if any byte was altered.
[[nodiscard]] Result<std::vector<uint8_t>> seal(const AesKey& key,
                                                std::span<const uint8_t> plaintext,
                                                std::span<const uint8_t> aad = {});
[[nodiscard]] Result<std::vector<uint8_t>> open(const AesKey& key, std::span<const uint8_t> sealed,
                                                std::span<const uint8_t> aad = {});

// HKDF-SHA256 (RFC 5869); an empty salt means the RFC's zero salt; length 1..8160.
[[nodiscard]] Result<std::vector<uint8_t>> hkdf_sha256(std::span<const uint8_t> secret,
                                                       std::span<const uint8_t> salt,
                                                       std::span<const uint8_t> info,
                                                       size_t length);

// A device's X25519 key pair (raw 32-byte keys, hex in files).
struct DeviceKey {
  std::array<uint8_t, 32> private_key{};
  std::array<uint8_t, 32> public_key{};
  [[nodiscard]] static Result<DeviceKey> generate();
  [[nodiscard]] static Result<DeviceKey> from_private(std::span<const uint8_t> private_key);
};

// Wraps `data_key` for the device holding the private half of `recipient` (92 bytes):
// ephemeral X25519 public key (32) | seal(kek, data_key, aad = salt), where
// kek = HKDF-SHA256(X25519 shared secret, salt = ephemeral_pub | recipient_pub,
// info = "mup data key"). unwrap_key() fails with Errc::corrupt for another device's key,
// altered bytes or a wrong length.
[[nodiscard]] Result<std::vector<uint8_t>> wrap_key(const AesKey& data_key,
                                                    std::span<const uint8_t> recipient_public);
[[nodiscard]] Result<AesKey> unwrap_key(std::span<const uint8_t> wrapped, const DeviceKey& device);

// Hex helpers live in core; crypto callers use them through this module too.
using ::mup::from_hex;
using ::mup::to_hex;

}  // namespace mup::crypto
