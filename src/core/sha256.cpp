#include "core/sha256.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdlib>

#include "core/hex.hpp"

namespace mup {

std::string Digest::hex() const {
  return to_hex(bytes);
}

Result<Digest> Digest::from_hex(std::string_view hex) {
  if (hex.size() != 64) return fail(Errc::invalid_argument, "digest must be 64 hex digits");
  auto raw = ::mup::from_hex(hex);
  if (!raw) return fail(Errc::invalid_argument, "digest has a non-hex digit");
  Digest d;
  std::copy(raw->begin(), raw->end(), d.bytes.begin());
  return d;
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr ||
      EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1)
    std::abort();  // out of memory or a broken OpenSSL: nothing sensible to do
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
}

void Sha256::update(std::span<const uint8_t> data) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size());
}

Digest Sha256::finish() {
  Digest d;
  unsigned int n = 0;
  auto* ctx = static_cast<EVP_MD_CTX*>(ctx_);
  EVP_DigestFinal_ex(ctx, d.bytes.data(), &n);
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  return d;
}

Digest sha256(std::span<const uint8_t> data) {
  Digest d;
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), d.bytes.data(), &n, EVP_sha256(), nullptr);
  return d;
}

}  // namespace mup
