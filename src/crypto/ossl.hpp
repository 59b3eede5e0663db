// Private to src/crypto: RAII owners for OpenSSL objects and error-queue helpers.
//
// OpenSSL reports failures on a per-thread error queue. Every call site that turns an
// OpenSSL failure into a mup::Error (or into `false`) clears the queue, so that a failed
// parse of untrusted bytes leaves nothing behind for an unrelated later call to trip on.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace mup::crypto::detail {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
struct KdfFree {
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};

using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using KdfPtr = std::unique_ptr<EVP_KDF, KdfFree>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, KdfCtxFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

// The oldest queued OpenSSL error as text ("unknown OpenSSL error" if none); clears the
// queue.
std::string take_openssl_error();

// A non-null pointer for `bytes`, even when it is empty: some OpenSSL entry points treat
// (nullptr, 0) differently from (ptr, 0).
inline const unsigned char* ptr_or_empty(std::span<const uint8_t> bytes) {
  static const unsigned char kEmpty = 0;
  return bytes.empty() ? &kEmpty : bytes.data();
}

// A read-only memory BIO over `text` (which must outlive it).
BioPtr mem_bio(std::string_view text);

// Everything written to a memory BIO, as a string.
std::string bio_to_string(BIO* bio);

}  // namespace mup::crypto::detail
