#include "chunk/tree_index.hpp"

#include <algorithm>
#include <unordered_set>

#include "core/bytes.hpp"
#include "core/fs.hpp"
#include "core/zstd.hpp"

namespace mup::chunk {

namespace {
constexpr uint8_t kMagic[4] = {'M', 'U', 'P', 'I'};
constexpr uint8_t kDeltaMagic[4] = {'M', 'U', 'P', 'X'};
constexpr uint8_t kFlagSingleFile = 1;
constexpr uint64_t kMaxBody = uint64_t{1} << 31;
constexpr int kIndexLevel = 19;

Error bad(const std::string& what) {
  return Error(Errc::corrupt, "tree index is malformed: " + what);
}
}  // namespace

Status validate_path(std::string_view path) {
  std::string why = fs::unsafe_path_reason(path, TreeIndex::kMaxPath);
  if (why.empty()) return {};
  return fail(Errc::corrupt,
              "unsafe path \"" + std::string(path.substr(0, 200)) + "\" in tree index: " + why);
}

Status TreeIndex::validate() const {
  return validate_impl(true);
}
Status TreeIndex::validate_structure() const {
  return validate_impl(false);
}

Status TreeIndex::validate_impl(bool contents) const {
  MUP_TRY(params.validate());
  if (entries.size() > kMaxEntries) return tl::unexpected(bad("too many entries"));
  if (single_file && (entries.size() != 1 || entries[0].type != EntryType::file))
    return tl::unexpected(bad("a single-file index must hold exactly one file"));
  std::unordered_set<std::string_view> dirs;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    MUP_TRY(validate_path(e.path));
    if (i > 0 && !(entries[i - 1].path < e.path))
      return tl::unexpected(bad(entries[i - 1].path == e.path ? "duplicate path " + e.path
                                                              : "paths out of order at " + e.path));
    size_t slash = e.path.rfind('/');
    if (slash != std::string::npos && !dirs.count(std::string_view(e.path).substr(0, slash)))
      return tl::unexpected(bad("parent of " + e.path + " is not a directory entry"));
    if (e.mode > 07777) return tl::unexpected(bad("mode out of range for " + e.path));
    switch (e.type) {
      case EntryType::dir:
        dirs.insert(e.path);
        if (!e.chunks.empty() || !e.deltas.empty() || e.size != 0)
          return tl::unexpected(bad("directory " + e.path + " has content"));
        break;
      case EntryType::symlink:
        if (e.link_target.empty() || e.link_target.size() > kMaxPath ||
            e.link_target.find('\0') != std::string::npos)
          return tl::unexpected(bad("bad symlink target for " + e.path));
        break;
      case EntryType::file: {
        if (!contents) break;
        uint64_t sum = 0;
        for (const ChunkRef& c : e.chunks) {
          if (c.size == 0 || c.size > params.max_size)
            return tl::unexpected(bad("chunk size out of range in " + e.path));
          sum += c.size;
        }
        if (sum != e.size)
          return tl::unexpected(bad("chunk sizes of " + e.path + " do not add up to its size"));
        break;
      }
      default: return tl::unexpected(bad("unknown entry type for " + e.path));
    }
  }
  return {};
}

std::vector<uint8_t> TreeIndex::serialize() const {
  return frame(serialize_body(), single_file);
}

std::vector<uint8_t> TreeIndex::serialize_body() const {
  ByteWriter body;
  body.varint(params.min_size);
  body.varint(params.avg_size);
  body.varint(params.max_size);
  body.varint(entries.size());
  std::string_view prev;
  for (const Entry& e : entries) {
    size_t shared = 0;
    while (shared < prev.size() && shared < e.path.size() && prev[shared] == e.path[shared])
      ++shared;
    body.varint(shared);
    body.str(std::string_view(e.path).substr(shared));
    prev = e.path;
    body.u8(static_cast<uint8_t>(e.type));
    body.varint(e.mode);
    if (e.type == EntryType::symlink) body.str(e.link_target);
    if (e.type != EntryType::file) continue;
    body.varint(e.size);
    body.digest(e.digest);
    bool whole = e.chunks.size() == 1 && e.chunks[0].id == e.digest;
    body.varint(whole ? 0 : e.chunks.size() + 1);  // 0 = one chunk, id = file digest
    if (whole) {
      body.varint(e.chunks[0].stored_size);
    } else {
      for (const ChunkRef& c : e.chunks) {
        body.digest(c.id);
        body.varint(c.size);
        body.varint(c.stored_size);
      }
    }
    body.varint(e.deltas.size());
    for (const DeltaRef& d : e.deltas) {
      body.digest(d.base);
      body.u8(d.kind);
      body.varint(d.stored_size);
      body.digest(d.piece);
    }
  }
  return body.take();
}

