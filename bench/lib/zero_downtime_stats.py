#!/usr/bin/env python3
"""Statistics for bench/agent_zero_downtime.sh (bench-only dependency: python3, stdlib only).

  zero_downtime_stats.py summarize RUN_DIR RATE > summary.json
      RUN_DIR holds load.json + events.csv (the loadgen on /), slow.json + slow.csv (the
      loadgen on /slow), meta.tsv (one line per deployment: n kind killed how kill_ms file
      [after [prekill_file]]: after = a rollback's preceding deployment's strategy, prekill =
      the deployment as `mup deployments ID --json` showed it just before a plain kill -9)
      and the deployments' JSON files.
  zero_downtime_stats.py table SUMMARY.json... > table.md
  zero_downtime_stats.py strategies SUMMARY.json... > per-strategy tables (one per rate)

Definitions (times are the loadgen's scheduled times, ms since its start; a deployment's
steps are unix ms, shifted by the loadgen's start_unix_ms):
  decision  the deployment's first `switch` step (journaled just before the route change;
            a canary's first step, a rolling deployment's first batch)
  full      when all traffic goes to the new version: the decision, except for canary and
            rolling: their `drain-old` step (journaled just before the route to 100 %)
  switched  the first scheduled time, after the last request answered by the old version,
            of a request answered by the new version (both searched between the previous
            and the next decision)
  latency   max(0, switched - full)
  first new the first request answered by the new version scheduled at or after the
            decision, minus the decision (canary: the first step's share arriving)
  switch window  decision .. full + 1 s (immediate, blue-green, rollback: decision + 1 s;
            canary, rolling: every step, batch and the final switch); steady state = every
            other request after the first 2 s.
  during a deployment  a request scheduled between the deployment's started_at_ms and
            finished_at_ms + 1 s (the newest such deployment); a non-2xx or failed request
            is charged to it (a blue-green window is closed by the next deployment's install,
            so that shows under the next deployment).
"""
import bisect
import csv
import json
import math
import os
import sys

WINDOW_MS = 1000.0
WARMUP_MS = 2000.0


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(q * len(v)) - 1))
    return v[k]


def load_events(path):
    ev = []  # (t_sched_ms, latency_us, status, version, error)
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r, None)
        for row in r:
            if len(row) < 5:
                continue
            ev.append((float(row[0]), int(row[1]), int(row[2]), row[3], row[4]))
    ev.sort(key=lambda e: e[0])
    return ev


def first_step(dep, state):
    for s in dep.get("steps", []):
        if s.get("state") == state:
            return s["at_ms"]
    return None


def first_switch(dep):
    return first_step(dep, "switch")


STEPPED = ("canary", "rolling")


def full_switch(dep):
    """When all traffic goes to the new version (unix ms): see the module's docstring."""
    sw = first_switch(dep)
    if dep.get("strategy") in STEPPED:
        return first_step(dep, "drain-old")
    return sw


def state_at(dep, t_abs_ms):
    """The deployment's last journaled state at unix ms t."""
    at = "before-start"
    for s in dep.get("steps", []):
        if s["at_ms"] <= t_abs_ms:
            at = s["state"]
    return at


def is_bad(e):
    return e[4] != "" or not (200 <= e[2] < 300)


