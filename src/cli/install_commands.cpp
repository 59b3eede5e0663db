// The node administrator's commands: remote add/list, install, versions, activate,
// rollback, pin, gc, status, history, audit verify/show, snapshot create/list/verify/
// restore/delete, verify, commit, recover. Each opens the node (engine::Engine: state
// database, recovery of whatever a killed process left) under --root (default $MUP_ROOT,
// or /var/lib/mup), calls one engine function and prints text, or JSON with --json.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/node_args.hpp"
#include "core/progress.hpp"
#include "engine/engine.hpp"
#include "snapshot/snapshot_store.hpp"
#include "state/state_db.hpp"

namespace mup::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

std::atomic<bool> g_cancel{false};

extern "C" void on_interrupt(int) {
  g_cancel.store(true);
}

// Renders events: a progress bar on a terminal, a line per step and per 10% when not,
// JSON lines with --json.
struct EventPrinter {
  bool json_mode = false;
  std::unique_ptr<Progress> bar;
  uint64_t last_done = 0;
  int last_decile = -1;

  void operator()(const json& e) {
    if (json_mode) {
      std::printf("%s\n", e.dump().c_str());
      std::fflush(stdout);
      return;
    }
    std::string ev = e.value("event", "");
    if (ev == "step") {
      if (bar) {
        bar->finish();
        bar.reset();
      }
      std::fprintf(stderr, "%s: %s%s\n", e.value("component", "").c_str(),
                   e.value("step", "").c_str(),
                   e.contains("version") ? (" " + e.value("version", "")).c_str() : "");
    } else if (ev == "progress") {
      uint64_t total = e.value("total", uint64_t{0}), done = e.value("done", uint64_t{0});
      if (::isatty(STDERR_FILENO)) {
        if (!bar) {
          bar = std::make_unique<Progress>("fetch", total, true);
          last_done = 0;
        }
        bar->add(done - last_done);
        last_done = done;
      } else if (total > 0) {
        int decile = static_cast<int>(done * 10 / total);
        if (decile != last_decile) {
          last_decile = decile;
          std::fprintf(stderr, "fetch: %s of %s (%d%%)\n", human_bytes(done).c_str(),
                       human_bytes(total).c_str(), decile * 10);
        }
      }
    }
  }
};

json install_json(const engine::InstallReport& r) {
  json deps = json::array();
  for (const auto& d : r.deps) deps.push_back(install_json(d));
  return {{"component", r.component},
          {"from", r.from_version},
          {"to", r.to_version},
          {"already_installed", r.already_installed},
          {"bytes_fetched", r.bytes_fetched},
          {"bytes_cached", r.bytes_cached},
          {"full_bytes", r.full_bytes},
          {"tree_bytes", r.tree_bytes},
          {"bytes_written", r.bytes_written},
          {"files", r.files},
          {"files_linked", r.files_linked},
          {"snapshot", r.snapshot_id},
          {"trial", r.trial},
          {"operation", r.operation},
          {"seconds", r.seconds},
          {"deps", deps}};
}

void print_install(const engine::InstallReport& r) {
  for (const auto& d : r.deps) print_install(d);
  if (r.already_installed) {
    std::printf("%s %s is installed and active (was %s)%s\n", r.component.c_str(),
                r.to_version.c_str(), r.from_version.empty() ? "none" : r.from_version.c_str(),
                r.trial ? ", on trial" : "");
    return;
  }
  std::printf(
      "installed %s %s (was %s): fetched %s of %s full download%s, tree %s (%llu files, %llu "
      "hard-linked unchanged, %s written), in %.2fs%s\n",
      r.component.c_str(), r.to_version.c_str(),
      r.from_version.empty() ? "none" : r.from_version.c_str(),
      human_bytes(r.bytes_fetched).c_str(), human_bytes(r.full_bytes).c_str(),
      r.bytes_cached ? (", " + human_bytes(r.bytes_cached) + " already cached").c_str() : "",
      human_bytes(r.tree_bytes).c_str(), static_cast<unsigned long long>(r.files),
      static_cast<unsigned long long>(r.files_linked), human_bytes(r.bytes_written).c_str(),
      r.seconds, r.trial ? "; on trial (mup commit or mup rollback)" : "");
}

