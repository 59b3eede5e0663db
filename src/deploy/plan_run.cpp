// A plan's runner (deploy/plan.hpp): starts the steps whose dependencies are committed,
// follows them, stops the dependents of a failure, and for an atomic plan undoes the rest.
#include <chrono>
#include <thread>

#include "deploy/plan.hpp"

namespace mup::deploy {

using nlohmann::json;

struct Deployer::PlanRun {
  int64_t id = 0;
  bool atomic = false;
  std::string actor;
  std::vector<PlanStep> steps;
  // Guarded by the deployer's mu_.
  struct Item {
    std::string state = "waiting";  // waiting, running, committed, failed, aborted,
                                    // rolled-back, skipped
    int64_t deployment = 0;
    std::string reason;
    bool serving = false;  // running, its new version on all traffic (deploy/plan.hpp)
    bool early = false;    // started on a dependency that was healthy, not committed
    int64_t undo = 0;      // atomic: the rollback deployment that undoes it
  };
  std::vector<Item> items;
  std::string state = "running";
  bool undoing = false;       // atomic, after a failure
  std::string first_failure;  // what made it undo
  // The journal (the plans table's body): enough to go on after an agent restart.
  json body() const {
    json steps_j = json::array(), items_j = json::array();
    for (const auto& st : steps)
      steps_j.push_back(
          {{"req", request_to_json(st.req)}, {"after", st.after}, {"start_when", st.start_when}});
    for (const auto& it : items)
      items_j.push_back({{"state", it.state},
                         {"deployment", it.deployment},
                         {"reason", it.reason},
                         {"early", it.early},
                         {"undo", it.undo}});
    return {{"atomic", atomic},   {"actor", actor},
            {"undoing", undoing}, {"first_failure", first_failure},
            {"steps", steps_j},   {"items", items_j}};
  }
  [[nodiscard]] static Result<std::shared_ptr<PlanRun>> from_body(int64_t id, const json& b) {
    try {
      auto p = std::make_shared<PlanRun>();
      p->id = id;
      p->atomic = b.at("atomic").get<bool>();
      p->actor = b.at("actor").get<std::string>();
      p->undoing = b.at("undoing").get<bool>();
      p->first_failure = b.at("first_failure").get<std::string>();
      for (const auto& st : b.at("steps")) {
        auto req = request_from_json(st.at("req"));
        if (!req) return tl::unexpected(req.error());
        p->steps.push_back({std::move(*req), st.at("after").get<std::vector<std::string>>(),
                            st.at("start_when").get<std::string>()});
      }
      for (const auto& it : b.at("items"))
        p->items.push_back({it.at("state").get<std::string>(), it.at("deployment").get<int64_t>(),
                            it.at("reason").get<std::string>(), false, it.at("early").get<bool>(),
                            it.at("undo").get<int64_t>()});
      if (p->items.size() != p->steps.size())
        return fail(Errc::corrupt, "plan " + std::to_string(id) + ": items and steps differ");
      return p;
    } catch (const std::exception& e) {
      return fail(Errc::corrupt, "plan " + std::to_string(id) + " cannot be read: " + e.what());
    }
  }
  json to_json() const {
    json items_j = json::array();
    for (size_t i = 0; i < steps.size(); ++i) {
      json e = {{"component", steps[i].req.component},
                {"version", steps[i].req.version},
                {"after", steps[i].after},
                {"start_when", steps[i].start_when},
                {"state", items[i].state}};
      if (items[i].deployment) e["deployment"] = items[i].deployment;
      if (!items[i].reason.empty()) e["reason"] = items[i].reason;
      items_j.push_back(std::move(e));
    }
    return {{"id", id}, {"atomic", atomic}, {"state", state}, {"items", std::move(items_j)}};
  }
};

Result<json> Deployer::start_plan(const PlanRequest& req) {
  auto steps = validate_plan(node_, req);
  if (!steps) return tl::unexpected(steps.error());
  auto p = std::make_shared<PlanRun>();
  p->atomic = req.atomic;
  p->actor = req.actor;
  p->steps = std::move(*steps);
  p->items.resize(p->steps.size());
  auto db = connect();
  if (!db) return tl::unexpected(db.error());
  std::lock_guard lk(mu_);
  if (stopping_) return fail(Code::busy, "the agent is stopping");
  for (const auto& s : p->steps) {
    auto it = jobs_.find(s.req.component);
    if (it != jobs_.end() && !it->second->done)
      return fail(Code::busy, "plan: a deployment of " + s.req.component + " is running (id " +
                                  std::to_string(it->second->id) + ")");
  }
  state::PlanRow row;
  row.state = "running";
  row.body = p->body();
  auto id = db->begin_plan(row);
  if (!id) return tl::unexpected(id.error().context("journaling the plan"));
  p->id = *id;
  plans_[p->id] = p;
  plan_threads_.emplace_back([this, p] { run_plan(p); });
  return p->to_json();
}

Result<json> Deployer::plan(int64_t id) {
  std::lock_guard lk(mu_);
  auto it = plans_.find(id);
  if (it != plans_.end()) return it->second->to_json();
  auto db = connect();
  if (!db) return tl::unexpected(db.error());
  auto row = db->plan(id);
  if (!row) return tl::unexpected(row.error());
  if (!*row) return fail(Code::not_found, "no plan " + std::to_string(id));
  auto p = PlanRun::from_body(id, (*row)->body);
  if (!p) return tl::unexpected(p.error());
  (*p)->state = (*row)->state;
  return (*p)->to_json();
}

void Deployer::resume_plans() {
  auto db = connect();
  if (!db) return;
  auto rows = db->unfinished_plans();
  if (!rows) return;
  for (const auto& r : *rows) {
    auto p = PlanRun::from_body(r.id, r.body);
    std::lock_guard lk(mu_);
    if (stopping_ || plans_.count(r.id)) continue;
    if (!p) {  // unreadable: ended, saying why, rather than guessed at
      state::PlanRow end = r;
      end.state = "failed";
      end.finished_at_ms = clock_.wall_ms();
      (void)db->update_plan(end);
      continue;
    }
    plans_[r.id] = *p;
    plan_threads_.emplace_back([this, p = *p] { run_plan(p); });
  }
}

namespace {

// What a step with start_when = "healthy" may start on: its dependency's new version ready and
// carrying all the component's traffic, past the switch (the analysis may still be running).
bool serving_all(const state::DeploymentRow& d) {
  if (d.finished_at_ms) return d.state == "committed";
  if (d.state != "analyze" && d.state != "drain-old" && d.state != "stop-old" &&
      d.state != "commit")
    return false;
  auto t = d.detail.find("traffic");
  return t != d.detail.end() && t->is_object() && t->value(d.to_version, 0) == 100;
}

bool unfinished(const std::string& item_state) {
  return item_state == "waiting" || item_state == "running";
}

}  // namespace

void Deployer::run_plan(const std::shared_ptr<PlanRun>& p) {
  // Each step's dependencies as indexes into the plan (validate_plan placed them before it).
  std::vector<std::vector<size_t>> after(p->steps.size());
  for (size_t i = 0; i < p->steps.size(); ++i)
    for (const auto& dep : p->steps[i].after)
      for (size_t j = 0; j < i; ++j)
        if (p->steps[j].req.component == dep) after[i].push_back(j);
  auto db = connect();
  json saved;
  // Journals the plan when it changed (the plans table), so a restarted agent goes on.
  auto journal = [&](bool final) {
    std::unique_lock lk(mu_);
    json b = p->body();
    if (!final && b == saved) return;
    state::PlanRow row;
    row.id = p->id;
    row.state = p->state;
    row.body = b;
    row.finished_at_ms = final ? clock_.wall_ms() : 0;
    lk.unlock();
    if (db && db->update_plan(row)) saved = std::move(b);
  };
  bool& undoing = p->undoing;
  std::string& first_failure = p->first_failure;
  while (!stopping_) {
    bool waiting = false, running = false;
    for (size_t i = 0; i < p->steps.size(); ++i) {
      std::unique_lock lk(mu_);
      auto& item = p->items[i];
      if (item.state == "waiting") {
        if (undoing) {
          item.state = "skipped";
          item.reason = "the plan is atomic and " + first_failure;
          continue;
        }
        const bool on_healthy = p->steps[i].start_when == "healthy";
        std::string blocked, pending;
        bool early = false;
        for (size_t j : after[i]) {
          const auto& d = p->items[j];
          if (d.state == "committed") continue;
          if (on_healthy && d.state == "running" && d.serving) {
            early = true;
            continue;
          }
          (unfinished(d.state) ? pending : blocked) = p->steps[j].req.component;
        }
        if (!blocked.empty()) {
          item.state = "skipped";
          item.reason = "its dependency " + blocked + " did not commit";
          continue;
        }
        if (!pending.empty()) {
          waiting = true;
          continue;
        }
        lk.unlock();
        DeployRequest r = p->steps[i].req;
        auto row = start(r);
        lk.lock();
        if (row) {
          item.state = "running";
          item.deployment = row->id;
          item.early = early;
          running = true;
          lk.unlock();
          journal(false);  // at once: a restarted agent must not start it a second time
          lk.lock();
        } else if (row.error().is(Code::busy)) {
          waiting = true;  // another deployment of it is ending: try again
        } else {
          item.state = "failed";
          item.reason = row.error().message();
        }
      } else if (item.state == "running") {
        const int64_t id = item.deployment;
        lk.unlock();
        auto row = get(id);
        lk.lock();
        if (row && *row && (**row).finished_at_ms) {
          item.state = (**row).state;
          item.serving = false;
          if (item.state != "committed" && item.reason.empty()) item.reason = (**row).reason;
        } else {
          item.serving = row && *row && serving_all(**row);
          running = true;
          // Started on a healthy dependency that then did not commit: it relies on a version
          // that is gone, so it is aborted (its undo path restores its old version).
          if (item.early)
            for (size_t j : after[i])
              if (!unfinished(p->items[j].state) && p->items[j].state != "committed" &&
                  item.reason.empty()) {
                item.reason = "its dependency " + p->steps[j].req.component + " ended " +
                              p->items[j].state + " after it had started on it";
                lk.unlock();
                (void)abort(id);
                lk.lock();
              }
        }
      }
      if (item.state != "waiting" && item.state != "running" && item.state != "committed" &&
          item.state != "skipped" && p->atomic && !undoing) {
        undoing = true;
        first_failure =
            p->steps[i].req.component + " " + p->steps[i].req.version + " ended " + item.state;
        // Running steps are aborted (their undo path restores their old version).
        for (auto& other : p->items)
          if (other.state == "running") {
            lk.unlock();
            (void)abort(other.deployment);  // not running any more: it ends by itself
            lk.lock();
          }
      }
    }
    journal(false);
    if (!waiting && !running) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (stopping_) return;
  // Atomic: the committed steps back, newest (last in dependency order) first.
  if (undoing) {
    for (size_t i = p->steps.size(); i-- > 0;) {
      std::unique_lock lk(mu_);
      if (p->items[i].state != "committed") continue;
      // Started before a restart: that rollback deployment is followed, not another one.
      int64_t undo = p->items[i].undo;
      lk.unlock();
      Result<state::DeploymentRow> rb = fail(Errc::not_found, "not started");
      if (undo) {
        auto row = get(undo);
        if (row && *row) rb = **row;
      }
      if (!rb)
        rb = rollback(p->steps[i].req.component, p->actor.empty() ? "agent" : p->actor,
                      "plan " + std::to_string(p->id) + " is atomic and " + first_failure);
      if (rb && rb->id != undo) {
        lk.lock();
        p->items[i].undo = rb->id;
        lk.unlock();
        journal(false);
      }
      std::string outcome, why;
      if (rb) {
        auto done = wait(rb->id, std::chrono::minutes(10));
        outcome = done && done->state == "rolled-back" ? "rolled-back" : "committed";
        if (outcome != "rolled-back") why = "its rollback did not finish";
      } else {
        outcome = "committed";
        why = "its rollback could not start: " + rb.error().message();
      }
      lk.lock();
      p->items[i].state = outcome;
      p->items[i].reason = why.empty() ? "rolled back: the plan is atomic" : why;
    }
  }
  std::unique_lock lk(mu_);
  bool all = true, any_left = false;
  for (const auto& it : p->items) {
    all = all && it.state == "committed";
    any_left = any_left || it.state == "committed";
  }
  p->state = all ? "committed" : undoing && !any_left ? "rolled-back" : "failed";
  changed_.notify_all();
  lk.unlock();
  journal(true);
}

}  // namespace mup::deploy
