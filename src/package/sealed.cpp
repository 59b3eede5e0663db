#include "package/sealed.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <set>
#include <unordered_set>

#include "core/fs.hpp"
#include "core/parallel.hpp"
#include "core/sha256.hpp"
#include "core/zstd.hpp"
#include "delta/piece.hpp"

namespace mup::package {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string index_aad(const Manifest& m) {
  return "index:" + m.id();
}

// The 32 bytes of a key file holding hex (whitespace around it is ignored).
Result<std::array<uint8_t, 32>> read_hex32(const stdfs::path& file, const char* what) {
  auto bytes = fs::read_file(file, 4096);
  if (!bytes) return tl::unexpected(bytes.error().context(what));
  std::string_view text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  auto raw = from_hex(text);
  OPENSSL_cleanse(bytes->data(), bytes->size());
  if (!raw)
    return fail(Errc::invalid_argument,
                std::string(what) + " " + file.string() + " is not hex: " + raw.error().message());
  std::array<uint8_t, 32> out{};
  bool ok = raw->size() == out.size();
  if (ok) std::copy(raw->begin(), raw->end(), out.begin());
  OPENSSL_cleanse(raw->data(), raw->size());
  if (!ok)
    return fail(Errc::invalid_argument, std::string(what) + " " + file.string() + " holds " +
                                            std::to_string(raw->size()) +
                                            " bytes; expected 32 (64 hex digits)");
  return out;
}

Result<std::string> hmac_name(const crypto::AesKey& key, std::string_view rel_path) {
  std::array<uint8_t, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), bytes_of(rel_path).data(),
           rel_path.size(), mac.data(), &len) == nullptr ||
      len != 32) {
    return fail(Errc::internal, "HMAC-SHA256 failed (OpenSSL)");
  }
  return to_hex(std::span(mac.data(), len));
}

Result<std::string> sealed_name(const std::string& component, const crypto::AesKey& key,
                                const std::string& rel_path) {
  auto h = hmac_name(key, rel_path);
  if (!h) return h;
  return "sealed/" + component + "/" + h->substr(0, 2) + "/" + *h;
}

// Each recipient's (key_id, wrapped hex), without trusting the shape (a Manifest may be
// built in code rather than parsed).
std::vector<std::pair<std::string, std::string>> recipients_of(const Manifest& m) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!m.encryption.is_object()) return out;
  auto rs = m.encryption.find("recipients");
  if (rs == m.encryption.end() || !rs->is_array()) return out;
  for (const auto& r : *rs) {
    if (!r.is_object()) continue;
    auto id = r.find("key_id");
    auto w = r.find("wrapped");
    if (id == r.end() || w == r.end() || !id->is_string() || !w->is_string()) continue;
    out.emplace_back(id->get<std::string>(), w->get<std::string>());
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}

// Writes `bytes` to `path` through a temp sibling and rename (no fsync: the caller syncs
// the filesystem once for the batch).
Status write_object(const stdfs::path& path, std::span<const uint8_t> bytes) {
  stdfs::path tmp = fs::temp_sibling(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ENOENT) {
    MUP_TRY(fs::create_dirs(path.parent_path()));
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  }
  if (fd < 0) return fail_errno("create", tmp.string(), errno);
  Status s = fs::write_all(fd, bytes, tmp);
  ::close(fd);
  if (s && ::rename(tmp.c_str(), path.c_str()) != 0) s = fail_errno("rename", path.string(), errno);
  if (!s) ::unlink(tmp.c_str());
  return s;
}

PieceRef delta_piece(const chunk::Entry& e, const chunk::DeltaRef& d) {
  return {delta::piece_rel_path(d.base, e.digest), d.stored_size, false, d.piece, 0};
}

stdfs::path data_dir(const stdfs::path& keydir) {
  return keydir / "data";
}

stdfs::path current_key_path(const stdfs::path& keydir, const std::string& component) {
  return data_dir(keydir) / (component + ".key");
}

stdfs::path retired_dir(const stdfs::path& keydir, const std::string& component) {
  return data_dir(keydir) / "retired" / component;
}

Status make_private_dir(const stdfs::path& dir) {
  MUP_TRY(fs::create_dirs(dir));
  if (::chmod(dir.c_str(), 0700) != 0) return fail_errno("chmod", dir.string(), errno);
  return {};
}

// Writes a new key file at `path` unless one exists (then Errc::already_exists).
Status write_new_key(const stdfs::path& path, const crypto::AesKey& key) {
  std::string hex = to_hex(key) + "\n";
  stdfs::path tmp = fs::temp_sibling(path);
  Status s = fs::write_file_atomic(tmp, bytes_of(hex), 0600);
  OPENSSL_cleanse(hex.data(), hex.size());
  if (!s) return s;
  // link() refuses to replace: two publishers racing keep one key, never a mix.
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err == EEXIST) return fail(Errc::already_exists, path.string() + " exists");
  if (rc != 0) return fail_errno("link", path.string(), err);
  return fs::fsync_dir(path.parent_path());
}

