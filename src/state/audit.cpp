// StateDb: the append-only, hash-chained audit log.
//
// Record n stores prev_hash = hash of record n-1 (64 zeros for record 1) and its own hash
// over its canonical bytes (audit_record_hash), so editing, removing or reordering records
// breaks the chain at the first record touched. gc may cut the oldest records off (history
// retention): audit_base keeps the (seq, hash) of the last one cut, and the chain is
// verified from there; records above the base cannot be deleted (a trigger), and a chain
// that does not verify is never cut (the evidence stays). audit_head(seq, hash) moves in the same
// transaction as each append, so cutting records off the end (which leaves a valid
// shorter chain) shows as a log that ends before its head. Someone able to rewrite the
// file can still rebuild a consistent unsigned chain and head; signatures with the node
// key (and, beyond this module, copying the head elsewhere) are what stop that.
#include <utility>

#include "core/hex.hpp"
#include "core/sha256.hpp"
#include "state/sqlite.hpp"
#include "state/state_db.hpp"

namespace mup::state {

using detail::Stmt;

namespace {

Digest audit_digest(int64_t seq, int64_t at_ms, std::string_view actor, std::string_view action,
                    std::string_view subject, std::string_view detail_text,
                    std::string_view prev_hash) {
  Sha256 h;
  auto put = [&h](std::string_view field) {
    std::string len = std::to_string(field.size()) + ":";
    h.update({reinterpret_cast<const uint8_t*>(len.data()), len.size()});
    h.update({reinterpret_cast<const uint8_t*>(field.data()), field.size()});
    h.update({reinterpret_cast<const uint8_t*>("\n"), 1});
  };
  static constexpr std::string_view kTag = "mup-audit-v1\n";
  h.update({reinterpret_cast<const uint8_t*>(kTag.data()), kTag.size()});
  put(std::to_string(seq));
  put(std::to_string(at_ms));
  put(actor);
  put(action);
  put(subject);
  put(detail_text);
  put(prev_hash);
  return h.finish();
}

struct Head {
  int64_t seq = 0;
  std::string hash;
};

// The one row of `table` (audit_head: the last record; audit_base, schema 8: the last one
// cut by gc); nullopt when it is missing (the table was tampered with).
Result<std::optional<Head>> read_mark(detail::Conn& conn, const std::string& table) {
  auto st = Stmt::prepare(conn, "SELECT seq, hash FROM " + table + " WHERE id = 1",
                          "read the " + table + " row");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  auto row = st->step();
  if (!row) return tl::unexpected<Error>(std::move(row).error());
  if (!*row) return std::optional<Head>();
  return std::optional<Head>(Head{st->col_int(0), st->col_text(1)});
}

AuditReport broken(uint64_t records, int64_t seq, std::string problem) {
  AuditReport r;
  r.records = records;
  r.bad_seq = seq;
  r.problem = std::move(problem);
  return r;
}

std::string rec(int64_t seq) {
  return "record " + std::to_string(seq);
}

}  // namespace

std::string audit_record_hash(int64_t seq, int64_t at_ms, std::string_view actor,
                              std::string_view action, std::string_view subject,
                              std::string_view detail_text, std::string_view prev_hash) {
  return audit_digest(seq, at_ms, actor, action, subject, detail_text, prev_hash).hex();
}

void StateDb::set_audit_key(std::optional<crypto::PrivateKey> key) {
  audit_key_ = std::move(key);
}

Result<AuditRecord> StateDb::append_audit(std::string_view actor, std::string_view action,
                                          std::string_view subject, const nlohmann::json& info) {
  if (action.empty()) return fail(Errc::invalid_argument, "append audit record: empty action");
  AuditRecord r;
  r.actor = actor.empty() ? current_actor() : std::string(actor);
  r.action = action;
  r.subject = subject;
  const std::string text = detail::dump_json(info.is_null() ? nlohmann::json::object() : info);
  std::string what = "append audit record '" + r.action + "'";
  MUP_TRY(transaction([&]() -> Status {
    auto head = read_mark(*conn_, "audit_head");
    if (!head) return tl::unexpected<Error>(std::move(head).error());
    if (!*head)
      return fail(Errc::corrupt, "state database " + path().string() + ": " + what +
                                     ": the audit head is missing (run `mup audit verify`)");
    r.seq = (*head)->seq + 1;
    r.at_ms = now_ms();
    r.prev_hash = (*head)->hash;
    Digest d = audit_digest(r.seq, r.at_ms, r.actor, r.action, r.subject, text, r.prev_hash);
    r.hash = d.hex();
    if (audit_key_) {
      auto sig = audit_key_->sign(d.bytes);
      if (!sig) return tl::unexpected<Error>(std::move(sig).error().context(what));
      r.signature = to_hex(*sig);
    }
    auto ins = Stmt::prepare(*conn_,
                             "INSERT INTO audit(seq, at, actor, action, subject, detail, "
                             "prev_hash, hash, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             what);
    if (!ins) return tl::unexpected<Error>(std::move(ins).error());
    ins->bind_int(1, r.seq).bind_int(2, r.at_ms).bind_text(3, r.actor).bind_text(4, r.action);
    ins->bind_text(5, r.subject).bind_text(6, text).bind_text(7, r.prev_hash);
    MUP_TRY(ins->bind_text(8, r.hash).bind_text(9, r.signature).run());
    auto upd = Stmt::prepare(*conn_, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1",
                             what + ": move the head");
    if (!upd) return tl::unexpected<Error>(std::move(upd).error());
    return upd->bind_int(1, r.seq).bind_text(2, r.hash).run();
  }));
  auto parsed = detail::parse_json(text, "detail of audit " + rec(r.seq));
  if (!parsed) return tl::unexpected<Error>(std::move(parsed).error());
  r.detail = std::move(*parsed);
  return r;
}

Result<std::vector<AuditRecord>> StateDb::audit(size_t limit) {
  auto st = Stmt::prepare(*conn_,
                          "SELECT seq, at, actor, action, subject, detail, prev_hash, hash, "
                          "signature FROM audit ORDER BY seq DESC LIMIT ?",
                          "read the audit log");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  st->bind_int(1, limit == 0 ? -1 : static_cast<int64_t>(limit));
  std::vector<AuditRecord> out;
  for (;;) {
    auto row = st->step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row) return out;
    AuditRecord r;
    r.seq = st->col_int(0);
    r.at_ms = st->col_int(1);
    r.actor = st->col_text(2);
    r.action = st->col_text(3);
    r.subject = st->col_text(4);
    auto d = detail::parse_json(st->col_text(5), "detail of audit " + rec(r.seq));
    if (!d) return tl::unexpected<Error>(std::move(d).error());
    r.detail = std::move(*d);
    r.prev_hash = st->col_text(6);
    r.hash = st->col_text(7);
    r.signature = st->col_text(8);
    out.push_back(std::move(r));
  }
}

Result<AuditReport> StateDb::verify_audit(const crypto::PublicKey* key) {
  auto head = read_mark(*conn_, "audit_head");
  if (!head) return tl::unexpected<Error>(std::move(head).error());
  if (!*head) return broken(0, 0, "the audit head is missing (the audit_head row was removed)");
  auto base = read_mark(*conn_, "audit_base");
  if (!base) return tl::unexpected<Error>(std::move(base).error());
  if (!*base) return broken(0, 0, "the audit base is missing (the audit_base row was removed)");

  auto st = Stmt::prepare(*conn_,
                          "SELECT seq, at, actor, action, subject, detail, prev_hash, hash, "
                          "signature FROM audit ORDER BY seq",
                          "read the audit log");
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  uint64_t records = 0;
  const int64_t first = (*base)->seq;  // records up to it were cut by gc
  int64_t last = first;                // seq of the last record read
  std::string prev = (*base)->hash;
  bool signed_seen = false;  // with a key: a signed record was read
  int64_t last_unsigned = 0;
  for (;;) {
    auto row = st->step();
    if (!row) return tl::unexpected<Error>(std::move(row).error());
    if (!*row) break;
    ++records;
    const int64_t seq = st->col_int(0);
    const int64_t expected = last + 1;
    if (seq < expected)
      return broken(
          records, seq,
          rec(seq) + " has an invalid sequence number (expected " + std::to_string(expected) + ")");
    if (seq > expected) {
      std::string gap = seq == expected + 1 ? rec(expected) + " is missing"
                                            : "records " + std::to_string(expected) + " to " +
                                                  std::to_string(seq - 1) + " are missing";
      return broken(records, expected,
                    gap + (last == first ? " (the log starts at " + std::to_string(seq) + ")"
                                         : " (seq jumps " + std::to_string(last) + " -> " +
                                               std::to_string(seq) + ")"));
    }
    const std::string prev_hash = st->col_text(6);
    if (prev_hash != prev)
      return broken(records, seq,
                    last == first
                        ? rec(seq) + (first == 0 ? " does not start the chain (its prev_hash is "
                                                   "not zeros)"
                                                 : " does not follow the audit base (record " +
                                                       std::to_string(first) +
                                                       ", cut by gc): its prev_hash differs")
                        : rec(seq) + " is out of order or " + rec(last) +
                              " was rewritten (prev_hash does not match " + rec(last) + ")");
    const std::string hash = st->col_text(7);
    Digest d = audit_digest(seq, st->col_int(1), st->col_text(2), st->col_text(3), st->col_text(4),
                            st->col_text(5), prev_hash);
    if (d.hex() != hash) return broken(records, seq, rec(seq) + " was edited (hash mismatch)");
    if (key) {
      // Records written before the node had its key are unsigned; once one is signed, every
      // later one must be (and the last must be: see below), and the chain ties the
      // unsigned prefix to the first signature.
      const std::string sig_hex = st->col_text(8);
      if (sig_hex.empty()) {
        if (signed_seen) return broken(records, seq, rec(seq) + " is not signed");
        last_unsigned = seq;
      } else {
        auto sig = from_hex(sig_hex);
        if (!sig || !key->verify(d.bytes, *sig))
          return broken(records, seq, "signature of " + rec(seq) + " does not verify");
        signed_seen = true;
      }
    }
    prev = hash;
    last = seq;
  }

  if (key && last != first && last_unsigned == last)
    return broken(records, last, rec(last) + " is not signed");
  const Head& h = **head;
  if (h.seq > last)
    return broken(records, last + 1,
                  "the log ends at " + std::to_string(last) + " but the head says " +
                      std::to_string(h.seq) + " (records removed from the end)");
  if (h.seq < last)
    return broken(records, h.seq + 1,
                  "the log ends at " + std::to_string(last) + " but the head says " +
                      std::to_string(h.seq) + " (records added without moving the head)");
  if (h.hash != prev)
    return broken(records, last,
                  "the head does not match " +
                      (last == first ? std::string("the empty log") : rec(last)) +
                      " (hash differs: the last record or the head was rewritten)");
  AuditReport ok;
  ok.ok = true;
  ok.records = records;
  ok.base = first;
  return ok;
}

Status StateDb::trim_audit(const HistoryRetention& keep, const crypto::PublicKey* key,
                           HistoryTrimmed& out) {
  const std::string what = "trim the audit log";
  auto head = read_mark(*conn_, "audit_head");
  if (!head) return tl::unexpected<Error>(std::move(head).error());
  auto base = read_mark(*conn_, "audit_base");
  if (!base) return tl::unexpected<Error>(std::move(base).error());
  if (!*head || !*base) {
    out.audit_problem = "the audit head or base is missing";
    return {};
  }
  out.audit_base = (*base)->seq;
  if (keep.audit == 0 || (*head)->seq <= (*base)->seq + static_cast<int64_t>(keep.audit)) return {};
  const int64_t cut = (*head)->seq - static_cast<int64_t>(keep.audit);
  auto report = verify_audit(key);
  if (!report) return tl::unexpected<Error>(std::move(report).error());
  if (!report->ok) {
    out.audit_problem = report->problem;
    return {};
  }
  auto st = Stmt::prepare(*conn_, "SELECT hash FROM audit WHERE seq = ?", what);
  if (!st) return tl::unexpected<Error>(std::move(st).error());
  auto row = st->bind_int(1, cut).step();
  if (!row) return tl::unexpected<Error>(std::move(row).error());
  if (!*row) return fail(Errc::corrupt, what + ": " + rec(cut) + " is missing");
  const std::string cut_hash = st->col_text(0);
  out.audit = static_cast<uint64_t>(cut - (*base)->seq);
  if (keep.dry_run) return {};
  auto upd = Stmt::prepare(*conn_, "UPDATE audit_base SET seq = ?, hash = ? WHERE id = 1", what);
  if (!upd) return tl::unexpected<Error>(std::move(upd).error());
  MUP_TRY(upd->bind_int(1, cut).bind_text(2, cut_hash).run());
  auto del = Stmt::prepare(*conn_, "DELETE FROM audit WHERE seq <= ?", what);
  if (!del) return tl::unexpected<Error>(std::move(del).error());
  MUP_TRY(del->bind_int(1, cut).run());
  out.audit_base = cut;
  return {};
}

}  // namespace mup::state