def summarize(run, rate):
    load = json.load(open(os.path.join(run, "load.json")))
    slow = json.load(open(os.path.join(run, "slow.json")))
    t0 = load["start_unix_ms"]
    ev = load_events(os.path.join(run, "events.csv"))
    slow_ev = load_events(os.path.join(run, "slow.csv"))
    slow_t0 = slow["start_unix_ms"]

    deps = []
    with open(os.path.join(run, "meta.tsv")) as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            n, kind, killed, how, kill_ms, file = cols[:6]
            after = cols[6] if len(cols) > 6 else ""
            prekill = None
            if len(cols) > 7 and cols[7] and os.path.exists(os.path.join(run, cols[7])):
                try:
                    prekill = json.load(open(os.path.join(run, cols[7])))
                except ValueError:
                    prekill = None
            d = json.load(open(os.path.join(run, file)))
            sw = first_switch(d)
            full = full_switch(d)
            deps.append({
                "n": int(n), "kind": kind, "killed": killed == "1", "how": how,
                "kill_ms": int(kill_ms) if kill_ms else None, "d": d, "after": after,
                "prekill": prekill,
                "decision": (sw - t0) if sw is not None else None,
                "full": (full - t0) if full is not None else None,
            })
    decisions = sorted(x["decision"] for x in deps if x["decision"] is not None)

    # Per deployment: switch latency and whether traffic moved.
    times = [e[0] for e in ev]
    results = []
    for x in deps:
        d = x["d"]
        old, new = d.get("from_version", ""), d.get("to_version", "")
        r = {"n": x["n"], "id": d.get("id"), "kind": x["kind"], "strategy": d.get("strategy"),
             "after": x["after"], "state": d.get("state"), "reason": d.get("reason", ""),
             "from": old, "to": new, "killed": x["killed"],
             "how": x["how"], "decision_ms": x["decision"], "full_ms": x["full"],
             "latency_ms": None, "first_new_ms": None, "moved": False,
             "duration_ms": d.get("duration_ms"),
             "started_at_ms": d.get("started_at_ms"), "finished_at_ms": d.get("finished_at_ms"),
             "verdict": (d.get("decision") or {}).get("verdict")}
        if x["kill_ms"] is not None:
            # Where the kill landed: the last step journaled before it.
            at = state_at(d, x["kill_ms"])
            if d.get("finished_at_ms") and x["kill_ms"] >= d["finished_at_ms"]:
                at = "after-final"
            # A stepped deployment's step (as `mup deployments ID` showed it just before).
            pk = x["prekill"]
            if pk and d.get("strategy") in STEPPED and at == "analyze" and pk.get("state") == at:
                if d.get("strategy") == "canary":
                    step, word = (pk.get("canary") or {}).get("step"), "step"
                else:
                    step, word = (pk.get("rolling") or {}).get("batch"), "batch"
                traffic = pk.get("traffic") or {}
                if step is not None:
                    at += f" {word} {step}"
                if new in traffic:
                    at += f" ({traffic[new]}%)"
            r["killed_in"] = at
        D = x["decision"]
        if D is not None:
            i = decisions.index(D)
            lo = decisions[i - 1] if i > 0 else 0.0
            hi = decisions[i + 1] if i + 1 < len(decisions) else float("inf")
            a, b = bisect.bisect_left(times, lo), bisect.bisect_left(times, hi)
            # Only requests answered before the next decision: the next deployment's new
            # version is this one's old version.
            seg = [e for e in ev[a:b] if e[0] + e[1] / 1000.0 < hi]
            t_old = max((e[0] for e in seg if e[3] == old), default=None)
            after = [e[0] for e in seg if e[3] == new and (t_old is None or e[0] > t_old)]
            F = x["full"] if x["full"] is not None else D
            if after:
                r["moved"] = True
                r["latency_ms"] = max(0.0, after[0] - F)
            first_new = next((e[0] for e in seg if e[3] == new and e[0] >= D), None)
            if first_new is not None:
                r["first_new_ms"] = first_new - D
            r["window"] = (D, F + WINDOW_MS)
        results.append(r)

    # Failed requests charged to the deployment during which they were scheduled.
    spans = sorted(((r["started_at_ms"], r["finished_at_ms"], k) for k, r in enumerate(results)
                    if r["started_at_ms"] is not None), key=lambda z: z[0])
    span_starts = [z[0] for z in spans]

    def owner(t_abs):
        k = bisect.bisect_right(span_starts, t_abs) - 1
        if k < 0:
            return None
        st, fin, idx = spans[k]
        if fin is None or t_abs <= fin + WINDOW_MS:
            return idx
        return None

    for r in results:
        r["bad"] = {"non_2xx": 0, "connect": 0, "timeout": 0, "other": 0,
                    "slow_non_2xx": 0, "slow_errors": 0}
    outside = {"non_2xx": 0, "connect": 0, "timeout": 0, "other": 0,
               "slow_non_2xx": 0, "slow_errors": 0}
    bad_requests = []
    for which, events, base in (("/", ev, t0), ("/slow", slow_ev, slow_t0)):
        for e in events:
            if not is_bad(e):
                continue
            t_abs = e[0] + base
            idx = owner(t_abs)
            tgt = results[idx]["bad"] if idx is not None else outside
            if which == "/":
                key = ("non_2xx" if e[4] == "" else "connect" if e[4] == "connect"
                       else "timeout" if e[4] == "timeout" else "other")
            else:
                key = "slow_non_2xx" if e[4] == "" else "slow_errors"
            tgt[key] += 1
            if len(bad_requests) < 500:
                rec = {"url": which, "t_sched_unix_ms": round(t_abs, 3),
                       "latency_ms": e[1] / 1000.0, "status": e[2], "version": e[3],
                       "error": e[4]}
                if idx is not None:
                    o = results[idx]
                    rec.update({"deployment_n": o["n"], "deployment_id": o["id"],
                                "strategy": o["strategy"], "from": o["from"], "to": o["to"],
                                "state_then": state_at(deps[idx]["d"], t_abs)})
                bad_requests.append(rec)

    # Latency: steady state vs switch windows.
    # A request in several windows (a window reaching into the next deployment's) counts
    # once for the totals, and for each strategy whose window holds it.
    wins = sorted((r["window"][0], r["window"][1], r["strategy"]) for r in results if "window" in r)
    win_starts = [w[0] for w in wins]
    max_len = max((w[1] - w[0] for w in wins), default=0.0)
    steady, inside = [], []
    inside_by = {}
    for e in ev:
        t = e[0]
        hit = set()
        k = bisect.bisect_right(win_starts, t) - 1
        while k >= 0 and wins[k][0] >= t - max_len:
            if wins[k][0] <= t <= wins[k][1]:
                hit.add(wins[k][2])
            k -= 1
        if hit:
            inside.append(e[1])
            for sname in hit:
                inside_by.setdefault(sname, []).append(e[1])
        elif t >= WARMUP_MS:
            steady.append(e[1])

    # Slow requests in flight across a switch (absolute unix ms).
    abs_dec = [D + t0 for D in decisions]
    across = 0
    for e in slow_ev:
        s = e[0] + slow_t0
        f = s + e[1] / 1000.0
        k = bisect.bisect_right(abs_dec, s)
        if k < len(abs_dec) and abs_dec[k] <= f:
            across += 1
    slow_ok = sum(1 for e in slow_ev if e[2] == 200)

    def lat(kind_filter):
        v = [r["latency_ms"] for r in results
             if kind_filter(r) and not r["killed"] and r["latency_ms"] is not None]
        return {"n": len(v), "median": pct(v, 0.5), "p99": pct(v, 0.99), "max": max(v, default=float("nan"))}

    ms = lambda us: us / 1000.0
    p99s, p99w = pct(steady, 0.99), pct(inside, 0.99)

    def per_strategy(group):
        rs = [r for r in results if group(r)]
        if not rs:
            return None
        clean = [r for r in rs if not r["killed"]]
        latv = [r["latency_ms"] for r in clean if r["latency_ms"] is not None]
        firstv = [r["first_new_ms"] for r in clean if r["first_new_ms"] is not None]
        dur = [r["duration_ms"] for r in clean if r["duration_ms"] is not None]
        bad = {k: sum(r["bad"][k] for r in rs) for k in rs[0]["bad"]}
        states = {}
        for r in rs:
            states[r["state"]] = states.get(r["state"], 0) + 1
        return {
            "n": len(rs),
            "states": states,
            "verdicts": sorted(set(str(r["verdict"]) for r in rs)),
            "killed": sum(1 for r in rs if r["killed"]),
            "killed_in": sorted(r.get("killed_in", "") for r in rs if r["killed"]),
            "killed_final": sorted(r["state"] for r in rs if r["killed"]),
            "moved": sum(1 for r in rs if r["moved"]),
            "bad": bad,
            "latency": {"n": len(latv), "median": pct(latv, 0.5), "p99": pct(latv, 0.99),
                        "max": max(latv, default=float("nan"))},
            "first_new": {"n": len(firstv), "median": pct(firstv, 0.5),
                          "max": max(firstv, default=float("nan"))},
            "duration_ms": {"n": len(dur), "median": pct(dur, 0.5),
                            "max": max(dur, default=float("nan"))},
        }

    strategies_seen = []
    for r in results:
        if r["kind"] == "deploy" and r["strategy"] not in strategies_seen:
            strategies_seen.append(r["strategy"])
    by_strategy = {}
    for sname in strategies_seen:
        st = per_strategy(lambda r, sname=sname: r["kind"] == "deploy" and r["strategy"] == sname)
        rb = [r for r in results if r["kind"] == "rollback" and r["after"] == sname]
        st["rollbacks_after"] = {"n": len(rb), "states": sorted(r["state"] for r in rb)}
        w = inside_by.get(sname, [])
        st["window"] = {"n": len(w), "p50": ms(pct(w, 0.5)), "p99": ms(pct(w, 0.99)),
                        "ratio_p99": (pct(w, 0.99) / p99s) if w and steady and p99s > 0
                        else float("nan")}
        by_strategy[sname] = st
    rbs = per_strategy(lambda r: r["kind"] == "rollback")
    if rbs:
        w = inside_by.get("rollback", [])
        rbs["window"] = {"n": len(w), "p50": ms(pct(w, 0.5)), "p99": ms(pct(w, 0.99)),
                         "ratio_p99": (pct(w, 0.99) / p99s) if w and steady and p99s > 0
                         else float("nan")}
        rbs["rollbacks_after"] = {"n": 0, "states": []}
        by_strategy["rollback"] = rbs
    return {
        "rate": rate,
        "interval_ms": 1000.0 / rate,
        "duration_s": load["duration_s"],
        "sent": load["sent"], "completed": load["completed"], "non_2xx": load["non_2xx"],
        "connect_errors": load["connect_errors"], "timeouts": load["timeouts"],
        "other_errors": load["other_errors"], "retries": load["retries"],
        "versions": load["versions"],
        "slow": {"sent": slow["sent"], "ok_200": slow_ok, "completed": slow["completed"],
                 "non_2xx": slow["non_2xx"],
                 "errors": slow["connect_errors"] + slow["timeouts"] + slow["other_errors"],
                 "across_switch": across},
        "deployments": {
            "total": sum(1 for r in results if r["kind"] == "deploy"),
            "immediate": sum(1 for r in results if r["kind"] == "deploy" and r["strategy"] == "immediate"),
            "blue_green": sum(1 for r in results if r["kind"] == "deploy" and r["strategy"] == "blue-green"),
            "canary": sum(1 for r in results if r["kind"] == "deploy" and r["strategy"] == "canary"),
            "rolling": sum(1 for r in results if r["kind"] == "deploy" and r["strategy"] == "rolling"),
            "strategies": strategies_seen,
            "rollbacks": sum(1 for r in results if r["kind"] == "rollback"),
            "killed": sum(1 for r in results if r["killed"]),
            "killed_in": sorted(r.get("killed_in", "") for r in results if r["killed"]),
            "final_ok": sum(1 for r in results
                            if r["state"] == ("rolled-back" if r["kind"] == "rollback" else "committed")),
            "moved": sum(1 for r in results if r["moved"]),
            "not_moved": [r["n"] for r in results if not r["moved"]],
        },
        "latency_ms": {
            "steady": {"n": len(steady), "p50": ms(pct(steady, 0.5)), "p99": ms(p99s)},
            "switch": {"n": len(inside), "p50": ms(pct(inside, 0.5)), "p99": ms(p99w)},
            "ratio_p99": (p99w / p99s) if steady and inside and p99s > 0 else float("nan"),
        },
        "switch_latency_ms": {
            "deploy": lat(lambda r: r["kind"] == "deploy"),
            "immediate": lat(lambda r: r["kind"] == "deploy" and r["strategy"] == "immediate"),
            "blue_green": lat(lambda r: r["kind"] == "deploy" and r["strategy"] == "blue-green"),
            "canary": lat(lambda r: r["kind"] == "deploy" and r["strategy"] == "canary"),
            "rolling": lat(lambda r: r["kind"] == "deploy" and r["strategy"] == "rolling"),
            "rollback": lat(lambda r: r["kind"] == "rollback"),
            "killed": {"n": sum(1 for r in results if r["killed"] and r["latency_ms"] is not None),
                       "median": pct([r["latency_ms"] for r in results
                                      if r["killed"] and r["latency_ms"] is not None], 0.5)},
        },
        "by_strategy": by_strategy,
        "outside_deployments": outside,
        "bad_requests": bad_requests,
        "per_deployment": results,
    }