Result<crypto::AesKey> fresh_key() {
  auto raw = crypto::random_bytes(32);
  if (!raw) return tl::unexpected(raw.error());
  crypto::AesKey k{};
  std::copy(raw->begin(), raw->end(), k.begin());
  OPENSSL_cleanse(raw->data(), raw->size());
  return k;
}

}  // namespace

bool is_encrypted(const Manifest& m) {
  return !m.encryption.is_null();
}

std::string device_key_id(std::span<const uint8_t> device_public) {
  return sha256(device_public).hex().substr(0, 16);
}

PieceRef chunk_piece(const chunk::ChunkRef& c) {
  return {chunk_rel_path(c.id), c.stored_size, true, c.id, c.size};
}

std::string chunk_rel_path(const Digest& id) {
  std::string h = id.hex();
  return "chunks/" + h.substr(0, 2) + "/" + h;
}

std::vector<PieceRef> referenced_pieces(const chunk::TreeIndex& index) {
  std::vector<PieceRef> out;
  std::unordered_set<std::string> seen;
  auto add = [&](PieceRef p) {
    if (seen.insert(p.rel_path).second) out.push_back(std::move(p));
  };
  for (const chunk::Entry& e : index.entries) {
    for (const chunk::ChunkRef& c : e.chunks) add(chunk_piece(c));
    for (const chunk::DeltaRef& d : e.deltas) add(delta_piece(e, d));
  }
  return out;
}

std::vector<PieceRef> pieces_to_fetch(const chunk::TreeIndex& index, const delta::Plan& plan) {
  std::vector<PieceRef> out;
  std::unordered_set<std::string> seen;
  auto add = [&](PieceRef p) {
    if (seen.insert(p.rel_path).second) out.push_back(std::move(p));
  };
  for (const delta::FilePlan& fp : plan.files) {
    const chunk::Entry& e = index.entries[fp.entry];
    if (fp.source == delta::Source::delta && fp.delta != nullptr) {
      add(delta_piece(e, *fp.delta));
    } else if (fp.source == delta::Source::chunks) {
      for (size_t i = 0; i < e.chunks.size() && i < fp.chunks.size(); ++i)
        if (fp.chunks[i].seed_file < 0) add(chunk_piece(e.chunks[i]));
    }
  }
  return out;
}

Status verify_piece(const PieceRef& p, std::span<const uint8_t> stored) {
  if (p.is_chunk) {
    auto plain = zstd::decompress(stored, p.plain_size);
    if (!plain || plain->size() != p.plain_size || sha256(*plain) != p.digest)
      return fail(Errc::corrupt, "chunk " + p.digest.hex() +
                                     " from the repository does not match its id (corrupt or "
                                     "substituted); nothing was installed");
    return {};
  }
  if (sha256(stored) != p.digest)
    return fail(Errc::corrupt, "delta " + p.rel_path +
                                   " from the repository does not match its signed hash; "
                                   "nothing was installed");
  return {};
}

void add_seal_overhead(const chunk::TreeIndex& index, delta::Plan& plan) {
  std::unordered_set<Digest> chunks;
  for (const chunk::Entry& e : index.entries)
    for (const chunk::ChunkRef& c : e.chunks) chunks.insert(c.id);
  plan.bytes_to_fetch += kSealOverhead * (plan.chunks + plan.deltas);
  plan.full_bytes += kSealOverhead * chunks.size();
}

Result<crypto::AesKey> unwrap_data_key(const Manifest& m, const crypto::DeviceKey& device) {
  if (!is_encrypted(m))
    return fail(Errc::invalid_argument, m.id() + " is not encrypted; it has no data key");
  std::string id = device_key_id(device.public_key);
  std::vector<std::string> ids;
  for (const auto& [key_id, wrapped] : recipients_of(m)) {
    ids.push_back(key_id);
    if (key_id != id) continue;
    auto raw = from_hex(wrapped);
    if (!raw)
      return fail(Errc::corrupt, m.id() + ": wrapped data key for device key " + id +
                                     " is not hex (" + raw.error().message() + ")");
    auto key = crypto::unwrap_key(*raw, device);
    if (!key)
      return tl::unexpected(
          key.error().context(m.id() + ": data key wrapped for device key " + id));
    return key;
  }
  return fail(Errc::not_found, m.id() +
                                   " is encrypted for other devices: this device's key id is " +
                                   id + ", the recipients are " + join(ids) +
                                   "; ask the publisher to publish it with --encrypt-to "
                                   "<this device>.pub");
}

