#!/usr/bin/env bash
# install.sh -- the node side measured on the shared corpus, side by side with the peers,
# in one run: `mup install` v1 -> v2 over HTTP on 127.0.0.1 (bytes fetched, wall time)
# against ostree (pull of a static delta: bytes, apply-offline time) and casync (extract
# with v1 as seed: bytes of the missing chunks + index, extract time), plus activation and
# rollback latency and staging cost (bench/node_bench).
#
# usage: bench/install.sh [PAIR...]          (default: every pair of the corpus)
#
# Per pair: publish v1, then v2 with --delta-from v1, into a signed repository; serve it
# with `mup repo serve`; a node installs v1, then (timed, REPS times, each on a fresh copy
# of the node holding v1) installs v2. A single-file pair (a model) is published as a
# one-file tree (model/weights). Every installed v2 is compared with diff -r / cmp.
# Peers: ../shared/bench/measure.sh with METHODS="ostree casync" on the same pair.
#
# env: CORPUS (default ../corpus), RESULTS (default bench/results/install-<date>), REPS=3,
#      PEER_RESULTS=DIR (reuse measure.sh rows from an earlier run), SWITCHES=100
# needs: scripts/install-deps.sh --bench, a Release build in build/ (make build)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
SHARED=${SHARED:-$(dirname "$ROOT")/shared}
MUP=${MUP:-$ROOT/build/src/cli/mup}
NODE_BENCH=${NODE_BENCH:-$ROOT/build/bench/node_bench}
CORPUS=${CORPUS:-$(dirname "$ROOT")/corpus}
RESULTS=$(realpath -m "${RESULTS:-$ROOT/bench/results/install-$(date -u +%Y%m%dT%H%M%SZ)}")
REPS=${REPS:-3}
SWITCHES=${SWITCHES:-100}
export REPS
[ -x "$MUP" ] || { echo "no mup binary at $MUP: run make build" >&2; exit 1; }
mkdir -p "$RESULTS/logs"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" | tee -a "$RESULTS/logs/install.log" >&2; }
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

PAIRS=${*:-$(cd "$CORPUS/pairs" && ls -1)}
TSV=$RESULTS/mup-install.tsv
printf 'pair\tv1_install_s\tbytes_fetched\tfull_bytes\tinstall_s\tfiles_linked\tbytes_written\tverify\n' > "$TSV"

if [ -z "${PEER_RESULTS:-}" ]; then
  log "peers: measure.sh METHODS='ostree casync'"
  METHODS="ostree casync" CASYNC_CHUNKS=65536 bash "$SHARED/bench/measure.sh" "$CORPUS" \
    "$RESULTS/peers" $PAIRS > "$RESULTS/logs/measure.out" 2>&1 || log "measure.sh failed (see logs)"
  PEER_RESULTS=$RESULTS/peers
fi

