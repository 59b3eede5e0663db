#include "crypto/crypto.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace mup::crypto {
namespace {

std::vector<uint8_t> bytes(std::string_view s) {
  return {s.begin(), s.end()};
}

std::vector<uint8_t> hex(std::string_view h) {
  auto r = from_hex(h);
  EXPECT_TRUE(r.has_value()) << h;
  return r ? *r : std::vector<uint8_t>{};
}

// ---- Fixtures made once with the openssl 3.0 CLI ------------------------------------------
//   printf 'mup fixture message\n' > msg
//   openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem
//   openssl dgst -sha256 -sign ec.pem -out ec.sig msg
//   openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem
//   openssl dgst -sha256 -sign rsa.pem -sigopt rsa_padding_mode:pss
//     -sigopt rsa_pss_saltlen:digest -out rsa.sig msg          (and saltlen:max)
//   openssl genpkey -algorithm ed25519 -out ed.pem
//   openssl pkeyutl -sign -rawin -inkey ed.pem -in msg -out ed.sig
constexpr std::string_view kFixtureMessage = "mup fixture message\n";

constexpr std::string_view kEcPublic = R"(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElKlGdAxge+3vtNAZuxdbiH69kGJG
WREmGRrs2dU1q3wKdFzylUfT7IhjjUjjhv/i/saEgObpD0sitkK4LI265g==
-----END PUBLIC KEY-----
)";
constexpr std::string_view kEcSignature =
    "3045022100ca6ed2eff1925ec41d119716514b281790c67831bde6f8e2420aa45e17d22cea022073ce9f4fa29"
    "21f794ca15ec40e8318d0f18b6b4383d44746496564c23838fc6b";

constexpr std::string_view kRsaPublic = R"(-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA5HVx0VU4Mh4t8TDeO2kt
iqaBszNdo34atiWLxyLImRkHaHkO8tVblj7+YhgpPAHbsI/30qkqZZyFvr7urXnW
XF/WA8xUcxV1lfczg4tm00qR226//+n2m1SmJUYfYJd/m+H4noE1R7aFN0xHMRVL
l0ubruE7ww5Ris5NAIFClgA4hkJVYH5TXhdpS26VuuYWmxyFlIYSx3B2/jble9xn
baHnNelUXO+PoBlR8YSQRhFzpR5gtc54XIdqTADmWubWSuD9yQl5CBoyOsNYoqia
CqBy2qS+Djm3sPRzHfVTyKKyxpuEB0+r+odlaFSYYTiLlp7Fv9IETkxxCZ3srjXZ
rQIDAQAB
-----END PUBLIC KEY-----
)";
// rsa_pss_saltlen:digest (what securesystemslib writes).
constexpr std::string_view kRsaSignatureDigestSalt =
    "8638f7bc18f65dba73802bf7c361a9feaaef8dfda86c106bbe88b06e62aae3dbc38e9b6d36029a045970304e5"
    "38de9aa9235e7f97edc3f42586995720daf156b40bc7160948a117c6557097e76c648d9cb2a6d99b54cfe89d6"
    "5deeff0e8e3337a4dfb3bed0285e6bf2073ee61a3018c53e71ab39242d2bff5d885b35f2a9bbf1a8707b91ce4"
    "d040aed1daf79ebf34cd13a965f25c3cce3fb8d6004017da72d9698e4ebbee1aaadb85e6e8d8ead9a9731b385"
    "76e05f84c6869661f720374d0a803085a3bd22c96361535ded8c48198ec8a6716eb0b2b67f6d58e792778c6e3"
    "31a946739ea6b9cf3c72fde017a25bbba7a429fa04241f4dc8636158aeb1a5e9a5e";
