// Install: the remote session, the one resolver of what a node must download (check and
// install both ask it, so their figures agree), the install steps (resolve, fetch, stage),
// dependency plans (--with-deps as one group), and check.
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "core/fault.hpp"
#include "core/fs.hpp"
#include "core/parallel.hpp"
#include "core/progress.hpp"
#include "core/sha256.hpp"
#include "engine/internal.hpp"
#include "package/bundle.hpp"
#include "transfer/fetcher.hpp"

namespace mup::engine {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

// Where a component's targets are: "<component>/<version>/tree.idx" (what publish writes).
std::string component_prefix(const std::string& component) {
  return component + "/";
}

}  // namespace

Result<std::vector<std::pair<package::Manifest, std::string>>> Session::offers(
    const std::string& component, std::vector<std::string>* refused) {
  auto found = updater->targets_with_prefix(component_prefix(component));
  if (!found) return tl::unexpected(found.error().context("reading what offers " + component));
  std::vector<std::pair<package::Manifest, std::string>> out;
  for (const auto& info : *found) {
    const json& custom = info.file.custom;
    auto m = package::Manifest::from_json(custom);
    if (m) {
      if (m->component == component) out.push_back({std::move(*m), info.path});
    } else if (refused && json_str(custom, "component") == component) {
      refused->push_back(json_str(custom, "version", info.path) + ": " + m.error().message());
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.first.version < b.first.version; });
  return out;
}

Result<std::map<std::string, std::pair<package::Manifest, std::string>>> Session::newest(
    const std::string& component) {
  auto found = updater->targets_with_prefix(component.empty() ? "" : component_prefix(component));
  if (!found) return tl::unexpected(found.error().context("reading what the remote offers"));
  std::map<std::string, std::pair<package::Manifest, std::string>> out;
  for (const auto& info : *found) {
    auto m = package::Manifest::from_json(info.file.custom);
    if (!m) continue;  // not a package (or from a newer mup): skip it
    if (!component.empty() && m->component != component) continue;
    const std::string name = m->component;
    auto it = out.find(name);
    if (it == out.end() || it->second.first.version < m->version)
      out[name] = {std::move(*m), info.path};
  }
  return out;
}

Result<std::unique_ptr<Session>> connect_remote(Engine& e, state::StateDb& db,
                                                const std::string& remote) {
  auto u = db.remote_url(remote);
  if (!u) return tl::unexpected(u.error());
  if (!*u) return fail(Code::no_remote, "no remote named " + remote + " (mup remote add)");
  return open_session(e, remote, **u, e.tuf_dir(remote));
}

Result<std::unique_ptr<Session>> open_session(Engine& e, const std::string& remote, std::string url,
                                              const stdfs::path& metadata_dir) {
  auto s = std::make_unique<Session>(e.internals().clock());
  s->remote = remote;
  while (!url.empty() && url.back() == '/') url.pop_back();
  s->url = std::move(url);
  s->fetcher = e.internals().fetcher();
  tuf::UpdaterConfig cfg;
  cfg.metadata_dir = metadata_dir;
  cfg.metadata_base_url = s->url + "/metadata";
  cfg.target_base_url = s->url + "/targets";
  auto refreshing = e.internals().locks.remote(remote);
  if (!refreshing) return tl::unexpected(refreshing.error());
  auto up = tuf::Updater::create(cfg, *s->fetcher, s->clock);
  if (!up)
    return tl::unexpected(up.error().context(remote.empty()
                                                 ? "trusted metadata in " + metadata_dir.string()
                                                 : "trusted metadata of remote " + remote));
  s->updater.emplace(std::move(*up));
  if (auto r = s->updater->refresh(); !r)
    return tl::unexpected(r.error().context("refreshing metadata from " + s->url));
  return s;
}

DownloadPlan Resolved::summary() const {
  DownloadPlan d;
  d.download_bytes = index_bytes + todo_bytes;
  d.cached_bytes = cached_bytes;
  d.full_bytes = plan ? plan->full_bytes : 0;
  d.pieces = todo.size() - bundle_covers;
  d.pack_segments = segments.size();
  d.bundle_segments = bundle.size();
  return d;
}

