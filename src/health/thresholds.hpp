// Health thresholds per component, and where they are kept.
//
// A component's thresholds say when its versions are in trouble (score.hpp uses them for the
// score's penalties and the alert levels). Components without their own use the defaults
// below. `mup health thresholds NAME --error-rate 0.05 --p99-ms 500 --cpu 90 --memory 512M`
// sets them through the agent (PUT /v1/health/{name}/thresholds).
//
// Kept in <root>/health/thresholds.json, replaced atomically (fs::write_file_atomic: temp,
// fsync, rename, fsync the directory), not in state.db: they are operator settings the
// agent alone reads, not part of the journal's crash-recovery story, so they need no
// transaction with other rows, and a file keeps them out of the numbered schema migrations
// other work is adding to state.db. Shape: {"version":1,"components":{name:Thresholds}}.
//
// ThresholdStore is thread-safe; a failed write leaves the file and the store as they were.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mup::health {

struct Thresholds {
  double error_rate = 0.05;              // failed / requests over the window
  double p99_ms = 500;                   // p99 response time over the window
  double cpu_percent = 90;               // of one CPU, the busiest instance
  uint64_t memory_bytes = 512ull << 20;  // RSS of the largest instance
  uint64_t min_requests = 10;            // fewer in the window: traffic health unknown
  bool operator==(const Thresholds&) const = default;
};

// {"error_rate","p99_ms","cpu_percent","memory_bytes","min_requests"}
nlohmann::json to_json(const Thresholds& t);
// Fields absent from `j` keep their value in `base`; an unknown field, a wrong type or a
// value out of range is an error naming the field (Errc::invalid_argument, "field: ...").
[[nodiscard]] Result<Thresholds> thresholds_from_json(const nlohmann::json& j,
                                                      Thresholds base = {});
// "512M", "1G", "800K", "1048576" (bytes; K/M/G/T are powers of 1024, "MiB"/"MB" accepted).
[[nodiscard]] Result<uint64_t> parse_bytes(std::string_view text);

class ThresholdStore {
 public:
  // Reads `file` when it exists; a missing file means only defaults.
  [[nodiscard]] static Result<ThresholdStore> open(std::filesystem::path file);
  ThresholdStore(ThresholdStore&& o) noexcept;

  Thresholds get(const std::string& component) const;  // the defaults when none were set
  bool has(const std::string& component) const;
  [[nodiscard]] Status set(const std::string& component, const Thresholds& t);
  [[nodiscard]] Status reset(const std::string& component);  // back to the defaults

 private:
  explicit ThresholdStore(std::filesystem::path file) : file_(std::move(file)) {}
  [[nodiscard]] Status save(const std::map<std::string, Thresholds>& all) const;

  std::filesystem::path file_;
  mutable std::mutex mu_;
  std::map<std::string, Thresholds> by_component_;
};

}  // namespace mup::health
