#include "core/sha256.hpp"

#include <openssl/evp.h>

#include <cstdlib>

namespace mup {

namespace {
constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string Digest::hex() const {
  std::string s(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    s[2 * i] = kHex[bytes[i] >> 4];
    s[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return s;
}

Result<Digest> Digest::from_hex(std::string_view hex) {
  if (hex.size() != 64) return fail(Errc::invalid_argument, "digest must be 64 hex digits");
  Digest d;
  for (size_t i = 0; i < 32; ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return fail(Errc::invalid_argument, "digest has a non-hex digit");
    d.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
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
