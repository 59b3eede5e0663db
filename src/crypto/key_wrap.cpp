// Device keys (X25519) and wrapping a package's data key for one device.
//
// wrap_key() output, 92 bytes:
//   ephemeral X25519 public key (32) | seal(kek, data_key, aad = salt) (12 + 32 + 16)
// where shared = X25519(ephemeral_private, recipient_public),
//       salt   = ephemeral_public | recipient_public,
//       kek    = HKDF-SHA256(shared, salt, info = "mup data key", 32).
// Binding both public keys into the salt and the AAD ties a wrapped key to the device it
// was made for: a wrapped key copied to another device fails to open there.
#include <openssl/crypto.h>

#include <algorithm>

#include "crypto/crypto.hpp"
#include "crypto/ossl.hpp"

namespace mup::crypto {

namespace {

using detail::PkeyCtxPtr;
using detail::PkeyPtr;
using detail::take_openssl_error;

constexpr size_t kX25519Size = 32;
constexpr std::string_view kWrapInfo = "mup data key";
constexpr size_t kWrappedSize = kX25519Size + 12 + sizeof(AesKey) + 16;

// Fills `pub` from an X25519 key.
bool raw_public(EVP_PKEY* key, std::array<uint8_t, 32>& pub) {
  size_t len = pub.size();
  return EVP_PKEY_get_raw_public_key(key, pub.data(), &len) == 1 && len == pub.size();
}

// X25519(own, peer_public). Fails for a low-order peer point (all-zero shared secret).
Result<std::array<uint8_t, 32>> x25519(EVP_PKEY* own, std::span<const uint8_t> peer_public) {
  PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(),
                                           peer_public.size()));
  if (!peer) {
    return fail(Errc::invalid_argument,
                "X25519 public key not usable (" + take_openssl_error() + ")");
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(own, nullptr));
  std::array<uint8_t, 32> shared{};
  size_t len = shared.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), shared.data(), &len) != 1 || len != shared.size()) {
    OPENSSL_cleanse(shared.data(), shared.size());
    return fail(Errc::invalid_argument,
                "X25519 key agreement failed, the public key is "
                "probably a low-order point (" +
                    take_openssl_error() + ")");
  }
  return shared;
}

// The key-encryption key and the salt/AAD for one (ephemeral, recipient) pair.
Result<AesKey> derive_kek(std::array<uint8_t, 32>& shared, std::span<const uint8_t> salt) {
  auto info = std::span(reinterpret_cast<const uint8_t*>(kWrapInfo.data()), kWrapInfo.size());
  auto okm = hkdf_sha256(shared, salt, info, sizeof(AesKey));
  OPENSSL_cleanse(shared.data(), shared.size());
  if (!okm) return tl::unexpected(std::move(okm).error());
  AesKey kek;
  std::copy(okm->begin(), okm->end(), kek.begin());
  OPENSSL_cleanse(okm->data(), okm->size());
  return kek;
}

}  // namespace

Result<DeviceKey> DeviceKey::generate() {
  auto priv = random_bytes(kX25519Size);
  if (!priv) return tl::unexpected(std::move(priv).error());
  auto key = from_private(*priv);
  OPENSSL_cleanse(priv->data(), priv->size());
  return key;
}

Result<DeviceKey> DeviceKey::from_private(std::span<const uint8_t> private_key) {
  if (private_key.size() != kX25519Size) {
    return fail(Errc::invalid_argument, "device private key must be 32 bytes (X25519), got " +
                                            std::to_string(private_key.size()));
  }
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                           private_key.size()));
  DeviceKey out;
  if (!key || !raw_public(key.get(), out.public_key)) {
    return fail(Errc::internal, "X25519 key setup failed (" + take_openssl_error() + ")");
  }
  std::copy(private_key.begin(), private_key.end(), out.private_key.begin());
  return out;
}

Result<std::vector<uint8_t>> wrap_key(const AesKey& data_key,
                                      std::span<const uint8_t> recipient_public) {
  if (recipient_public.size() != kX25519Size) {
    return fail(Errc::invalid_argument, "recipient public key must be 32 bytes (X25519), got " +
                                            std::to_string(recipient_public.size()));
  }
  auto eph_priv = random_bytes(kX25519Size);
  if (!eph_priv) return tl::unexpected(std::move(eph_priv).error());
  PkeyPtr eph(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, eph_priv->data(), eph_priv->size()));
  OPENSSL_cleanse(eph_priv->data(), eph_priv->size());
  std::array<uint8_t, 32> eph_pub{};
  if (!eph || !raw_public(eph.get(), eph_pub)) {
    return fail(Errc::internal, "X25519 ephemeral key failed (" + take_openssl_error() + ")");
  }
  auto shared = x25519(eph.get(), recipient_public);
  if (!shared) return tl::unexpected(std::move(shared).error().context("wrapping a data key"));

  std::vector<uint8_t> salt(eph_pub.begin(), eph_pub.end());
  salt.insert(salt.end(), recipient_public.begin(), recipient_public.end());
  auto kek = derive_kek(*shared, salt);
  if (!kek) return tl::unexpected(std::move(kek).error());
  auto sealed = seal(*kek, data_key, salt);
  OPENSSL_cleanse(kek->data(), kek->size());
  if (!sealed) return tl::unexpected(std::move(sealed).error());

  std::vector<uint8_t> out(eph_pub.begin(), eph_pub.end());
  out.insert(out.end(), sealed->begin(), sealed->end());
  return out;
}

Result<AesKey> unwrap_key(std::span<const uint8_t> wrapped, const DeviceKey& device) {
  if (wrapped.size() != kWrappedSize) {
    return fail(Errc::corrupt, "wrapped data key must be " + std::to_string(kWrappedSize) +
                                   " bytes, got " + std::to_string(wrapped.size()));
  }
  PkeyPtr own(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, device.private_key.data(),
                                           device.private_key.size()));
  if (!own) return fail(Errc::internal, "X25519 key setup failed (" + take_openssl_error() + ")");
  auto eph_pub = wrapped.first(kX25519Size);
  auto shared = x25519(own.get(), eph_pub);
  if (!shared) {
    return fail(Errc::corrupt, "wrapped data key has an unusable ephemeral public key (" +
                                   shared.error().message() + ")");
  }
  // The public half is recomputed rather than trusted from `device`, so a DeviceKey whose
  // two fields disagree still unwraps what was wrapped for its private key.
  std::array<uint8_t, 32> own_pub{};
  if (!raw_public(own.get(), own_pub)) {
    return fail(Errc::internal, "X25519 key setup failed (" + take_openssl_error() + ")");
  }
  std::vector<uint8_t> salt(eph_pub.begin(), eph_pub.end());
  salt.insert(salt.end(), own_pub.begin(), own_pub.end());
  auto kek = derive_kek(*shared, salt);
  if (!kek) return tl::unexpected(std::move(kek).error());
  auto plain = open(*kek, wrapped.subspan(kX25519Size), salt);
  OPENSSL_cleanse(kek->data(), kek->size());
  if (!plain) {
    return fail(Errc::corrupt,
                "cannot unwrap the data key: it was wrapped for another device, or altered");
  }
  AesKey out;
  std::copy(plain->begin(), plain->end(), out.begin());
  OPENSSL_cleanse(plain->data(), plain->size());
  return out;
}

}  // namespace mup::crypto
