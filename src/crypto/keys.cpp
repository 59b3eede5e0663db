// TUF public keys and signing keys.
//
// Parsing is strict because the inputs come from metadata an attacker may have written:
// the key type and scheme must be one of the three known pairs, ed25519 values are exactly
// 64 hex digits, PEM values hold exactly one SubjectPublicKeyInfo block (nothing but
// whitespace around it) of the expected algorithm — P-256 by name for ecdsa, RSA of
// 2048..16384 bits for rsa. Encrypted PEM is refused without ever prompting for a password.
//
// RSA-PSS: signatures are made with salt length = digest length (as securesystemslib
// does) and verified with the salt length recovered from the signature, so signers that
// use the maximum salt length are accepted too. MGF1 uses SHA-256 in both directions.
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cctype>

#include "crypto/crypto.hpp"
#include "crypto/ossl.hpp"

namespace mup::crypto {

using detail::BioPtr;
using detail::MdCtxPtr;
using detail::PkeyPtr;
using detail::ptr_or_empty;
using detail::take_openssl_error;

struct PublicKey::Impl {
  PkeyPtr pkey;
};

struct PrivateKey::Impl {
  PkeyPtr pkey;
  KeyType type;
};

namespace {

constexpr std::string_view kEd25519 = "ed25519";
constexpr std::string_view kEcdsaScheme = "ecdsa-sha2-nistp256";
constexpr std::string_view kRsaScheme = "rsassa-pss-sha256";
constexpr std::string_view kPublicPemHeader = "-----BEGIN PUBLIC KEY-----";
constexpr std::string_view kPrivatePemHeader = "-----BEGIN PRIVATE KEY-----";
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 16384;
constexpr int kGeneratedRsaBits = 3072;
constexpr size_t kEd25519SignatureSize = 64;
constexpr size_t kMaxP256DerSignatureSize = 72;

// Never prompt on a terminal for an encrypted PEM: there is no one to answer.
int no_password(char*, int, int, void*) {
  return -1;
}

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

bool only_whitespace_left(BIO* bio) {
  return trim(detail::bio_to_string(bio)).empty();
}

std::string quoted(std::string_view s) {
  // Bounded: these strings come from untrusted metadata.
  constexpr size_t kMax = 40;
  std::string out = "\"";
  for (char c : s.substr(0, kMax)) {
    out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  }
  if (s.size() > kMax) out += "...";
  return out + "\"";
}

// (keytype, scheme) -> KeyType, for the pairs TUF tools write.
Result<KeyType> key_type_of(std::string_view keytype, std::string_view scheme) {
  KeyType type;
  std::string_view want_scheme;
  if (keytype == kEd25519) {
    type = KeyType::ed25519;
    want_scheme = kEd25519;
  } else if (keytype == "ecdsa" || keytype == kEcdsaScheme) {
    type = KeyType::ecdsa_p256;
    want_scheme = kEcdsaScheme;
  } else if (keytype == "rsa") {
    type = KeyType::rsa_pss;
    want_scheme = kRsaScheme;
  } else {
    return fail(Errc::invalid_argument,
                "unsupported key type " + quoted(keytype) +
                    "; known: ed25519, ecdsa (or ecdsa-sha2-nistp256), rsa");
  }
  if (scheme != want_scheme) {
    return fail(Errc::invalid_argument, "key type " + quoted(keytype) +
                                            " does not go with signature scheme " + quoted(scheme) +
                                            "; expected \"" + std::string(want_scheme) + "\"");
  }
  return type;
}

// Checks that `pkey` is usable as `type` (algorithm, curve, size); says why not.
Result<void> check_algorithm(EVP_PKEY* pkey, KeyType type) {
  const char* name = EVP_PKEY_get0_type_name(pkey);
  std::string got = name ? name : "an unknown algorithm";
  switch (type) {
    case KeyType::ed25519:
      if (!EVP_PKEY_is_a(pkey, "ED25519")) {
        return fail(Errc::invalid_argument, "expected an Ed25519 key, got " + got);
      }
      return {};
    case KeyType::ecdsa_p256: {
      if (!EVP_PKEY_is_a(pkey, "EC")) {
        return fail(Errc::invalid_argument, "expected an EC P-256 key, got " + got);
      }
      char group[64] = {};
      if (EVP_PKEY_get_group_name(pkey, group, sizeof group, nullptr) != 1) {
        ERR_clear_error();
        return fail(Errc::invalid_argument,
                    "EC key without a named curve (explicit parameters); expected P-256");
      }
      if (std::string_view(group) != "prime256v1") {
        return fail(Errc::invalid_argument,
                    "EC key on curve " + std::string(group) +
                        "; scheme ecdsa-sha2-nistp256 needs P-256 (prime256v1)");
      }
      return {};
    }
    case KeyType::rsa_pss: {
      if (!EVP_PKEY_is_a(pkey, "RSA")) {
        return fail(Errc::invalid_argument, "expected an RSA key, got " + got);
      }
      int bits = EVP_PKEY_get_bits(pkey);
      if (bits < kMinRsaBits || bits > kMaxRsaBits) {
        return fail(Errc::invalid_argument,
                    "RSA key of " + std::to_string(bits) + " bits; accepted sizes are 2048..16384");
      }
      return {};
    }
  }
  return fail(Errc::internal, "unknown KeyType");
}

Result<PkeyPtr> parse_public_pem(std::string_view value) {
  std::string_view pem = trim(value);
  if (!pem.starts_with(kPublicPemHeader)) {
    return fail(Errc::invalid_argument,
                "public key is not a PEM SubjectPublicKeyInfo: it must start with \"" +
                    std::string(kPublicPemHeader) + "\"");
  }
  BioPtr bio = detail::mem_bio(pem);
  if (!bio) return fail(Errc::invalid_argument, "public key PEM too large");
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_password, nullptr));
  if (!pkey) {
    return fail(Errc::invalid_argument,
                "public key PEM does not parse (" + take_openssl_error() + ")");
  }
  if (!only_whitespace_left(bio.get())) {
    return fail(Errc::invalid_argument, "public key PEM has data after its END line");
  }
  return pkey;
}