namespace {

// What one request is worth in bytes when choosing between a segment and its chunks one by
// one: a segment is fetched when it costs no more than the chunks it replaces plus this much
// per chunk request it saves.
constexpr uint64_t kRequestBytes = 1024;

// Replaces chunks of `r.todo` by the cold pack segments that deliver them for fewer bytes
// (a node holding little of the version: typically every segment; an update from a held
// version: none, its few chunks and deltas are cheaper). A pack that does not match the
// index is not used (the pieces remain).
void choose_segments(const package::Manifest& m, Resolved& r) {
  if (r.key || m.pack.empty()) return;
  const std::vector<chunk::ChunkRef> order = chunk::pack_order(*r.index);
  auto spans = chunk::segment_spans(m.pack, order);
  if (!spans) return;
  std::unordered_map<Digest, size_t> todo_chunk;  // chunk id -> index in todo
  for (size_t i = 0; i < r.todo.size(); ++i)
    if (r.todo[i].is_chunk) todo_chunk.emplace(r.todo[i].digest, i);
  std::vector<bool> drop(r.todo.size(), false);
  for (size_t s = 0; s < spans->size(); ++s) {
    const chunk::SegmentSpan& sp = (*spans)[s];
    Resolved::SegmentFetch f{m.pack[s], {}, {}};
    uint64_t replaced = 0, count = 0;
    for (size_t i = sp.first; i < sp.first + sp.count; ++i) {
      auto it = todo_chunk.find(order[i].id);
      const bool want = it != todo_chunk.end() && !drop[it->second];
      f.chunks.push_back(order[i]);
      f.wanted.push_back(want);
      if (want) {
        replaced += r.todo[it->second].stored_size;
        ++count;
      }
    }
    if (count == 0 || f.segment.size > replaced + count * kRequestBytes) continue;
    for (size_t i = 0; i < f.chunks.size(); ++i)
      if (f.wanted[i]) drop[todo_chunk.at(f.chunks[i].id)] = true;
    r.todo_bytes = r.todo_bytes - replaced + f.segment.size;
    r.segments.push_back(std::move(f));
  }
  std::vector<package::PieceRef> rest;
  for (size_t i = 0; i < r.todo.size(); ++i)
    if (!drop[i]) rest.push_back(std::move(r.todo[i]));
  r.todo = std::move(rest);
}

// The update bundle from the version the node runs, when the node lacks at least 90% of its
// bytes (a node that holds only that version lacks exactly its pieces; one that resumes, or
// holds other versions too, may lack less: then its pieces one by one). The pieces of todo
// the bundle does not hold are fetched one by one after it.
void choose_bundle(const package::Manifest& m, const std::string& from,
                   const stdfs::path& from_tree, const chunk::TreeIndex* from_index,
                   const chunk::ChunkStore& cache, Resolved& r) {
  if (r.key || from.empty() || from_index == nullptr || r.todo.empty()) return;
  auto b = std::find_if(m.bundles.begin(), m.bundles.end(),
                        [&](const package::Bundle& x) { return x.from == from; });
  if (b == m.bundles.end()) return;
  auto pieces = package::bundle_pieces(*r.index, from_tree, *from_index);
  if (!pieces || !package::bundle_spans(b->segments, *pieces)) return;
  std::unordered_set<std::string> in_bundle;
  for (const auto& p : *pieces) in_bundle.insert(p.rel_path);
  uint64_t covered = 0, rest = 0;
  size_t covers = 0;
  for (const auto& p : r.todo) {
    if (in_bundle.count(p.rel_path)) {
      covered += p.stored_size;
      ++covers;
    } else {
      rest += p.stored_size;  // fetched one by one after the bundle
    }
  }
  if (covered * 10 < b->bytes() * 9) return;
  r.bundle = b->segments;
  r.bundle_pieces = std::move(*pieces);
  r.bundle_covers = covers;
  // A segment an interrupted install cached is not downloaded again (its size says so here;
  // the install checks its SHA-256 and fetches it when that differs).
  r.todo_bytes = rest;
  for (const auto& seg : b->segments) {
    std::error_code ec;
    const auto size =
        stdfs::file_size(cache.blob_path(package::bundle_segment_rel_path(seg.sha256)), ec);
    (!ec && size == seg.size ? r.cached_bytes : r.todo_bytes) += seg.size;
  }
}

}  // namespace

