// Little helpers to write and parse compact binary formats (LEB128 varints, raw bytes).
//
// ByteReader never reads past its span: a short or malformed input sets failed() and
// returns zeros, so parsers of untrusted bytes check failed() once per record rather
// than after every field. Both types are single-threaded values.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/sha256.hpp"

namespace mup {

class ByteWriter {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u32le(uint32_t v) {
    for (int i = 0; i < 4; ++i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<uint8_t>(v | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<uint8_t>(v));
  }
  void bytes(std::span<const uint8_t> b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
  void str(std::string_view s) {
    varint(s.size());
    buf_.insert(buf_.end(), s.begin(), s.end());
  }
  void digest(const Digest& d) { bytes(d.bytes); }

  std::vector<uint8_t>& buffer() { return buf_; }
  std::vector<uint8_t> take() { return std::move(buf_); }

 private:
  std::vector<uint8_t> buf_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> in) : in_(in) {}

  bool failed() const { return failed_; }
  bool at_end() const { return pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }
  size_t position() const { return pos_; }

  uint8_t u8() {
    if (!need(1)) return 0;
    return in_[pos_++];
  }
  uint32_t u32le() {
    if (!need(4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{in_[pos_++]} << (8 * i);
    return v;
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (!need(1)) return 0;
      uint8_t b = in_[pos_++];
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) return v;
    }
    failed_ = true;
    return 0;
  }
  std::span<const uint8_t> bytes(size_t n) {
    if (!need(n)) return {};
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string str(size_t max_len) {
    uint64_t n = varint();
    if (n > max_len) {
      failed_ = true;
      return {};
    }
    auto b = bytes(static_cast<size_t>(n));
    return std::string(b.begin(), b.end());
  }
  Digest digest() {
    Digest d;
    auto b = bytes(32);
    if (!b.empty()) std::memcpy(d.bytes.data(), b.data(), 32);
    return d;
  }

 private:
  bool need(size_t n) {
    if (failed_ || in_.size() - pos_ < n) {
      failed_ = true;
      return false;
    }
    return true;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace mup