// rsa_pss_saltlen:max.
constexpr std::string_view kRsaSignatureMaxSalt =
    "617e95dfceb45628701b9671faf19b02ca7c45817c030b92dc02ce17a8fa98dbd93724fe50e435eb0c4fbe07a"
    "3932c5c5552a98a37e16574414ac884d528d5ae83775677dce1d151edd92a6c6d4f18b0cdd8cecb9b3646e6d9"
    "3c4aff63d6e525e55a280079d9cf4c8235ee25f4bb00c13839eddccc0646849466885b9258f700d11946a4307"
    "37916929679ea02e52c40a46389fdd405fa702be6678a61e09a28ea980c360b39e3573fd4ad70a9a27b8e0a58"
    "7b6ce8cadb3b8e0a28689a3e961331544e631333f70b18e1401e3b942e5cc8f3486a25005a819423093007fed"
    "42d8036fa30da6aae329d742019102237399af5b6bf68b046f0bef6e4bd473be0f9";

constexpr std::string_view kP384Public = R"(-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEljbr/prcoHJB2mfrEaktTkaBrogsRmYM
iZh6F3THwEazRcRnOsrL0Kqjzs6hbgQ7nvRJ1Jos1HNHsus13KxwEz++m2PEImQY
4q0HL8FjqUEVEShL4rKeVFzZUcNUn5Er
-----END PUBLIC KEY-----
)";
constexpr std::string_view kRsa1024Public = R"(-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCdT2qMxWN4qL5vnA8ETIIiHHqv
yUMbRihaEcN+w6nNWBAvqQfdyrmC48VF6hPCJsExwBUvK1bFoqA4G8pXmYKmd23W
6TyppVHCvWjNHOhcJ2ZxKynrY83FCZ5t9T8t4amHfSNyYBYoPGMa4mW4ae68MhUQ
nag+VexnxFz346j3/wIDAQAB
-----END PUBLIC KEY-----
)";
constexpr std::string_view kEd25519PemPublic = R"(-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAyk1OIf+f7OADAZgEKAG6rI1e+/JKLz3TIrpVgvX1ML4=
-----END PUBLIC KEY-----
)";
constexpr std::string_view kEd25519Private = R"(-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINzj28UjsK6PfbtWQaP4fffKLp4KMT4cefmlFQWuFU8S
-----END PRIVATE KEY-----
)";
constexpr std::string_view kEd25519PrivatePublicHex =
    "ca4d4e21ff9fece0030198042801baac8d5efbf24a2f3dd322ba5582f5f530be";
constexpr std::string_view kEd25519PrivateSignature =
    "b31511cec4de5baf458f2cc6647ec749f98503d23b33d01614ad774f2351ff757fb8a0d3e2351618d50a1f7b4"
    "14b3258b51256404666cde03e85bf39b2ce930c";

// RFC 8032 section 7.1, TEST 1.
constexpr std::string_view kRfc8032Public =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
constexpr std::string_view kRfc8032Signature =
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701"
    "cf9b46bd25bf5f0595bbe24655141438e7a100b";

PublicKey must_key(std::string_view keytype, std::string_view scheme, std::string_view value) {
  auto k = PublicKey::from_tuf(keytype, scheme, value);
  EXPECT_TRUE(k.has_value()) << (k ? "" : k.error().message());
  return k ? *k : PublicKey();
}

// ---- hex ----------------------------------------------------------------------------------

TEST(Hex, RoundTripLowercaseOutEitherCaseIn) {
  std::vector<uint8_t> b = {0x00, 0x01, 0xab, 0xff, 0x7f};
  EXPECT_EQ(to_hex(b), "0001abff7f");
  EXPECT_EQ(*from_hex("0001abff7f"), b);
  EXPECT_EQ(*from_hex("0001ABFF7F"), b);
  EXPECT_EQ(*from_hex("0001AbfF7f"), b);
  EXPECT_EQ(to_hex({}), "");
  EXPECT_TRUE(from_hex("")->empty());
}