Result<Resolved> resolve_download(Engine& e, Session& s, const package::Manifest& m,
                                  const std::string& target_path, const stdfs::path& device_key,
                                  unsigned threads) {
  store::InstallStore& st = e.store();
  const std::string& c = m.component;
  const std::string from = opt_str(e.internals().activator->active(c));
  Resolved r;
  auto info = s.updater->get_targetinfo(target_path);
  if (!info) return tl::unexpected(info.error().context("finding " + m.id()));
  if (package::is_encrypted(m)) {
    auto dk = package::load_device_key(device_key);
    if (!dk)
      return fail(Code::not_installed,
                  m.id() + " is encrypted and this node has no device key at " +
                      device_key.string() + " (mup keygen --device, then --device-key)");
    auto k = package::unwrap_data_key(m, *dk);
    if (!k) return tl::unexpected(k.error());
    r.key = *k;
  }
  // The index: a delta from the active version's when the repository has one and the
  // manifest signs the body size that bounds it (issue 11 item 1).
  if (!r.key && !from.empty() && m.index_body_size > 0 && info->file.hashes.count("sha256")) {
    auto held = fs::read_file(st.index_path(c, from), 64 << 20);
    auto target_sha = Digest::from_hex(info->file.hashes.at("sha256"));
    if (held && target_sha) {
      std::string rel = chunk::index_delta_rel_path(sha256(*held), *target_sha);
      if (auto d = s.fetcher->fetch(s.url + "/" + rel, info->file.length)) {
        if (auto full = chunk::apply_index_delta(*held, *d, *target_sha, m.index_body_size)) {
          r.index_bytes = d->size();
          r.index_file = std::move(*full);
        }
      }
    }
  }
  if (r.index_file.empty()) {
    auto t = s.updater->fetch_target(*info);
    if (!t) return tl::unexpected(t.error().context("downloading the tree index of " + m.id()));
    r.index_bytes = t->size();
    auto plain = package::open_index(m, *t, r.key ? &*r.key : nullptr);
    if (!plain) return tl::unexpected(plain.error());
    r.index_file = std::move(*plain);
  } else if (sha256(r.index_file).hex() != m.index_sha256) {
    return fail(Code::integrity, "tree index of " + m.id() + " does not match its manifest");
  }
  auto idx = chunk::TreeIndex::parse(r.index_file);
  if (!idx) return tl::unexpected(idx.error().context("tree index of " + m.id()));
  if (idx->single_file)
    return fail(
        Errc::unsupported,
        m.id() + " is a single file, not a tree; publish it inside a directory to install it");
  r.index = std::move(*idx);
  // Seeds: every installed version, active first, known by their indexes (not re-read).
  std::vector<std::string> held;
  if (!from.empty()) held.push_back(from);
  if (auto vs = st.versions(c))
    for (auto it = vs->rbegin(); it != vs->rend(); ++it)
      if (*it != from) held.push_back(*it);
  r.held.reserve(held.size());
  std::vector<delta::IndexedSeed> seeds;
  for (const auto& h : held) {
    auto hi = st.load_index(c, h);
    if (!hi || hi->single_file) continue;
    r.held.push_back(std::move(*hi));
    seeds.push_back({st.version_dir(c, h), &r.held.back()});
  }
  auto plan = delta::plan(*r.index, r.index_file.size(), seeds, threads);
  if (!plan) return tl::unexpected(plan.error().context("planning " + m.id()));
  r.plan = std::move(*plan);
  uint64_t overhead = r.key ? package::kSealOverhead : 0;
  for (auto& n : package::pieces_to_fetch(*r.index, *r.plan)) {
    if (st.pieces().has_blob(n.rel_path)) {
      r.cached_bytes += n.stored_size + overhead;
    } else {
      r.todo_bytes += n.stored_size + overhead;
      r.todo.push_back(std::move(n));
    }
  }
  // The seal overhead of every piece in full_bytes too (bytes_to_fetch is not used here:
  // todo_bytes above counts the pieces the cache lacks, each with its overhead).
  if (r.key) package::add_seal_overhead(*r.index, *r.plan);
  r.cache_bytes = r.todo_bytes;
  const chunk::TreeIndex* from_index = nullptr;
  if (!from.empty() && !seeds.empty() && seeds.front().tree == st.version_dir(c, from))
    from_index = seeds.front().index;
  choose_bundle(m, from, st.version_dir(c, from), from_index, st.pieces(), r);
  if (r.bundle.empty()) choose_segments(m, r);
  // A node with nothing would download the index and the cold pack when that is smaller.
  const uint64_t pack_bytes = chunk::segments_size(m.pack);
  if (!r.key && pack_bytes > 0 && r.index_file.size() + pack_bytes < r.plan->full_bytes)
    r.plan->full_bytes = r.index_file.size() + pack_bytes;
  return r;
}

// ---- the install steps ----

Result<Event> resolve_step(Work& w) {
  const std::string& c = w.op.component();
  if (w.in.activator->active(c) == w.op.to()) return Event::current;
  if (w.e.store().has_version(c, w.op.to())) {
    w.report.already_installed = true;
    return Event::already;
  }
  return Event::ok;
}

bool fetch_applies(Work& w) {
  return w.op.kind() == OpKind::install && w.session != nullptr;
}

// The node's policy on special modes: setuid/setgid bits and world-writable files or
// directories only in trees of the types the node allows (EngineOptions).
Status check_special_modes(const std::vector<package::PackageType>& allowed,
                           const package::Manifest& m, const chunk::TreeIndex& idx) {
  if (std::find(allowed.begin(), allowed.end(), m.type) != allowed.end()) return {};
  std::vector<std::string> found;
  for (const auto& e : idx.entries) {
    if (e.type == chunk::EntryType::symlink) continue;
    std::string what;
    if (e.mode & 04000) what += "setuid ";
    if (e.mode & 02000) what += "setgid ";
    if (e.mode & 0002) what += "world-writable ";
    if (what.empty()) continue;
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", e.mode & 07777);
    found.push_back(e.path + " (" + what + mode + ")");
  }
  if (found.empty()) return {};
  std::string list;
  for (size_t i = 0; i < found.size() && i < 5; ++i) list += (i ? ", " : "") + found[i];
  if (found.size() > 5) list += " and " + std::to_string(found.size() - 5) + " more";
  return fail(Code::policy, m.id() + " (" + std::string(package::type_name(m.type)) + ") carries " +
                                list +
                                "; this node allows such modes only for the types in "
                                "$MUP_ALLOW_SPECIAL_MODES (e.g. kernel); nothing was installed");
}

std::vector<package::PackageType> special_modes_allowed(const EngineOptions& o) {
  if (o.allow_special_modes) return *o.allow_special_modes;
  std::vector<package::PackageType> out;
  const char* env = std::getenv("MUP_ALLOW_SPECIAL_MODES");
  std::string_view rest = env ? env : "";
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    if (auto t = package::parse_type(rest.substr(0, comma))) out.push_back(*t);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  return out;
}

