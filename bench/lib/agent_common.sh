# Shared by the agent benches (bench/agent_*.sh, bench/deploy_time.sh): a temp dir with a
# signed repository served on loopback, a node with `mup agent`, and a cleanup that stops
# everything the bench started, the data plane included (the proxy and the instances
# outlive the agent by design, so the bench kills them itself). Sourced, not run.
#   ab_init BUILD NAME     sets MUP SAMPLE LOADGEN WORK NODE; installs the EXIT trap
#   ab_repo                repo init + serve + remote add (REPO_URL)
#   ab_publish TREE COMPONENT VERSION
#   ab_start_agent [ENV=VALUE...]   starts `mup agent` (AGENT_PID), waits until it answers
#   ab_kill_agent          SIGKILL, reaped
#   ab_bg CMD...           runs CMD in the background, remembered for the cleanup
#   ab_ms                  wall clock, unix ms

ab_init() {
  local build=$1 name=$2
  BUILD=$(realpath "$build")
  MUP=$BUILD/src/cli/mup
  SAMPLE=$BUILD/tools/sample-service/mup-sample-service
  LOADGEN=$BUILD/bench/loadgen/mup-loadgen
  BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
  local b
  for b in "$MUP" "$SAMPLE" "$LOADGEN"; do
    [[ -x $b ]] || {
      echo "$name: $b is not built (ninja -C $build mup mup-sample-service mup-loadgen)" >&2
      exit 1
    }
  done
  command -v python3 >/dev/null || { echo "$name: needs python3 (scripts/install-deps.sh --bench)" >&2; exit 1; }
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/mup-$name.XXXXXX")
  NODE=$WORK/node
  AGENT_PID=
  AB_BG_PIDS=()
  export MUP_SAMPLE_SERVICE=$SAMPLE
  trap ab_cleanup EXIT
  trap 'exit 130' INT TERM
}

ab_stop_data_plane() {
  local f pid
  for f in "$NODE"/run/instances/*.json; do
    [[ -f $f ]] || continue
    pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$f" | head -1)
    [[ -n $pid && $pid -gt 0 ]] && kill -KILL -- "-$pid" 2>/dev/null
  done
  if [[ -f $NODE/proxy/proxy.pid ]]; then
    pid=$(cat "$NODE/proxy/proxy.pid")
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
  fi
}

ab_cleanup() {
  set +e
  local p
  for p in "${AB_BG_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  if [[ -n ${AGENT_PID:-} ]]; then
    kill -KILL "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
  fi
  [[ -n ${NODE:-} ]] && ab_stop_data_plane
  for p in "${AB_BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [[ -n ${WORK:-} && -d $WORK ]] && rm -rf "$WORK"
}

ab_bg() {
  "$@" &
  AB_LAST_PID=$!
  AB_BG_PIDS+=("$AB_LAST_PID")
}

ab_ms() { date +%s%3N; }

ab_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

ab_repo() {
  "$MUP" repo init "$WORK/repo" --keys "$WORK/keys" >/dev/null
  local port
  port=$(ab_free_port)
  ab_bg "$MUP" repo serve "$WORK/repo" --listen "127.0.0.1:$port" >"$WORK/serve.log" 2>&1
  REPO_URL=http://127.0.0.1:$port
  local _
  for _ in $(seq 1 100); do
    curl -s -o /dev/null -m 1 "$REPO_URL/" && break
    sleep 0.05
  done
  "$MUP" remote add origin "$REPO_URL" --trusted-root "$WORK/repo/metadata/1.root.json" \
    --root "$NODE" >/dev/null
}

# ab_publish TREE COMPONENT VERSION: the repository is served live, a publish shows at once.
ab_publish() {
  "$MUP" publish "$WORK/repo" "$1" --keys "$WORK/keys" --component "$2" --version "$3" \
    --type service >/dev/null
}

ab_start_agent() {
  env "$@" "$MUP" agent --root "$NODE" >>"$WORK/agent.log" 2>&1 &
  AGENT_PID=$!
  local _
  for _ in $(seq 1 400); do
    "$MUP" services --root "$NODE" --json >/dev/null 2>&1 && return 0
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.025
  done
  echo "the agent did not start:" >&2
  tail -20 "$WORK/agent.log" >&2
  exit 1
}

ab_kill_agent() {
  [[ -n $AGENT_PID ]] || return 0
  kill -KILL "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=
}

# The state of deployment ID, through the agent.
ab_state() {
  "$MUP" deployments "$1" --json --root "$NODE" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("state",""))' 2>/dev/null || true
}

# Polls deployment ID until it is final; prints its JSON to FILE.
ab_wait_final() {
  local id=$1 out=$2 _ s
  for _ in $(seq 1 1200); do
    if "$MUP" deployments "$id" --json --root "$NODE" >"$out.tmp" 2>/dev/null; then
      s=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("final" if d.get("final") else d.get("state",""))' "$out.tmp")
      if [[ $s == final ]]; then
        mv "$out.tmp" "$out"
        return 0
      fi
    fi
    sleep 0.1
  done
  echo "deployment $id did not finish in 120 s" >&2
  return 1
}

# Field F of a JSON file.
ab_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
