#!/usr/bin/env bash
# agent_zero_downtime.sh -- does a deployment drop or slow a request? For each rate, one run:
# an open-loop loadgen on `/` (--keepalive-fraction 0.5 --connections 64, per-request events)
# and a second one on `/slow?ms=2000` at 5 req/s (requests in flight across the switches),
# while N deployments alternate web 1.0.0 <-> 2.0.0, deployment k with the k-th strategy of
# --strategies in turn (each --wait --json --force): immediate --analysis 0s; blue-green
# --soak 200ms --analysis 0s; canary --steps 5,25,50,100 --step-seconds 0.5; rolling
# --batch-size 1 --batch-interval 500ms (the switches are measured, the judge by
# bench/judge_detection.sh; canary and rolling keep the judge, the trees' [rollback]
# min_requests = 5 so a 0.5 s step can pass at 200 req/s). K of them with the agent SIGKILLed
# in the middle (per strategy in turn: a plain kill -9 a random 0-300 ms after `mup deploy`
# returned, for canary and rolling 0-1500 / 0-5000 ms after analyze began, then a fault point
# deploy.state.<state>) and restarted, and M rollbacks
# (`mup rollback web`) right after a committed deployment (spread over the strategies; after
# blue-green: inside its window). Statistics: bench/lib/zero_downtime_stats.py (definitions
# there and in bench/README.md).
#
# usage: bench/agent_zero_downtime.sh [BUILD] [--deployments N] [--kills K] [--rates "200 2000"]
#                                     [--rollbacks M] [--strategies "immediate blue-green canary rolling"]
#                                     [--instances I] [--quick] [--out FILE]
#   defaults: build, 100, 20, "200 2000", 20, all four strategies, 4 instances per version;
#   --quick = 12 deployments, 4 kills, 4 rollbacks, rate 200. KEEP_RUNS=DIR keeps each run's
#   events and deployments there. The tables go to stdout and to --out (default
#   bench/results/agent_zero_downtime.md). Exit 1 if a deployment did not end committed (a
#   rollback: rolled-back), after the tables.
# Needs: python3 (bench only), curl.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_ARG=build
N=100 K=20 RATES="200 2000" M=20 OUT=$HERE/results/agent_zero_downtime.md
STRATEGIES="immediate blue-green canary rolling" INST=4
while [[ $# -gt 0 ]]; do
  case $1 in
    --deployments) N=$2; shift 2 ;;
    --kills) K=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --rollbacks) M=$2; shift 2 ;;
    --strategies) STRATEGIES=$2; shift 2 ;;
    --instances) INST=$2; shift 2 ;;
    --quick) N=12 K=4 M=4 RATES=200; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BUILD_ARG=$1; shift ;;
  esac
done
read -r -a STRATS <<<"$STRATEGIES"
S=${#STRATS[@]}
(( S >= 1 )) || { echo "--strategies: at least one" >&2; exit 2; }
for s in "${STRATS[@]}"; do
  case $s in
    immediate|blue-green|canary) ;;
    rolling) (( INST >= 2 )) || { echo "rolling needs --instances >= 2" >&2; exit 2; } ;;
    *) echo "--strategies: unknown strategy $s (immediate, blue-green, canary, rolling)" >&2; exit 2 ;;
  esac
done
(( INST >= 1 )) || { echo "--instances must be >= 1" >&2; exit 2; }
(( K <= N )) || { echo "--kills must be <= --deployments" >&2; exit 2; }
# shellcheck source=lib/agent_common.sh
source "$HERE/lib/agent_common.sh"
ab_init "$BUILD_ARG" zero-downtime
STATS=$HERE/lib/zero_downtime_stats.py
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

PORT=$(ab_free_port)
export LISTEN=127.0.0.1:$PORT INSTANCES=$INST
ab_repo
for v in 1.0.0 2.0.0; do
  "$REPO_ROOT/scripts/make-sample-tree.sh" "$WORK/tree-$v" "$v"
  # The judge of canary and rolling steps: the default min_requests (200 requests of the new
  # version before a step may pass) is 20 s of a 5 % step at 200 req/s, so a 0.5 s step would
  # give up after 4 step lengths and roll back (no-data). 5 requests: ~0.5 s at 200 req/s.
  printf '\n[rollback]\nmin_requests = 5\n' >>"$WORK/tree-$v/mup-service.toml"
  ab_publish "$WORK/tree-$v" web "$v"
done
ab_start_agent
# Both versions installed once before any load: the bench measures switches, not installs.
for v in 1.0.0 2.0.0 1.0.0; do
  "$MUP" deploy web --version "$v" --strategy immediate --wait --json --root "$NODE" >/dev/null
