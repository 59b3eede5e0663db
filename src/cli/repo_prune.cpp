// mup repo prune: retention for a repository. Three steps, planned in full before anything
// changes (so --dry-run lists exactly what a real run removes):
//
//  1. versions: in each component's role, all but the newest --keep versions are dropped
//     (with --older-than, only those published longer ago than that; the newest is never
//     dropped); the changed roles, snapshot and timestamp are re-signed.
//  2. metadata files: every N.snapshot.json and N.<role>.json that neither the snapshot
//     current when the prune started, nor the one before it if it was replaced less than
//     --grace ago (default 10 minutes: a publish just before), nor the one the prune writes
//     names. A node that read timestamp.json just before the prune (or the publish before
//     it) still finds the snapshot and the roles it names; one that is behind by more reads
//     the current timestamp and goes through the current snapshot (TUF's client never needs
//     an old snapshot). Roots and timestamp.json stay.
//  3. files: tree indexes (DIR/targets) no remaining target lists, and pieces (chunks/,
//     deltas/, indexes/, sealed/) no remaining version's index references, and cold pack
//     and update bundle segments (packs/, bundles/) no remaining manifest signs. Sealed pieces are
//     named with the component's data key: a component whose encrypted index no key in
//     KEYDIR/data opens keeps all its sealed pieces (said in the output).
//
// Holds the repository's publish lock for the whole run; ends with `repo verify`.
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "chunk/cold_pack.hpp"
#include "chunk/tree_index.hpp"
#include "cli/commands.hpp"
#include "cli/repo_roles.hpp"
#include "core/fs.hpp"
#include "core/progress.hpp"
#include "core/sha256.hpp"
#include "engine/locks.hpp"
#include "package/bundle.hpp"
#include "package/manifest.hpp"
#include "package/sealed.hpp"
#include "tuf/clock.hpp"
#include "tuf/repository.hpp"

namespace mup::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

// Defined in repo_commands.cpp.
void add_repo_signers(tuf::Repository& repo, const stdfs::path& keydir);
void verify_repo_after(const std::string& dir, const std::string& what);

namespace {

struct PruneArgs {
  std::string dir, keydir, older_than, grace = "10m";
  uint32_t keep = 0;
  bool dry_run = false, json = false;
};

// "90s", "30m", "12h", "7d", "2w" (a bare number is seconds).
Result<int64_t> parse_age_seconds(std::string_view text) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  std::string_view unit(p, text.data() + text.size() - p);
  int64_t mul = unit.empty() || unit == "s" ? 1
                : unit == "m"               ? 60
                : unit == "h"               ? 3600
                : unit == "d"               ? 86400
                : unit == "w"               ? 7 * 86400
                                            : 0;
  if (text.empty() || ec != std::errc() || n < 0 || mul == 0 || n > INT64_MAX / mul)
    return fail(Errc::invalid_argument, "'" + std::string(text) +
                                            "' is not a duration (use e.g. 3600s, 90m, 12h, "
                                            "30d, 2w)");
  return n * mul;
}

struct DroppedVersion {
  std::string component, version, role, target;
};

struct FileToRemove {
  stdfs::path path;
  uint64_t bytes = 0;
};

struct PrunePlan {
  std::vector<DroppedVersion> versions;
  std::vector<FileToRemove> metadata, indexes, pieces;
  std::vector<std::string> notes;  // what was kept for lack of a key, and why
  uint64_t bytes(const std::vector<FileToRemove>& v) const {
    uint64_t b = 0;
    for (const auto& f : v) b += f.bytes;
    return b;
  }
};

uint64_t file_size_or_zero(const stdfs::path& p) {
  std::error_code ec;
  auto n = stdfs::file_size(p, ec);
  return ec ? 0 : n;
}

// When a version was published: the time its tree index was written to DIR/targets.
int64_t published_at(const stdfs::path& file) {
  struct stat st {};
  return ::stat(file.c_str(), &st) == 0 ? st.st_mtime : 0;
}

// Where a target's bytes live under DIR/targets (consistent snapshots: hash-prefixed).
stdfs::path target_file(const tuf::Repository& repo, const std::string& path,
                        const tuf::TargetFile& f) {
  stdfs::path p = repo.dir() / "targets" / path;
  if (!repo.root().consistent_snapshot) return p;
  auto h = f.hashes.find("sha256");
  if (h == f.hashes.end()) return p;
  return p.parent_path() / (h->second + "." + p.filename().string());
}

