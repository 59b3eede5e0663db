#include "delta/tensor_delta.hpp"
namespace mup::delta::tensor {
bool applicable(std::span<const uint8_t>, std::span<const uint8_t>) { return false; }
Result<std::vector<uint8_t>> make(std::span<const uint8_t>, std::span<const uint8_t>, int) { return fail(Errc::internal, "x"); }
Status apply(std::span<const uint8_t>, std::span<const uint8_t>, uint64_t, const Sink&) { return fail(Errc::internal, "x"); }
}
