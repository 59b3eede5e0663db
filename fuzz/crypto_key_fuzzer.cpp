// TUF key parsing and signature verification on untrusted bytes: from_tuf either fails
// cleanly or gives a key for which verify() answers without crashing, and never accepts an
// empty signature; fixed valid keys answer arbitrary signatures without crashing.
//
// Input: selector byte | public value | 0x00 | signature. The selector picks the
// (keytype, scheme) pair (valid and mismatched ones) and whether the value is used as is
// or taken as DER and wrapped in a PEM SubjectPublicKeyInfo block, so the fuzzer reaches
// the ASN.1 decoder without having to learn base64.
#include <openssl/evp.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/crypto.hpp"

namespace {

using mup::crypto::PublicKey;

struct Pair {
  std::string_view keytype, scheme;
};
constexpr Pair kPairs[] = {
    {"ed25519", "ed25519"},
    {"ecdsa", "ecdsa-sha2-nistp256"},
    {"ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"},
    {"rsa", "rsassa-pss-sha256"},
    {"ed25519", "ecdsa-sha2-nistp256"},
    {"rsa", "ecdsa-sha2-nistp256"},
};

std::string der_to_pem(std::string_view der) {
  std::string b64(4 * ((der.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                          reinterpret_cast<const unsigned char*>(der.data()),
                          static_cast<int>(der.size()));
  b64.resize(n > 0 ? static_cast<size_t>(n) : 0);
  std::string pem = "-----BEGIN PUBLIC KEY-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + "\n";
  return pem + "-----END PUBLIC KEY-----\n";
}

const std::vector<PublicKey>& fixed_keys() {
  static const std::vector<PublicKey> keys = [] {
    std::vector<PublicKey> out;
    for (auto type : {mup::crypto::KeyType::ed25519, mup::crypto::KeyType::ecdsa_p256}) {
      auto k = mup::crypto::PrivateKey::generate(type);
      if (!k) std::abort();
      out.push_back(k->public_key());
    }
    // A fixed 2048-bit RSA key: generating one per run would dominate start-up.
    auto rsa = PublicKey::from_tuf("rsa", "rsassa-pss-sha256", R"(-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA5HVx0VU4Mh4t8TDeO2kt
iqaBszNdo34atiWLxyLImRkHaHkO8tVblj7+YhgpPAHbsI/30qkqZZyFvr7urXnW
XF/WA8xUcxV1lfczg4tm00qR226//+n2m1SmJUYfYJd/m+H4noE1R7aFN0xHMRVL
l0ubruE7ww5Ris5NAIFClgA4hkJVYH5TXhdpS26VuuYWmxyFlIYSx3B2/jble9xn
baHnNelUXO+PoBlR8YSQRhFzpR5gtc54XIdqTADmWubWSuD9yQl5CBoyOsNYoqia
CqBy2qS+Djm3sPRzHfVTyKKyxpuEB0+r+odlaFSYYTiLlp7Fv9IETkxxCZ3srjXZ
rQIDAQAB
-----END PUBLIC KEY-----
)");
    if (!rsa) std::abort();
    out.push_back(*rsa);
    return out;
  }();
  return keys;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t split = rest.find('\0');
  std::string_view value = rest.substr(0, split);
  std::string_view sig_text = split == std::string_view::npos ? "" : rest.substr(split + 1);
  std::span<const uint8_t> signature(reinterpret_cast<const uint8_t*>(sig_text.data()),
                                     sig_text.size());
  static const uint8_t kMessage[] = "fuzz message";

  const Pair& pair = kPairs[(selector >> 1) % std::size(kPairs)];
  std::string wrapped;
  if (selector & 1) wrapped = der_to_pem(value);
  auto key = PublicKey::from_tuf(pair.keytype, pair.scheme, (selector & 1) ? wrapped : value);
  if (key) {
    (void)key->verify(kMessage, signature);
    (void)key->verify(signature, signature);
    if (key->verify(kMessage, {})) std::abort();
  }
  for (const auto& fixed : fixed_keys()) {
    if (fixed.verify(kMessage, signature)) std::abort();  // forging is not expected
  }
  return 0;
}
