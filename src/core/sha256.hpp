// SHA-256 digests (OpenSSL EVP; uses SHA-NI where the CPU has it).
//
// Digest is a 32-byte value type, ordered and hashable, printed as lowercase hex.
// Sha256 is an incremental hasher; one instance per thread (not thread-safe).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mup {

struct Digest {
  std::array<uint8_t, 32> bytes{};

  std::string hex() const;
  std::string short_hex() const { return hex().substr(0, 12); }
  static Result<Digest> from_hex(std::string_view hex);

  auto operator<=>(const Digest&) const = default;
  bool operator==(const Digest&) const = default;
};

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::span<const uint8_t> data);
  Digest finish();  // resets the hasher for reuse

 private:
  void* ctx_;  // EVP_MD_CTX
};

Digest sha256(std::span<const uint8_t> data);

}  // namespace mup

template <>
struct std::hash<mup::Digest> {
  size_t operator()(const mup::Digest& d) const noexcept {
    size_t h;
    std::memcpy(&h, d.bytes.data(), sizeof h);
    return h;
  }
};