// Before anything is written: the manifest's size must be the index's, and the node must
// have room for what staging writes (the files not hard-linked from installed versions, and
// the pieces to download), with a reserve left free.
Status check_size_and_space(Engine& e, const package::Manifest& m, const Resolved& r) {
  const uint64_t tree = r.index->total_file_bytes();
  if (m.size != tree)
    return fail(Code::integrity, m.id() + ": its manifest says " + std::to_string(m.size) +
                                     " bytes, its tree index " + std::to_string(tree) +
                                     "; refusing it");
  const uint64_t reused = r.plan ? std::min(r.plan->reused_bytes, tree) : 0;
  const uint64_t write = tree - reused, need = write + r.cache_bytes;
  auto space = e.disk_space();
  if (!space) return {};  // cannot tell: the writes will
  const uint64_t free = space->free, reserve = space->reserve;
  if (free >= reserve && need <= free - reserve) return {};
  return fail(Code::no_space,
              "installing " + m.id() + " needs " + human_bytes(need) + " (" + human_bytes(write) +
                  " of files to write after hard links, " + human_bytes(r.cache_bytes) +
                  " of pieces to download), " + human_bytes(free) + " is free on " +
                  e.root().string() + " and " + human_bytes(reserve) +
                  " stays in reserve; nothing was written (mup gc frees old versions)");
}

Result<Engine::DiskSpace> Engine::disk_space() const {
  DiskSpace d;
  if (opts_.free_bytes) {
    auto f = opts_.free_bytes();
    if (!f) return tl::unexpected(f.error());
    d.free = *f;
    d.reserve = std::min<uint64_t>(d.free / 20, uint64_t{1} << 30);
    return d;
  }
  struct statvfs st {};
  if (::statvfs(root_.c_str(), &st) != 0)
    return fail(Errc::io, "statvfs " + root_.string() + ": " + std::strerror(errno));
  d.free = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  d.reserve =
      std::min<uint64_t>(static_cast<uint64_t>(st.f_blocks) * st.f_frsize / 20, uint64_t{1} << 30);
  return d;
}

// Chunks carved out of a cold pack segment go into the cache at a fast level: they are read
// once, by the stage step, and the cache is dropped after the install (gc).
constexpr int kCacheLevel = 1;
constexpr unsigned kSegmentWorkers = 2;