TEST(Hex, RejectsOddLengthAndNonHex) {
  for (std::string_view bad : {"0", "abc", "0g", "g0", "zz", "12 4", "0x12", "12\n", "-1"}) {
    auto r = from_hex(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Errc::invalid_argument) << bad;
  }
  EXPECT_NE(from_hex("12x4").error().message().find("offset 2"), std::string::npos);
}

// ---- public keys --------------------------------------------------------------------------

TEST(PublicKey, Rfc8032Test1) {
  auto key = must_key("ed25519", "ed25519", kRfc8032Public);
  EXPECT_EQ(key.type(), KeyType::ed25519);
  auto sig = hex(kRfc8032Signature);
  EXPECT_TRUE(key.verify({}, sig));
  EXPECT_FALSE(key.verify(bytes("x"), sig));
  sig[10] ^= 0x01;
  EXPECT_FALSE(key.verify({}, sig));
}

TEST(PublicKey, AcceptsUppercaseEd25519HexAndKeepsValueAsGiven) {
  std::string upper(kRfc8032Public);
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto key = must_key("ed25519", "ed25519", upper);
  EXPECT_EQ(key.public_value(), upper);
  EXPECT_TRUE(key.verify({}, hex(kRfc8032Signature)));
}

TEST(PublicKey, OpensslEcdsaFixture) {
  auto msg = bytes(kFixtureMessage);
  for (std::string_view keytype : {"ecdsa", "ecdsa-sha2-nistp256"}) {
    auto key = must_key(keytype, "ecdsa-sha2-nistp256", kEcPublic);
    EXPECT_EQ(key.type(), KeyType::ecdsa_p256);
    EXPECT_EQ(key.keytype(), keytype);
    EXPECT_EQ(key.scheme(), "ecdsa-sha2-nistp256");
    EXPECT_EQ(key.public_value(), kEcPublic);
    auto sig = hex(kEcSignature);
    EXPECT_TRUE(key.verify(msg, sig));
    auto other = msg;
    other[0] ^= 0x20;
    EXPECT_FALSE(key.verify(other, sig));
    for (size_t i = 0; i < sig.size(); ++i) {
      auto bad = sig;
      bad[i] ^= 0x01;
      EXPECT_FALSE(key.verify(msg, bad)) << "byte " << i;
    }
    // DER with trailing garbage is not the same signature.
    auto trailing = sig;
    trailing.push_back(0);
    EXPECT_FALSE(key.verify(msg, trailing));
  }
}

TEST(PublicKey, OpensslRsaPssFixtureDigestAndMaxSalt) {
  auto key = must_key("rsa", "rsassa-pss-sha256", kRsaPublic);
  EXPECT_EQ(key.type(), KeyType::rsa_pss);
  auto msg = bytes(kFixtureMessage);
  for (auto fixture : {kRsaSignatureDigestSalt, kRsaSignatureMaxSalt}) {
    auto sig = hex(fixture);
    EXPECT_TRUE(key.verify(msg, sig));
    auto other = msg;
    other.back() ^= 0x01;
    EXPECT_FALSE(key.verify(other, sig));
    for (size_t i : {size_t{0}, size_t{1}, sig.size() / 2, sig.size() - 1}) {
      auto bad = sig;
      bad[i] ^= 0x80;
      EXPECT_FALSE(key.verify(msg, bad)) << "byte " << i;
    }
  }
}

void expect_rejected(std::string_view keytype, std::string_view scheme, std::string_view value,
                     std::string_view why_contains) {
  auto r = PublicKey::from_tuf(keytype, scheme, value);
  ASSERT_FALSE(r) << keytype << "/" << scheme;
  EXPECT_EQ(r.error().code(), Errc::invalid_argument);
  EXPECT_NE(r.error().message().find(why_contains), std::string::npos)
      << "message: " << r.error().message();
}