done
CUR=1.0.0
other() { [[ $1 == 1.0.0 ]] && echo 2.0.0 || echo 1.0.0; }
# Fault points cycled per strategy: the states each strategy journals (soak and analyze are
# journaled by every strategy, but only blue-green soaks and only canary and rolling analyze
# with --analysis 0s).
declare -A FAULTS=(
  [immediate]="start-new wait-ready switch drain-old stop-old commit install"
  [blue-green]="start-new wait-ready soak switch commit install"
  [canary]="drain-old analyze switch stop-old start-new wait-ready commit install"
  [rolling]="start-new analyze drain-old switch stop-old wait-ready commit install"
)
declare -A FAULT_NEXT=([immediate]=0 [blue-green]=0 [canary]=0 [rolling]=0)
# A plain kill lands 0..PLAIN_MAX_MS ms (random) after `mup deploy` returned; for canary and
# rolling, after the deployment entered analyze (polled): their steps and batches are there
# (here ~1.5 s of canary steps, ~5-6 s of rolling batches, each old instance's stop waiting
# for its slow requests), and the time before analyze varies (~1 s more after a blue-green
# deployment, whose window the install closes).
declare -A PLAIN_MAX_MS=([immediate]=300 [blue-green]=300 [canary]=1500 [rolling]=5000)

flags_of() {
  case $1 in
    immediate) FLAGS=(--strategy immediate --analysis 0s) ;;
    blue-green) FLAGS=(--strategy blue-green --soak 200ms --analysis 0s) ;;
    canary) FLAGS=(--strategy canary --steps 5,25,50,100 --step-seconds 0.5) ;;
    rolling) FLAGS=(--strategy rolling --batch-size 1 --batch-interval 500ms) ;;
  esac
}