Result<Event> fetch_step(Work& w) {
  const package::Manifest& m = *w.manifest;
  const std::string& c = w.op.component();
  auto res = resolve_download(w.e, *w.session, m, w.op.intent().target_path, w.device_key,
                              w.install_threads);
  if (!res) return tl::unexpected(res.error());
  MUP_TRY(check_special_modes(special_modes_allowed(w.e.options()), m, *res->index));
  MUP_TRY(check_size_and_space(w.e, m, *res));
  w.resolved.emplace(std::move(*res));
  Resolved& r = *w.resolved;
  w.report.bytes_fetched += r.index_bytes;
  w.report.full_bytes = r.plan->full_bytes;
  w.report.bytes_cached = r.cached_bytes;
  MUP_TRY(w.e.store().put_index(c, w.op.to(), r.index_file));

  std::mutex mu;
  std::vector<std::unique_ptr<transfer::Fetcher>> pool;
  uint64_t done_bytes = 0, fetched = 0;
  w.in.emit({{"event", "progress"}, {"phase", "fetch"}, {"done", 0}, {"total", r.todo_bytes}});
  const crypto::AesKey* kp = r.key ? &*r.key : nullptr;
  const std::atomic<bool>* cancel = w.install ? w.install->cancel : nullptr;
  auto not_cancelled = [&]() -> Status {
    if (cancel && cancel->load())
      return fail(Code::cancelled, "install of " + m.id() + " cancelled");
    return {};
  };
  auto borrow = [&]() {
    std::lock_guard<std::mutex> g(mu);
    if (pool.empty()) return w.in.fetcher();
    auto f = std::move(pool.back());
    pool.pop_back();
    return f;
  };
  auto get = [&](const std::string& rel, uint64_t max) {
    auto f = borrow();
    auto got = f->fetch(w.session->url + "/" + rel, max);
    std::lock_guard<std::mutex> g(mu);
    pool.push_back(std::move(f));
    return got;
  };
  auto done = [&](uint64_t piece_bytes, uint64_t wire) {
    std::lock_guard<std::mutex> g(mu);
    done_bytes += piece_bytes;
    fetched += wire;
    w.in.emit(
        {{"event", "progress"}, {"phase", "fetch"}, {"done", done_bytes}, {"total", r.todo_bytes}});
  };
  // A cold pack segment: every chunk it holds is verified, those the node lacks are cached.
  auto fetch_segment = [&](size_t i) -> Status {
    MUP_TRY(not_cancelled());
    const Resolved::SegmentFetch& sf = r.segments[i];
    const std::string rel = chunk::pack_segment_rel_path(sf.segment.sha256);
    auto got = get(rel, sf.segment.size);
    if (!got) return tl::unexpected(got.error().context("downloading " + rel));
    size_t at = 0;
    MUP_TRY(chunk::explode_segment(
        *got, sf.segment, sf.chunks,
        [&](const chunk::ChunkRef& c, std::span<const uint8_t> plain) -> Status {
          if (!sf.wanted[at++]) return {};
          MUP_TRY(fault::point("install.piece"));
          return w.e.store().pieces().put_chunk(c.id, plain, kCacheLevel).map([](uint64_t) {});
        }));
    done(sf.segment.size, got->size());
    return {};
  };
  // An update bundle segment: cached whole (one file, not one per piece), from an earlier
  // attempt's cache when it is there; the pieces of it the node lacks are verified and read
  // in place by the stage step (r.extents).
  std::unordered_set<std::string> lacking;
  for (const auto& p : r.todo) lacking.insert(p.rel_path);
  auto spans = package::bundle_spans(r.bundle, r.bundle_pieces);
  const chunk::ChunkStore& cache = w.e.store().pieces();
  auto fetch_bundle_segment = [&](size_t i) -> Status {
    MUP_TRY(not_cancelled());
    const chunk::PackSegment& seg = r.bundle[i];
    const std::string rel = package::bundle_segment_rel_path(seg.sha256);
    uint64_t wire = 0;
    Result<std::vector<uint8_t>> got = fail(Errc::not_found, rel + " is not cached");
    if (cache.has_blob(rel)) got = cache.get_blob(rel, seg.size);
    auto checked = got ? package::check_bundle_segment(*got, seg) : tl::unexpected(got.error());
    if (!checked) {
      got = get(rel, seg.size);
      if (!got) return tl::unexpected(got.error().context("downloading " + rel));
      wire = got->size();
      checked = package::check_bundle_segment(*got, seg);
      if (!checked) return tl::unexpected(checked.error());
      // Cached as soon as it is known good, so that an install killed while reading it
      // resumes without fetching it again.
      MUP_TRY(cache.put_blob(rel, *got));
    }
    chunk::Extents found;
    MUP_TRY(package::read_bundle_segment(
        *checked, (*spans)[i],
        [&](const package::PieceRef& p, std::span<const uint8_t> bytes) -> Status {
          if (!lacking.count(p.rel_path)) return {};
          MUP_TRY(package::verify_piece(p, bytes));
          MUP_TRY(fault::point("install.piece"));
          found[p.rel_path] = {cache.blob_path(rel),
                               static_cast<uint64_t>(bytes.data() - got->data()), bytes.size()};
          return {};
        }));
    {
      std::lock_guard<std::mutex> g(mu);
      r.extents->merge(found);
    }
    done(seg.size, wire);
    return {};
  };
  auto fetch_piece = [&](size_t i) -> Status {
    MUP_TRY(not_cancelled());
    const package::PieceRef& n = r.todo[i];
    auto got = get(package::piece_download_path(m, kp, n.rel_path), n.stored_size + 64);
    if (!got) return tl::unexpected(got.error().context("downloading " + n.rel_path));
    uint64_t wire = got->size();
    auto piece = package::open_piece(m, kp, n.rel_path, std::move(*got));
    if (!piece) return tl::unexpected(piece.error());
    MUP_TRY(package::verify_piece(n, *piece));
    MUP_TRY(fault::point("install.piece"));
    MUP_TRY(w.e.store().pieces().put_blob(n.rel_path, *piece));
    done(n.stored_size + (kp ? package::kSealOverhead : 0), wire);
    return {};
  };
  // Bundle segments, then cold pack segments, at most kSegmentWorkers at once (each holds its
  // bytes, and a pack segment a decoder window, in memory); then the pieces one by one on every
  // connection: those no segment held, and, when a segment failed (a mirror without it, or
  // with other bytes), those it would have brought. Every piece is verified either way.
  const unsigned conns = std::max(1u, w.install_connections);
  const unsigned seg_workers = std::min(conns, kSegmentWorkers);
  auto fall_back = [&](const Status& failed, const char* what) {
    w.in.emit({{"event", "warning"},
               {"component", c},
               {"message", std::string(what) + " failed (" + failed.error().message() +
                               "); fetching its pieces one by one"}});
  };
  Status ok = spans ? try_parallel_for(r.bundle.size(), seg_workers, fetch_bundle_segment)
                    : Status(tl::unexpected(spans.error()));
  if (!ok && !is(ok.error(), Code::cancelled)) {
    fall_back(ok, "the update bundle");
    ok = {};
  }
  if (ok) ok = try_parallel_for(r.segments.size(), seg_workers, fetch_segment);
  if (!ok && !is(ok.error(), Code::cancelled)) {
    fall_back(ok, "the cold pack");
    ok = {};
    for (const auto& sf : r.segments)
      for (size_t i = 0; i < sf.chunks.size(); ++i)
        if (sf.wanted[i]) r.todo.push_back(package::chunk_piece(sf.chunks[i]));
  }
  if (ok) {
    const chunk::ChunkStore pieces = cache.with_extents(r.extents);
    std::erase_if(r.todo, [&](const auto& p) { return pieces.has_blob(p.rel_path); });
    ok = try_parallel_for(r.todo.size(), conns, fetch_piece);
  }
  w.report.bytes_fetched += fetched;
  if (!ok) {
    (void)w.e.store().pieces().sync();  // keep what was verified: a retry resumes from it
    return tl::unexpected(ok.error().context("fetching " + m.id()));
  }
  MUP_TRY(w.e.store().pieces().sync());
  MUP_TRY(fault::point("install.fetched"));
  return Event::ok;
}

bool stage_applies(Work& w) {
  return w.op.kind() == OpKind::install && !w.report.already_installed && w.resolved.has_value();
}

