#include "delta/tensor_delta.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "core/zstd.hpp"
#include "test_util.hpp"

namespace mup::delta::tensor {
namespace {

using Bytes = std::vector<uint8_t>;

struct Tensor {
  std::string name;
  std::string dtype;
  std::vector<size_t> shape;
  Bytes data;
};

// A safetensors file: 8-byte little-endian header length, JSON header, tensor data.
Bytes safetensors(const std::vector<Tensor>& tensors) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  size_t offset = 0;
  for (const Tensor& t : tensors) {
    header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i > 0) header += ',';
      header += std::to_string(t.shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.data.size()) + "]}";
    offset += t.data.size();
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  Bytes out(8 + header.size() + offset);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  size_t at = 8 + header.size();
  for (const Tensor& t : tensors) {
    if (!t.data.empty()) std::memcpy(out.data() + at, t.data.data(), t.data.size());
    at += t.data.size();
  }
  return out;
}

std::vector<float> gaussian(size_t n, float stddev, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

Bytes as_bytes(const std::vector<float>& v) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// w += 0.01 * std * gaussian, the way a short fine-tune moves weights.
std::vector<float> perturbed(std::vector<float> v, float stddev, uint64_t seed) {
  auto noise = gaussian(v.size(), 0.01f * stddev, seed);
  for (size_t i = 0; i < v.size(); ++i) v[i] += noise[i];
  return v;
}

// 16-bit floats: F16 by hand (normal range only), BF16 as the top half of a float.
Bytes to_f16(const std::vector<float>& v) {
  Bytes b(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t f;
    std::memcpy(&f, &v[i], 4);
    const uint32_t sign = (f >> 16) & 0x8000;
    int exp = static_cast<int>((f >> 23) & 0xff) - 127 + 15;
    uint32_t h = exp <= 0    ? sign
                 : exp >= 31 ? sign | 0x7c00
                             : sign | (exp << 10) | ((f >> 13) & 0x3ff);
    b[2 * i] = static_cast<uint8_t>(h);
    b[2 * i + 1] = static_cast<uint8_t>(h >> 8);
  }
  return b;
}
Bytes to_bf16(const std::vector<float>& v) {
  Bytes b(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t f;
    std::memcpy(&f, &v[i], 4);
    b[2 * i] = static_cast<uint8_t>(f >> 16);
    b[2 * i + 1] = static_cast<uint8_t>(f >> 24);
  }
  return b;
}

struct ModelPair {
  Bytes v1, v2;
};

// Embedding and two layers in F32, one F16, one BF16 and one I64 tensor; some perturbed.
ModelPair small_model(bool perturb = true) {
  auto emb = gaussian(64 * 512, 0.02f, 1);
  auto q = gaussian(256 * 256, 0.05f, 2);
  auto k = gaussian(256 * 256, 0.05f, 3);
  auto h = gaussian(128 * 128, 0.1f, 4);
  auto bf = gaussian(128 * 128, 0.1f, 5);
  auto norm = std::vector<float>(256, 1.0f);
  Bytes ids = test::random_bytes(8 * 100, 6);
  auto model = [&](const std::vector<float>& q_, const std::vector<float>& h_,
                   const std::vector<float>& bf_, const std::vector<float>& norm_) {
    return safetensors({{"embed", "F32", {64, 512}, as_bytes(emb)},
                        {"layer.q", "F32", {256, 256}, as_bytes(q_)},
                        {"layer.k", "F32", {256, 256}, as_bytes(k)},
                        {"layer.norm", "F32", {256}, as_bytes(norm_)},
                        {"half", "F16", {128, 128}, to_f16(h_)},
                        {"brain", "BF16", {128, 128}, to_bf16(bf_)},
                        {"ids", "I64", {100}, ids}});
  };
  ModelPair p;
  p.v1 = model(q, h, bf, norm);
  if (!perturb) {
    p.v2 = p.v1;
    return p;
  }
  auto norm2 = norm;
  norm2[7] = 1.5f;
  p.v2 = model(perturbed(q, 0.05f, 7), perturbed(h, 0.1f, 8), perturbed(bf, 0.1f, 9), norm2);
  return p;
}

Result<Bytes> apply_all(std::span<const uint8_t> base, std::span<const uint8_t> patch,
                        uint64_t target_size) {
  Bytes out;
  auto st = apply(base, patch, target_size, [&](std::span<const uint8_t> b) -> Status {
    out.insert(out.end(), b.begin(), b.end());
    return {};
  });
  if (!st) return tl::unexpected(st.error());
  return out;
}

Bytes round_trip(const Bytes& base, const Bytes& target) {
  auto patch = make(base, target, 3);
  EXPECT_TRUE(patch) << patch.error().message();
  if (!patch) return {};
  auto out = apply_all(base, *patch, target.size());
  EXPECT_TRUE(out) << out.error().message();
  EXPECT_TRUE(out && *out == target) << "round trip differs";
  return *patch;
}

TEST(TensorDelta, ApplicableToSameLayoutSafetensors) {
  auto m = small_model();
  EXPECT_TRUE(applicable(m.v1, m.v2));
  EXPECT_TRUE(applicable(m.v1, m.v1));
}

TEST(TensorDelta, NotApplicableToDifferentHeaders) {
  auto a = safetensors({{"w", "F32", {256, 256}, as_bytes(gaussian(65536, 0.05f, 1))}});
  auto b = safetensors({{"v", "F32", {256, 256}, as_bytes(gaussian(65536, 0.05f, 1))}});
  ASSERT_EQ(a.size(), b.size());
  // Same size and float data, but the layouts differ (names, shapes): not a tensor pair.
  auto c = safetensors({{"w", "F32", {128, 512}, as_bytes(gaussian(65536, 0.05f, 1))}});
  ASSERT_EQ(a.size(), c.size());
  EXPECT_FALSE(applicable(a, b));
  EXPECT_FALSE(applicable(a, c));
  EXPECT_TRUE(applicable(a, a));
  // make() still codes such a pair correctly, just without the tensor layout.
  round_trip(a, c);
  Bytes text = test::text_bytes(a.size(), 2);
  EXPECT_FALSE(applicable(a, text));
  EXPECT_FALSE(applicable(text, a));
}

TEST(TensorDelta, NotApplicableToDifferentSizesOrNonFloats) {
  auto m = small_model();
  Bytes longer = m.v2;
  longer.push_back(0);
  EXPECT_FALSE(applicable(m.v1, longer));
  EXPECT_FALSE(applicable({}, {}));
  Bytes r1 = test::random_bytes(1 << 20, 1), r2 = test::random_bytes(1 << 20, 2);
  EXPECT_FALSE(applicable(r1, r2));
  Bytes t1 = test::text_bytes(1 << 20, 3), t2 = test::text_bytes(1 << 20, 4);
  EXPECT_FALSE(applicable(t1, t2));
  // Raw float arrays qualify, but not when small or of odd size.
  Bytes f1 = as_bytes(gaussian(1 << 16, 0.05f, 5)), f2 = as_bytes(gaussian(1 << 16, 0.05f, 6));
  EXPECT_TRUE(applicable(f1, f2));
  EXPECT_FALSE(applicable(f1, r1));
  Bytes s1(f1.begin(), f1.begin() + 4096), s2(f2.begin(), f2.begin() + 4096);
  EXPECT_FALSE(applicable(s1, s2));
  Bytes o1(f1.begin(), f1.end() - 1), o2(f2.begin(), f2.end() - 1);
  EXPECT_FALSE(applicable(o1, o2));
}

TEST(TensorDelta, RoundTripSafetensorsWithF32F16BF16) {
  auto m = small_model();
  round_trip(m.v1, m.v2);
  round_trip(m.v2, m.v1);
}

TEST(TensorDelta, PerturbedModelBeatsPlainZstdAndXor) {
  auto m = small_model();
  Bytes patch = round_trip(m.v1, m.v2);
  auto plain = zstd::compress(m.v2, 19);
  ASSERT_TRUE(plain);
  EXPECT_LT(patch.size() * 2, plain->size());
  Bytes x(m.v1.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = m.v1[i] ^ m.v2[i];
  auto xored = zstd::compress(x, 19);
  ASSERT_TRUE(xored);
  EXPECT_LT(patch.size(), xored->size());
}

TEST(TensorDelta, IdenticalModelsCostAlmostNothing) {
  auto m = small_model(false);
  Bytes patch = round_trip(m.v1, m.v2);
  EXPECT_LT(patch.size(), 100u);
}

TEST(TensorDelta, RoundTripSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float den = std::numeric_limits<float>::denorm_min();
  std::vector<float> a = gaussian(1 << 15, 1.0f, 11), b = a;
  const float specials[] = {0.0f, -0.0f, inf, -inf, nan, -nan, den, -den, 1e-38f, -3e38f, 3e38f};
  for (size_t i = 0; i < a.size(); i += 37) {
    a[i] = specials[i % 11];
    b[i] = specials[(i / 37) % 11];
  }
  for (size_t i = 1; i < b.size(); i += 101) b[i] = -b[i];  // sign flips
  Bytes ba = as_bytes(a), bb = as_bytes(b);
  round_trip(ba, bb);
  round_trip(bb, ba);
  auto t1 = safetensors({{"w", "F32", {a.size()}, ba}, {"h", "F16", {a.size()}, to_f16(a)}});
  auto t2 = safetensors({{"w", "F32", {b.size()}, bb}, {"h", "F16", {b.size()}, to_f16(b)}});
  round_trip(t1, t2);
}

TEST(TensorDelta, RoundTripRawFloatsAndArbitraryBytes) {
  auto a = gaussian(1 << 17, 0.05f, 12);
  round_trip(as_bytes(a), as_bytes(perturbed(a, 0.05f, 13)));
  // make() also works on same-size inputs it is not meant for (XOR coding).
  round_trip(test::random_bytes(100000, 14), test::random_bytes(100000, 15));
  round_trip(test::random_bytes(5, 16), test::random_bytes(5, 17));
  round_trip({}, {});
}

TEST(TensorDelta, RoundTripLargerThanOneBlock) {
  auto a = gaussian(3 << 20, 0.05f, 18);  // 12 MiB: several blocks
  auto b = a;
  for (size_t i = 0; i < b.size(); i += 3) b[i] += 0.0005f;
  round_trip(as_bytes(a), as_bytes(b));
}

TEST(TensorDelta, MakeRefusesDifferentSizes) {
  auto r = make(Bytes(10), Bytes(11), 3);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Errc::invalid_argument);
}

TEST(TensorDelta, RejectsWrongSizes) {
  auto m = small_model();
  auto patch = make(m.v1, m.v2, 3);
  ASSERT_TRUE(patch);
  for (uint64_t size : {uint64_t{0}, uint64_t{m.v2.size() - 1}, uint64_t{m.v2.size() + 1}}) {
    auto out = apply_all(m.v1, *patch, size);
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code(), Errc::corrupt);
  }
  Bytes short_base(m.v1.begin(), m.v1.end() - 4);
  auto out = apply_all(short_base, *patch, m.v2.size());
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code(), Errc::corrupt);
}