for PAIR in $PAIRS; do
  P=$CORPUS/pairs/$PAIR WORK=$RESULTS/work/$PAIR
  rm -rf "$WORK"; mkdir -p "$WORK"
  log "== $PAIR: mup publish"
  if [ -d "$P/v1" ]; then S1=$P/v1 S2=$P/v2; else
    mkdir -p "$WORK/t1/model" "$WORK/t2/model"
    ln "$P/v1" "$WORK/t1/model/weights" 2>/dev/null || cp "$P/v1" "$WORK/t1/model/weights"
    ln "$P/v2" "$WORK/t2/model/weights" 2>/dev/null || cp "$P/v2" "$WORK/t2/model/weights"
    S1=$WORK/t1 S2=$WORK/t2
  fi
  "$MUP" repo init "$WORK/repo" --keys "$WORK/keys" > /dev/null
  "$MUP" publish "$WORK/repo" "$S1" --keys "$WORK/keys" --component c --version 1.0.0 --type application --json > "$RESULTS/logs/$PAIR.pub1.json"
  "$MUP" publish "$WORK/repo" "$S2" --keys "$WORK/keys" --component c --version 2.0.0 --type application \
    --delta-from 1.0.0 --json > "$RESULTS/logs/$PAIR.pub2.json"
  port=$((20000 + RANDOM % 20000))
  "$MUP" repo serve "$WORK/repo" --listen 127.0.0.1:$port > "$WORK/serve.log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  for _ in $(seq 50); do grep -q serving "$WORK/serve.log" && break; sleep 0.1; done
  "$MUP" remote add origin http://127.0.0.1:$port --trusted-root "$WORK/repo/metadata/1.root.json" --root "$WORK/node1" > /dev/null
  t0=$(date +%s.%N)
  "$MUP" install c --version 1.0.0 --root "$WORK/node1" --no-snapshot > /dev/null
  v1_s=$(echo "$(date +%s.%N) - $t0" | bc)
  ws=()
  for ((i = 1; i <= REPS; i++)); do
    rm -rf "$WORK/node"; cp -a "$WORK/node1" "$WORK/node"
    sync
    t0=$(date +%s.%N)
    "$MUP" install c --root "$WORK/node" --no-snapshot --json | tail -1 > "$RESULTS/logs/$PAIR.install.json"
    ws+=("$(echo "$(date +%s.%N) - $t0" | bc)")
  done
  kill $server 2>/dev/null || true; wait $server 2>/dev/null || true
  install_s=$(printf '%s\n' "${ws[@]}" | median)
  verify=$(diff -r --no-dereference -q "$WORK/node/components/c/current/" "$S2" > /dev/null && echo ok || echo FAIL)
  read -r fetched full linked written < <(python3 -c "
import json,sys; j=json.load(open(sys.argv[1]))['install']
print(j['bytes_fetched'], j['full_bytes'], j['files_linked'], j['bytes_written'])" "$RESULTS/logs/$PAIR.install.json")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$PAIR" "$v1_s" "$fetched" "$full" "$install_s" "$linked" "$written" "$verify" >> "$TSV"
  log "$PAIR: fetched $fetched of $full in ${install_s}s ($verify)"
  rm -rf "$WORK/node" "$WORK/node1" "$WORK/t1" "$WORK/t2"
done

if [ -x "$NODE_BENCH" ]; then
  log "activation / rollback latency ($SWITCHES switches) and staging cost"
  "$NODE_BENCH" --switches "$SWITCHES" --dir "$RESULTS/work/node-bench" > "$RESULTS/node_bench.json"
fi

python3 - "$TSV" "$PEER_RESULTS/results.tsv" "$RESULTS" <<'EOF' | tee "$RESULTS/results.md"
import csv, json, os, sys
mup = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
peers = {}
if os.path.exists(sys.argv[2]):
    for r in csv.DictReader(open(sys.argv[2]), delimiter='\t'):
        peers[(r['pair'], r['method'])] = r
def f(x):
    try: return float(x)
    except: return None
def ratio(a, b):
    a, b = f(a), f(b)
    return f"{a/b:.2f}" if a is not None and b else "-"
print("| pair | mup bytes | ostree-delta bytes | ratio | casync bytes | ratio | mup install s | ostree apply s | ratio | casync extract s | ratio | verify |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for r in mup:
    o = peers.get((r['pair'], 'ostree-delta'), {})
    c = peers.get((r['pair'], 'casync-65536'), {})
    print(f"| {r['pair']} | {int(r['bytes_fetched']):,} | {o.get('transfer_bytes','-')} | {ratio(r['bytes_fetched'], o.get('transfer_bytes'))} "
          f"| {c.get('transfer_bytes','-')} | {ratio(r['bytes_fetched'], c.get('transfer_bytes'))} "
          f"| {float(r['install_s']):.2f} | {o.get('apply_wall_s','-')} | {ratio(r['install_s'], o.get('apply_wall_s'))} "
          f"| {c.get('apply_wall_s','-')} | {ratio(r['install_s'], c.get('apply_wall_s'))} | {r['verify']} |")
nb = os.path.join(sys.argv[3], 'node_bench.json')
if os.path.exists(nb):
    j = json.load(open(nb))
    print()
    print("| switch | n | median ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for k, v in j['switch'].items():
        print(f"| {k} | {v['n']} | {v['median_ms']:.3f} | {v['p99_ms']:.3f} | {v['max_ms']:.3f} |")
    print()
    print("| tree MB | changed MB | stage s | bytes written | files linked |")
    print("|---:|---:|---:|---:|---:|")
    for s in j['staging']:
        print(f"| {s['tree_mb']} | {s['changed_mb']} | {s['stage_s']:.3f} | {s['bytes_written']:,} | {s['files_linked']} |")
EOF