Result<Event> stage_step(Work& w) {
  const std::string& c = w.op.component();
  delta::UnpackOptions uo;
  uo.threads = w.install_threads;
  Resolved& r = *w.resolved;
  const chunk::ChunkStore pieces = w.e.store().pieces().with_extents(r.extents);
  auto st = w.e.store().stage(c, w.op.to(), *r.index, *r.plan, uo, &pieces);
  if (!st) return tl::unexpected(st.error());
  // The tree holds the bytes now: the bundle segments it was read from are dead weight (a
  // killed install resumes past the stage step without them).
  for (const auto& seg : r.bundle)
    (void)::unlink(
        w.e.store().pieces().blob_path(package::bundle_segment_rel_path(seg.sha256)).c_str());
  w.report.bytes_written = st->bytes_written;
  w.report.files_linked = st->files_linked;
  w.report.files = st->files;
  return Event::ok;
}

// ---- Engine::install ----

namespace {

using Offer = std::pair<package::Manifest, std::string>;

// The version of `c` to install: `version`, or the newest offered.
Result<Offer> pick_offer(Session& s, const std::string& c, const std::string& version) {
  std::vector<std::string> refused;
  auto listed = s.offers(c, &refused);
  if (!listed) return tl::unexpected(listed.error());
  const auto& offers = *listed;
  if (!version.empty()) {
    for (const auto& o : offers)
      if (o.first.version.str() == version) return o;
    for (const auto& r : refused)
      if (r.rfind(version + ":", 0) == 0)
        return fail(Code::integrity,
                    c + " " + version + " is in remote " + s.remote +
                        " but its manifest is refused: " + r.substr(version.size() + 2));
    std::string have;
    for (const auto& o : offers) have += (have.empty() ? "" : ", ") + o.first.version.str();
    return fail(Code::not_offered, c + " " + version + " is not in remote " + s.remote +
                                       (have.empty() ? "" : " (it has " + have + ")"));
  }
  if (offers.empty())
    return fail(Code::not_offered,
                "remote " + s.remote + " offers no component named " + c +
                    (refused.empty() ? "" : " with a valid manifest (" + refused.front() + ")"));
  return offers.back();
}

// What is active on this node, as versions.
std::map<std::string, package::Version> active_versions(Engine& e) {
  std::map<std::string, package::Version> have;
  if (auto comps = e.store().components())
    for (const auto& x : *comps)
      if (auto a = e.internals().activator->active(x))
        if (auto pv = package::Version::parse(*a)) have[x] = *pv;
  return have;
}

// Dependencies first, each once; a cycle is named, never followed.
Status plan_deps(Session& s, const Offer& top, const std::map<std::string, package::Version>& have,
                 std::vector<Offer>& order, std::vector<std::string>& path,
                 std::set<std::string>& placed) {
  const package::Manifest& m = top.first;
  path.push_back(m.id());
  for (const auto& d : m.depends) {
    auto it = have.find(d.name);
    if (it != have.end() && d.constraint.matches(it->second)) continue;
    std::optional<Offer> pick;
    auto offers = s.offers(d.name);
    if (!offers) return tl::unexpected(offers.error());
    for (const auto& o : *offers)
      if (d.constraint.matches(o.first.version)) pick = o;
    if (!pick)
      return fail(Code::unmet_dependencies, "dependency " + d.str() + " of " + m.id() +
                                                ": no version in remote " + s.remote +
                                                " satisfies it");
    for (size_t i = 0; i < path.size(); ++i)
      if (path[i].rfind(d.name + "@", 0) == 0) {
        std::string cycle;
        for (size_t j = i; j < path.size(); ++j) cycle += path[j] + " -> ";
        return fail(Code::dependency_cycle, "dependency cycle: " + cycle + pick->first.id());
      }
    if (placed.count(d.name)) continue;
    MUP_TRY(plan_deps(s, *pick, have, order, path, placed));
  }
  path.pop_back();
  if (placed.insert(m.component).second) order.push_back(top);
  return {};
}

}  // namespace

Result<InstallReport> install_one(Engine& e, state::StateDb& db, Session& sess, const Offer& pick,
                                  const InstallOptions& opts, const EngineOptions& eo,
                                  int64_t group, bool trial) {
  auto& in = e.internals();
  const package::Manifest& m = pick.first;
  const std::string& c = m.component;
  const std::string v = m.version.str();
  auto lock = in.locks.writer(c);
  if (!lock) return tl::unexpected(error(Code::busy, lock.error().message()));
  MUP_TRY(refuse_if_quarantined(db, c));
  if (auto pin = e.store().pinned(c); pin && *pin != v)
    return fail(Code::pinned, c + " is pinned to " + *pin + "; unpin it first (mup pin " + c +
                                  " --clear) to install " + v);
  if (!opts.force) {
    if (auto rows = db.versions(c))
      for (const auto& r : *rows)
        if (r.version == v && r.status == "bad")
          return fail(Code::bad_version, c + " " + v +
                                             " was rolled back from its trial; install --force "
                                             "to try it again");
  }
  Intent intent;
  intent.remote = sess.remote;
  intent.target_path = pick.second;
  intent.manifest = m.to_json();
  intent.old_current = opt_str(in.activator->active(c));
  intent.old_previous = opt_str(in.activator->previous(c));
  intent.fresh = !e.store().has_version(c, v);
  intent.trial = trial;
  intent.trial_policy = opts.trial_policy;
  intent.group = group;
  if (opts.snapshot && intent.fresh && intent.old_current != v)
    intent.snapshot = e.snapshots().fresh_id(c);
  auto op = Operation::begin(db, OpKind::install, c, intent.old_current, v, eo.actor, intent);
  if (!op) return tl::unexpected(op.error());
  Work w(e, in, db, std::move(*op));
  w.install = &opts;
  w.install_connections = eo.download_connections;
  w.install_threads = eo.threads;
  w.device_key = eo.device_key;
  w.manifest = m;
  w.report.component = c;
  w.report.from_version = intent.old_current;
  w.report.to_version = v;
  w.report.tree_bytes = m.size;
  w.report.trial = trial;
  w.report.operation = w.op.id();
  w.session = &sess;
  State end = run(w, State::resolve);
  if (end == State::done)
    in.emit({{"event", "done"},
             {"component", c},
             {"from", w.report.from_version},
             {"to", v},
             {"bytes_fetched", w.report.bytes_fetched},
             {"full_bytes", w.report.full_bytes}});
  if (w.error) return tl::unexpected(w.error->context("installing " + m.id()));
  if (w.report.from_version == v) w.report.already_installed = true;
  w.report.seconds = w.elapsed();
  return w.report;
}