Result<PkeyPtr> parse_ed25519_hex(std::string_view value) {
  if (value.size() != 64) {
    return fail(Errc::invalid_argument, "ed25519 public key must be 64 hex digits, got " +
                                            std::to_string(value.size()) + " characters");
  }
  auto raw = from_hex(value);
  if (!raw) return tl::unexpected(std::move(raw).error().context("ed25519 public key"));
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw->data(), raw->size()));
  if (!pkey) {
    return fail(Errc::invalid_argument,
                "ed25519 public key rejected (" + take_openssl_error() + ")");
  }
  return pkey;
}

// Sets the padding for RSA-PSS on a sign/verify context; no-op for the other types.
bool configure_padding(EVP_PKEY_CTX* pctx, KeyType type, bool signing) {
  if (type != KeyType::rsa_pss) return true;
  return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(
             pctx, signing ? RSA_PSS_SALTLEN_DIGEST : RSA_PSS_SALTLEN_AUTO) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1;
}

// Ed25519 signs the message itself; the others sign its SHA-256.
const EVP_MD* digest_for(KeyType type) {
  return type == KeyType::ed25519 ? nullptr : EVP_sha256();
}

// The TUF public value of a key: hex for ed25519, PEM SubjectPublicKeyInfo otherwise.
Result<std::string> tuf_public_value(EVP_PKEY* pkey, KeyType type) {
  if (type == KeyType::ed25519) {
    std::array<uint8_t, 32> raw{};
    size_t len = raw.size();
    if (EVP_PKEY_get_raw_public_key(pkey, raw.data(), &len) != 1 || len != raw.size()) {
      return fail(Errc::internal, "ed25519 public key export (" + take_openssl_error() + ")");
    }
    return to_hex(raw);
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), pkey) != 1) {
    return fail(Errc::internal, "public key PEM export (" + take_openssl_error() + ")");
  }
  return detail::bio_to_string(bio.get());
}

}  // namespace