void print_switch(const char* verb, const engine::SwitchReport& r, bool as_json) {
  if (as_json) {
    print_json({{"component", r.component},
                {"from", r.from_version},
                {"to", r.to_version},
                {"restored_snapshot", r.restored_snapshot},
                {"operation", r.operation},
                {"seconds", r.seconds}});
    return;
  }
  std::printf(
      "%s %s: %s -> %s%s (%.1f ms)\n", verb, r.component.c_str(),
      r.from_version.empty() ? "none" : r.from_version.c_str(), r.to_version.c_str(),
      r.restored_snapshot.empty() ? "" : (", state restored from " + r.restored_snapshot).c_str(),
      r.seconds * 1000);
}

}  // namespace

void register_install_commands(CLI::App& app) {
  // remote
  auto* remote = app.add_subcommand("remote", "Repositories this node installs from");
  remote->require_subcommand(1);
  {
    struct A {
      NodeArgs n;
      std::string name, url, trusted_root;
    };
    auto a = std::make_shared<A>();
    auto* add = remote->add_subcommand("add", "Record a repository and its trusted root");
    add->add_option("name", a->name, "Remote name")->required();
    add->add_option("url", a->url, "Repository URL (serving metadata/ and targets/)")->required();
    add->add_option("--trusted-root", a->trusted_root,
                    "The repository's root.json, obtained out of band (no trust on first use)")
        ->required();
    add_node_options(add, a->n, false);
    add->callback([a] {
      auto node = open_node(a->n);
      must(node->add_remote(a->name, a->url, a->trusted_root), "adding remote " + a->name);
      std::printf("remote %s added: %s (root of trust: %s)\n", a->name.c_str(), a->url.c_str(),
                  a->trusted_root.c_str());
    });
    auto l = std::make_shared<NodeArgs>();
    auto* list = remote->add_subcommand("list", "List the remotes");
    add_node_options(list, *l);
    list->callback([l] {
      auto node = open_node(*l);
      auto rs = must(node->remotes());
      if (l->json()) {
        json j = json::array();
        for (const auto& [n, u] : rs) j.push_back({{"name", n}, {"url", u}});
        print_json(j);
        return;
      }
      for (const auto& [n, u] : rs) std::printf("%-16s %s\n", n.c_str(), u.c_str());
    });
  }

  // install
  {
    struct A {
      NodeArgs n;
      std::string name;
      engine::InstallOptions o;
      bool no_snapshot = false;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand(
        "install", "Install a component version (fetch what is missing, verify, stage, activate)");
    cmd->add_option("name", a->name, "Component")->required();
    cmd->add_option("--version", a->o.version, "Version (default: the newest)");
    cmd->add_option("--remote", a->o.remote, "Remote to install from");
    cmd->add_flag("--with-deps", a->o.with_deps, "Install unmet dependencies first");
    cmd->add_flag("--no-snapshot", a->no_snapshot, "Do not snapshot the state before activating");
    cmd->add_flag("--trial", a->o.trial,
                  "Leave the version on trial: mup commit keeps it, mup rollback undoes it");
    cmd->add_option("--trial-policy", a->o.trial_policy,
                    "What a restart does to a version still on trial: rollback (default) or keep")
        ->check(CLI::IsMember({"rollback", "keep"}));
    cmd->add_flag("--force", a->o.force, "Install a version that was rolled back as bad");
    cmd->add_option("--device-key", a->n.device_key,
                    "Device key for encrypted packages (default <root>/device.key)");
    cmd->add_option("--threads", a->n.threads, "Worker threads");
    cmd->add_option("--connections", a->n.connections, "Parallel piece downloads (default 8)");
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      warn_if_agent_serves(a->n, a->name, "install");
      auto printer = std::make_shared<EventPrinter>();
      printer->json_mode = a->n.json();
      auto node = open_node(a->n, [printer](const json& e) { (*printer)(e); });
      a->o.snapshot = !a->no_snapshot;
      a->o.cancel = &g_cancel;
      std::signal(SIGINT, on_interrupt);
      std::signal(SIGTERM, on_interrupt);
      auto result = node->install(a->name, a->o);
      node.reset();  // delivers every event before the result
      if (printer->bar) printer->bar->finish();
      auto r = must(std::move(result), "installing " + a->name);
      if (a->n.json()) {
        std::printf("%s\n",
                    json({{"event", "result"}, {"install", install_json(r)}}).dump().c_str());
      } else {
        print_install(r);
      }
    });
  }

  // versions
  {
    struct A {
      NodeArgs n;
      std::string name;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand("versions", "List the installed versions of a component");
    cmd->add_option("name", a->name, "Component")->required();
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      auto node = open_node(a->n);
      json all = must(node->versions(a->name));
      const json& j = all["versions"];
      if (a->n.json()) {
        print_json(all);
        return;
      }
      if (j.empty()) {
        std::printf("%s: no version installed\n", a->name.c_str());
        return;
      }
      for (const auto& r : j) {
        std::string flags;
        if (r["active"].get<bool>()) flags += " active";
        if (r["previous"].get<bool>()) flags += " previous";
        if (r["pinned"].get<bool>()) flags += " pinned";
        if (r.value("status", "committed") != "committed") flags += " " + r.value("status", "");
        std::printf("%s %-14s %s\n", r["active"].get<bool>() ? "*" : " ",
                    r["version"].get<std::string>().c_str(), flags.c_str());
      }
    });
  }

  // activate
  {
    struct A {
      NodeArgs n;
      std::string name, version;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand("activate", "Make an installed version the active one");
    cmd->add_option("name", a->name, "Component")->required();
    cmd->add_option("version", a->version, "Installed version")->required();
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      warn_if_agent_serves(a->n, a->name, "activate");
      auto node = open_node(a->n);
      print_switch("activated", must(node->activate(a->name, a->version)), a->n.json());
    });
  }

  // rollback
  {
    struct A {
      NodeArgs n;
      std::string name, to;
      bool restore_state = false;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand(
        "rollback", "Switch back to the previous version (or --to one); no network needed");
    cmd->add_option("name", a->name, "Component")->required();
    cmd->add_option("--to", a->to, "Installed version to go back to");
    cmd->add_flag("--restore-state", a->restore_state,
                  "Also restore the state snapshot taken while that version was active");
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      if (rollback_via_agent(a->n, a->name, !a->to.empty() || a->restore_state)) return;
      auto node = open_node(a->n);
      std::optional<std::string> to;
      if (!a->to.empty()) to = a->to;
      print_switch("rolled back", must(node->rollback(a->name, to, a->restore_state)), a->n.json());
    });
  }

  // pin
  {
    struct A {
      NodeArgs n;
      std::string name, version;
      bool clear = false;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand(
        "pin", "Hold a component at an installed version (never collected, never replaced)");
    cmd->add_option("name", a->name, "Component")->required();
    cmd->add_option("version", a->version, "Installed version");
    cmd->add_flag("--clear", a->clear, "Remove the pin");
    add_node_options(cmd, a->n, false);
    cmd->callback([a] {
      if (a->clear == !a->version.empty())
        die(Error(Errc::invalid_argument, "give a VERSION to pin, or --clear"));
      auto node = open_node(a->n);
      std::optional<std::string> v;
      if (!a->clear) v = a->version;
      must(node->pin(a->name, v));
      std::printf(a->clear ? "%s unpinned\n" : "%s pinned to %s\n", a->name.c_str(),
                  a->version.c_str());
    });
  }

  // gc
  {
    struct A {
      NodeArgs n;
      store::GcOptions o;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand(
        "gc",
        "Remove old versions, their automatic snapshots and fetched pieces the installed trees "
        "already hold (never the active, previous or pinned version)");
    cmd->add_option("--keep", a->o.keep, "Versions to keep per component (default 2)");
    cmd->add_option("--max-bytes", a->o.max_bytes, "Then remove the oldest until this fits");
    cmd->add_option("--snapshots-keep", a->o.snapshots_keep,
                    "Automatic snapshots kept per component besides the newest of each kept "
                    "version (default 2)");
    cmd->add_option("--snapshot-max-bytes", a->o.snapshot_max_bytes,
                    "Those within this many bytes per component (default: no cap)");
    cmd->add_option("--unfinished-piece-age", a->o.unfinished_piece_age_s,
                    "Seconds the pieces of an unfinished install are kept for its resume "
                    "(default 86400)");
    cmd->add_option("--history-keep", a->o.history_keep,
                    "Finished operations kept in the history, newest first, and as many of the "
                    "agent's finished deployments and plans (default 500; 0: all)");
    cmd->add_option("--steps-keep", a->o.steps_keep,
                    "Of those, how many keep their step-by-step journal (default 50; 0: all)");
    cmd->add_option("--audit-keep", a->o.audit_keep,
                    "Audit records kept, newest first (default 1000; 0: all): older ones are "
                    "cut off the front of the hash chain, which still verifies from the cut");
    cmd->add_flag("--dry-run", a->o.dry_run, "List everything that would be removed");
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      auto node = open_node(a->n);
      auto r = must(node->gc(a->o), "garbage collection");
      if (!r.audit_problem.empty())
        std::fprintf(stderr,
                     "warning: no audit record was trimmed: the audit log does not verify (%s); "
                     "run `mup audit verify`\n",
                     r.audit_problem.c_str());
      json removed = json::array();
      for (const auto& [c, v] : r.removed) removed.push_back(c + "@" + v);
      if (a->n.json()) {
        print_json({{"removed", removed},
                    {"bytes_freed", r.bytes_freed},
                    {"pieces_removed", r.pieces_removed},
                    {"piece_bytes_freed", r.piece_bytes_freed},
                    {"pieces", r.pieces},
                    {"snapshots_removed", r.snapshots_removed},
                    {"snapshot_bytes_freed", r.snapshot_bytes_freed},
                    {"bytes_after", r.bytes_after},
                    {"operations_removed", r.operations_removed},
                    {"deployments_removed", r.deployments_removed},
                    {"plans_removed", r.plans_removed},
                    {"steps_removed", r.steps_removed},
                    {"audit_records_removed", r.audit_records_removed},
                    {"audit_trimmed_through", r.audit_base},
                    {"audit_problem", r.audit_problem},
                    {"dry_run", a->o.dry_run}});
        return;
      }
      std::printf(
          "%s %zu version(s) (%s), %zu snapshot(s) (%s) and %llu cached piece(s) (%s); %s "
          "installed remain\n",
          a->o.dry_run ? "would remove" : "removed", r.removed.size(),
          human_bytes(r.bytes_freed).c_str(), r.snapshots_removed.size(),
          human_bytes(r.snapshot_bytes_freed).c_str(),
          static_cast<unsigned long long>(r.pieces_removed),
          human_bytes(r.piece_bytes_freed).c_str(), human_bytes(r.bytes_after).c_str());
      if (r.operations_removed || r.steps_removed || r.audit_records_removed ||
          r.deployments_removed || r.plans_removed)
        std::printf(
            "history: %llu operation(s), %llu step record(s), %llu deployment(s), %llu plan(s), "
            "%llu audit record(s)\n",
            static_cast<unsigned long long>(r.operations_removed),
            static_cast<unsigned long long>(r.steps_removed),
            static_cast<unsigned long long>(r.deployments_removed),
            static_cast<unsigned long long>(r.plans_removed),
            static_cast<unsigned long long>(r.audit_records_removed));
      for (const auto& x : removed) std::printf("  version  %s\n", x.get<std::string>().c_str());
      for (const auto& x : r.snapshots_removed) std::printf("  snapshot %s\n", x.c_str());
      // Every piece when asked what would go; a count otherwise (there may be thousands).
      if (a->o.dry_run)
        for (const auto& x : r.pieces) std::printf("  piece    %s\n", x.c_str());
    });
  }

  // status
  {
    auto a = std::make_shared<NodeArgs>();
    auto* cmd = app.add_subcommand("status", "What is installed and active on this node");
    add_node_options(cmd, *a);
    cmd->callback([a] {
      auto node = open_node(*a);
      auto s = must(node->status());
      if (a->json()) {
        print_json(s);
        return;
      }
      std::printf("node %s: %zu component(s), %s installed\n", s["root"].get<std::string>().c_str(),
                  s["components"].size(),
                  human_bytes(s["installed_bytes"].get<uint64_t>()).c_str());
      std::printf("%-20s %-12s %-12s %-12s %s\n", "COMPONENT", "ACTIVE", "PREVIOUS", "PINNED",
                  "INSTALLED");
      for (const auto& c : s["components"]) {
        std::string vs;
        for (const auto& v : c["versions"]) vs += (vs.empty() ? "" : " ") + v.get<std::string>();
        auto dash = [](const json& j) {
          std::string s = j.get<std::string>();
          return s.empty() ? std::string("-") : s;
        };
        std::printf(
            "%-20s %-12s %-12s %-12s %s%s\n", c["name"].get<std::string>().c_str(),
            dash(c["active"]).c_str(), dash(c["previous"]).c_str(), dash(c["pinned"]).c_str(),
            vs.c_str(),
            c["trial"].is_null()
                ? ""
                : ("  [on trial since " + c["trial"]["since"].get<std::string>() + "]").c_str());
      }
      for (const auto& op : s["running"])
        std::printf("running: operation %lld %s %s -> %s (step %s, pid %d)\n",
                    static_cast<long long>(op["id"].get<int64_t>()),
                    op["kind"].get<std::string>().c_str(),
                    op["component"].get<std::string>().c_str(), op["to"].get<std::string>().c_str(),
                    op["step"].get<std::string>().c_str(), op["pid"].get<int>());
      for (const auto& op : s["quarantined"])
        std::printf(
            "QUARANTINED: operation %lld %s %s (%d failed recoveries: %s); fix the "
            "cause, then mup recover, or mup rollback %s\n",
            static_cast<long long>(op["id"].get<int64_t>()), op["kind"].get<std::string>().c_str(),
            op["component"].get<std::string>().c_str(), op["recovery_attempts"].get<int>(),
            op["recovery_error"].get<std::string>().c_str(),
            op["component"].get<std::string>().c_str());
      if (s["degraded"].get<bool>()) std::printf("node is DEGRADED: see above\n");
    });
  }

  // history
  {
    struct A {
      NodeArgs n;
      std::string name;
      size_t limit = 0;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand("history", "Operations on this node, newest first");
    cmd->add_option("name", a->name, "Only this component");
    cmd->add_option("--limit", a->limit, "At most this many");
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      auto node = open_node(a->n);
      auto h = must(node->history(a->name, a->limit));
      json j = json::array();
      for (const auto& op : h)
        j.push_back({{"id", op.id},
                     {"kind", op.kind},
                     {"component", op.component},
                     {"from", op.from_version},
                     {"to", op.to_version},
                     {"actor", op.actor},
                     {"result", op.state},
                     {"started_at", engine::iso_time(op.started_at_ms)},
                     {"duration_ms", op.finished_at_ms ? op.finished_at_ms - op.started_at_ms : 0},
                     {"bytes", op.bytes},
                     {"error", op.error}});
      if (a->n.json()) {
        print_json(j);
        return;
      }
      std::printf("%-5s %-20s %-16s %-12s %-22s %-8s %-10s %9s %s\n", "ID", "WHEN", "OPERATION",
                  "COMPONENT", "FROM -> TO", "RESULT", "WHO", "BYTES", "MS");
      for (const auto& r : j) {
        std::string ft = r["from"].get<std::string>();
        std::string to = r["to"].get<std::string>();
        std::string arrow = (ft.empty() ? "-" : ft) + " -> " + (to.empty() ? "-" : to);
        if (ft.empty() && to.empty()) arrow = "";
        std::printf("%-5lld %-20s %-16s %-12s %-22s %-8s %-10s %9s %lld%s%s\n",
                    static_cast<long long>(r["id"].get<int64_t>()),
                    r["started_at"].get<std::string>().c_str(),
                    r["kind"].get<std::string>().c_str(), r["component"].get<std::string>().c_str(),
                    arrow.c_str(), r["result"].get<std::string>().c_str(),
                    r["actor"].get<std::string>().c_str(),
                    human_bytes(r["bytes"].get<uint64_t>()).c_str(),
                    static_cast<long long>(r["duration_ms"].get<int64_t>()),
                    r["error"].get<std::string>().empty() ? "" : "  ",
                    r["error"].get<std::string>().c_str());
      }
    });
  }

  // audit
  {
    auto* audit = app.add_subcommand("audit", "The hash-chained audit log");
    audit->require_subcommand(1);
    auto a = std::make_shared<NodeArgs>();
    auto* verify = audit->add_subcommand(
        "verify", "Check the audit log: finds any edited, removed or reordered record");
    add_node_options(verify, *a);
    verify->callback([a] {
      auto node = open_node(*a);
      auto r = must(node->verify_audit());
      if (a->json()) {
        print_json({{"ok", r.ok},
                    {"records", r.records},
                    {"bad_record", r.bad_seq},
                    {"problem", r.problem},
                    {"trimmed_through", r.base}});
      } else if (r.ok) {
        std::printf("audit log verified: %llu records, chain intact",
                    static_cast<unsigned long long>(r.records));
        if (r.base > 0)
          std::printf(" (records 1-%lld were trimmed by gc; the chain starts after them)",
                      static_cast<long long>(r.base));
        std::printf("\n");
      } else {
        std::printf("AUDIT LOG TAMPERED: %s\n", r.problem.c_str());
      }
      if (!r.ok) throw CliExit{1};
    });
    auto k = std::make_shared<NodeArgs>();
    auto* keygen = audit->add_subcommand(
        "keygen",
        "Make the node's audit signing key (<root>/audit-key.pem): records from now "
        "on are signed");
    add_node_options(keygen, *k, false);
    keygen->callback([k] {
      auto node = open_node(*k);
      must(node->create_audit_key(), "creating the audit key");
      std::printf(
          "audit key created: %s/audit-key.pem (mode 0600); records are signed from now "
          "on\n",
          node->root().c_str());
    });
    auto s = std::make_shared<std::pair<NodeArgs, size_t>>();
    auto* show = audit->add_subcommand("show", "Print the audit log");
    add_node_options(show, s->first);
    show->add_option("--limit", s->second, "Only the newest N");
    show->callback([s] {
      auto node = open_node(s->first);
      auto recs = must(node->audit(s->second));
      json j = json::array();
      for (const auto& r : recs)
        j.push_back({{"seq", r.seq},
                     {"at", engine::iso_time(r.at_ms)},
                     {"actor", r.actor},
                     {"action", r.action},
                     {"subject", r.subject},
                     {"detail", r.detail},
                     {"hash", r.hash}});
      if (s->first.json()) {
        print_json(j);
        return;
      }
      for (const auto& r : j)
        std::printf("%5lld %s %-10s %-24s %-12s %s  %s\n",
                    static_cast<long long>(r["seq"].get<int64_t>()),
                    r["at"].get<std::string>().c_str(), r["actor"].get<std::string>().c_str(),
                    r["action"].get<std::string>().c_str(), r["subject"].get<std::string>().c_str(),
                    r["detail"].dump().c_str(), r["hash"].get<std::string>().substr(0, 12).c_str());
    });
  }

  // snapshot
  {
    auto* snap = app.add_subcommand("snapshot", "Snapshots of components' state directories");
    snap->require_subcommand(1);
    struct A {
      NodeArgs n;
      std::string name, label;
      bool system = false;
    };
    auto c = std::make_shared<A>();
    auto* create = snap->add_subcommand(
        "create", "Snapshot a component's state (<root>/state/NAME) and its active version");
    create->add_option("name", c->name, "Component");
    create->add_flag("--system", c->system, "All components at once");
    create->add_option("--label", c->label, "A note kept with the snapshot");
    add_node_options(create, c->n);
    create->callback([c] {
      if (c->system == !c->name.empty())
        die(Error(Errc::invalid_argument, "give a component NAME, or --system"));
      auto node = open_node(c->n);
      json r = c->system ? must(node->snapshot_create_system(c->label))
                         : must(node->snapshot_create(c->name, c->label));
      if (c->n.json()) {
        print_json(r);
      } else if (c->system) {
        std::printf("system snapshot %s (%zu components)\n", r["id"].get<std::string>().c_str(),
                    r["members"].size());
      } else {
        std::printf("snapshot %s of %s: %llu files, %s (%s copied, the rest shared)\n",
                    r["id"].get<std::string>().c_str(), c->name.c_str(),
                    static_cast<unsigned long long>(r["files"].get<uint64_t>()),
                    human_bytes(r["bytes"].get<uint64_t>()).c_str(),
                    human_bytes(r["bytes_copied"].get<uint64_t>()).c_str());
      }
    });
    auto l = std::make_shared<A>();
    auto* list = snap->add_subcommand("list", "List snapshots");
    list->add_option("name", l->name, "Only this component");
    add_node_options(list, l->n);
    list->callback([l] {
      auto node = open_node(l->n);
      auto all = must(node->snapshot_list(l->name));
      json j = json::array();
      for (const auto& s : all)
        j.push_back({{"id", s.id},
                     {"component", s.component},
                     {"version", s.version},
                     {"label", s.label},
                     {"created_at", engine::iso_time(s.created_at_ms)},
                     {"files", s.files},
                     {"bytes", s.bytes},
                     {"content_hash", s.content_hash}});
      if (l->n.json()) {
        print_json(j);
        return;
      }
      for (const auto& s : j)
        std::printf(
            "%-40s %-12s %-10s %s %8s  %s\n", s["id"].get<std::string>().c_str(),
            s["component"].get<std::string>().c_str(), s["version"].get<std::string>().c_str(),
            s["created_at"].get<std::string>().c_str(),
            human_bytes(s["bytes"].get<uint64_t>()).c_str(), s["label"].get<std::string>().c_str());
    });
    struct I {
      NodeArgs n;
      std::string id;
    };
    auto v = std::make_shared<I>();
    auto* verify = snap->add_subcommand("verify", "Check a snapshot's content against its hashes");
    verify->add_option("id", v->id, "Snapshot id")->required();
    add_node_options(verify, v->n);
    verify->callback([v] {
      auto node = open_node(v->n);
      auto r = must(node->snapshot_verify(v->id));
      json problems = json::array();
      for (const auto& p : r.problems)
        problems.push_back(
            {{"path", p.path}, {"kind", snapshot::kind_name(p.kind)}, {"detail", p.detail}});
      if (v->n.json()) {
        print_json({{"id", v->id},
                    {"ok", r.ok()},
                    {"files_checked", r.files_checked},
                    {"problems", problems}});
      } else if (r.ok()) {
        std::printf("snapshot %s: OK (%llu files, %s)\n", v->id.c_str(),
                    static_cast<unsigned long long>(r.files_checked),
                    human_bytes(r.bytes_checked).c_str());
      } else {
        std::printf("snapshot %s: CORRUPT\n", v->id.c_str());
        for (const auto& p : r.problems)
          std::printf("  %s: %s\n", p.path.c_str(), p.detail.c_str());
      }
      if (!r.ok()) throw CliExit{1};
    });
    auto r = std::make_shared<I>();
    auto* restore = snap->add_subcommand("restore", "Put a component's state back as snapshotted");
    restore->add_option("id", r->id, "Snapshot id")->required();
    add_node_options(restore, r->n, false);
    restore->callback([r] {
      auto node = open_node(r->n);
      must(node->snapshot_restore(r->id), "restoring " + r->id);
      std::printf("state restored from %s\n", r->id.c_str());
    });
    auto d = std::make_shared<I>();
    auto* del = snap->add_subcommand("delete", "Delete a snapshot");
    del->add_option("id", d->id, "Snapshot id")->required();
    add_node_options(del, d->n, false);
    del->callback([d] {
      auto node = open_node(d->n);
      must(node->snapshot_delete(d->id), "deleting " + d->id);
      std::printf("snapshot %s deleted\n", d->id.c_str());
    });
  }

  // commit: the version on trial becomes committed
  {
    struct A {
      NodeArgs n;
      std::string name;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand(
        "commit", "Keep the version on trial (installed with --trial): it becomes committed");
    cmd->add_option("name", a->name, "Component")->required();
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      auto node = open_node(a->n);
      print_switch("committed", must(node->commit(a->name)), a->n.json());
    });
  }

  // recover: retry quarantined operations
  {
    struct A {
      NodeArgs n;
      int64_t id = 0;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand(
        "recover",
        "Retry the recovery of quarantined operations (after fixing what made them fail)");
    cmd->add_option("--id", a->id, "Only this operation");
    add_node_options(cmd, a->n);
    cmd->callback([a] {
      auto node = open_node(a->n);
      auto r = must(node->retry_quarantined(a->id), "recovering");
      if (a->n.json()) {
        print_json({{"recovered", r.actions}, {"problems", r.problems}, {"degraded", r.degraded}});
      } else {
        for (const auto& l : r.actions) std::printf("recovered: %s\n", l.c_str());
        for (const auto& l : r.problems) std::printf("still failing: %s\n", l.c_str());
        if (r.actions.empty() && r.problems.empty()) std::printf("nothing to recover\n");
      }
      if (!r.problems.empty()) throw CliExit{1};
    });
  }

  // verify an installed tree
  {
    struct A {
      NodeArgs n;
      std::string name, version;
    };
    auto a = std::make_shared<A>();
    auto* cmd = app.add_subcommand(
        "verify", "Re-check an installed version's files against its signed tree index");
    cmd->add_option("name", a->name, "Component")->required();
    cmd->add_option("version", a->version, "Version (default: the active one)");
    add_node_options(cmd, a->n, false);
    cmd->callback([a] {
      auto node = open_node(a->n);
      must(node->verify_tree(a->name, a->version));
      std::string v = a->version.empty() ? "the active version" : a->version;
      std::printf("%s %s verified: every file matches its signed index\n", a->name.c_str(),
                  v.c_str());
    });
  }
}

}  // namespace mup::cli