Result<package::Manifest> Engine::offer(const std::string& c, const std::string& version) {
  return std::move(offers({{c, version}}).front());
}

std::vector<Result<package::Manifest>> Engine::offers(
    const std::vector<std::pair<std::string, std::string>>& wanted) {
  std::vector<Result<package::Manifest>> out(wanted.size(),
                                             fail(Code::not_offered, "not looked up"));
  auto db = in_->connect();
  if (!db) {
    std::fill(out.begin(), out.end(), tl::unexpected(db.error()));
    return out;
  }
  // One metadata refresh per remote, however many components it serves.
  std::map<std::string, std::vector<size_t>> by_remote;
  for (size_t i = 0; i < wanted.size(); ++i) {
    auto remote = pick_remote(*db, wanted[i].first, "");
    if (remote)
      by_remote[*remote].push_back(i);
    else
      out[i] = tl::unexpected(remote.error());
  }
  for (const auto& [remote, items] : by_remote) {
    auto sess = connect_remote(*this, *db, remote);
    for (size_t i : items) {
      if (!sess) {
        out[i] = tl::unexpected(sess.error());
        continue;
      }
      auto pick = pick_offer(**sess, wanted[i].first, wanted[i].second);
      out[i] = pick ? Result<package::Manifest>(std::move(pick->first))
                    : Result<package::Manifest>(tl::unexpected(pick.error()));
    }
  }
  return out;
}

Result<package::Manifest> Engine::installed_manifest(const std::string& c, const std::string& v) {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  auto rows = db->versions(c);
  if (!rows) return tl::unexpected(rows.error());
  for (const auto& r : *rows)
    if (r.version == v) return package::Manifest::from_json(r.manifest);
  return fail(Code::not_installed, c + " " + v + " is not installed on this node");
}

std::map<std::string, package::Version> Engine::active_versions() {
  return mup::engine::active_versions(*this);
}

Result<InstallReport> Engine::install(const std::string& c, const InstallOptions& opts) {
  const Clock& clock = in_->clock();
  auto t0 = clock.monotonic();
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  auto remote = pick_remote(*db, c, opts.remote);
  if (!remote) return tl::unexpected(remote.error());
  in_->emit({{"event", "step"}, {"step", "check"}, {"component", c}, {"remote", *remote}});
  auto sess = connect_remote(*this, *db, *remote);
  if (!sess) return tl::unexpected(sess.error());
  auto pick = pick_offer(**sess, c, opts.version);
  if (!pick) return tl::unexpected(pick.error());
  auto have = active_versions();
  if (auto deps = package::check_dependencies(pick->first, have); !deps && !opts.with_deps)
    return fail(Code::unmet_dependencies, pick->first.id() +
                                              " cannot be installed: " + deps.error().message() +
                                              " (install those first, or use --with-deps)");
  std::vector<Offer> order;
  std::vector<std::string> path;
  std::set<std::string> placed;
  MUP_TRY(plan_deps(**sess, *pick, have, order, path, placed));
  if (order.size() == 1) {
    auto r = install_one(*this, *db, **sess, *pick, opts, opts_, 0, opts.trial);
    if (r) r->seconds = seconds_since(clock, t0);
    return r;
  }
  // A group: every member on trial until all are in, then committed together (or left on
  // trial, with --trial); one failure rolls back the members installed before it.
  Intent gi;
  gi.remote = *remote;
  auto group = Operation::begin(*db, OpKind::group, c, opt_str(in_->activator->active(c)),
                                pick->first.version.str(), opts_.actor, gi);
  if (!group) return tl::unexpected(group.error());
  // Held until the group ends, so recovery in another process knows it is alive. (Between
  // begin and here a recovery could take the group for dead: it then undoes nothing, as
  // no member is installed yet, and this install's finish fails.)
  auto group_lock = in_->locks.group(group->id());
  if (!group_lock) return tl::unexpected(group_lock.error());
  std::vector<InstallReport> done;
  std::optional<Error> err;
  for (const auto& member : order) {
    auto r = install_one(*this, *db, **sess, member, opts, opts_, group->id(), true);
    if (!r) {
      err = r.error();
      break;
    }
    done.push_back(std::move(*r));
  }
  if (!err && !opts.trial) {
    for (const auto& d : done)
      if (auto cm =
              switch_operation(*this, OpKind::commit, d.component, d.to_version, "", opts_.actor);
          !cm) {
        err = cm.error();
        break;
      }
  }
  if (err) {
    for (auto it = done.rbegin(); it != done.rend(); ++it) {
      if (it->already_installed && it->from_version == it->to_version) continue;
      auto rb = switch_operation(*this, OpKind::rollback, it->component, it->from_version, "",
                                 opts_.actor, true);
      if (!rb) err = err->followed_by(rb.error());
    }
    auto f = group->finish(OpResult::failed, 0, err->message(), json::object());
    if (!f) err = err->followed_by(f.error());
    return tl::unexpected(*err);
  }
  json members = json::array();
  for (const auto& d : done) members.push_back(d.component + "@" + d.to_version);
  MUP_TRY(group->finish(OpResult::done, 0, "", {{"members", members}}));
  InstallReport top = done.back();
  done.pop_back();
  top.deps = std::move(done);
  top.seconds = seconds_since(clock, t0);
  return top;
}

