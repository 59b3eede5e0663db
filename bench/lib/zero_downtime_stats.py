#!/usr/bin/env python3
"""Statistics for bench/agent_zero_downtime.sh (bench-only dependency: python3, stdlib only).

  zero_downtime_stats.py summarize RUN_DIR RATE > summary.json
      RUN_DIR holds load.json + events.csv (the loadgen on /), slow.json + slow.csv (the
      loadgen on /slow), meta.tsv (one line per deployment: n kind killed how kill_ms file)
      and the deployments' JSON files.
  zero_downtime_stats.py table SUMMARY.json... > table.md

Definitions (times are the loadgen's scheduled times, ms since its start; a deployment's
steps are unix ms, shifted by the loadgen's start_unix_ms):
  decision  the deployment's first `switch` step (journaled just before the route change)
  switched  the first scheduled time, after the last request answered by the old version,
            of a request answered by the new version (both searched between the previous
            and the next decision)
  latency   max(0, switched - decision)
  switch window  decision .. decision + 1 s; steady state = every other request after the
            first 2 s.
"""
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


def first_switch(dep):
    for s in dep.get("steps", []):
        if s.get("state") == "switch":
            return s["at_ms"]
    return None


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
            n, kind, killed, how, kill_ms, file = line.rstrip("\n").split("\t")
            d = json.load(open(os.path.join(run, file)))
            sw = first_switch(d)
            deps.append({
                "n": int(n), "kind": kind, "killed": killed == "1", "how": how,
                "kill_ms": int(kill_ms) if kill_ms else None, "d": d,
                "decision": (sw - t0) if sw is not None else None,
            })
    decisions = sorted(x["decision"] for x in deps if x["decision"] is not None)

    # Per deployment: switch latency and whether traffic moved.
    times = [e[0] for e in ev]
    import bisect
    results = []
    for x in deps:
        d = x["d"]
        old, new = d.get("from_version", ""), d.get("to_version", "")
        r = {"n": x["n"], "id": d.get("id"), "kind": x["kind"], "strategy": d.get("strategy"),
             "state": d.get("state"), "from": old, "to": new, "killed": x["killed"],
             "how": x["how"], "decision_ms": x["decision"], "latency_ms": None, "moved": False,
             "duration_ms": d.get("duration_ms")}
        if x["kill_ms"] is not None:
            # Where the kill landed: the last step journaled before it.
            at = "before-start"
            for s in d.get("steps", []):
                if s["at_ms"] <= x["kill_ms"]:
                    at = s["state"]
            if d.get("finished_at_ms") and x["kill_ms"] >= d["finished_at_ms"]:
                at = "after-final"
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
            if after:
                r["moved"] = True
                r["latency_ms"] = max(0.0, after[0] - D)
        results.append(r)

    # Latency: steady state vs switch windows.
    win = [(D, D + WINDOW_MS) for D in decisions]
    steady, inside = [], []
    j = 0
    for e in ev:
        t = e[0]
        while j < len(win) and win[j][1] < t:
            j += 1
        in_win = j < len(win) and win[j][0] <= t <= win[j][1]
        if in_win:
            inside.append(e[1])
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
            "rollback": lat(lambda r: r["kind"] == "rollback"),
            "killed": {"n": sum(1 for r in results if r["killed"] and r["latency_ms"] is not None),
                       "median": pct([r["latency_ms"] for r in results
                                      if r["killed"] and r["latency_ms"] is not None], 0.5)},
        },
        "per_deployment": results,
    }


def f1(x, nd=1):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


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
    row("deployments (immediate + blue-green) / rollbacks",
        lambda s: f"{s['deployments']['total']} ({s['deployments']['immediate']} + "
                  f"{s['deployments']['blue_green']}) / {s['deployments']['rollbacks']}")
    row("agent SIGKILLed (state it was in)",
        lambda s: f"{s['deployments']['killed']} ("
                  + ", ".join(f"{k}×{s['deployments']['killed_in'].count(k)}"
                              for k in sorted(set(s['deployments']['killed_in']))) + ")")
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
                    ("blue_green", "blue-green"), ("rollback", "rollbacks in the window")):
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
    else:
        sys.exit("usage: zero_downtime_stats.py summarize RUN RATE | table SUMMARY...")