std::vector<uint8_t> TreeIndex::frame(std::span<const uint8_t> raw, bool single_file) {
  auto z = zstd::compress(raw, kIndexLevel);
  ByteWriter out;
  out.bytes(kMagic);
  out.u8(kFormatVersion);
  out.u8(single_file ? kFlagSingleFile : 0);
  out.varint(raw.size());
  out.bytes(*z);  // compression of an in-memory buffer cannot fail but for OOM
  return out.take();
}

namespace {
// An index file's header: "MUPI" | version | flags | varint body size; `position` is where
// the zstd frame starts.
struct Header {
  uint8_t flags = 0;
  uint64_t body_size = 0;
  size_t position = 0;
};

Result<Header> read_header(std::span<const uint8_t> bytes) {
  ByteReader hdr(bytes);
  auto magic = hdr.bytes(4);
  if (hdr.failed() || !std::equal(magic.begin(), magic.end(), kMagic))
    return tl::unexpected(bad("not a mup tree index (bad magic)"));
  uint8_t version = hdr.u8();
  if (version != TreeIndex::kFormatVersion)
    return fail(Errc::unsupported, "tree index format version " + std::to_string(version) +
                                       " is not supported by this mup (knows " +
                                       std::to_string(TreeIndex::kFormatVersion) +
                                       "); upgrade mup");
  Header h;
  h.flags = hdr.u8();
  h.body_size = hdr.varint();
  if (hdr.failed() || h.body_size > kMaxBody || (h.flags & ~kFlagSingleFile) != 0)
    return tl::unexpected(bad("bad header"));
  h.position = hdr.position();
  return h;
}
}  // namespace

Result<TreeIndex::Body> TreeIndex::unframe(std::span<const uint8_t> bytes) {
  auto h = read_header(bytes);
  if (!h) return tl::unexpected(h.error());
  auto raw = zstd::decompress(bytes.subspan(h->position), static_cast<size_t>(h->body_size));
  if (!raw) return tl::unexpected(raw.error().context("tree index body"));
  if (raw->size() != h->body_size) return tl::unexpected(bad("body size differs from header"));
  return Body{std::move(*raw), (h->flags & kFlagSingleFile) != 0};
}

Result<TreeIndex> TreeIndex::parse(std::span<const uint8_t> bytes) {
  auto body = unframe(bytes);
  if (!body) return tl::unexpected(body.error());
  const std::vector<uint8_t>* raw = &body->raw;
  ByteReader r(*raw);
  TreeIndex idx;
  idx.single_file = body->single_file;
  auto u32 = [&](uint64_t v) -> uint32_t {
    if (v > UINT32_MAX) return 0;
    return static_cast<uint32_t>(v);
  };
  idx.params.min_size = u32(r.varint());
  idx.params.avg_size = u32(r.varint());
  idx.params.max_size = u32(r.varint());
  uint64_t n = r.varint();
  if (r.failed() || n > kMaxEntries || n > raw->size())
    return tl::unexpected(bad("bad entry count"));
  idx.entries.reserve(static_cast<size_t>(n));
  std::string prev;
  for (uint64_t i = 0; i < n; ++i) {
    Entry e;
    uint64_t shared = r.varint();
    std::string suffix = r.str(kMaxPath);
    if (r.failed() || shared > prev.size()) return tl::unexpected(bad("bad path coding"));
    e.path = prev.substr(0, static_cast<size_t>(shared)) + suffix;
    uint8_t type = r.u8();
    if (type > 2) return tl::unexpected(bad("unknown entry type"));
    e.type = static_cast<EntryType>(type);
    e.mode = u32(r.varint());
    if (e.type == EntryType::symlink) e.link_target = r.str(kMaxPath);
    if (e.type == EntryType::file) {
      e.size = r.varint();
      e.digest = r.digest();
      uint64_t nchunks = r.varint();
      if (nchunks == 0) {
        e.chunks.push_back({e.digest, u32(e.size), u32(r.varint())});
        if (e.size > UINT32_MAX) return tl::unexpected(bad("single chunk too large"));
      } else {
        --nchunks;
        if (nchunks > r.remaining() / 34) return tl::unexpected(bad("bad chunk count"));
        e.chunks.resize(static_cast<size_t>(nchunks));
        for (ChunkRef& c : e.chunks) {
          c.id = r.digest();
          c.size = u32(r.varint());
          c.stored_size = u32(r.varint());
        }
      }
      uint64_t ndeltas = r.varint();
      if (ndeltas > r.remaining() / 66) return tl::unexpected(bad("bad delta count"));
      e.deltas.resize(static_cast<size_t>(ndeltas));
      for (DeltaRef& d : e.deltas) {
        d.base = r.digest();
        d.kind = r.u8();
        d.stored_size = r.varint();
        d.piece = r.digest();
      }
    }
    if (r.failed()) return tl::unexpected(bad("truncated at entry " + std::to_string(i)));
    prev = e.path;
    idx.entries.push_back(std::move(e));
  }
  if (!r.at_end()) return tl::unexpected(bad("trailing bytes"));
  MUP_TRY(idx.validate());
  return idx;
}

