// Micro-benchmarks of the engine's hot paths, for profiling changes to them:
//   build/bench/engine_bench [--benchmark_filter=...]
// (The comparison with the peers on real version pairs is bench/compare.sh.)
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "chunk/fastcdc.hpp"
#include "core/sha256.hpp"
#include "core/zstd.hpp"
#include "delta/bsdiff.hpp"
#include "delta/tensor_delta.hpp"

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Bytes that look like code: short repeated motifs with random operands.
std::vector<uint8_t> code_like(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v;
  v.reserve(n);
  const uint8_t motifs[4][4] = {
      {0x48, 0x89, 0xe5, 0}, {0xe8, 0, 0, 0}, {0x48, 0x8b, 0x45, 0}, {0x0f, 0x1f, 0x44, 0}};
  while (v.size() < n) {
    const uint8_t* m = motifs[rng() % 4];
    v.insert(v.end(), m, m + 3);
    v.push_back(static_cast<uint8_t>(rng()));
  }
  v.resize(n);
  return v;
}

void BM_FastCdcSplit(benchmark::State& s) {
  auto data = random_bytes(64 << 20, 1);
  mup::chunk::Chunker c({});
  for (auto _ : s) benchmark::DoNotOptimize(c.split(data));
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_FastCdcSplit)->Unit(benchmark::kMillisecond);

void BM_Sha256(benchmark::State& s) {
  auto data = random_bytes(64 << 20, 2);
  for (auto _ : s) benchmark::DoNotOptimize(mup::sha256(data));
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_Sha256)->Unit(benchmark::kMillisecond);

void BM_ZstdChunk(benchmark::State& s) {
  auto data = code_like(64 << 10, 3);
  for (auto _ : s)
    benchmark::DoNotOptimize(mup::zstd::compress(data, static_cast<int>(s.range(0))));
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_ZstdChunk)->Arg(3)->Arg(19);

void BM_BsdiffMake(benchmark::State& s) {
  auto base = code_like(4 << 20, 4);
  auto target = base;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 2000; ++i)
    target[rng() % target.size()] ^= 1;  // a "rebuild": scattered edits
  for (auto _ : s) benchmark::DoNotOptimize(mup::delta::bsdiff::make(base, target, 9));
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(target.size()));
}
BENCHMARK(BM_BsdiffMake)->Unit(benchmark::kMillisecond);

void BM_TensorDeltaMake(benchmark::State& s) {
  size_t n = 16 << 20;
  std::mt19937_64 rng(6);
  std::normal_distribution<float> g(0.f, 0.02f);
  std::vector<float> w(n / 4), w2;
  for (auto& x : w) x = g(rng);
  w2 = w;
  for (size_t i = 0; i < w2.size() / 10; ++i) w2[i] += 0.0002f * g(rng) / 0.02f;
  std::span<const uint8_t> a(reinterpret_cast<const uint8_t*>(w.data()), n);
  std::span<const uint8_t> b(reinterpret_cast<const uint8_t*>(w2.data()), n);
  for (auto _ : s) benchmark::DoNotOptimize(mup::delta::tensor::make(a, b, 3));
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(n));
}
BENCHMARK(BM_TensorDeltaMake)->Unit(benchmark::kMillisecond);

}  // namespace