def f1(x, nd=1):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _states(s):
    out = {}
    for r in s["per_deployment"]:
        out[r["state"]] = out.get(r["state"], 0) + 1
    return out


def strategies(paths):
    """One table per rate: a column per strategy (and the rollbacks), every deployment's
    failed requests charged to it (see the module's docstring)."""
    blocks = []
    for p in paths:
        s = json.load(open(p))
        B = s["by_strategy"]
        names = list(B)
        head = ["immediate", "blue-green", "canary", "rolling"]
        names.sort(key=lambda k: (head.index(k) if k in head else len(head), k))
        rows = []

        def row(name, fn):
            rows.append("| " + name + " | " + " | ".join(fn(B[k]) for k in names) + " |")

        cnt = lambda d: ", ".join(f"{k}×{v}" for k, v in sorted(d.items())) if d else "–"
        lst = lambda l: ", ".join(f"{k}×{l.count(k)}" for k in sorted(set(l))) if l else "–"
        row("deployments", lambda b: str(b["n"]))
        row("final states", lambda b: cnt(b["states"]))
        row("agent SIGKILLed (state it was in) → final", lambda b: f"{b['killed']}"
            + (f" ({lst(b['killed_in'])}) → {lst(b['killed_final'])}" if b["killed"] else ""))
        row("rollbacks after it (final)", lambda b: f"{b['rollbacks_after']['n']}"
            + (f" ({lst(b['rollbacks_after']['states'])})" if b['rollbacks_after']['n'] else ""))
        row("traffic moved to the new version", lambda b: f"{b['moved']} of {b['n']}")
        row("non-2xx on `/` during them", lambda b: str(b["bad"]["non_2xx"]))
        row("connect errors on `/` during them", lambda b: str(b["bad"]["connect"]))
        row("timeouts / other errors on `/` during them",
            lambda b: f"{b['bad']['timeout']} / {b['bad']['other']}")
        row("`/slow` non-2xx / errors during them",
            lambda b: f"{b['bad']['slow_non_2xx']} / {b['bad']['slow_errors']}")
        row("latency p50 / p99 in their switch windows (ms)",
            lambda b: f"{f1(b['window']['p50'], 2)} / {f1(b['window']['p99'], 2)}")
        row(f"p99 window / p99 steady ({f1(s['latency_ms']['steady']['p99'], 2)} ms)",
            lambda b: f1(b["window"]["ratio_p99"], 2))
        row("switch latency median / p99 / max (ms, n; not killed)",
            lambda b: f"{f1(b['latency']['median'])} / {f1(b['latency']['p99'])} / "
                      f"{f1(b['latency']['max'])} (n={b['latency']['n']})")
        row("first new-version answer after the decision, median / max (ms)",
            lambda b: f"{f1(b['first_new']['median'])} / {f1(b['first_new']['max'])}")
        row("deployment duration median / max (ms; not killed)",
            lambda b: f"{f1(b['duration_ms']['median'], 0)} / {f1(b['duration_ms']['max'], 0)}")
        o = s["outside_deployments"]
        out = [f"{s['rate']:g} req/s:", "",
               "| | " + " | ".join(k if k != "rollback" else "rollbacks" for k in names) + " |",
               "|---|" + "---|" * len(names)] + rows + [
               "",
               f"Outside every deployment: non-2xx {o['non_2xx']}, connect errors {o['connect']}, "
               f"timeouts {o['timeout']}, other {o['other']}; `/slow` non-2xx {o['slow_non_2xx']}, "
               f"errors {o['slow_errors']}."]
        blocks.append("\n".join(out))
    return "\n\n".join(blocks)