TEST(PublicKey, RejectsMismatchedKeytypeAndScheme) {
  expect_rejected("ed25519", "ecdsa-sha2-nistp256", kRfc8032Public, "does not go with");
  expect_rejected("ecdsa", "ed25519", kEcPublic, "does not go with");
  expect_rejected("ecdsa-sha2-nistp256", "rsassa-pss-sha256", kEcPublic, "does not go with");
  expect_rejected("rsa", "ecdsa-sha2-nistp256", kRsaPublic, "does not go with");
  expect_rejected("rsa", "rsassa-pss-sha512", kRsaPublic, "does not go with");
  expect_rejected("rsa", "rsa-pkcs1v15-sha256", kRsaPublic, "does not go with");
  expect_rejected("ECDSA", "ecdsa-sha2-nistp256", kEcPublic, "unsupported key type");
  expect_rejected("sphincs", "sphincs-shake-128s", "00", "unsupported key type");
  expect_rejected("", "", "", "unsupported key type");
}

TEST(PublicKey, RejectsWrongAlgorithmCurveOrSize) {
  expect_rejected("ecdsa", "ecdsa-sha2-nistp256", kP384Public, "secp384r1");
  expect_rejected("ecdsa", "ecdsa-sha2-nistp256", kRsaPublic, "expected an EC P-256 key");
  expect_rejected("ecdsa", "ecdsa-sha2-nistp256", kEd25519PemPublic, "expected an EC P-256 key");
  expect_rejected("rsa", "rsassa-pss-sha256", kEcPublic, "expected an RSA key");
  expect_rejected("rsa", "rsassa-pss-sha256", kRsa1024Public, "1024 bits");
  // ed25519 values are raw hex in TUF, not PEM.
  expect_rejected("ed25519", "ed25519", kEd25519PemPublic, "64 hex digits");
}

TEST(PublicKey, RejectsMalformedValues) {
  expect_rejected("ed25519", "ed25519", "", "64 hex digits");
  expect_rejected("ed25519", "ed25519", std::string(kRfc8032Public) + "00", "64 hex digits");
  expect_rejected("ed25519", "ed25519", std::string(63, 'a') + "g", "non-hex");
  expect_rejected("ecdsa", "ecdsa-sha2-nistp256", "", "must start with");
  expect_rejected("ecdsa", "ecdsa-sha2-nistp256", "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
                  "must start with");
  expect_rejected("rsa", "rsassa-pss-sha256",
                  "-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n",
                  "does not parse");
  expect_rejected("rsa", "rsassa-pss-sha256", "-----BEGIN PUBLIC KEY-----\n", "does not parse");
  // Truncated body.
  std::string cut(kEcPublic);
  cut.erase(cut.find("WREm"), 20);
  expect_rejected("ecdsa", "ecdsa-sha2-nistp256", cut, "does not parse");
  // Two keys, or anything after the END line.
  expect_rejected("ecdsa", "ecdsa-sha2-nistp256", std::string(kEcPublic) + std::string(kEcPublic),
                  "after its END line");
  expect_rejected("ecdsa", "ecdsa-sha2-nistp256", std::string(kEcPublic) + "junk",
                  "after its END line");
  // PKCS#1 "RSA PUBLIC KEY" is not SubjectPublicKeyInfo.
  std::string pkcs1 = "-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----\n";
  expect_rejected("rsa", "rsassa-pss-sha256", pkcs1, "must start with");
  // Encrypted PEM headers: refused without prompting for a password.
  std::string encrypted(kEcPublic);
  encrypted.insert(encrypted.find('\n') + 1,
                   "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF"
                   "\n\n");
  expect_rejected("ecdsa", "ecdsa-sha2-nistp256", encrypted, "does not parse");
}

TEST(PublicKey, AcceptsSurroundingWhitespaceInPem) {
  auto key = must_key("ecdsa", "ecdsa-sha2-nistp256", "\n  " + std::string(kEcPublic) + "\n\n");
  EXPECT_TRUE(key.verify(bytes(kFixtureMessage), hex(kEcSignature)));
}

