#!/usr/bin/env bash
# judge_detection.sh -- the rollback judge under real traffic: a real agent, proxy and
# sample service, mup-loadgen at 200 requests/s (open loop) the whole time.
# The old version (1.0.0) fails 1% of requests and answers in ~10 ms. Cases, each a series of
# immediate deployments of a fresh version with the default policy (alpha 0.001, or --alpha;
# --analysis 60s) that the judge should roll back by itself:
#   err6  the new version fails 6%         (issue bar: decision <= 2 s p95)
#   err2  the new version fails 2%         (issue bar: <= 15 s p95)
#   lat   the new version answers in 15 ms (p50 +50%; issue bar: <= 10 s p95)
# and A/A: versions identical to the old one (--analysis 5s): how many are rolled back.
# Per run, from the deployment's JSON: detection = decision.decided_at - the switch (the new
# version's first request); recovery = rolled_back_at - decided_at (all traffic back on the
# old version); exposure = failed requests the new version served before the decision;
# baseline_requests = the old version's requests the judge compared with (its cumulative
# count in the proxy when the analysis began: --baseline-seconds of load before the first
# run, then growing while the old version serves between runs).
# Writes bench/results/judge_detection.md (medians, p95) and a TSV of every run.
# A bad version the judge missed commits and would become the next run's baseline: the old
# 1%-version is then deployed again (no analysis) and serves 60 s before the next run.
# usage: bench/judge_detection.sh [BUILD] [--runs N] [--aa N] [--cases "err6 lat err2 aa"]
#        [--alpha A] [--baseline-seconds S] [--out FILE]
#   --alpha A              passed to every deployment (mup deploy --alpha A; default 0.001)
#   --baseline-seconds S   the old version serves the load S s before the first run (default 60)
#   (bench/lib/judge_report.py FILE.tsv... rebuilds the table)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_ARG=build RUNS=50 AA=300 OUT=$HERE/results/judge_detection.md CASES="err6 lat err2 aa"
ALPHA=0.001 BASELINE_S=60
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --aa) AA=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --alpha) ALPHA=$2; shift 2 ;;
    --baseline-seconds) BASELINE_S=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BUILD_ARG=$1; shift ;;
  esac
done
# shellcheck source=lib/agent_common.sh
source "$HERE/lib/agent_common.sh"
ab_init "$BUILD_ARG" judge-detection
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
LOADGEN=$BUILD/bench/loadgen/mup-loadgen
[[ -x $LOADGEN ]] || { echo "no $LOADGEN: build with -DMUP_BUILD_BENCH=ON" >&2; exit 1; }

ab_repo
export INSTANCES=2
PORT=$(ab_free_port)
export LISTEN=127.0.0.1:$PORT
OLD_FLAGS=(--error-rate 0.01 --latency-ms 10)
"$REPO_ROOT/scripts/make-sample-tree.sh" "$WORK/t-old" 1.0.0 "${OLD_FLAGS[@]}" >/dev/null
ab_publish "$WORK/t-old" web 1.0.0
ab_start_agent
"$MUP" deploy web --version 1.0.0 --wait --json --root "$NODE" >"$WORK/first.json"
ab_bg "$LOADGEN" --url "http://$LISTEN/" --rate 200 --duration 100000 --timeout-ms 5000 \
  >"$WORK/load.json" 2>"$WORK/load.err"
log "baseline: 1.0.0 serves 200 requests/s for $BASELINE_S s (alpha $ALPHA)"
sleep "$BASELINE_S"

TSV=$WORK/runs.tsv
printf 'case\trun\tstate\tverdict\tmetric\tdetect_ms\trecovery_ms\texposure\tnew_requests\talpha\tbaseline_requests\n' >"$TSV"
N=0
# run CASE ANALYSIS FLAGS...: publish a fresh version with FLAGS, deploy it, record.
run() {
  local case=$1 analysis=$2
  shift 2
  N=$((N + 1))
  local v=1.$N.0 t=$WORK/t-$N
  # A seed per version: the sample service's failures are a deterministic sequence of its
  # request counter, so without one every run would replay the same requests.
  "$REPO_ROOT/scripts/make-sample-tree.sh" "$t" "$v" "$@" --seed $((N * 7919 + 13)) >/dev/null
  ab_publish "$t" web "$v"
  rm -rf "$t"
  "$MUP" deploy web --version "$v" --analysis "$analysis" --alpha "$ALPHA" --wait --json \
    --root "$NODE" >"$WORK/d.json" 2>/dev/null || true
  python3 - "$WORK/d.json" "$case" "$N" "$ALPHA" >>"$TSV" <<'PY'
import json, sys  # one TSV row per run
d = json.load(open(sys.argv[1]))
j = d.get("decision", {})
switch = next((s["at_ms"] for s in d.get("steps", []) if s["state"] == "switch"), None)
det = j.get("decided_at_ms", 0) - switch if switch and j.get("decided_at_ms") else ""
rec = d.get("rolled_back_at_ms", 0) - j.get("decided_at_ms", 0) if d.get("rolled_back_at_ms") and j.get("decided_at_ms") else ""
print("\t".join(str(x) for x in [sys.argv[2], sys.argv[3], d.get("state", "?"), j.get("verdict", ""),
      j.get("metric", ""), det, rec, j.get("new", {}).get("errors", ""), j.get("new", {}).get("requests", ""),
      sys.argv[4], j.get("old", {}).get("requests", "") if j.get("against") == "baseline" else ""]))
PY
  if [[ $case != aa ]] && grep -q '"state": "committed"' "$WORK/d.json"; then
    N=$((N + 1))
    "$REPO_ROOT/scripts/make-sample-tree.sh" "$WORK/t-$N" "1.$N.0" "${OLD_FLAGS[@]}" \
      --seed $((N * 7919 + 13)) >/dev/null
    ab_publish "$WORK/t-$N" web "1.$N.0"
    rm -rf "$WORK/t-$N"
    "$MUP" deploy web --version "1.$N.0" --analysis 0s --wait --json --root "$NODE" >/dev/null
    log "$case: a miss committed; old version 1.$N.0 deployed again, 60 s of baseline"
    sleep 60
  fi
}

for c in $CASES; do
  case $c in
    err6) for ((i = 0; i < RUNS; i++)); do run err6 60s --error-rate 0.06 --latency-ms 10; done ;;
    lat) for ((i = 0; i < RUNS; i++)); do run lat 60s --error-rate 0.01 --latency-ms 15; done ;;
    err2) for ((i = 0; i < RUNS; i++)); do run err2 60s --error-rate 0.02 --latency-ms 10; done ;;
    aa) for ((i = 0; i < AA; i++)); do run aa 5s "${OLD_FLAGS[@]}"; done ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
  log "$c done"
done
cp "$TSV" "${OUT%.md}.tsv"

python3 "$HERE/lib/judge_report.py" "${OUT%.md}.tsv" >"$OUT"
cat "$OUT"
