// What signing and verifying costs a publish and a check, and how metadata grows with the
// number of targets:  build/bench/tuf_bench
//   BM_SignTargets/N    build + sign (Ed25519) a targets role of N targets
//   BM_ParseVerify/N    parse + threshold-verify it, as a client does
// Each reports the metadata size in bytes as the counter "bytes".
#include <benchmark/benchmark.h>

#include "core/sha256.hpp"
#include "crypto/crypto.hpp"
#include "package/manifest.hpp"
#include "tuf/metadata.hpp"

namespace {

using namespace mup;

tuf::Targets make_targets(int n) {
  tuf::Targets t;
  t.version = 2;
  t.expires = 2'000'000'000;
  for (int i = 0; i < n; ++i) {
    package::Manifest m;
    m.component = "component-" + std::to_string(i);
    m.type = package::PackageType::service;
    m.version = *package::Version::parse("1.2." + std::to_string(i));
    m.index_sha256 = sha256(std::vector<uint8_t>(4, static_cast<uint8_t>(i))).hex();
    m.index_target = m.component + "/" + m.version.str() + "/tree.idx";
    m.strategy = "rolling";
    m.size = 1'000'000 + static_cast<uint64_t>(i);
    std::vector<uint8_t> idx(100, static_cast<uint8_t>(i));
    t.targets[m.index_target] = tuf::TargetFile::for_data(idx, m.to_json());
  }
  return t;
}

void BM_SignTargets(benchmark::State& s) {
  auto key = *crypto::PrivateKey::generate();
  auto body = make_targets(static_cast<int>(s.range(0)));
  size_t bytes = 0;
  for (auto _ : s) {
    auto md = tuf::Metadata<tuf::Targets>::from_body(body);
    (void)md->sign(key);
    bytes = md->to_bytes().size();
  }
  s.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_SignTargets)->Arg(1)->Arg(1000)->Unit(benchmark::kMillisecond);

void BM_ParseVerify(benchmark::State& s) {
  auto key = *crypto::PrivateKey::generate();
  auto md = *tuf::Metadata<tuf::Targets>::from_body(make_targets(static_cast<int>(s.range(0))));
  (void)md.sign(key);
  auto bytes = md.to_bytes();
  tuf::Key k = tuf::Key::from_public(key.public_key());
  std::map<std::string, tuf::Key> keys{{k.keyid(), k}};
  tuf::Role role;
  role.keyids = {k.keyid()};
  role.threshold = 1;
  for (auto _ : s) {
    auto parsed = tuf::Metadata<tuf::Targets>::parse(bytes);
    if (!parsed || !parsed->verify_role(keys, role, "targets"))
      s.SkipWithError("verification failed");
  }
  s.counters["bytes"] = static_cast<double>(bytes.size());
}
BENCHMARK(BM_ParseVerify)->Arg(1)->Arg(1000)->Unit(benchmark::kMillisecond);

void BM_Ed25519Verify(benchmark::State& s) {
  auto key = *crypto::PrivateKey::generate();
  std::vector<uint8_t> msg(1000, 7);
  auto sig = *key.sign(msg);
  for (auto _ : s) benchmark::DoNotOptimize(key.public_key().verify(msg, sig));
}
BENCHMARK(BM_Ed25519Verify);

}  // namespace
