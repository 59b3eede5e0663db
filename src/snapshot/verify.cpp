// Verification: compares a snapshot's data with its manifest, entry by entry.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "core/parallel.hpp"
#include "snapshot/manifest.hpp"
#include "snapshot/snapshot_store.hpp"
#include "snapshot/store_internal.hpp"
#include "snapshot/tree_ops.hpp"

namespace mup::snapshot {

namespace stdfs = std::filesystem;
using detail::Kind;

std::string_view kind_name(VerifyProblem::Kind k) {
  switch (k) {
    case VerifyProblem::Kind::manifest: return "manifest";
    case VerifyProblem::Kind::missing: return "missing";
    case VerifyProblem::Kind::unexpected: return "unexpected";
    case VerifyProblem::Kind::type: return "type";
    case VerifyProblem::Kind::mode: return "mode";
    case VerifyProblem::Kind::size: return "size";
    case VerifyProblem::Kind::content: return "content";
    case VerifyProblem::Kind::target: return "target";
  }
  return "?";
}

std::string VerifyReport::summary() const {
  if (problems.empty())
    return "snapshot " + id + ": ok (" + std::to_string(files_checked) + " files, " +
           std::to_string(bytes_checked) + " bytes checked)";
  const VerifyProblem& p = problems.front();
  std::string s =
      "snapshot " + id + ": " + (p.path.empty() ? "its state directory" : p.path) + ": " + p.detail;
  if (problems.size() > 1)
    s += " (and " + std::to_string(problems.size() - 1) + " more problem" +
         (problems.size() > 2 ? "s" : "") + ")";
  return s;
}

Result<VerifyReport> check_snapshot(const Manifest& m, const stdfs::path& dir, bool contents) {
  using K = VerifyProblem::Kind;
  VerifyReport r;
  r.id = m.id;
  auto add = [&](K k, const std::string& path, std::string detail) {
    r.problems.push_back({k, path, std::move(detail)});
  };
  if (m.compute_content_hash() != m.content_hash)
    add(K::manifest, "",
        "the manifest's entries do not match its content_hash (the manifest was edited)");
  const stdfs::path data = dir / kDataName;
  struct stat st {};
  if (::lstat(data.c_str(), &st) != 0) {
    if (errno != ENOENT) return fail_errno("stat", data.string(), errno);
    if (!m.absent) add(K::missing, "", "the snapshot's data directory is missing");
    return r;
  }
  if (m.absent) {
    add(K::unexpected, "", "the snapshot holds data but recorded an absent state directory");
    return r;
  }
  if (!S_ISDIR(st.st_mode)) {
    add(K::type, "", "the snapshot's data is not a directory");
    return r;
  }
  if ((st.st_mode & 07777) != m.root_mode)
    add(K::mode, "",
        "mode " + octal_mode(st.st_mode) + ", the manifest says " + octal_mode(m.root_mode));
  auto scanned = detail::scan_state(data);
  if (!scanned) return tl::unexpected(scanned.error());
  const auto& want = m.entries;
  const auto& have = scanned->entries;
  std::vector<size_t> to_hash;
  size_t i = 0, j = 0;
  while (i < want.size() || j < have.size()) {
    if (j == have.size() || (i < want.size() && want[i].path < have[j].path)) {
      add(K::missing, want[i].path,
          "missing from the snapshot (the manifest lists a " +
              std::string(type_name(want[i].type)) + ")");
      ++i;
      continue;
    }
    if (i == want.size() || have[j].path < want[i].path) {
      add(K::unexpected, have[j].path, "in the snapshot but not in its manifest");
      ++j;
      continue;
    }
    const ManifestEntry& w = want[i++];
    const detail::StatEntry& h = have[j++];
    static constexpr Kind kKinds[] = {Kind::dir, Kind::file, Kind::symlink};
    static constexpr const char* kNames[] = {"directory", "file", "symlink", "special file"};
    if (h.kind != kKinds[static_cast<size_t>(w.type)]) {
      add(K::type, w.path,
          std::string("is a ") + kNames[static_cast<size_t>(h.kind)] + ", the manifest says " +
              kNames[static_cast<size_t>(w.type)]);
      continue;
    }
    if (w.type != EntryType::symlink && h.mode != w.mode)
      add(K::mode, w.path,
          "mode " + octal_mode(h.mode) + ", the manifest says " + octal_mode(w.mode));
    if (w.type == EntryType::symlink && h.target != w.target)
      add(K::target, w.path,
          "points to \"" + h.target + "\", the manifest says \"" + w.target + "\"");
    if (w.type != EntryType::file) continue;
    if (h.size != w.size) {
      add(K::size, w.path,
          std::to_string(h.size) + " bytes, the manifest says " + std::to_string(w.size));
    } else if (contents) {
      to_hash.push_back(i - 1);
    }
  }
  if (!to_hash.empty()) {
    auto data_fd = detail::open_dir(data);
    if (!data_fd) return tl::unexpected(data_fd.error());
    std::vector<std::optional<Digest>> found(to_hash.size());
    MUP_TRY(try_parallel_for(to_hash.size(), default_threads(), [&](size_t k) -> Status {
      const ManifestEntry& e = want[to_hash[k]];
      auto fd = detail::open_beneath(data_fd->get(), e.path, O_RDONLY, data / e.path);
      if (!fd) return tl::unexpected(fd.error());
      auto hashed = detail::hash_fd(fd->get(), data / e.path);
      if (!hashed) return tl::unexpected(hashed.error());
      if (hashed->size != e.size || hashed->sha256 != e.sha256) found[k] = hashed->sha256;
      return {};
    }));
    for (size_t k = 0; k < to_hash.size(); ++k) {
      const ManifestEntry& e = want[to_hash[k]];
      r.files_checked++;
      r.bytes_checked += e.size;
      if (found[k])
        add(K::content, e.path,
            "content differs from the manifest (SHA-256 " + found[k]->short_hex() +
                "…, the manifest says " + e.sha256.short_hex() + "…)");
    }
  }
  std::stable_sort(r.problems.begin(), r.problems.end(),
                   [](const VerifyProblem& a, const VerifyProblem& b) { return a.path < b.path; });
  return r;
}

Result<VerifyReport> SnapshotStore::verify(std::string_view id) const {
  auto dir = dir_of(id);
  if (!dir) return tl::unexpected(dir.error());
  auto m = load_manifest(*dir, id);
  if (!m) return tl::unexpected(m.error());
  return check_snapshot(*m, *dir, true);
}

}  // namespace mup::snapshot