// ---- PublicKey ----------------------------------------------------------------------------

PublicKey::PublicKey() = default;
PublicKey::~PublicKey() = default;
PublicKey::PublicKey(const PublicKey&) = default;
PublicKey& PublicKey::operator=(const PublicKey&) = default;
PublicKey::PublicKey(PublicKey&&) noexcept = default;
PublicKey& PublicKey::operator=(PublicKey&&) noexcept = default;

Result<PublicKey> PublicKey::from_tuf(std::string_view keytype, std::string_view scheme,
                                      std::string_view public_value) {
  auto type = key_type_of(keytype, scheme);
  if (!type) return tl::unexpected(std::move(type).error());

  auto pkey =
      *type == KeyType::ed25519 ? parse_ed25519_hex(public_value) : parse_public_pem(public_value);
  if (!pkey) {
    return tl::unexpected(std::move(pkey).error().context(std::string(keytype) + " key"));
  }
  if (auto ok = check_algorithm(pkey->get(), *type); !ok) {
    return tl::unexpected(std::move(ok).error().context(std::string(keytype) + " key"));
  }

  PublicKey key;
  auto impl = std::make_shared<Impl>();
  impl->pkey = std::move(*pkey);
  key.impl_ = std::move(impl);
  key.type_ = *type;
  key.keytype_ = keytype;
  key.scheme_ = scheme;
  key.public_ = public_value;
  return key;
}

bool PublicKey::verify(std::span<const uint8_t> message, std::span<const uint8_t> signature) const {
  if (!impl_) return false;
  EVP_PKEY* pkey = impl_->pkey.get();
  // Cheap length checks first: garbage of any length must come back false, quickly.
  switch (type_) {
    case KeyType::ed25519:
      if (signature.size() != kEd25519SignatureSize) return false;
      break;
    case KeyType::ecdsa_p256:
      if (signature.empty() || signature.size() > kMaxP256DerSignatureSize) return false;
      break;
    case KeyType::rsa_pss:
      if (signature.size() != static_cast<size_t>(EVP_PKEY_get_size(pkey))) return false;
      break;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), &pctx, digest_for(type_), nullptr, pkey) == 1 &&
            configure_padding(pctx, type_, /*signing=*/false) &&
            EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), ptr_or_empty(message),
                             message.size()) == 1;
  if (!ok) ERR_clear_error();
  return ok;
}

// ---- PrivateKey ---------------------------------------------------------------------------

PrivateKey::PrivateKey() = default;
PrivateKey::~PrivateKey() = default;
PrivateKey::PrivateKey(const PrivateKey&) = default;
PrivateKey& PrivateKey::operator=(const PrivateKey&) = default;
PrivateKey::PrivateKey(PrivateKey&&) noexcept = default;
PrivateKey& PrivateKey::operator=(PrivateKey&&) noexcept = default;

namespace {

// The TUF (keytype, scheme) written for keys made here.
std::pair<std::string_view, std::string_view> tuf_names(KeyType type) {
  switch (type) {
    case KeyType::ed25519: return {kEd25519, kEd25519};
    case KeyType::ecdsa_p256: return {"ecdsa", kEcdsaScheme};
    case KeyType::rsa_pss: return {"rsa", kRsaScheme};
  }
  return {"", ""};
}

Result<KeyType> detect_private_type(EVP_PKEY* pkey) {
  KeyType type;
  if (EVP_PKEY_is_a(pkey, "ED25519")) {
    type = KeyType::ed25519;
  } else if (EVP_PKEY_is_a(pkey, "EC")) {
    type = KeyType::ecdsa_p256;
  } else if (EVP_PKEY_is_a(pkey, "RSA")) {
    type = KeyType::rsa_pss;
  } else {
    const char* name = EVP_PKEY_get0_type_name(pkey);
    return fail(Errc::invalid_argument, std::string("private key algorithm ") +
                                            (name ? name : "unknown") +
                                            " not supported; use Ed25519, EC P-256 or RSA");
  }
  if (auto ok = check_algorithm(pkey, type); !ok) return tl::unexpected(std::move(ok).error());
  return type;
}

}  // namespace

