// Random bytes, AES-256-GCM and HKDF-SHA256.
//
// seal() layout: nonce (12) | ciphertext (= plaintext length) | tag (16). The nonce is
// random per message; with 96-bit random nonces one key must not seal more than about
// 2^32 messages, which a per-package data key never approaches.
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>

#include "crypto/crypto.hpp"
#include "crypto/ossl.hpp"

namespace mup::crypto {

namespace {

using detail::CipherCtxPtr;
using detail::ptr_or_empty;
using detail::take_openssl_error;

constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;
// GCM's limit for one message is 2^39 - 256 bits.
constexpr uint64_t kMaxGcmPlaintext = (uint64_t{1} << 36) - 32;
// EVP_*Update take int lengths; feed long inputs in pieces.
constexpr size_t kUpdateStep = size_t{1} << 30;

// Feeds `in` through EVP_CipherUpdate; `out` null means `in` is AAD.
bool cipher_update(EVP_CIPHER_CTX* ctx, uint8_t* out, std::span<const uint8_t> in) {
  size_t done = 0;
  while (done < in.size()) {
    size_t step = std::min(kUpdateStep, in.size() - done);
    int outl = 0;
    if (EVP_CipherUpdate(ctx, out ? out + done : nullptr, &outl, in.data() + done,
                         static_cast<int>(step)) != 1) {
      return false;
    }
    done += step;
  }
  return true;
}

}  // namespace

Result<std::vector<uint8_t>> random_bytes(size_t n) {
  std::vector<uint8_t> out(n);
  size_t done = 0;
  while (done < n) {
    size_t step = std::min<size_t>(n - done, INT_MAX);
    if (RAND_bytes(out.data() + done, static_cast<int>(step)) != 1) {
      return fail(Errc::internal, "random number generator failed (" + take_openssl_error() + ")");
    }
    done += step;
  }
  return out;
}

Result<std::vector<uint8_t>> seal(const AesKey& key, std::span<const uint8_t> plaintext,
                                  std::span<const uint8_t> aad) {
  if (plaintext.size() > kMaxGcmPlaintext) {
    return fail(Errc::invalid_argument, "AES-GCM: message of " + std::to_string(plaintext.size()) +
                                            " bytes exceeds the GCM limit; split it");
  }
  auto nonce = random_bytes(kNonceSize);
  if (!nonce) return tl::unexpected(std::move(nonce).error());

  std::vector<uint8_t> out(kNonceSize + plaintext.size() + kTagSize);
  std::copy(nonce->begin(), nonce->end(), out.begin());
  uint8_t* ct = out.data() + kNonceSize;

  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int outl = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce->data()) != 1 ||
      !cipher_update(ctx.get(), nullptr, aad) || !cipher_update(ctx.get(), ct, plaintext) ||
      EVP_EncryptFinal_ex(ctx.get(), ct + plaintext.size(), &outl) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize),
                          ct + plaintext.size()) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return fail(Errc::internal, "AES-GCM encryption failed (" + take_openssl_error() + ")");
  }
  return out;
}

Result<std::vector<uint8_t>> open(const AesKey& key, std::span<const uint8_t> sealed,
                                  std::span<const uint8_t> aad) {
  if (sealed.size() < kNonceSize + kTagSize) {
    return fail(Errc::corrupt, "AES-GCM: sealed message of " + std::to_string(sealed.size()) +
                                   " bytes is shorter than nonce + tag (28); it was truncated");
  }
  auto nonce = sealed.first(kNonceSize);
  auto ct = sealed.subspan(kNonceSize, sealed.size() - kNonceSize - kTagSize);
  auto tag = sealed.last(kTagSize);
  // The tag is set through a non-const pointer; copy it.
  std::array<uint8_t, kTagSize> tag_copy;
  std::copy(tag.begin(), tag.end(), tag_copy.begin());

  std::vector<uint8_t> out(ct.size());
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1 ||
      !cipher_update(ctx.get(), nullptr, aad) || !cipher_update(ctx.get(), out.data(), ct) ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize),
                          tag_copy.data()) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return fail(Errc::internal, "AES-GCM decryption failed (" + take_openssl_error() + ")");
  }
  int outl = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + out.size(), &outl) != 1) {
    // Unauthenticated plaintext must not leak out, not even in freed memory.
    OPENSSL_cleanse(out.data(), out.size());
    ERR_clear_error();
    return fail(Errc::corrupt,
                "AES-GCM authentication failed: the data, its associated data or the key "
                "is wrong (altered or corrupted bytes)");
  }
  return out;
}

Result<std::vector<uint8_t>> hkdf_sha256(std::span<const uint8_t> secret,
                                         std::span<const uint8_t> salt,
                                         std::span<const uint8_t> info, size_t length) {
  constexpr size_t kMaxLength = size_t{255} * 32;
  if (length == 0 || length > kMaxLength) {
    return fail(Errc::invalid_argument, "HKDF-SHA256: output length " + std::to_string(length) +
                                            " is outside 1..8160 bytes");
  }
  detail::KdfPtr kdf(EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr));
  if (!kdf) return fail(Errc::internal, "HKDF unavailable (" + take_openssl_error() + ")");
  detail::KdfCtxPtr kctx(EVP_KDF_CTX_new(kdf.get()));
  if (!kctx) return fail(Errc::internal, "HKDF context (" + take_openssl_error() + ")");

  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_KEY, const_cast<unsigned char*>(ptr_or_empty(secret)), secret.size());
  // An absent salt means hash-length zeros (RFC 5869 2.2), which is what OpenSSL does
  // when the parameter is not given.
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                    const_cast<uint8_t*>(salt.data()), salt.size());
  }
  if (!info.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                    const_cast<uint8_t*>(info.data()), info.size());
  }
  params[n] = OSSL_PARAM_construct_end();

  std::vector<uint8_t> out(length);
  if (EVP_KDF_derive(kctx.get(), out.data(), out.size(), params) != 1) {
    return fail(Errc::invalid_argument,
                "HKDF-SHA256 derivation failed (" + take_openssl_error() + ")");
  }
  return out;
}

}  // namespace mup::crypto