Result<std::vector<uint8_t>> open_index(const Manifest& m, std::span<const uint8_t> target_bytes,
                                        const crypto::AesKey* key) {
  std::vector<uint8_t> plain;
  if (is_encrypted(m)) {
    if (key == nullptr)
      return fail(Errc::invalid_argument,
                  m.id() + " is encrypted: its tree index needs the data key (unwrap_data_key)");
    auto opened = crypto::open(*key, target_bytes, bytes_of(index_aad(m)));
    if (!opened)
      return fail(Errc::corrupt, "sealed tree index of " + m.id() +
                                     " does not open: it was altered, or sealed with another "
                                     "data key (" +
                                     opened.error().message() + ")");
    plain = std::move(*opened);
  } else {
    plain.assign(target_bytes.begin(), target_bytes.end());
  }
  auto want = Digest::from_hex(m.index_sha256);
  Digest got = sha256(plain);
  if (!want || *want != got)
    return fail(Errc::corrupt, "tree index of " + m.id() + " has SHA-256 " + got.hex() +
                                   " but its manifest says " + m.index_sha256 +
                                   "; refusing it (download it again, or tell the publisher)");
  return plain;
}

std::string piece_download_path(const Manifest& m, const crypto::AesKey* key,
                                const std::string& rel_path) {
  if (!is_encrypted(m) || key == nullptr) return rel_path;
  auto name = sealed_name(m.component, *key, rel_path);
  return name ? *name : rel_path;
}

Result<std::vector<uint8_t>> open_piece(const Manifest& m, const crypto::AesKey* key,
                                        const std::string& rel_path,
                                        std::vector<uint8_t> downloaded) {
  if (!is_encrypted(m)) return downloaded;
  if (key == nullptr)
    return fail(Errc::invalid_argument,
                m.id() + " is encrypted: piece " + rel_path + " needs the data key");
  auto plain = crypto::open(*key, downloaded, bytes_of(rel_path));
  if (!plain)
    return fail(Errc::corrupt, "sealed piece " + rel_path + " of " + m.id() + " (" +
                                   piece_download_path(m, key, rel_path) +
                                   ") failed authentication: its bytes were altered or "
                                   "truncated; download it again");
  return plain;
}

Result<crypto::DeviceKey> load_device_key(const stdfs::path& key_file) {
  auto raw = read_hex32(key_file, "device key");
  if (!raw) return tl::unexpected(raw.error());
  auto key = crypto::DeviceKey::from_private(*raw);
  OPENSSL_cleanse(raw->data(), raw->size());
  if (!key) return tl::unexpected(key.error().context("device key " + key_file.string()));
  return key;
}

Result<DevicePublic> load_device_public(const stdfs::path& pub_file) {
  if (pub_file.extension() == ".key")
    return fail(Errc::invalid_argument,
                pub_file.string() +
                    " looks like a device's private key (NAME.key); give its public key "
                    "NAME.pub, and keep NAME.key on the device");
  return read_hex32(pub_file, "device public key");
}

Result<crypto::AesKey> load_or_create_data_key(const stdfs::path& keydir,
                                               const std::string& component, bool* created) {
  MUP_TRY(validate_component_name(component));
  if (created) *created = false;
  stdfs::path p = current_key_path(keydir, component);
  std::error_code ec;
  if (!stdfs::exists(p, ec)) {
    MUP_TRY(make_private_dir(data_dir(keydir)));
    auto k = fresh_key();
    if (!k) return k;
    auto s = write_new_key(p, *k);
    if (s) {
      if (created) *created = true;
      return k;
    }
    if (s.error().code() != Errc::already_exists) return tl::unexpected(s.error());
  }
  return read_hex32(p, "data key");
}

Result<crypto::AesKey> rotate_data_key(const stdfs::path& keydir, const std::string& component) {
  MUP_TRY(validate_component_name(component));
  stdfs::path p = current_key_path(keydir, component);
  std::error_code ec;
  if (stdfs::exists(p, ec)) {
    auto old = read_hex32(p, "data key");
    if (!old) return tl::unexpected(old.error());
    stdfs::path dir = retired_dir(keydir, component);
    MUP_TRY(make_private_dir(dir.parent_path()));
    MUP_TRY(make_private_dir(dir));
    stdfs::path to = dir / (sha256(*old).hex().substr(0, 16) + ".key");
    OPENSSL_cleanse(old->data(), old->size());
    if (::rename(p.c_str(), to.c_str()) != 0) return fail_errno("rename", p.string(), errno);
    MUP_TRY(fs::fsync_dir(dir));
  }
  return load_or_create_data_key(keydir, component);
}