TEST(PublicKey, GarbageSignaturesOfAnyLengthAreFalse) {
  std::vector<PublicKey> keys = {must_key("ed25519", "ed25519", kRfc8032Public),
                                 must_key("ecdsa", "ecdsa-sha2-nistp256", kEcPublic),
                                 must_key("rsa", "rsassa-pss-sha256", kRsaPublic)};
  auto msg = bytes(kFixtureMessage);
  for (const auto& key : keys) {
    for (size_t len : {0, 1, 2, 8, 63, 64, 65, 70, 71, 72, 73, 255, 256, 257, 512, 4096}) {
      for (uint64_t seed = 1; seed <= 3; ++seed) {
        auto sig = test::random_bytes(len, seed * 1000 + len);
        EXPECT_FALSE(key.verify(msg, sig)) << key.keytype() << " len " << len;
      }
      EXPECT_FALSE(key.verify(msg, std::vector<uint8_t>(len, 0)));
      EXPECT_FALSE(key.verify(msg, std::vector<uint8_t>(len, 0xff)));
    }
  }
  // Plausible-looking DER with zero / out-of-range integers.
  auto ec = keys[1];
  EXPECT_FALSE(ec.verify(msg, hex("3006020100020100")));
  EXPECT_FALSE(ec.verify(msg, hex("3006020101020101")));
  EXPECT_FALSE(ec.verify(
      msg, hex("3046022100ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"
               "022100ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")));
  EXPECT_FALSE(PublicKey().verify(msg, hex(kEcSignature)));
}

TEST(PublicKey, CopiesShareTheKeyAndVerifyConcurrently) {
  auto key = must_key("ecdsa", "ecdsa-sha2-nistp256", kEcPublic);
  PublicKey copy = key;
  PublicKey assigned;
  assigned = copy;
  auto msg = bytes(kFixtureMessage);
  auto sig = hex(kEcSignature);
  EXPECT_TRUE(copy.verify(msg, sig));
  PublicKey moved = std::move(copy);
  EXPECT_TRUE(moved.verify(msg, sig));
  EXPECT_FALSE(copy.verify(msg, sig));  // NOLINT(bugprone-use-after-move): documented state
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (size_t t = 0; t < ok.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) ok[t] += assigned.verify(msg, sig) ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  for (int n : ok) EXPECT_EQ(n, 50);
}

// ---- private keys -------------------------------------------------------------------------

class PrivateKeyTest : public ::testing::TestWithParam<KeyType> {};

