#!/usr/bin/env bash
# agent_zero_downtime.sh -- does a deployment drop or slow a request? For each rate, one run:
# an open-loop loadgen on `/` (--keepalive-fraction 0.5 --connections 64, per-request events)
# and a second one on `/slow?ms=2000` at 5 req/s (requests in flight across the switches),
# while N deployments alternate web 1.0.0 <-> 2.0.0 (odd: immediate, even: blue-green
# --soak 200ms, each --wait --json, --analysis 0s: the switches are measured, the judge by bench/judge_detection.sh), K of them with the agent SIGKILLed in the middle (half a
# plain kill -9 after a random 0-300 ms, half a fault point deploy.state.<state>) and
# restarted, and M rollbacks (`mup rollback web`) inside the blue-green window.
# Statistics: bench/lib/zero_downtime_stats.py (definitions there and in bench/README.md).
#
# usage: bench/agent_zero_downtime.sh [BUILD] [--deployments N] [--kills K] [--rates "200 2000"]
#                                     [--rollbacks M] [--quick] [--out FILE]
#   defaults: build, 100, 20, "200 2000", 20; --quick = 10 deployments, 2 kills, 2 rollbacks,
#   rate 200. KEEP_RUNS=DIR keeps each run's events and deployments there.
#   The table goes to stdout and to --out (default bench/results/agent_zero_downtime.md).
# Needs: python3 (bench only), curl.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_ARG=build
N=100 K=20 RATES="200 2000" M=20 OUT=$HERE/results/agent_zero_downtime.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --deployments) N=$2; shift 2 ;;
    --kills) K=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --rollbacks) M=$2; shift 2 ;;
    --quick) N=10 K=2 M=2 RATES=200; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BUILD_ARG=$1; shift ;;
  esac
done
(( K <= N )) || { echo "--kills must be <= --deployments" >&2; exit 2; }
# shellcheck source=lib/agent_common.sh
source "$HERE/lib/agent_common.sh"
ab_init "$BUILD_ARG" zero-downtime
STATS=$HERE/lib/zero_downtime_stats.py
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

PORT=$(ab_free_port)
export LISTEN=127.0.0.1:$PORT INSTANCES=2
ab_repo
for v in 1.0.0 2.0.0; do
  "$REPO_ROOT/scripts/make-sample-tree.sh" "$WORK/tree-$v" "$v"
  ab_publish "$WORK/tree-$v" web "$v"
done
ab_start_agent
# Both versions installed once before any load: the bench measures switches, not installs.
for v in 1.0.0 2.0.0 1.0.0; do
  "$MUP" deploy web --version "$v" --strategy immediate --wait --json --root "$NODE" >/dev/null
done
CUR=1.0.0
other() { [[ $1 == 1.0.0 ]] && echo 2.0.0 || echo 1.0.0; }
IMM_FAULTS=(start-new wait-ready switch drain-old stop-old commit install)
BG_FAULTS=(start-new wait-ready soak switch commit install)
IMM_F=0 BG_F=0  # the next fault point of each list