Result<PrivateKey> PrivateKey::generate(KeyType type) {
  PkeyPtr pkey;
  switch (type) {
    case KeyType::ed25519: pkey.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")); break;
    case KeyType::ecdsa_p256: pkey.reset(EVP_EC_gen("P-256")); break;
    case KeyType::rsa_pss: pkey.reset(EVP_RSA_gen(kGeneratedRsaBits)); break;
  }
  if (!pkey) return fail(Errc::internal, "key generation failed (" + take_openssl_error() + ")");

  auto value = tuf_public_value(pkey.get(), type);
  if (!value) return tl::unexpected(std::move(value).error());
  auto [keytype, scheme] = tuf_names(type);
  auto pub = PublicKey::from_tuf(keytype, scheme, *value);
  if (!pub) return tl::unexpected(std::move(pub).error().context("generated key"));

  PrivateKey key;
  auto impl = std::make_shared<Impl>();
  impl->pkey = std::move(pkey);
  impl->type = type;
  key.impl_ = std::move(impl);
  key.public_ = std::move(*pub);
  return key;
}

Result<PrivateKey> PrivateKey::from_pem(std::string_view pkcs8_pem) {
  std::string_view pem = trim(pkcs8_pem);
  if (!pem.starts_with(kPrivatePemHeader)) {
    return fail(Errc::invalid_argument,
                "private key is not an unencrypted PKCS#8 PEM: it must start with \"" +
                    std::string(kPrivatePemHeader) +
                    "\" (convert with `openssl pkcs8 -topk8 -nocrypt`)");
  }
  BioPtr bio = detail::mem_bio(pem);
  if (!bio) return fail(Errc::invalid_argument, "private key PEM too large");
  PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  if (!pkey) {
    return fail(Errc::invalid_argument,
                "private key PEM does not parse (" + take_openssl_error() + ")");
  }
  if (!only_whitespace_left(bio.get())) {
    return fail(Errc::invalid_argument, "private key PEM has data after its END line");
  }
  auto type = detect_private_type(pkey.get());
  if (!type) return tl::unexpected(std::move(type).error().context("private key"));

  auto value = tuf_public_value(pkey.get(), *type);
  if (!value) return tl::unexpected(std::move(value).error());
  auto [keytype, scheme] = tuf_names(*type);
  auto pub = PublicKey::from_tuf(keytype, scheme, *value);
  if (!pub) return tl::unexpected(std::move(pub).error().context("private key"));

  PrivateKey key;
  auto impl = std::make_shared<Impl>();
  impl->pkey = std::move(pkey);
  impl->type = *type;
  key.impl_ = std::move(impl);
  key.public_ = std::move(*pub);
  return key;
}

std::string PrivateKey::to_pem() const {
  if (!impl_) return {};
  // A secure-memory BIO: its buffer is wiped when freed.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), impl_->pkey.get(), nullptr, nullptr, 0, nullptr,
                                       nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  return detail::bio_to_string(bio.get());
}

Result<std::vector<uint8_t>> PrivateKey::sign(std::span<const uint8_t> message) const {
  if (!impl_) return fail(Errc::invalid_argument, "cannot sign with an empty PrivateKey");
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  int max_len = EVP_PKEY_get_size(impl_->pkey.get());
  if (max_len <= 0 || !ctx ||
      EVP_DigestSignInit(ctx.get(), &pctx, digest_for(impl_->type), nullptr, impl_->pkey.get()) !=
          1 ||
      !configure_padding(pctx, impl_->type, /*signing=*/true)) {
    return fail(Errc::internal, "signing setup failed (" + take_openssl_error() + ")");
  }
  std::vector<uint8_t> sig(static_cast<size_t>(max_len));
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, ptr_or_empty(message), message.size()) != 1) {
    return fail(Errc::internal, "signing failed (" + take_openssl_error() + ")");
  }
  sig.resize(len);  // ECDSA DER signatures vary in length
  return sig;
}

}  // namespace mup::crypto