Result<std::vector<uint8_t>> make_index_delta(std::span<const uint8_t> base_file,
                                              std::span<const uint8_t> target_file) {
  auto base = TreeIndex::unframe(base_file);
  if (!base) return tl::unexpected(base.error().context("base index"));
  auto target = TreeIndex::unframe(target_file);
  if (!target) return tl::unexpected(target.error().context("target index"));
  auto z = zstd::compress_with_prefix(target->raw, base->raw, kIndexLevel);
  if (!z) return tl::unexpected(z.error());
  ByteWriter out;
  out.bytes(kDeltaMagic);
  out.u8(target->single_file ? kFlagSingleFile : 0);
  out.varint(target->raw.size());
  out.bytes(*z);
  return out.take();
}

Result<std::vector<uint8_t>> apply_index_delta(std::span<const uint8_t> base_file,
                                               std::span<const uint8_t> delta,
                                               const Digest& target_sha256, uint64_t body_size) {
  ByteReader r(delta);
  auto magic = r.bytes(4);
  uint8_t flags = r.u8();
  uint64_t size = r.varint();
  if (r.failed() || !std::equal(magic.begin(), magic.end(), kDeltaMagic) || size > kMaxBody ||
      (flags & ~kFlagSingleFile) != 0)
    return fail(Errc::corrupt, "index delta has a bad header");
  if (size != body_size)
    return fail(Errc::corrupt, "index delta states a body of " + std::to_string(size) +
                                   " bytes where the signed manifest says " +
                                   std::to_string(body_size) + "; fetch the full index");
  auto base = TreeIndex::unframe(base_file);
  if (!base) return tl::unexpected(base.error().context("base index"));
  auto raw = zstd::decompress(delta.subspan(r.position()), static_cast<size_t>(size), base->raw);
  if (!raw) return tl::unexpected(raw.error().context("index delta"));
  auto file = TreeIndex::frame(*raw, (flags & kFlagSingleFile) != 0);
  if (sha256(file) != target_sha256)
    return fail(Errc::corrupt,
                "the index rebuilt from a delta does not match its SHA-256 (corrupt delta, or "
                "another zstd version); fetch the full index");
  return file;
}

Result<uint64_t> index_body_size(std::span<const uint8_t> index_file) {
  auto h = read_header(index_file);
  if (!h) return tl::unexpected(h.error());
  return h->body_size;
}

std::string index_delta_rel_path(const Digest& base_sha256, const Digest& target_sha256) {
  std::string b = base_sha256.hex();
  return "indexes/" + b.substr(0, 2) + "/" + b + "-" + target_sha256.hex();
}

Result<TreeIndex> TreeIndex::load(const std::string& path) {
  auto bytes = fs::read_file(path, kMaxBody);
  if (!bytes) return tl::unexpected(bytes.error());
  auto idx = parse(*bytes);
  if (!idx) return tl::unexpected(idx.error().context(path));
  return idx;
}

Status TreeIndex::save(const std::string& path) const {
  return fs::write_file_atomic(path, serialize());
}

const Entry* TreeIndex::find(std::string_view path) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), path,
                             [](const Entry& e, std::string_view p) { return e.path < p; });
  return (it != entries.end() && it->path == path) ? &*it : nullptr;
}

uint64_t TreeIndex::total_file_bytes() const {
  uint64_t s = 0;
  for (const Entry& e : entries) s += e.size;
  return s;
}

}  // namespace mup::chunk
