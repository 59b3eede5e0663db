#!/usr/bin/env python3
"""The table of bench/judge_detection.sh from one or more of its TSVs (runs concatenated)."""
import csv
import sys

rows = []
for f in sys.argv[1:]:
    rows += list(csv.DictReader(open(f), delimiter="\t"))


def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))] if v else "-"


# TSVs from before --alpha have no alpha column: they ran at the default, 0.001.
alphas = sorted({x.get("alpha") or "0.001" for x in rows}, key=float)
alpha = " / ".join(alphas)
print("# Rollback judge under real traffic (bench/judge_detection.sh)\n")
print("200 requests/s open loop (mup-loadgen), old version 1% failed / 10 ms, default policy "
      f"(alpha {alpha}, error rate + p50), immediate deployments with --analysis 60s "
      "(A/A: 5s). Detection: the decision's time minus the switch (the new version's first "
      "request); recovery: all traffic back on the old version after the decision; exposure: "
      "failed requests the new version served before the decision.\n")
print("| case | bar (p95) | rolled back | detection median / p95 (ms) | recovery median / p99 (ms) |"
      " exposure median / p95 (failed requests) |")
print("|---|---|---|---|---|---|")
bars = {"err6": "2 s", "err2": "15 s", "lat": "10 s"}
names = {"err6": "6% errors", "err2": "2% errors", "lat": "p50 +50% (10 -> 15 ms)"}
for case in ("err6", "err2", "lat"):
    r = [x for x in rows if x["case"] == case]
    if not r:
        continue
    rb = [x for x in r if x["state"] == "rolled-back" and x["verdict"] == "rollback"]
    det = [int(x["detect_ms"]) for x in rb if x["detect_ms"]]
    rec = [int(x["recovery_ms"]) for x in rb if x["recovery_ms"]]
    exp = [int(x["exposure"]) for x in rb if x["exposure"]]
    print(f"| {names[case]} | {bars[case]} | {len(rb)}/{len(r)} | {q(det, .5)} / {q(det, .95)} |"
          f" {q(rec, .5)} / {q(rec, .99)} | {q(exp, .5)} / {q(exp, .95)} |")
base = [int(x["baseline_requests"]) for x in rows
        if x["case"] != "aa" and x.get("baseline_requests")]
if base:
    print(f"\nBaseline (the old version's requests when a run's analysis began): "
          f"{min(base)} .. {max(base)}, median {q(base, .5)}.")
aa = [x for x in rows if x["case"] == "aa"]
if aa:
    fa = [x for x in aa if x["state"] != "committed"]
    print(f"\nA/A: {len(fa)} of {len(aa)} identical versions rolled back (alpha {alpha}; bar <= 1%)"
          + ("" if not fa else ": " + ", ".join(f"run {x['run']} {x['state']} {x['verdict']} "
                                               f"{x['metric']}" for x in fa)) + ".")
