// Layout names and helpers shared by snapshot_store.cpp and system_snapshot.cpp.
// Internal to the snapshot module.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "snapshot/manifest.hpp"
#include "snapshot/snapshot_store.hpp"

namespace mup::snapshot {

inline constexpr std::string_view kSystemDir = "system";       // system snapshot records
inline constexpr std::string_view kRestoresDir = ".restores";  // restores in progress
inline constexpr std::string_view kManifestName = "manifest.json";
inline constexpr std::string_view kDataName = "data";
inline constexpr uint64_t kMaxManifestBytes = uint64_t{2} << 30;

// "<prefix>-<UTC yyyymmddThhmmss>-<6 hex random>".
std::string new_id(std::string_view prefix, int64_t now_ms);

// Reads and parses `<dir>/manifest.json`, which must carry `id`.
[[nodiscard]] Result<Manifest> load_manifest(const std::filesystem::path& dir, std::string_view id);

// Compares a snapshot's data with its manifest: names, types, modes, sizes, link targets,
// and with `contents` the SHA-256 of every file.
[[nodiscard]] Result<VerifyReport> check_snapshot(const Manifest& m,
                                                  const std::filesystem::path& dir, bool contents);

}  // namespace mup::snapshot
