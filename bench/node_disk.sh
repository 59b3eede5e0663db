#!/usr/bin/env bash
# node_disk.sh -- a node's disk after install v1 -> v2 and gc, against the unique bytes of what
# it keeps (issue 12: <= 1.1x the kept trees plus their snapshots).
#
# usage: bench/node_disk.sh [PAIR...]      (default: svc-pg os)
# Per pair of the corpus: publish v1, v2 --delta-from v1 (PUBLISH_ARGS, default
# "--cold-pack-level 3": the node's disk does not depend on it), a node installs v1 and v2 over
# HTTP (with state snapshots), then `mup gc`. Reports du of the node (hard links counted once),
# of components/ + snapshots/ (the kept trees and their snapshots: the unique bytes), and of
# the piece cache, before and after gc.
# env: CORPUS (../corpus), MUP, OUT (bench/results/node_disk.md)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
MUP=${MUP:-$ROOT/build/src/cli/mup}
CORPUS=${CORPUS:-$(dirname "$ROOT")/corpus}
OUT=${OUT:-$ROOT/bench/results/node_disk.md}
PUBLISH_ARGS=${PUBLISH_ARGS:---cold-pack-level 3}
export MUP_ALLOW_SPECIAL_MODES=${MUP_ALLOW_SPECIAL_MODES:-application}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mup-disk.XXXXXX")
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2> /dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
du_b() { { du -sb "$@" 2> /dev/null || true; } | awk '{s += $1} END {print s + 0}'; }  # one du: links once
rows=()
for PAIR in ${*:-svc-pg os}; do
  P=$CORPUS/pairs/$PAIR W=$WORK/$PAIR
  mkdir -p "$W"
  "$MUP" repo init "$W/repo" --keys "$W/keys" > /dev/null
  # shellcheck disable=SC2086
  "$MUP" publish "$W/repo" "$P/v1" --keys "$W/keys" --component c --version 1.0.0 --type application $PUBLISH_ARGS > /dev/null 2>&1
  # shellcheck disable=SC2086
  "$MUP" publish "$W/repo" "$P/v2" --keys "$W/keys" --component c --version 2.0.0 --type application --delta-from 1.0.0 $PUBLISH_ARGS > /dev/null 2>&1
  port=$((20000 + RANDOM % 20000))
  "$MUP" repo serve "$W/repo" --listen 127.0.0.1:$port > "$W/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 50); do grep -q serving "$W/serve.log" && break; sleep 0.1; done
  N=$W/node
  "$MUP" remote add origin http://127.0.0.1:$port --trusted-root "$W/repo/metadata/1.root.json" --root "$N" > /dev/null
  mkdir -p "$N/state/c" && head -c 1000000 /dev/urandom > "$N/state/c/data"
  "$MUP" install c --version 1.0.0 --root "$N" > /dev/null 2>&1
  "$MUP" install c --version 2.0.0 --root "$N" > /dev/null 2>&1
  before=$(du_b "$N") cache_before=$(du_b "$N/chunks" "$N/deltas" "$N/indexes")
  "$MUP" gc --root "$N" --json > "$W/gc.json"
  node=$(du_b "$N") kept=$(du_b "$N/components" "$N/snapshots" "$N/state")
  cache=$(du_b "$N/chunks" "$N/deltas" "$N/indexes")
  kill "$SERVER" 2> /dev/null || true; wait "$SERVER" 2> /dev/null || true; SERVER=
  rows+=("| $PAIR | $before | $cache_before | $node | $cache | $kept | $(echo "scale=3; $node / $kept" | bc) |")
  rm -rf "$W"
done
{
  echo "Node disk after install v1 -> v2 (with state snapshots) and \`mup gc\` (bench/node_disk.sh; du, hard links once):"
  echo
  echo "| pair | node before gc | piece cache before gc | node after gc | piece cache after gc | kept trees + snapshots + state | ratio (bar <= 1.1) |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} | tee "$OUT"
