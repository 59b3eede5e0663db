// A deployment's thread: journal the state, do its work, answer an event, look the next
// state up in the table. Each state's work is idempotent (a resumed deployment repeats the
// state it was in).
#include <algorithm>
#include <chrono>
#include <thread>

#include "core/fault.hpp"
#include "deploy/deployer.hpp"
#include "deploy/steps.hpp"

namespace mup::deploy {

using state::json_int;
using state::json_str;

namespace {

// The outcome a deployment heads to once it left the forward path.
State outcome_of(const state::DeploymentRow& row) {
  auto o = parse_state(json_str(row.detail, "outcome"));
  return o && is_final(*o) ? *o : State::failed;
}

}  // namespace

Event event_from(StepContext& c, const Status& s) {
  if (s) return Event::ok;
  // A wait cut short by a request is the request, not a failure.
  const auto r = static_cast<Deployer::Request>(c.request.load());
  if (c.cancel && r == Deployer::Request::abort) return Event::abort;
  if (c.cancel && r == Deployer::Request::rollback) return Event::rollback;
  c.why = s.error().message();
  return Event::error;
}

namespace {

Event do_install(StepContext& c) {
  const std::string& comp = c.row.component;
  if (c.strategy == Strategy::rollback) {
    if (c.row.from_version.empty()) c.row.from_version = c.node.active(comp).value_or("");
    return event_from(c, c.node.rollback(comp, c.row.to_version));
  }
  // Resumed after the install had happened: the engine shows the version active.
  if (!c.row.to_version.empty() && c.node.active(comp) == c.row.to_version &&
      c.row.detail.value("installed", false))
    return Event::ok;
  auto r = c.node.install(comp, json_str(c.row.detail, "requested_version"), c.cancel,
                          c.row.detail.value("force", false));
  if (!r) return event_from(c, tl::unexpected(r.error()));
  if (r->from_version == r->to_version) {
    c.why = comp + " " + r->to_version + " is already the active version";
    return Event::error;
  }
  c.row.from_version = r->from_version;
  c.row.to_version = r->to_version;
  c.row.detail["installed"] = true;
  return Event::ok;
}

Event do_soak(StepContext& c) {
  if (c.strategy != Strategy::blue_green) return Event::skip;
  if (const Event e = do_checks(c); e != Event::ok) return e;
  const auto until =
      c.clock.monotonic() + std::chrono::milliseconds(json_int(c.row.detail, "soak_ms", 2000));
  while (c.clock.monotonic() < until) {
    if (static_cast<Deployer::Request>(c.request.load()) == Deployer::Request::promote) break;
    if (c.cancel) return event_from(c, fail(Errc::io, "cancelled"));
    auto alive = c.plane.check_alive(c.row.component, c.row.to_version);
    if (!alive) return event_from(c, alive);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Event::ok;
}

// Traffic to the new version; the old set stays warm (weight 0) through the analysis, so a
// rollback decision is a weight flip. A canary starts at its first step's weight (a
// resumed one at the step it was in: analysis routes each step again).
Event do_switch(StepContext& c) {
  int w_new = 100;
  const auto batches = rolling_batches_of(c);
  if (const auto at = static_cast<size_t>(json_int(c.row.detail, "step", 0)); at < batches.size())
    w_new = batches[at].weight;
  if (c.strategy == Strategy::canary && !c.row.from_version.empty()) {
    const auto& steps = c.row.detail.value("steps", nlohmann::json::array());
    const auto i = static_cast<size_t>(json_int(c.row.detail, "step", 0));
    if (steps.is_array() && i < steps.size() && steps[i].is_number_integer())
      w_new = steps[i].get<int>();
  }
  std::map<std::string, int> w{{c.row.to_version, w_new}};
  if (!c.row.from_version.empty()) w[c.row.from_version] = 100 - w_new;
  auto s = c.plane.route(c.row.component, w);
  c.row.detail["traffic"] = w;
  return event_from(c, s);
}

// The old version off the route (its in-flight requests finish); blue-green keeps it warm.
Event do_drain_old(StepContext& c) {
  const std::string& old = c.row.from_version;
  if (c.strategy == Strategy::blue_green && !old.empty()) return Event::skip;
  if (old.empty()) return Event::ok;
  Cancel never{false};
  std::map<std::string, int> w{{c.row.to_version, 100}};
  auto s = c.plane.route(c.row.component, w);
  c.row.detail["traffic"] = w;
  if (!s) return event_from(c, s);
  return event_from(c, c.plane.wait_drained(c.row.component, old, never));
}

Event do_commit(StepContext& c) {
  const std::string& comp = c.row.component;
  if (c.strategy != Strategy::rollback) {
    auto s = c.node.commit(comp);
    // Resumed after the commit had happened: nothing on trial, the version active.
    if (!s && c.node.active(comp) != c.row.to_version) return event_from(c, s);
  }
  c.plane.set_restart(comp, c.row.to_version, true);
  if (c.strategy == Strategy::blue_green && !c.row.from_version.empty())
    c.row.detail["window"] = {
        {"old", c.row.from_version},
        {"open", true},
        {"until", c.clock.wall_ms() + json_int(c.row.detail, "keep_old_ms", 600000)}};
  // The watch after commit (deploy/watch.cpp), when the analysis planned one.
  if (auto plan = c.row.detail.find("watch_plan");
      plan != c.row.detail.end() && plan->is_object() && !c.row.detail.contains("watch")) {
    nlohmann::json w = *plan;
    w["open"] = true;
    w["from"] = c.clock.wall_ms();
    w["until"] = c.clock.wall_ms() + json_int(*plan, "watch_ms", 0);
    c.row.detail["watch"] = std::move(w);
  }
  return Event::ok;
}

// The undo path: the old version back on all traffic.
Event do_switch_back(StepContext& c) {
  const std::string& comp = c.row.component;
  const std::string& old = c.row.from_version;
  Cancel never{false};
  if (old.empty()) {
    auto s = c.plane.route(comp, {});
    c.row.detail["traffic"] = nlohmann::json::object();
    return event_from(c, s);
  }
  Status s = c.plane.start(comp, old);
  if (s) s = c.plane.wait_ready(comp, old, never);
  if (s) s = c.plane.route(comp, {{old, 100}});
  c.row.detail["traffic"] = {{old, 100}};
  // When all traffic was back on the old version (the first time: a resumed undo keeps it).
  if (s && !c.row.detail.contains("rolled_back_at_ms"))
    c.row.detail["rolled_back_at_ms"] = c.clock.wall_ms();
  if (s) c.plane.set_restart(comp, old, true);
  if (s && !c.row.to_version.empty()) (void)c.plane.wait_drained(comp, c.row.to_version, never);
  if (!s) {
    c.why = s.error().message();
    return Event::error;
  }
  return Event::ok;
}

Event do_undo_install(StepContext& c) {
  const std::string& comp = c.row.component;
  // A first deployment goes back to nothing active (the engine's rollback to no version).
  if (c.node.active(comp).value_or("") == c.row.from_version) return Event::ok;
  // The version's policy (with this deployment's overrides) says whether its state migrates.
  auto policy = resolve_policy(c);
  const bool restore = policy && policy->restore_state;
  auto s = c.node.rollback(comp, c.row.from_version, restore);
  if (s && restore) c.row.detail["state_restored"] = true;
  if (!s) {
    c.why = s.error().message();
    return Event::error;
  }
  return Event::ok;
}

// Until the start time (wall clock: a time the operator named). Cut short by abort, or by
// the agent stopping (then the row stays scheduled and the next agent waits on).
// A window missed entirely (the agent was down through it) moves to the next one.
Event do_scheduled(StepContext& c) {
  for (;;) {
    const int64_t at = json_int(c.row.detail, "scheduled_for_ms", 0);
    while (c.clock.wall_ms() < at) {
      if (c.cancel) return event_from(c, fail(Errc::io, "cancelled"));
      const int64_t left = at - c.clock.wall_ms();
      std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp<int64_t>(left, 1, 50)));
    }
    auto w = c.row.detail.find("window_sched");
    if (w == c.row.detail.end() || !w->is_object() ||
        c.clock.wall_ms() < json_int(*w, "closes_at_ms", 0))
      break;
    auto cron = parse_cron(w->value("cron", ""));
    auto next = cron ? window_at_or_after(*cron, c.clock.wall_ms(), json_int(*w, "ms", 3600000),
                                          static_cast<int>(json_int(*w, "tz_min", 0)))
                     : std::nullopt;
    if (!next) {
      c.why = "its maintenance window passed and does not come again";
      return Event::error;
    }
    (*w)["start_ms"] = next->start_ms;
    (*w)["closes_at_ms"] = next->end_ms;
    c.row.detail["scheduled_for_ms"] = next->start_ms;
    c.journal();
  }
  c.row.detail["started_at_ms"] = c.clock.wall_ms();
  return Event::ok;
}

Event do_state(State s, StepContext& c) {
  const std::string& comp = c.row.component;
  const std::string& neu = c.row.to_version;
  const std::string& old = c.row.from_version;
  switch (s) {
    case State::scheduled: return do_scheduled(c);
    case State::install: return do_install(c);
    case State::start_new: {
      // Rolling: only the batch it is at (the first, or a resumed one).
      const auto batches = rolling_batches_of(c);
      const auto at = static_cast<size_t>(json_int(c.row.detail, "step", 0));
      auto st = at < batches.size() ? c.plane.scale(comp, neu, batches[at].k_new)
                                    : c.plane.start(comp, neu);
      if (st) c.plane.set_restart(comp, neu, false);
      return event_from(c, st);
    }
    case State::wait_ready: return event_from(c, c.plane.wait_ready(comp, neu, c.cancel));
    case State::soak: return do_soak(c);
    case State::switch_new: return do_switch(c);
    case State::analyze: return do_analyze(c);
    case State::drain_old: return do_drain_old(c);
    case State::stop_old: return old.empty() ? Event::ok : event_from(c, c.plane.stop(comp, old));
    case State::commit: return do_commit(c);
    case State::switch_back: return do_switch_back(c);
    case State::stop_new: {
      if (neu.empty() || neu == old) return Event::ok;
      auto st = c.plane.stop(comp, neu);
      if (!st) c.why = st.error().message();
      return st ? Event::ok : Event::error;
    }
    case State::undo_install: return do_undo_install(c);
    default: return Event::error;
  }
}

void append_reason(state::DeploymentRow& row, const std::string& why) {
  if (why.empty()) return;
  row.reason = row.reason.empty() ? why : row.reason + "; then " + why;
}

}  // namespace