# One deployment with the agent killed: $1 n, $2 version, $3 mode (plain|fault), $4 strategy;
# flags after.
killed_deploy() {
  local n=$1 v=$2 mode=$3 strategy=$4
  shift 4
  local id how kill_ms prekill=
  if [[ $mode == plain ]]; then
    local delay=$((RANDOM % (PLAIN_MAX_MS[$strategy] + 1)))
    id=$("$MUP" deploy web --version "$v" "$@" --json --root "$NODE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    if [[ $strategy == canary || $strategy == rolling ]]; then
      local _ s
      for _ in $(seq 1 600); do
        s=$(ab_state "$id")
        [[ $s == analyze || $s == drain-old || $s == stop-old || $s == commit || $s == committed ||
           $s == switch-back || $s == stop-new || $s == undo-install || $s == rolled-back ||
           $s == failed || $s == aborted ]] && break
        sleep 0.02
      done
      how=" after analyze began"
    fi
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    # Where it is (state, step, traffic) just before the kill: the journal's steps record
    # states only, not a canary's step or a rolling batch.
    prekill=d-$n.prekill.json
    "$MUP" deployments "$id" --json --root "$NODE" >"$RUN/$prekill" 2>/dev/null || true
    kill_ms=$(ab_ms)
    ab_kill_agent
    how="kill -9 ${delay} ms${how:- after mup deploy returned}"
  else
    local list state
    read -r -a list <<<"${FAULTS[$strategy]}"
    state=${list[$((FAULT_NEXT[$strategy] % ${#list[@]}))]}
    FAULT_NEXT[$strategy]=$((FAULT_NEXT[$strategy] + 1))
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
  printf '%s\tdeploy\t1\t%s\t%s\td-%s.json\t\t%s\n' "$n" "$how" "$kill_ms" "$n" "$prekill" >>"$RUN/meta.tsv"
}

# Deployments per strategy in a run of N (deployment i has strategy (i-1) % S), and a share
# of a total spread over the strategies (the first ones get the remainder).
count_of() { local idx=$1; (( idx < N )) && echo $(((N - 1 - idx) / S + 1)) || echo 0; }
share_of() { local total=$1 idx=$2; echo $((total / S + (idx < total % S ? 1 : 0))); }

UNEXPECTED=()  # deployments that did not end as asked: "rate n strategy state"

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
  local i idx j n=0 v strategy killed mode st
  local -a seen kills rbs n_of k_of m_of
  for ((idx = 0; idx < S; idx++)); do
    seen[idx]=0 kills[idx]=0 rbs[idx]=0
    n_of[idx]=$(count_of "$idx")
    k_of[idx]=$(share_of "$K" "$idx")
    m_of[idx]=$(share_of "$M" "$idx")
    (( k_of[idx] <= n_of[idx] )) || k_of[idx]=${n_of[idx]}
  done
  for ((i = 1; i <= N; i++)); do
    v=$(other "$CUR")
    idx=$(((i - 1) % S))
    strategy=${STRATS[idx]}
    flags_of "$strategy"
    # A version the judge rolled back is marked bad; --force deploys it again (this bench
    # measures switching, not the judge).
    FLAGS+=(--force)
    seen[idx]=$((seen[idx] + 1))
    j=${seen[idx]}
    # Kills spread evenly over each strategy's deployments; modes alternate per strategy
    # (plain kill -9, fault point, ...) so that both modes meet every strategy.
    killed=0
    if (((j * k_of[idx]) / n_of[idx] != ((j - 1) * k_of[idx]) / n_of[idx])); then killed=1; fi
    n=$((n + 1))
    if ((killed)); then
      mode=$( ((kills[idx] % 2 == 0)) && echo plain || echo fault)
      killed_deploy "$n" "$v" "$mode" "$strategy" "${FLAGS[@]}"
      kills[idx]=$((kills[idx] + 1))
    else
      # mup deploy exits 1 when the deployment ends rolled-back (the judge): its JSON is kept.
      "$MUP" deploy web --version "$v" "${FLAGS[@]}" --wait --json --root "$NODE" >"$RUN/d-$n.json" || true
      printf '%s\tdeploy\t0\t\t\td-%s.json\t\t\n' "$n" "$n" >>"$RUN/meta.tsv"
    fi
    st=$(ab_field "$RUN/d-$n.json" state 2>/dev/null) ||
      { echo "deployment $n ($strategy to $v): no deployment JSON:" >&2; cat "$RUN/d-$n.json" >&2; exit 1; }
    if [[ $st == committed ]]; then
      CUR=$v
      log "  $i/$N $strategy -> $v committed$( ((killed)) && echo " (agent killed: $(tail -1 "$RUN/meta.tsv" | cut -f4))")"
    else
      UNEXPECTED+=("$rate $n $strategy $st")
      log "  $i/$N $strategy -> $v ended $st, not committed: $(ab_field "$RUN/d-$n.json" reason)"
    fi
    sleep 0.5
    # Rollbacks: spread over each strategy's committed, not killed deployments (one skipped
    # for a kill comes next).
    if [[ $st == committed ]] && ((killed == 0 && rbs[idx] < m_of[idx] &&
        rbs[idx] < (j * m_of[idx] + n_of[idx] - 1) / n_of[idx])); then
      n=$((n + 1))
      "$MUP" rollback web --json --root "$NODE" >"$RUN/d-$n.json" || true
      st=$(ab_field "$RUN/d-$n.json" state 2>/dev/null) ||
        { echo "rollback $n failed:" >&2; cat "$RUN/d-$n.json" >&2; exit 1; }
      printf '%s\trollback\t0\t\t\td-%s.json\t%s\t\n' "$n" "$n" "$strategy" >>"$RUN/meta.tsv"
      rbs[idx]=$((rbs[idx] + 1))
      if [[ $st == rolled-back ]]; then
        CUR=$(ab_field "$RUN/d-$n.json" to_version)
      else
        UNEXPECTED+=("$rate $n rollback $st")
      fi
      log "  rollback after $strategy -> $(ab_field "$RUN/d-$n.json" to_version) ($st)"
      sleep 0.5
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
  echo "Command: \`bench/agent_zero_downtime.sh $BUILD_ARG --deployments $N --kills $K --rollbacks $M --rates \"$RATES\" --strategies \"$STRATEGIES\" --instances $INST\`"
  echo "Service: mup-sample-service, $INST instances per version, web 1.0.0 <-> 2.0.0 through the proxy; strategies in turn: $STRATEGIES."
  echo
  python3 "$STATS" table "${SUMMARIES[@]}"
  echo
  echo "Per strategy (a failed request is charged to the deployment it was scheduled during; switch windows: first switch .. full switch + 1 s):"
  echo
  python3 "$STATS" strategies "${SUMMARIES[@]}"
  if ((${#UNEXPECTED[@]})); then
    echo
    echo "Not ended as asked (rate, n, strategy, state): ${UNEXPECTED[*]}"
  fi
} | tee "$OUT"
if ((${#UNEXPECTED[@]})); then
  echo "agent_zero_downtime: ${#UNEXPECTED[@]} deployment(s) did not end as asked" >&2
  exit 1
fi