// ---- check: the same resolver as install ----

Result<json> Engine::check(const CheckOptions& o) {
  auto db = in_->connect();
  if (!db) return tl::unexpected(db.error());
  std::unique_ptr<Session> sess;
  if (!o.repo_url.empty()) {
    if (!o.remote.empty())
      return mup::fail(Errc::invalid_argument, "give --remote NAME or --repo URL, not both");
    stdfs::path dir = root_ / "tuf";
    MUP_TRY(fs::create_dirs(dir));
    if (!stdfs::exists(dir / "root.json")) {
      if (o.trusted_root.empty())
        return mup::fail(Errc::invalid_argument,
                         "this node trusts no repository root yet: give --trusted-root ROOT.json "
                         "(the publisher's metadata/1.root.json, obtained out of band)");
      auto bytes = fs::read_file(o.trusted_root, 1 << 20);
      if (!bytes) return tl::unexpected(bytes.error().context("--trusted-root"));
      MUP_TRY(fs::write_file_atomic(dir / "root.json", *bytes));
    }
    auto s = open_session(*this, "", o.repo_url, dir);
    if (!s) return tl::unexpected(s.error());
    sess = std::move(*s);
  } else {
    if (!o.trusted_root.empty())
      return mup::fail(Errc::invalid_argument,
                       "--trusted-root goes with --repo; a remote got its root at mup remote add");
    auto remote = pick_remote(*db, o.component, o.remote);
    if (!remote) return tl::unexpected(remote.error());
    auto s = connect_remote(*this, *db, *remote);
    if (!s) return tl::unexpected(s.error());
    sess = std::move(*s);
  }
  std::optional<crypto::DeviceKey> device;
  // The default key is optional; one named by the caller must load.
  if (stdfs::exists(opts_.device_key) || opts_.device_key != root_ / "device.key") {
    auto dk = package::load_device_key(opts_.device_key);
    if (!dk) return tl::unexpected(dk.error().context("--device-key"));
    device = *dk;
  }
  auto listed = sess->newest(o.component);
  if (!listed) return tl::unexpected(listed.error());
  const std::map<std::string, Offer>& newest = *listed;
  auto have = active_versions();
  json rows = json::array();
  for (const auto& [name, entry] : newest) {
    const auto& [m, path] = entry;
    auto h = have.find(name);
    if (h != have.end() && !(h->second < m.version)) continue;  // up to date
    auto deps = package::check_dependencies(m, have);
    json row = {{"component", name},
                {"installed", h != have.end() ? h->second.str() : ""},
                {"available", m.version.str()},
                {"type", package::type_name(m.type)},
                {"priority", package::priority_name(m.priority)},
                {"strategy", m.strategy},
                {"encrypted", package::is_encrypted(m)},
                {"readable", true},
                {"download_bytes", 0},
                {"cached_bytes", 0},
                {"full_bytes", 0},
                {"deps_ok", bool(deps)},
                {"deps_error", deps ? "" : deps.error().message()}};
    if (package::is_encrypted(m)) {
      std::string why = "this node has no device key (" + opts_.device_key.string() + ")";
      bool readable = false;
      if (device) {
        auto k = package::unwrap_data_key(m, *device);
        if (k) {
          readable = true;
        } else if (k.error().code() == Errc::not_found) {
          why = k.error().message();
        } else {
          return tl::unexpected(k.error());
        }
      }
      if (!readable) {
        row["readable"] = false;
        row["note"] = "encrypted for other devices";
        row["why"] = why;
        rows.push_back(std::move(row));
        continue;
      }
    }
    auto r = resolve_download(*this, *sess, m, path, opts_.device_key, opts_.threads);
    if (!r) return tl::unexpected(r.error());
    auto d = r->summary();
    row["download_bytes"] = d.download_bytes;
    row["cached_bytes"] = d.cached_bytes;
    row["full_bytes"] = d.full_bytes;
    row["pieces"] = d.pieces;
    row["pack_segments"] = d.pack_segments;
    row["bundle_segments"] = d.bundle_segments;
    rows.push_back(std::move(row));
  }
  return json{{"updates", rows}, {"components_offered", newest.size()}};
}

}  // namespace mup::engine