// Step 1 (planned, then staged in `repo`): the versions each role no longer keeps.
Status drop_versions(tuf::Repository& repo, const PruneArgs& a, int64_t now, PrunePlan& plan) {
  std::optional<int64_t> min_age;
  if (!a.older_than.empty()) {
    auto s = parse_age_seconds(a.older_than);
    if (!s) return tl::unexpected(s.error().context("--older-than"));
    min_age = *s;
  }
  for (const auto& role : repo.targets_roles()) {
    auto t = repo.load_targets(role);
    if (!t) return tl::unexpected(t.error());
    std::map<std::string, std::vector<std::pair<package::Version, std::string>>> by_component;
    for (const auto& [path, tf] : (*t)->targets)
      if (auto m = package::Manifest::from_json(tf.custom))
        by_component[m->component].push_back({m->version, path});
    for (auto& [component, versions] : by_component) {
      std::sort(versions.begin(), versions.end());
      if (versions.size() <= a.keep) continue;
      for (size_t i = 0; i + a.keep < versions.size(); ++i) {
        const auto& [version, path] = versions[i];
        const tuf::TargetFile& tf = (*t)->targets.at(path);
        if (min_age && now - published_at(target_file(repo, path, tf)) < *min_age) continue;
        plan.versions.push_back({component, version.str(), role, path});
      }
    }
  }
  for (const auto& d : plan.versions) MUP_TRY(repo.remove_target(d.target, d.role));
  return {};
}

// What the remaining versions reference: their target files and their pieces.
struct Referenced {
  std::set<stdfs::path> target_files;
  std::unordered_set<std::string> pieces;         // rel paths under DIR
  std::unordered_set<std::string> index_shas;     // plain index sha256 (hex)
  std::set<std::string> sealed_components_kept;   // no key opened one of their indexes
  std::unordered_set<std::string> sealed_pieces;  // "sealed/<c>/hh/<name>"
};

Status add_version_references(const tuf::Repository& repo, const std::string& keydir,
                              const std::string& path, const tuf::TargetFile& tf, Referenced& ref,
                              std::vector<std::string>& notes) {
  stdfs::path file = target_file(repo, path, tf);
  ref.target_files.insert(file);
  auto m = package::Manifest::from_json(tf.custom);
  if (!m) return {};  // not a package: its file is kept, it references no piece
  ref.index_shas.insert(m->index_sha256);
  for (const auto& seg : m->pack) ref.pieces.insert(chunk::pack_segment_rel_path(seg.sha256));
  for (const auto& b : m->bundles)
    for (const auto& seg : b.segments)
      ref.pieces.insert(package::bundle_segment_rel_path(seg.sha256));
  auto bytes = fs::read_file(file, tf.length);
  if (!bytes) return tl::unexpected(bytes.error().context("reading the index of " + m->id()));
  MUP_TRY(tf.verify(*bytes, path));
  std::optional<crypto::AesKey> key;
  std::vector<uint8_t> plain;
  if (package::is_encrypted(*m)) {
    auto keys = package::load_data_keys(keydir, m->component);
    for (const auto& k : keys ? *keys : std::vector<crypto::AesKey>{})
      if (auto opened = package::open_index(*m, *bytes, &k)) {
        key = k;
        plain = std::move(*opened);
        break;
      }
    if (!key) {
      ref.sealed_components_kept.insert(m->component);
      notes.push_back("no data key in " + keydir + "/data opens the index of " + m->id() +
                      ": every sealed piece of " + m->component + " is kept");
      return {};
    }
  } else {
    plain = std::move(*bytes);
  }
  auto idx = chunk::TreeIndex::parse(plain);
  if (!idx) return tl::unexpected(idx.error().context("tree index of " + m->id()));
  for (const auto& p : package::referenced_pieces(*idx)) {
    if (key)
      ref.sealed_pieces.insert(package::sealed_rel_path(m->component, *key, p.rel_path));
    else
      ref.pieces.insert(p.rel_path);
  }
  return {};
}

Result<Referenced> remaining_references(tuf::Repository& repo, const std::string& keydir,
                                        std::vector<std::string>& notes) {
  Referenced ref;
  for (const auto& role : repo.targets_roles()) {
    auto t = repo.load_targets(role);
    if (!t) return tl::unexpected(t.error());
    for (const auto& [path, tf] : (*t)->targets)
      MUP_TRY(add_version_references(repo, keydir, path, tf, ref, notes));
  }
  return ref;
}

