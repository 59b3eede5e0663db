#!/usr/bin/env bash
# The agent end to end, in a temp dir on loopback: a signed repository with versions of a
# real HTTP service (tools/sample-service), a node running `mup agent` (its proxy and the
# instances in their own processes), an open-loop load generator sending requests through
# the proxy the whole time, and:
#   v1 deployed; v2 deployed under load (immediate); v2.1 that crashes at start refused
#   (traffic never moves); v3 deployed blue-green, then rolled back by a weight flip to the
#   warm v2; the agent SIGKILLed in the middle of a deployment and the next one finishing it.
# At the end the load generator's count of failed requests (expected: 0).
#   scripts/agent-demo.sh [build dir]
set -euo pipefail
BUILD=$(realpath "${1:-build}")
MUP=$BUILD/src/cli/mup
SAMPLE=$BUILD/tools/sample-service/mup-sample-service
LOADGEN=$BUILD/bench/loadgen/mup-loadgen
HERE=$(cd "$(dirname "$0")" && pwd)
for b in "$MUP" "$SAMPLE" "$LOADGEN"; do
  [[ -x $b ]] || { echo "agent-demo: $b is not built (make build)" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mup-agent-demo.XXXXXX")
NODE=$WORK/node
AGENT_PID=
SERVE_PID=
LOAD_PID=
cleanup() {
  set +e
  [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null
  [[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  # The data plane outlives the agent by design: the demo stops it itself.
  for f in "$NODE"/run/instances/*.json; do
    [[ -f $f ]] || continue
    pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$f" | head -1)
    [[ -n $pid && $pid -gt 0 ]] && kill -KILL -- "-$pid" 2>/dev/null
  done
  [[ -f $NODE/proxy/proxy.pid ]] && kill "$(cat "$NODE/proxy/proxy.pid")" 2>/dev/null
  [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cd "$WORK"

PORT=$((20000 + RANDOM % 20000))
export LISTEN=127.0.0.1:$PORT INSTANCES=2 MUP_SAMPLE_SERVICE=$SAMPLE
say "a repository with versions of a real HTTP service (listening, through the proxy, on $LISTEN)"
"$MUP" repo init repo --keys keys >/dev/null
publish() {  # VERSION [service flags...]
  local v=$1
  shift
  "$HERE/make-sample-tree.sh" "tree-$v" "$v" "$@"
  "$MUP" publish repo "tree-$v" --keys keys --component web --version "$v" --type service >/dev/null
  echo "  published web $v ${*:+(flags: $*)}"
}
publish 1.0.0
publish 2.0.0
publish 2.1.0 --crash-at-start
publish 2.2.0 --error-rate 0.3 --seed 7
publish 3.0.0
publish 4.0.0
REPO_PORT=$((PORT + 1))
"$MUP" repo serve repo --listen 127.0.0.1:$REPO_PORT >serve.log 2>&1 &
SERVE_PID=$!
sleep 0.3
"$MUP" remote add origin http://127.0.0.1:$REPO_PORT --trusted-root repo/metadata/1.root.json \
  --root "$NODE" >/dev/null

start_agent() {
  "$MUP" agent --root "$NODE" >>agent.log 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 1 200); do
    "$MUP" services --root "$NODE" --json >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "the agent did not start:" >&2
  cat agent.log >&2
  exit 1
}
state_of() { sed -n 's/.*"state": *"\([^"]*\)".*/\1/p' | head -1; }
served() { curl -s -m 5 -D - -o /dev/null "http://$LISTEN/" | tr -d '\r' |
  sed -n 's/^[Xx]-[Mm]up-[Vv]ersion: *//p'; }

say "mup agent: it starts the proxy ($NODE/proxy.sock) and serves its API on $NODE/agent.sock"
start_agent
"$MUP" deploy web --version 1.0.0 --wait --root "$NODE"
echo "  GET http://$LISTEN/ answered by version $(served)"

say "load: 200 requests/s, open loop, half on keep-alive connections, half on new ones"
"$LOADGEN" --url "http://$LISTEN/" --rate 200 --duration 600 --keepalive-fraction 0.5 \
  --json load.json >load.log 2>&1 &
LOAD_PID=$!
sleep 1

say "deploy 2.0.0 under load (immediate: start, ready, switch all traffic, drain the old, stop it)"
"$MUP" deploy web --version 2.0.0 --strategy immediate --wait --root "$NODE"
echo "  now served by $(served)"
sleep 1

say "deploy 2.2.0, which fails 30% of its requests: the rollback judge rolls it back by itself"
"$MUP" deploy web --version 2.2.0 --wait --json --root "$NODE" >d-2.2.0.json || true
python3 - d-2.2.0.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
j = d.get("decision", {})
print(f"  deployment {d['id']}: {d['state']}; {j.get('verdict')} on {j.get('metric')} "
      f"({j.get('algorithm')}, against {j.get('against')}): statistic {j.get('statistic', 0):.1f} "
      f">= threshold {j.get('threshold', 0):.1f}; new {j.get('new')}, old {j.get('old')}")
t0 = next(s["at_ms"] for s in d["steps"] if s["state"] == "switch")
print(f"  decided {j.get('decided_at_ms', 0) - t0} ms after the switch; all traffic back on "
      f"{d['from_version']} {d.get('rolled_back_at_ms', 0) - j.get('decided_at_ms', 0)} ms later")
PY
echo "  now served by $(served)"

say "deploy 2.1.0, which crashes at start: the deployment fails, traffic never moves"
"$MUP" deploy web --version 2.1.0 --wait --root "$NODE" || true
echo "  still served by $(served)"

say "deploy 3.0.0 blue-green: the full new set beside the old, then all traffic at once"
"$MUP" deploy web --version 3.0.0 --strategy blue-green --keep-old 10m --soak 1s --wait --root "$NODE"
"$MUP" services --root "$NODE"
sleep 1

say "mup rollback web, inside the window: a weight flip back to the warm 2.0.0"
"$MUP" rollback web --root "$NODE"
echo "  now served by $(served)"
sleep 1

say "the agent SIGKILLed in the middle of deploying 4.0.0: the proxy and the instances serve on"
kill "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
MUP_FAULT_AT=deploy.state.drain-old MUP_FAULT_ACTION=kill "$MUP" agent --root "$NODE" >>agent.log 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 200); do "$MUP" services --root "$NODE" --json >/dev/null 2>&1 && break; sleep 0.05; done
ID=$("$MUP" deploy web --version 4.0.0 --json --root "$NODE" | sed -n 's/^  "id": *\([0-9]*\).*/\1/p')
wait "$AGENT_PID" 2>/dev/null || true
echo "  agent killed during deployment $ID (state drain-old); served by $(served) with no agent"
start_agent
for _ in $(seq 1 200); do
  s=$("$MUP" deployments "$ID" --json --root "$NODE" | state_of)
  [[ $s == committed || $s == failed || $s == rolled-back || $s == aborted ]] && break
  sleep 0.1
done
echo "  the next agent resumed it: deployment $ID $s; served by $(served)"

say "the load generator's verdict"
kill -INT "$LOAD_PID"
wait "$LOAD_PID" 2>/dev/null || true
LOAD_PID=
python3 - load.json <<'PY' 2>/dev/null || cat load.json
import json, sys
s = json.load(open(sys.argv[1]))
print(f"  sent {s['sent']}, completed {s['completed']}, non-2xx {s['non_2xx']}, "
      f"connect errors {s['connect_errors']}, timeouts {s['timeouts']}, other {s['other_errors']}")
print(f"  by version: {s['versions']}; latency p50 {s['latency_ms']['p50']} ms, "
      f"p99 {s['latency_ms']['p99']} ms")
PY

say "mup deployments, history, audit verify"
"$MUP" deployments --root "$NODE"
"$MUP" history web --root "$NODE" | head -12
"$MUP" audit verify --root "$NODE"
# Every failed answer must be one the bad version (2.2.0) gave itself before the judge
# rolled it back; nothing else may fail, and no connection may break.
read -r FAILED BAD ERRS < <(python3 -c '
import json, sys
s = json.load(open("load.json"))
print(s["non_2xx"], s.get("non_2xx_versions", {}).get("2.2.0", 0),
      s["connect_errors"] + s["timeouts"] + s["other_errors"])')
if [[ ${FAILED:-1} != "${BAD:-0}" || ${ERRS:-1} != 0 ]]; then
  echo "agent-demo: requests failed under load (non-2xx $FAILED, of them from the bad 2.2.0: $BAD;" \
    "connection errors $ERRS)" >&2
  exit 1
fi
echo
echo "agent demo OK: the bad 2.2.0 answered $BAD failed requests before the judge rolled it back;"
echo "zero other failed requests across every deployment, rollback and agent kill"