def table(paths):
    S = [json.load(open(p)) for p in paths]
    cols = [f"{s['rate']:g} req/s" for s in S]
    rows = []

    def row(name, fn):
        rows.append("| " + name + " | " + " | ".join(fn(s) for s in S) + " |")

    row("run length (s)", lambda s: f1(s["duration_s"], 0))
    row("requests sent on `/`", lambda s: str(s["sent"]))
    row("non-2xx", lambda s: str(s["non_2xx"]))
    row("connect errors", lambda s: str(s["connect_errors"]))
    row("timeouts", lambda s: str(s["timeouts"]))
    row("other errors", lambda s: str(s["other_errors"]))
    row("loadgen retries (reused pooled conn. closed)", lambda s: str(s["retries"]))
    row("`/slow?ms=2000` sent / answered 200 / in flight across a switch",
        lambda s: f"{s['slow']['sent']} / {s['slow']['ok_200']} / {s['slow']['across_switch']}")
    row("slow non-2xx / errors", lambda s: f"{s['slow']['non_2xx']} / {s['slow']['errors']}")
    names = []
    for s in S:
        for k in s["deployments"].get("strategies", ["immediate", "blue-green"]):
            if k not in names:
                names.append(k)
    key = lambda k: k.replace("-", "_")
    row(f"deployments ({' + '.join(names)}) / rollbacks",
        lambda s: f"{s['deployments']['total']} ("
                  + " + ".join(str(s["deployments"].get(key(k), 0)) for k in names)
                  + f") / {s['deployments']['rollbacks']}")
    row("agent SIGKILLed (state it was in)",
        lambda s: f"{s['deployments']['killed']} ("
                  + ", ".join(f"{k}×{s['deployments']['killed_in'].count(k)}"
                              for k in sorted(set(s['deployments']['killed_in']))) + ")")
    row("final states (deployments and rollbacks)",
        lambda s: ", ".join(f"{k}×{v}" for k, v in sorted(_states(s).items())))
    row("ended committed / rolled-back as asked",
        lambda s: f"{s['deployments']['final_ok']} of "
                  f"{s['deployments']['total'] + s['deployments']['rollbacks']}")
    row("traffic moved to the new version",
        lambda s: f"{s['deployments']['moved']} of {s['deployments']['total'] + s['deployments']['rollbacks']}")
    L = lambda s, k: s["latency_ms"][k]
    row("latency p50 / p99, steady (ms)", lambda s: f"{f1(L(s,'steady')['p50'],2)} / {f1(L(s,'steady')['p99'],2)}")
    row("latency p50 / p99, switch windows (ms)", lambda s: f"{f1(L(s,'switch')['p50'],2)} / {f1(L(s,'switch')['p99'],2)}")
    row("p99 switch / p99 steady (goal ≤ 2)", lambda s: f1(s["latency_ms"]["ratio_p99"], 2))
    W = lambda s, k: s["switch_latency_ms"][k]
    for k, name in (("deploy", "all deployments"), ("immediate", "immediate"),
                    ("blue_green", "blue-green"), ("canary", "canary (from drain-old)"),
                    ("rolling", "rolling (from drain-old)"), ("rollback", "rollbacks")):
        if all(W(s, k)["n"] == 0 for s in S if k in s["switch_latency_ms"]) and k in ("canary", "rolling"):
            continue
        row(f"switch latency, {name}: median / p99 / max (ms, n)",
            lambda s, k=k: f"{f1(W(s,k)['median'])} / {f1(W(s,k)['p99'])} / {f1(W(s,k)['max'])} (n={W(s,k)['n']})")
    row("switch latency of killed deployments, median (ms; includes the agent restart)",
        lambda s: f"{f1(W(s,'killed')['median'])} (n={W(s,'killed')['n']})")
    row("loadgen interval (granularity, ms)", lambda s: f1(s["interval_ms"], 2))
    out = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)] + rows
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1] == "summarize":
        json.dump(summarize(sys.argv[2], float(sys.argv[3])), sys.stdout, indent=1)
    elif sys.argv[1] == "table":
        print(table(sys.argv[2:]))
    elif sys.argv[1] == "strategies":
        print(strategies(sys.argv[2:]))
    else:
        sys.exit("usage: zero_downtime_stats.py summarize RUN RATE | table SUMMARY... | "
                 "strategies SUMMARY...")