bool is_hex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// Steps 3: every file under DIR/targets and the piece directories nothing remaining needs.
// Only names the publisher writes are considered; anything else is left alone.
void plan_file_removals(const tuf::Repository& repo, const Referenced& ref, PrunePlan& plan) {
  const stdfs::path dir = repo.dir();
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir / "targets", ec);
       it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (!it->is_regular_file() || ref.target_files.count(it->path())) continue;
    plan.indexes.push_back({it->path(), file_size_or_zero(it->path())});
  }
  auto keep_piece = [&](const std::string& rel) {
    std::string_view r(rel);
    auto name = r.substr(r.rfind('/') + 1);
    if (r.rfind("chunks/", 0) == 0 || r.rfind("packs/", 0) == 0 || r.rfind("bundles/", 0) == 0)
      return !is_hex(name) || ref.pieces.count(rel) > 0;
    if (r.rfind("deltas/", 0) == 0) return name.find('-') == r.npos || ref.pieces.count(rel) > 0;
    if (r.rfind("indexes/", 0) == 0) {
      size_t dash = name.find('-');
      if (dash == r.npos || !is_hex(name.substr(0, dash))) return true;
      return ref.index_shas.count(std::string(name.substr(dash + 1))) > 0;
    }
    if (r.rfind("sealed/", 0) == 0) {
      std::string component(r.substr(7, r.find('/', 7) - 7));
      return !is_hex(name) || ref.sealed_components_kept.count(component) > 0 ||
             ref.sealed_pieces.count(rel) > 0;
    }
    return true;
  };
  for (const char* sub : {"chunks", "deltas", "indexes", "sealed", "packs", "bundles"}) {
    for (auto it = stdfs::recursive_directory_iterator(dir / sub, ec);
         it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (!it->is_regular_file()) continue;
      std::string rel = it->path().lexically_relative(dir).generic_string();
      if (!keep_piece(rel)) plan.pieces.push_back({it->path(), file_size_or_zero(it->path())});
    }
    ec.clear();
  }
}

// Removes `files`, then the directories they leave empty (up to, not including, `stop`).
Status remove_files(const std::vector<FileToRemove>& files, const stdfs::path& stop) {
  std::set<stdfs::path> parents;
  for (const auto& f : files) {
    std::error_code ec;
    if (!stdfs::remove(f.path, ec) && ec)
      return fail(Errc::io, "removing " + f.path.string() + ": " + ec.message() +
                                " (run mup repo prune again to finish)");
    parents.insert(f.path.parent_path());
  }
  for (auto it = parents.rbegin(); it != parents.rend(); ++it) {
    for (stdfs::path p = *it; p != stop && p.string().size() > stop.string().size();
         p = p.parent_path()) {
      std::error_code ec;
      if (!stdfs::is_empty(p, ec) || ec || !stdfs::remove(p, ec)) break;
    }
  }
  return {};
}

json files_json(const std::vector<FileToRemove>& files, const stdfs::path& dir) {
  json out = json::array();
  for (const auto& f : files)
    out.push_back({{"path", f.path.lexically_relative(dir).generic_string()}, {"bytes", f.bytes}});
  return out;
}

