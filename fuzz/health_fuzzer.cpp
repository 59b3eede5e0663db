// The health module's readers of bytes it did not make: a thresholds body (PUT
// /v1/health/{name}/thresholds) or file, a size ("512M"), and the proxy's statistics, the
// services and deployment decisions fed to the score, the trend and the /metrics writer.
// Any input either fails cleanly or gives thresholds that serialise back to themselves;
// nothing may throw or crash.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "health/node_metrics.hpp"
#include "health/score.hpp"
#include "health/thresholds.hpp"
#include "health/window.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nlohmann::json;
  namespace h = mup::health;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)h::parse_bytes(text);
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  if (auto t = h::thresholds_from_json(j)) {
    auto again = h::thresholds_from_json(h::to_json(*t));
    if (!again || !(*again == *t)) std::abort();
  }
  h::HealthMetrics m;
  h::traffic_window(j, 1'700'000'000, 60, m);
  auto snap = h::latency_snapshot(j, 0);
  h::latency_window(&snap, snap, m);
  h::latency_window(nullptr, snap, m);
  (void)h::assess(m, {});
  (void)h::trend_of(j.is_object() && j.contains("per_second") ? j["per_second"] : j, {},
                    1'700'000'000);
  h::NodeMetricsInput in;
  in.stats = j;
  in.services = j;
  in.health = j;
  in.deployments.push_back({1, "c", "immediate", "rolled-back", j});
  (void)h::render_node_metrics(in);
  return 0;
}