void Deployer::run(const std::shared_ptr<Job>& job) {
  auto finish_job = [&] {
    job->done = true;
    changed_.notify_all();
  };
  auto db = connect();
  if (!db) return finish_job();
  auto loaded = db->deployment(job->id);
  if (!loaded || !*loaded) return finish_job();
  state::DeploymentRow row = **loaded;
  if (!row.detail.is_object()) {
    // Unknown detail: undo, as for any journal row that cannot be understood.
    row.detail = nlohmann::json::object();
    row.detail["outcome"] = "failed";
    row.reason = "the deployment's journal could not be read; rolled back";
    row.state = std::string(state_name(State::switch_back));
  }
  auto parsed = parse_state(row.state);
  State s = parsed.value_or(State::switch_back);
  if (!parsed) append_reason(row, "unknown state '" + row.state + "' in the journal; rolled back");
  const Strategy strategy = parse_strategy(row.strategy).value_or(Strategy::immediate);

  // Before its install: a new deployment ends the rollback window of the one before; a
  // rollback marks the deployment it undoes.
  bool prepared = false;
  auto before_install = [&] {
    prepared = true;
    if (s == State::install && strategy != Strategy::rollback) {
      auto prev = db->deployments(row.component, 2);
      if (prev)
        for (auto& p : *prev)
          if (p.id != row.id && p.finished_at_ms) {
            Cancel never{false};
            (void)close_window(*db, p, never);  // its own failure is reported by its next tick
            break;
          }
    } else if (strategy == Strategy::rollback && s == State::install) {
      // The deployment it undoes is marked; inside a blue-green window the warm set takes over
      // (the window is over: that set is the live one now).
      const int64_t of = json_int(row.detail, "rollback_of", 0);
      auto prev = of ? db->deployment(of) : Result<std::optional<state::DeploymentRow>>();
      if (prev && *prev && (**prev).detail.is_object()) {
        state::DeploymentRow p = **prev;
        p.detail["rolled_back_by"] = row.id;
        if (p.detail.contains("window") && p.detail["window"].is_object())
          p.detail["window"]["open"] = false;
        (void)db->update_deployment(p);  // a cross-reference: the rollback runs regardless
      }
    }
  };
  // What carried the traffic when the deployment began (shown until it moves it).
  if (!row.detail.contains("traffic")) row.detail["traffic"] = plane_.weights(row.component);

  for (int steps = 0; !is_final(s); ++steps) {
    if (stopping_) return finish_job();  // left unfinished: the next agent resumes it
    if (steps > 64) {
      append_reason(row, "internal error: the deployment did not end after 64 states");
      s = State::failed;
      break;
    }
    // Requests that arrived between states.
    const auto req = static_cast<Deployer::Request>(job->request.load());
    if (!is_undoing(s) && (req == Deployer::Request::abort || req == Deployer::Request::rollback) &&
        s != State::install && s != State::scheduled) {
      const Event e = req == Deployer::Request::abort ? Event::abort : Event::rollback;
      row.detail["outcome"] = e == Event::abort ? "aborted" : "rolled-back";
      if (row.reason.empty())
        row.reason = !job->why.empty()   ? job->why
                     : e == Event::abort ? "aborted by request"
                                         : "rolled back by request";
      auto n = next_state(s, e);
      s = n.value_or(State::switch_back);
      job->cancel = false;
      job->request = 0;
    }
    if (s == State::install && !prepared) before_install();
    row.state = std::string(state_name(s));
    if (auto st = db->update_deployment(row); !st) {
      // The journal cannot be written: stop here, unfinished; the next start resumes.
      return finish_job();
    }
    notify(row);
    if (auto f = fault::point("deploy.state." + std::string(state_name(s))); !f) {
      append_reason(row, f.error().message());
    }
    StepContext ctx{node_,
                    plane_,
                    clock_,
                    row,
                    strategy,
                    job->cancel,
                    job->request,
                    {},
                    [&] {
                      if (db->update_deployment(row)) notify(row);
                    },
                    opts_.analysis_poll};
    Event e = do_state(s, ctx);
    if (stopping_ && e != Event::ok) return finish_job();
    if (e == Event::abort || e == Event::rollback) {
      row.detail["outcome"] = e == Event::abort ? "aborted" : "rolled-back";
      if (row.reason.empty())
        row.reason = !job->why.empty()   ? job->why
                     : e == Event::abort ? "aborted by request"
                                         : "rolled back by request";
      job->cancel = false;
      job->request = 0;
    } else if (e == Event::error) {
      if (!is_undoing(s) && !row.detail.contains("outcome")) row.detail["outcome"] = "failed";
      append_reason(row, std::string(state_name(s)) + ": " + ctx.why);
    }
    auto n = next_state(s, e);
    if (!n) {
      append_reason(row, "internal error: no transition from " + std::string(state_name(s)) +
                             " on " + std::string(event_name(e)));
      row.detail["outcome"] = "failed";
      n = is_undoing(s) ? State::failed : State::switch_back;
    }
    if (s == State::undo_install && *n == State::failed && e == Event::ok) n = outcome_of(row);
    if (s == State::install && e == Event::error) n = State::failed;
    if (*n == State::committed && strategy == Strategy::rollback) n = State::rolled_back;
    s = *n;
  }
  row.state = std::string(state_name(s));
  row.finished_at_ms = clock_.wall_ms();
  {
    // Final row and done together: a request that sees the deployment final sees no job.
    // The row and its audit record in one transaction; a failed write leaves the row
    // unfinished, and the next start resumes it at this final state.
    std::lock_guard lk(mu_);
    nlohmann::json d = {{"deployment", row.id},
                        {"strategy", row.strategy},
                        {"state", row.state},
                        {"from", row.from_version},
                        {"reason", row.reason}};
    // The judge's decision goes on record with the deployment (history and audit).
    if (row.detail.contains("decision")) d["decision"] = row.detail["decision"];
    (void)db->transaction([&]() -> Status {
      MUP_TRY(db->update_deployment(row));
      // In the node's history too, with the reason: one finished record of kind "deploy"
      // (never running, so no recovery ever looks at it).
      state::OperationRecord op;
      op.kind = "deploy";
      op.component = row.component;
      op.from_version = row.from_version;
      op.to_version = row.to_version;
      op.actor = row.actor.empty() ? "agent" : row.actor;
      op.detail = {{"deployment", row.id}, {"strategy", row.strategy}, {"state", row.state}};
      if (row.detail.contains("decision")) op.detail["decision"] = row.detail["decision"];
      auto op_id = db->begin_operation(op);
      if (!op_id) return tl::unexpected(op_id.error());
      const bool done =
          s == State::committed || (s == State::rolled_back && strategy == Strategy::rollback);
      MUP_TRY(db->finish_operation(*op_id,
                                   done                 ? "done"
                                   : s == State::failed ? "failed"
                                                        : "undone",
                                   0, done ? "" : row.reason));
      return db
          ->append_audit(row.actor.empty() ? "agent" : row.actor, "deploy",
                         row.component + " " + row.to_version, d)
          .map([](auto&&) {});
    });
    job->done = true;
  }
  notify(row);
  finish_job();
}

}  // namespace mup::deploy