# One deployment with the agent killed: $1 n, $2 version, $3 kill index; flags after.
killed_deploy() {
  local n=$1 v=$2 k=$3 strategy=$4
  shift 4
  local id how kill_ms
  # Kills fall on alternate deployments (immediate, blue-green, ...): the mode changes every
  # second kill so that both modes meet both strategies.
  if (( (k / 2) % 2 == 0 )); then
    local delay=$((RANDOM % 301))
    id=$("$MUP" deploy web --version "$v" "$@" --json --root "$NODE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    sleep "$(printf '0.%03d' "$delay")"
    kill_ms=$(ab_ms)
    ab_kill_agent
    how="kill -9 after ${delay} ms"
  else
    local state
    if [[ $strategy == immediate ]]; then
      state=${IMM_FAULTS[$((IMM_F % ${#IMM_FAULTS[@]}))]}
      IMM_F=$((IMM_F + 1))
    else
      state=${BG_FAULTS[$((BG_F % ${#BG_FAULTS[@]}))]}
      BG_F=$((BG_F + 1))
    fi
    ab_kill_agent
    ab_start_agent MUP_FAULT_AT="deploy.state.$state" MUP_FAULT_ACTION=kill
    id=$("$MUP" deploy web --version "$v" "$@" --json --root "$NODE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    local _
    for _ in $(seq 1 600); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.05; done
    kill_ms=$(ab_ms)
    ab_kill_agent  # reaps it (or kills it, if the fault point was never reached)
    how="fault deploy.state.$state"
  fi
  ab_start_agent
  ab_wait_final "$id" "$RUN/d-$n.json"
  printf '%s\tdeploy\t1\t%s\t%s\td-%s.json\n' "$n" "$how" "$kill_ms" "$n" >>"$RUN/meta.tsv"
}

run_rate() {
  local rate=$1
  RUN=$WORK/rate-$rate
  mkdir -p "$RUN"
  : >"$RUN/meta.tsv"
  log "rate $rate req/s: $N deployments, $K agent kills, $M rollbacks"
  ab_bg "$LOADGEN" --url "http://$LISTEN/" --rate "$rate" --duration 0 --keepalive-fraction 0.5 \
    --connections 64 --json "$RUN/load.json" --events "$RUN/events.csv" >"$RUN/load.log" 2>&1
  local load_pid=$AB_LAST_PID
  ab_bg "$LOADGEN" --url "http://$LISTEN/slow?ms=2000" --rate 5 --duration 0 \
    --keepalive-fraction 0.5 --connections 16 --timeout-ms 10000 --json "$RUN/slow.json" \
    --events "$RUN/slow.csv" >"$RUN/slow.log" 2>&1
  local slow_pid=$AB_LAST_PID
  sleep 3  # steady state first
  local i k=0 rb=0 bg=0 n=0 v strategy flags killed
  local bg_total=$((N / 2))
  for ((i = 1; i <= N; i++)); do
    v=$(other "$CUR")
    if ((i % 2 == 1)); then
      strategy=immediate flags=(--strategy immediate --analysis 0s)
    else
      strategy=blue-green flags=(--strategy blue-green --soak 200ms --analysis 0s)
    fi
    killed=0
    if (((i * K) / N != ((i - 1) * K) / N)); then killed=1; fi
    n=$((n + 1))
    if ((killed)); then
      killed_deploy "$n" "$v" "$k" "$strategy" "${flags[@]}"
      k=$((k + 1))
    else
      "$MUP" deploy web --version "$v" "${flags[@]}" --wait --json --root "$NODE" >"$RUN/d-$n.json" ||
        { echo "deployment $n ($strategy to $v) did not commit:" >&2; cat "$RUN/d-$n.json" >&2; exit 1; }
      printf '%s\tdeploy\t0\t\t\td-%s.json\n' "$n" "$n" >>"$RUN/meta.tsv"
    fi
    local st
    st=$(ab_field "$RUN/d-$n.json" state)
    [[ $st == committed ]] || { echo "deployment $n ended $st, not committed" >&2; cat "$RUN/d-$n.json" >&2; exit 1; }
    CUR=$v
    log "  $i/$N $strategy -> $v committed$( ((killed)) && echo " (agent killed: $(tail -1 "$RUN/meta.tsv" | cut -f4))")"
    sleep 0.5
    # Rollbacks: spread over the blue-green deployments (one skipped for a kill comes next).
    if [[ $strategy == blue-green ]]; then
      bg=$((bg + 1))
      if ((killed == 0 && rb < M && rb < (bg * M + bg_total - 1) / bg_total)); then
        n=$((n + 1))
        "$MUP" rollback web --json --root "$NODE" >"$RUN/d-$n.json" ||
          { echo "rollback $n failed:" >&2; cat "$RUN/d-$n.json" >&2; exit 1; }
        printf '%s\trollback\t0\t\t\td-%s.json\n' "$n" "$n" >>"$RUN/meta.tsv"
        CUR=$(ab_field "$RUN/d-$n.json" to_version)
        rb=$((rb + 1))
        log "  rollback inside the window -> $CUR ($(ab_field "$RUN/d-$n.json" state))"
        sleep 0.5
      fi
    fi
  done
  sleep 2.5  # the last slow requests finish
  kill -INT "$load_pid" "$slow_pid"
  wait "$load_pid" "$slow_pid" || true
  python3 "$STATS" summarize "$RUN" "$rate" >"$WORK/summary-$rate.json"
  if [[ -n ${KEEP_RUNS:-} ]]; then mkdir -p "$KEEP_RUNS" && cp -r "$RUN" "$WORK/agent.log" "$KEEP_RUNS/"; fi
  cp "$WORK/summary-$rate.json" "${OUT%.md}.rate-$rate.json" 2>/dev/null || true
}

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
mkdir -p "$(dirname "$OUT")"
SUMMARIES=()
for r in $RATES; do
  run_rate "$r"
  SUMMARIES+=("$WORK/summary-$r.json")
done
{
  echo "# agent_zero_downtime.sh — $START_DATE"
  echo
  echo "Machine: $(nproc) cores shared with other work ($(sed -n 's/^model name.*: //p' /proc/cpuinfo | head -1)), $(uname -sr)."
  echo "Command: \`bench/agent_zero_downtime.sh $BUILD_ARG --deployments $N --kills $K --rollbacks $M --rates \"$RATES\"\`"
  echo "Service: mup-sample-service, 2 instances per version, web 1.0.0 <-> 2.0.0 through the proxy."
  echo
  python3 "$STATS" table "${SUMMARIES[@]}"
} | tee "$OUT"