Result<std::vector<crypto::AesKey>> load_data_keys(const stdfs::path& keydir,
                                                   const std::string& component) {
  MUP_TRY(validate_component_name(component));
  std::vector<crypto::AesKey> out;
  std::error_code ec;
  stdfs::path cur = current_key_path(keydir, component);
  if (stdfs::exists(cur, ec)) {
    auto k = read_hex32(cur, "data key");
    if (!k) return tl::unexpected(k.error());
    out.push_back(*k);
  }
  stdfs::path dir = retired_dir(keydir, component);
  if (stdfs::is_directory(dir, ec)) {
    std::set<stdfs::path> files;  // a stable order
    for (const auto& e : stdfs::directory_iterator(dir, ec))
      if (e.path().extension() == ".key") files.insert(e.path());
    for (const auto& f : files) {
      auto k = read_hex32(f, "retired data key");
      if (!k) return tl::unexpected(k.error());
      out.push_back(*k);
    }
  }
  return out;
}

Result<json> make_encryption(const crypto::AesKey& data_key,
                             const std::vector<DevicePublic>& recipients) {
  if (recipients.empty())
    return fail(Errc::invalid_argument, "an encrypted package needs at least one recipient");
  json list = json::array();
  std::set<std::string> seen;
  for (const auto& pub : recipients) {
    std::string id = device_key_id(pub);
    if (!seen.insert(id).second) continue;
    auto wrapped = crypto::wrap_key(data_key, pub);
    if (!wrapped) return tl::unexpected(wrapped.error().context("recipient " + id));
    list.push_back({{"key_id", id}, {"wrapped", to_hex(*wrapped)}});
  }
  return json{{"scheme", kSealedScheme}, {"recipients", std::move(list)}};
}

std::vector<std::string> recipient_key_ids(const Manifest& m) {
  std::vector<std::string> out;
  for (auto& [id, _] : recipients_of(m)) out.push_back(id);
  return out;
}

std::string sealed_rel_path(const std::string& component, const crypto::AesKey& key,
                            const std::string& rel_path) {
  auto name = sealed_name(component, key, rel_path);
  return name ? *name : std::string();
}

Result<SealStats> seal_pieces(const chunk::TreeIndex& index, const std::string& component,
                              const crypto::AesKey& key, const chunk::ChunkStore& plain,
                              const stdfs::path& repo_dir, bool verify_reused, unsigned threads) {
  MUP_TRY(validate_component_name(component));
  auto pieces = referenced_pieces(index);
  std::atomic<uint64_t> written{0}, written_bytes{0}, reused{0}, reused_bytes{0};
  MUP_TRY(try_parallel_for(
      pieces.size(), threads ? threads : default_threads(), [&](size_t i) -> Status {
        const PieceRef& p = pieces[i];
        auto name = sealed_name(component, key, p.rel_path);
        if (!name) return tl::unexpected(name.error());
        stdfs::path dst = repo_dir / *name;
        uint64_t want = p.stored_size + kSealOverhead;
        struct stat st {};
        // Same name = same piece of this component (HMAC under its key): keep what an
        // earlier version sealed, unless its size says it was sealed from other bytes.
        auto intact = [&] {
          if (!verify_reused) return true;
          auto bytes = fs::read_file(dst, want);
          return bytes && crypto::open(key, *bytes, bytes_of(p.rel_path)).has_value();
        };
        if (::stat(dst.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            static_cast<uint64_t>(st.st_size) == want && intact()) {
          ++reused;
          reused_bytes += want;
          return {};
        }
        auto bytes = plain.get_blob(p.rel_path, p.stored_size);
        if (!bytes)
          return tl::unexpected(
              bytes.error().context("piece " + p.rel_path + " of the plain store"));
        if (bytes->size() != p.stored_size || (!p.is_chunk && sha256(*bytes) != p.digest))
          return fail(Errc::corrupt, "piece " + p.rel_path + " in the plain store " +
                                         plain.root().string() +
                                         " differs from the index (size or SHA-256); "
                                         "publish again to re-pack it");
        auto sealed = crypto::seal(key, *bytes, bytes_of(p.rel_path));
        if (!sealed) return tl::unexpected(sealed.error().context("sealing " + p.rel_path));
        MUP_TRY(write_object(dst, *sealed));
        ++written;
        written_bytes += sealed->size();
        return {};
      }));
  if (written > 0) MUP_TRY(fs::sync_filesystem(repo_dir));
  SealStats st;
  st.pieces = pieces.size();
  st.written = written;
  st.written_bytes = written_bytes;
  st.reused = reused;
  st.reused_bytes = reused_bytes;
  return st;
}

Result<std::vector<uint8_t>> seal_index(const Manifest& m, const crypto::AesKey& key,
                                        std::span<const uint8_t> index_file) {
  auto sealed = crypto::seal(key, index_file, bytes_of(index_aad(m)));
  if (!sealed) return tl::unexpected(sealed.error().context("sealing the tree index of " + m.id()));
  return sealed;
}

}  // namespace mup::package
