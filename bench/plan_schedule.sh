#!/usr/bin/env bash
# plan_schedule.sh -- two bars of the deployment issue, on a real agent:
#   plans: 10 independent services (svc0..svc9, the sample service, 2 instances each), each
#     deployed 1.0.0 -> 2.0.0 alone (`mup deploy svcK --wait`, wall clock; then back to 1.0.0),
#     then all ten in one plan (`mup deploy svc0 ... svc9 --wait`): the plan's time against the
#     slowest alone (bar <= 1.5x), R rounds, medians.
#   scheduled: `mup deploy svc0 --at NOW+30s`, the agent SIGKILLed 5 s later and restarted; the
#     deployment's started_at minus scheduled_for (bar: within 1 s), S runs.
#   --ready-ms MS: every version needs MS ms after start to be ready (a real service's
#     start-up; default 0: the sample service is ready in a few ms, and the plan is bound by
#     the CPU the 20 starts and 10 installs take).
# Writes bench/results/plan_schedule.md.
# usage: bench/plan_schedule.sh [BUILD] [--rounds R] [--sched S] [--ready-ms MS] [--out FILE]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_ARG=build ROUNDS=3 SCHED=3 READY_MS=0 OUT=$HERE/results/plan_schedule.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --sched) SCHED=$2; shift 2 ;;
    --ready-ms) READY_MS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BUILD_ARG=$1; shift ;;
  esac
done
# shellcheck source=lib/agent_common.sh
source "$HERE/lib/agent_common.sh"
ab_init "$BUILD_ARG" plan-schedule
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
SERVICES=10
ab_repo
export INSTANCES=2
for ((s = 0; s < SERVICES; s++)); do
  port=$(ab_free_port)
  for v in 1.0.0 2.0.0; do
    LISTEN=127.0.0.1:$port "$REPO_ROOT/scripts/make-sample-tree.sh" "$WORK/tree-svc$s-$v" "$v" \
      --ready-after-ms "$READY_MS" >/dev/null
    ab_publish "$WORK/tree-svc$s-$v" "svc$s" "$v"
  done
done
ab_start_agent
for ((s = 0; s < SERVICES; s++)); do
  "$MUP" deploy "svc$s" --version 1.0.0 --wait --json --root "$NODE" >/dev/null
done
log "10 services at 1.0.0"

TSV=$WORK/plan.tsv
: >"$TSV"
for ((r = 1; r <= ROUNDS; r++)); do
  slowest=0
  for ((s = 0; s < SERVICES; s++)); do
    t0=$(ab_ms)
    "$MUP" deploy "svc$s" --version 2.0.0 --wait --json --root "$NODE" >/dev/null
    d=$(($(ab_ms) - t0))
    ((d > slowest)) && slowest=$d
    "$MUP" deploy "svc$s" --version 1.0.0 --wait --json --root "$NODE" >/dev/null
  done
  names=()
  for ((s = 0; s < SERVICES; s++)); do names+=("svc$s@2.0.0"); done
  t0=$(ab_ms)
  "$MUP" deploy "${names[@]}" --wait --json --root "$NODE" >"$WORK/plan.json"
  plan=$(($(ab_ms) - t0))
  state=$(ab_field "$WORK/plan.json" state)
  printf '%s\t%s\t%s\t%s\n' "$r" "$slowest" "$plan" "$state" >>"$TSV"
  log "round $r: slowest alone $slowest ms, plan of 10 $plan ms ($state)"
  names=()
  for ((s = 0; s < SERVICES; s++)); do names+=("svc$s@1.0.0"); done
  "$MUP" deploy "${names[@]}" --wait --json --root "$NODE" >/dev/null
done

STSV=$WORK/sched.tsv
: >"$STSV"
cur=1.0.0
for ((k = 1; k <= SCHED; k++)); do
  [[ $cur == 1.0.0 ]] && v=2.0.0 || v=1.0.0
  at=$(python3 -c 'import time; t=int(time.time())+30; print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)))')
  id=$("$MUP" deploy svc0 --version "$v" --at "$at" --json --root "$NODE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  sleep 5
  ab_kill_agent
  ab_start_agent
  ab_wait_final "$id" "$WORK/s.json"
  python3 - "$WORK/s.json" >>"$STSV" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d['state']}\t{d['started_at_ms'] - d['scheduled_for_ms']}")
PY
  log "scheduled run $k: $(tail -1 "$STSV")"
  cur=$v
done

python3 - "$TSV" "$STSV" "$READY_MS" "$ROUNDS" "$SCHED" >"$OUT" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
sched = [l.split("\t") for l in open(sys.argv[2]).read().split("\n") if l]
print("# Plans and scheduled deployments (bench/plan_schedule.sh)\n")
print(f"`bench/plan_schedule.sh --rounds {sys.argv[4]} --sched {sys.argv[5]} --ready-ms {sys.argv[3]}`: "
      "10 independent services (sample service, 2 instances each, ready "
      f"{sys.argv[3]} ms after start), no load, 2 shared cores.\n")
print("| round | slowest alone (ms) | plan of 10 (ms) | ratio (bar <= 1.5) | plan state |")
print("|---|---|---|---|---|")
ratios = []
for r, slow, plan, state in rows:
    ratio = int(plan) / int(slow)
    ratios.append(ratio)
    print(f"| {r} | {slow} | {plan} | {ratio:.2f} | {state} |")
print(f"\nMedian ratio {statistics.median(ratios):.2f}.\n")
print("Scheduled 30 s ahead, the agent SIGKILLed 5 s later and restarted:\n")
print("| run | state | started_at - scheduled_for (ms; bar < 1000) |")
print("|---|---|---|")
for i, (state, late) in enumerate(sched, 1):
    print(f"| {i} | {state} | {late} |")
PY
cat "$OUT"