TEST(TensorDelta, RejectsTruncatedPatches) {
  auto m = small_model();
  auto patch = make(m.v1, m.v2, 3);
  ASSERT_TRUE(patch);
  for (size_t n = 0; n < patch->size(); n += std::max<size_t>(1, patch->size() / 300)) {
    Bytes cut(patch->begin(), patch->begin() + n);
    auto out = apply_all(m.v1, cut, m.v2.size());
    ASSERT_FALSE(out) << "accepted a patch cut at " << n;
    EXPECT_EQ(out.error().code(), Errc::corrupt);
  }
  Bytes longer = *patch;
  longer.push_back(0);
  auto out = apply_all(m.v1, longer, m.v2.size());
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code(), Errc::corrupt);
}

TEST(TensorDelta, FlippedBytesNeverCrash) {
  auto m = small_model();
  auto patch = make(m.v1, m.v2, 3);
  ASSERT_TRUE(patch);
  auto noise = test::random_bytes(3000, 19);
  int rejected = 0;
  for (size_t k = 0; k + 2 < noise.size(); k += 3) {
    Bytes bad = *patch;
    // Half of the flips land in the first 64 bytes (header, region table, block modes).
    size_t at = (size_t{noise[k]} << 16 | size_t{noise[k + 1]} << 8 | noise[k + 2]);
    at = (k % 2) ? at % 64 : at % bad.size();
    bad[at] ^= static_cast<uint8_t>(1u << (k % 8));
    auto out = apply_all(m.v1, bad, m.v2.size());
    if (!out) {
      EXPECT_EQ(out.error().code(), Errc::corrupt) << out.error().message();
      ++rejected;
    } else {
      EXPECT_EQ(out->size(), m.v2.size());
    }
  }
  EXPECT_GT(rejected, 100);
}

}  // namespace
}  // namespace mup::delta::tensor
