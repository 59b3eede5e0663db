#!/usr/bin/env bash
# While `mup install` of a large tree runs (default 400 MB of incompressible files), time
# `mup status` and `mup history` on the same node: readers take no lock and must answer
# at once. Prints the install time and each reader's median / max latency in ms.
#   bench/readers_during_install.sh [MUP_BINARY] [SIZE_MB]
set -euo pipefail
MUP=${1:-build/src/cli/mup}
MB=${2:-400}
MUP=$(readlink -f "$MUP")
W=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/src"
for i in $(seq 1 $((MB / 4))); do head -c $((4 << 20)) /dev/urandom > "$W/src/f$i.bin"; done
"$MUP" repo init "$W/repo" --keys "$W/keys" > /dev/null
"$MUP" publish "$W/repo" "$W/src" --keys "$W/keys" --component big --version 1.0.0 \
  --type application > /dev/null
PORT=$((20000 + RANDOM % 20000))
"$MUP" repo serve "$W/repo" --listen 127.0.0.1:$PORT > /dev/null 2>&1 &
SERVER=$!
sleep 0.5
"$MUP" remote add origin http://127.0.0.1:$PORT --trusted-root "$W/repo/metadata/1.root.json" \
  --root "$W/node" > /dev/null
start=$(date +%s.%N)
"$MUP" install big --root "$W/node" > /dev/null 2>&1 &
INSTALL=$!
: > "$W/status.ms"
: > "$W/history.ms"
while kill -0 $INSTALL 2>/dev/null; do
  for cmd in status history; do
    t0=$(date +%s%N)
    "$MUP" $cmd --root "$W/node" > /dev/null
    echo $(( ($(date +%s%N) - t0) / 1000000 )) >> "$W/$cmd.ms"
  done
done
wait $INSTALL
end=$(date +%s.%N)
echo "install of ${MB} MB: $(awk -v a="$start" -v b="$end" "BEGIN { printf \"%.1f\", b - a }") s"
for cmd in status history; do
  n=$(wc -l < "$W/$cmd.ms")
  med=$(sort -n "$W/$cmd.ms" | awk -v n="$n" 'NR == int((n + 1) / 2)')
  max=$(sort -n "$W/$cmd.ms" | tail -1)
  echo "mup $cmd during the install: $n runs, median ${med} ms, max ${max} ms, all exit 0"
done