TEST_P(PrivateKeyTest, SignVerifyAndPemRoundTrip) {
  auto key = PrivateKey::generate(GetParam());
  ASSERT_TRUE(key) << key.error().message();
  const PublicKey& pub = key->public_key();
  EXPECT_EQ(pub.type(), GetParam());

  // public_key() is the TUF representation and parses back through from_tuf.
  switch (GetParam()) {
    case KeyType::ed25519:
      EXPECT_EQ(pub.keytype(), "ed25519");
      EXPECT_EQ(pub.scheme(), "ed25519");
      EXPECT_EQ(pub.public_value().size(), 64u);
      EXPECT_TRUE(from_hex(pub.public_value()));
      break;
    case KeyType::ecdsa_p256:
      EXPECT_EQ(pub.keytype(), "ecdsa");
      EXPECT_EQ(pub.scheme(), "ecdsa-sha2-nistp256");
      EXPECT_TRUE(pub.public_value().starts_with("-----BEGIN PUBLIC KEY-----"));
      break;
    case KeyType::rsa_pss:
      EXPECT_EQ(pub.keytype(), "rsa");
      EXPECT_EQ(pub.scheme(), "rsassa-pss-sha256");
      EXPECT_TRUE(pub.public_value().starts_with("-----BEGIN PUBLIC KEY-----"));
      break;
  }
  auto reparsed = PublicKey::from_tuf(pub.keytype(), pub.scheme(), pub.public_value());
  ASSERT_TRUE(reparsed) << reparsed.error().message();

  auto msg = bytes("targets.json canonical bytes");
  auto sig = key->sign(msg);
  ASSERT_TRUE(sig) << sig.error().message();
  EXPECT_TRUE(pub.verify(msg, *sig));
  EXPECT_TRUE(reparsed->verify(msg, *sig));
  auto empty_sig = key->sign({});
  ASSERT_TRUE(empty_sig);
  EXPECT_TRUE(pub.verify({}, *empty_sig));
  EXPECT_FALSE(pub.verify(msg, *empty_sig));

  for (size_t i : {size_t{0}, msg.size() / 2, msg.size() - 1}) {
    auto bad = msg;
    bad[i] ^= 0x01;
    EXPECT_FALSE(pub.verify(bad, *sig)) << "message byte " << i;
  }
  for (size_t i = 0; i < sig->size(); i += (GetParam() == KeyType::rsa_pss ? 37 : 1)) {
    auto bad = *sig;
    bad[i] ^= 0x04;
    EXPECT_FALSE(pub.verify(msg, bad)) << "signature byte " << i;
  }

  std::string pem = key->to_pem();
  EXPECT_TRUE(pem.starts_with("-----BEGIN PRIVATE KEY-----")) << pem.substr(0, 40);
  auto back = PrivateKey::from_pem(pem);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->public_key().public_value(), pub.public_value());
  EXPECT_EQ(back->to_pem(), pem);
  auto sig2 = back->sign(msg);
  ASSERT_TRUE(sig2);
  EXPECT_TRUE(pub.verify(msg, *sig2));

  // Another key of the same type does not verify it.
  auto other = PrivateKey::generate(GetParam());
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->public_key().verify(msg, *sig));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, PrivateKeyTest,
                         ::testing::Values(KeyType::ed25519, KeyType::ecdsa_p256, KeyType::rsa_pss),
                         [](const auto& info) {
                           switch (info.param) {
                             case KeyType::ed25519: return std::string("ed25519");
                             case KeyType::ecdsa_p256: return std::string("ecdsa_p256");
                             case KeyType::rsa_pss: return std::string("rsa_pss");
                           }
                           return std::string("unknown");
                         });

TEST(PrivateKey, GeneratedRsaIs3072Bits) {
  auto key = PrivateKey::generate(KeyType::rsa_pss);
  ASSERT_TRUE(key);
  auto sig = key->sign(bytes("m"));
  ASSERT_TRUE(sig);
  EXPECT_EQ(sig->size(), 3072u / 8);
}

TEST(PrivateKey, DefaultIsEd25519) {
  auto key = PrivateKey::generate();
  ASSERT_TRUE(key);
  EXPECT_EQ(key->public_key().type(), KeyType::ed25519);
}

TEST(PrivateKey, OpensslEd25519PemSignsLikeOpenssl) {
  auto key = PrivateKey::from_pem(kEd25519Private);
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(key->public_key().public_value(), kEd25519PrivatePublicHex);
  auto sig = key->sign(bytes(kFixtureMessage));
  ASSERT_TRUE(sig);
  EXPECT_EQ(to_hex(*sig), kEd25519PrivateSignature);  // Ed25519 is deterministic
}

TEST(PrivateKey, RejectsNonPkcs8AndGarbage) {
  for (std::string_view bad :
       {std::string_view(""), std::string_view("garbage"), kEcPublic,
        std::string_view("-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n"),
        std::string_view("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n"
                         "-----END ENCRYPTED PRIVATE KEY-----\n"),
        std::string_view("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n")}) {
    auto r = PrivateKey::from_pem(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Errc::invalid_argument);
  }
  auto trailing = PrivateKey::from_pem(std::string(kEd25519Private) + "x");
  ASSERT_FALSE(trailing);
  EXPECT_NE(trailing.error().message().find("after its END line"), std::string::npos);
}