void print_plan(const PrunePlan& plan, const PruneArgs& a, const tuf::Repository& repo) {
  const stdfs::path dir = a.dir;
  if (a.json) {
    json versions = json::array();
    for (const auto& v : plan.versions)
      versions.push_back({{"component", v.component},
                          {"version", v.version},
                          {"role", v.role},
                          {"target", v.target}});
    json out = {{"dry_run", a.dry_run},
                {"keep", a.keep},
                {"older_than", a.older_than},
                {"grace", a.grace},
                {"versions", versions},
                {"metadata", files_json(plan.metadata, dir)},
                {"indexes", files_json(plan.indexes, dir)},
                {"pieces", files_json(plan.pieces, dir)},
                {"metadata_bytes", plan.bytes(plan.metadata)},
                {"index_bytes", plan.bytes(plan.indexes)},
                {"piece_bytes", plan.bytes(plan.pieces)},
                {"notes", plan.notes},
                {"snapshot_version", repo.snapshot().version},
                {"timestamp_version", repo.timestamp().version}};
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  const char* verb = a.dry_run ? "would remove" : "removed";
  for (const auto& v : plan.versions)
    std::printf("%s version %s %s (role %s)\n", verb, v.component.c_str(), v.version.c_str(),
                v.role.c_str());
  for (const auto* list : {&plan.metadata, &plan.indexes, &plan.pieces})
    for (const auto& f : *list)
      std::printf("%s %s (%s)\n", verb, f.path.lexically_relative(dir).c_str(),
                  human_bytes(f.bytes).c_str());
  for (const auto& n : plan.notes) std::printf("note: %s\n", n.c_str());
  std::printf(
      "%s %zu versions, %zu metadata files (%s), %zu tree indexes (%s), %zu pieces (%s)%s\n",
      a.dry_run ? "prune would remove" : "pruned", plan.versions.size(), plan.metadata.size(),
      human_bytes(plan.bytes(plan.metadata)).c_str(), plan.indexes.size(),
      human_bytes(plan.bytes(plan.indexes)).c_str(), plan.pieces.size(),
      human_bytes(plan.bytes(plan.pieces)).c_str(), a.dry_run ? " (dry run: nothing changed)" : "");
}

void run_repo_prune(const PruneArgs& a) {
  if (a.keep < 1)
    die(Error(Errc::invalid_argument, "--keep must be at least 1 (the newest version stays)"));
  std::error_code ec;
  if (!stdfs::is_directory(stdfs::path(a.dir) / "metadata", ec))
    die(Error(Errc::not_found, "no repository at " + a.dir + " (create one with mup repo init)"));
  auto lock = must(engine::LockFile::try_acquire(stdfs::path(a.dir) / ".mup-publish.lock",
                                                 engine::LockFile::Mode::exclusive,
                                                 "repository " + a.dir + " (a prune)"));
  tuf::SystemClock clock;
  auto repo = must(tuf::Repository::open(a.dir, clock), "opening repository " + a.dir);
  add_repo_signers(repo, a.keydir);
  PrunePlan plan;
  // The files no snapshot from the current one on needs (and from the one before, when it
  // was replaced within the grace): computed before the new snapshot is written, so the
  // snapshot current now (a node may be reading it) keeps its files.
  const int64_t grace = must(parse_age_seconds(a.grace), "--grace");
  const int64_t replaced_at =
      published_at(stdfs::path(a.dir) / "metadata" /
                   (std::to_string(repo.snapshot().version) + ".snapshot.json"));
  const uint64_t keep_snapshots = clock.now() - replaced_at < grace ? 2 : 1;
  for (auto& p : must(repo.unneeded_metadata(keep_snapshots), "listing old metadata"))
    plan.metadata.push_back({p, file_size_or_zero(p)});
  must(drop_versions(repo, a, clock.now(), plan), "choosing the versions to drop");
  auto ref = must(remaining_references(repo, a.keydir, plan.notes), "reading what remains");
  plan_file_removals(repo, ref, plan);
  if (!a.dry_run) {
    // New metadata first (nothing it names is removed), then what only old metadata named.
    if (!plan.versions.empty()) must(repo.publish(), "signing the pruned metadata");
    must(remove_files(plan.indexes, stdfs::path(a.dir) / "targets"));
    for (const char* sub : {"chunks", "deltas", "indexes", "sealed", "packs", "bundles"}) {
      std::vector<FileToRemove> mine;
      for (const auto& f : plan.pieces)
        if (f.path.lexically_relative(a.dir).begin()->string() == sub) mine.push_back(f);
      must(remove_files(mine, stdfs::path(a.dir) / sub));
    }
    must(remove_files(plan.metadata, stdfs::path(a.dir) / "metadata"));
  }
  print_plan(plan, a, repo);
  if (!a.dry_run) verify_repo_after(a.dir, "pruning");
}

}  // namespace

void register_repo_prune(CLI::App& repo) {
  auto a = std::make_shared<PruneArgs>();
  auto* prune = repo.add_subcommand(
      "prune",
      "Drop all but the newest N versions of each component, and the metadata files, tree "
      "indexes and pieces nothing current needs");
  prune->add_option("DIR", a->dir, "Repository directory")->required();
  prune->add_option("--keys", a->keydir, "Key directory (re-signs the changed roles)")->required();
  prune->add_option("--keep", a->keep, "Versions of each component to keep (>= 1)")->required();
  prune->add_option("--older-than", a->older_than,
                    "Drop a version only if published longer ago than this (e.g. 30d, 12h)");
  prune
      ->add_option("--grace", a->grace,
                   "Keep the metadata of the snapshot before the current one if it was "
                   "replaced less than this ago (nodes may be reading it)")
      ->capture_default_str();
  prune->add_flag("--dry-run", a->dry_run, "List what would be removed; change nothing");
  prune->add_flag("--json", a->json, "Print JSON");
  prune->callback([a] { run_repo_prune(*a); });
}

}  // namespace mup::cli