TEST(PrivateKey, EmptyKeyCannotSign) {
  PrivateKey key;
  EXPECT_EQ(key.to_pem(), "");
  auto r = key.sign(bytes("m"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::invalid_argument);
}

// ---- random, AES-GCM, HKDF ----------------------------------------------------------------

TEST(Random, SizesAndDistinct) {
  EXPECT_TRUE(random_bytes(0)->empty());
  auto a = random_bytes(32);
  auto b = random_bytes(32);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);
}

AesKey test_key(uint8_t fill) {
  AesKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(fill + i);
  return k;
}

TEST(Aead, RoundTripVariousSizes) {
  auto key = test_key(1);
  auto aad = bytes("chunk 3f2a");
  for (size_t n : {0, 1, 15, 16, 17, 1000, 100000}) {
    auto plain = test::random_bytes(n, n + 7);
    auto sealed = seal(key, plain, aad);
    ASSERT_TRUE(sealed);
    EXPECT_EQ(sealed->size(), 12 + n + 16);
    auto opened = open(key, *sealed, aad);
    ASSERT_TRUE(opened) << opened.error().message();
    EXPECT_EQ(*opened, plain);
  }
  auto no_aad = seal(key, bytes("x"));
  ASSERT_TRUE(no_aad);
  EXPECT_EQ(*open(key, *no_aad), bytes("x"));
}

TEST(Aead, FreshNoncePerMessage) {
  auto key = test_key(2);
  auto a = seal(key, bytes("same"));
  auto b = seal(key, bytes("same"));
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(std::equal(a->begin(), a->begin() + 12, b->begin()));
}

TEST(Aead, EveryFlippedByteIsCorrupt) {
  auto key = test_key(3);
  auto aad = bytes("aad");
  auto sealed = seal(key, bytes("a small message"), aad);
  ASSERT_TRUE(sealed);
  for (size_t i = 0; i < sealed->size(); ++i) {
    for (uint8_t bit : {0x01, 0x80}) {
      auto bad = *sealed;
      bad[i] ^= bit;
      auto r = open(key, bad, aad);
      ASSERT_FALSE(r) << "byte " << i;
      EXPECT_EQ(r.error().code(), Errc::corrupt);
    }
  }
}

TEST(Aead, WrongAadKeyOrTruncatedIsCorrupt) {
  auto key = test_key(4);
  auto aad = bytes("v1");
  auto sealed = seal(key, bytes("payload"), aad);
  ASSERT_TRUE(sealed);
  EXPECT_EQ(open(key, *sealed, bytes("v2")).error().code(), Errc::corrupt);
  EXPECT_EQ(open(key, *sealed).error().code(), Errc::corrupt);
  EXPECT_EQ(open(test_key(5), *sealed, aad).error().code(), Errc::corrupt);
  for (size_t n = 0; n < sealed->size(); ++n) {
    auto r = open(key, std::span(*sealed).first(n), aad);
    ASSERT_FALSE(r) << "length " << n;
    EXPECT_EQ(r.error().code(), Errc::corrupt);
  }
  auto longer = *sealed;
  longer.push_back(0);
  EXPECT_EQ(open(key, longer, aad).error().code(), Errc::corrupt);
  // An empty message with no AAD still authenticates.
  auto empty = seal(key, {});
  ASSERT_TRUE(empty);
  EXPECT_TRUE(open(key, *empty)->empty());
  (*empty)[20] ^= 1;
  EXPECT_EQ(open(key, *empty).error().code(), Errc::corrupt);
}

TEST(Hkdf, Rfc5869TestCase1) {
  auto okm = hkdf_sha256(hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
                         hex("000102030405060708090a0b0c"), hex("f0f1f2f3f4f5f6f7f8f9"), 42);
  ASSERT_TRUE(okm) << okm.error().message();
  EXPECT_EQ(to_hex(*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(Hkdf, Rfc5869TestCase3EmptySaltAndInfo) {
  auto okm = hkdf_sha256(hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), {}, {}, 42);
  ASSERT_TRUE(okm) << okm.error().message();
  EXPECT_EQ(to_hex(*okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(Hkdf, LengthBounds) {
  auto ikm = bytes("secret");
  EXPECT_EQ(hkdf_sha256(ikm, {}, {}, 0).error().code(), Errc::invalid_argument);
  EXPECT_EQ(hkdf_sha256(ikm, {}, {}, size_t{255} * 32 + 1).error().code(), Errc::invalid_argument);
  EXPECT_EQ(hkdf_sha256(ikm, {}, {}, size_t{255} * 32)->size(), 255u * 32);
  EXPECT_TRUE(hkdf_sha256({}, {}, {}, 32));  // empty IKM is allowed by the RFC
}

// ---- device keys and key wrapping ---------------------------------------------------------

TEST(DeviceKey, Rfc7748Alice) {
  auto key = DeviceKey::from_private(
      hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(to_hex(key->public_key),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
}

TEST(DeviceKey, GenerateAndReload) {
  auto a = DeviceKey::generate();
  auto b = DeviceKey::generate();
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->private_key, b->private_key);
  auto again = DeviceKey::from_private(a->private_key);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->public_key, a->public_key);
  EXPECT_EQ(DeviceKey::from_private(hex("0011")).error().code(), Errc::invalid_argument);
}

TEST(KeyWrap, RoundTripAndWrongDevice) {
  auto device = DeviceKey::generate();
  auto other = DeviceKey::generate();
  ASSERT_TRUE(device && other);
  AesKey data_key = test_key(9);
  auto wrapped = wrap_key(data_key, device->public_key);
  ASSERT_TRUE(wrapped) << wrapped.error().message();
  EXPECT_EQ(wrapped->size(), 32u + 12 + 32 + 16);
  auto unwrapped = unwrap_key(*wrapped, *device);
  ASSERT_TRUE(unwrapped) << unwrapped.error().message();
  EXPECT_EQ(*unwrapped, data_key);

  auto again = wrap_key(data_key, device->public_key);
  ASSERT_TRUE(again);
  EXPECT_NE(*again, *wrapped);  // fresh ephemeral key each time

  auto wrong = unwrap_key(*wrapped, *other);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), Errc::corrupt);
}

TEST(KeyWrap, AlteredOrWrongLengthIsCorrupt) {
  auto device = DeviceKey::generate();
  ASSERT_TRUE(device);
  auto wrapped = wrap_key(test_key(10), device->public_key);
  ASSERT_TRUE(wrapped);
  for (size_t i = 0; i < wrapped->size(); ++i) {
    auto bad = *wrapped;
    bad[i] ^= 0x02;
    auto r = unwrap_key(bad, *device);
    ASSERT_FALSE(r) << "byte " << i;
    EXPECT_EQ(r.error().code(), Errc::corrupt);
  }
  EXPECT_EQ(unwrap_key(std::span(*wrapped).first(91), *device).error().code(), Errc::corrupt);
  EXPECT_EQ(unwrap_key({}, *device).error().code(), Errc::corrupt);
  // A low-order ephemeral point (all zeros) is refused, not turned into a zero secret.
  auto zero_eph = *wrapped;
  std::fill(zero_eph.begin(), zero_eph.begin() + 32, 0);
  EXPECT_EQ(unwrap_key(zero_eph, *device).error().code(), Errc::corrupt);
}

TEST(KeyWrap, RejectsBadRecipient) {
  EXPECT_EQ(wrap_key(test_key(11), hex("00")).error().code(), Errc::invalid_argument);
  std::array<uint8_t, 32> zero{};
  EXPECT_EQ(wrap_key(test_key(11), zero).error().code(), Errc::invalid_argument);
}

}  // namespace
}  // namespace mup::crypto
