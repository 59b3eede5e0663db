#!/usr/bin/env bash
# agent_overhead.sh -- what the agent costs on a node: 10 services (components svc0..svc9,
# each a mup-sample-service tree with its own listen port, 1 instance), deployed; then
#   idle:    the agent alone for 30 s: CPU % of one core ((utime+stime) from /proc/PID/stat
#            over wall time), VmRSS and VmHWM;
#   deploys: a loop of immediate deployments, one service at a time (svc0, svc1, ...,
#            alternating 1.0.0 <-> 2.0.0; the first round installs 2.0.0), for 30 s: the
#            agent's and the proxy's CPU over that time, and the deployments done.
# usage: bench/agent_overhead.sh [BUILD] [--idle S] [--busy S] [--out FILE]
#   the table goes to stdout and to --out (default bench/results/agent_overhead.md)
# Needs: python3 (bench only), curl.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_ARG=build IDLE_S=30 BUSY_S=30 OUT=$HERE/results/agent_overhead.md SERVICES=10
while [[ $# -gt 0 ]]; do
  case $1 in
    --idle) IDLE_S=$2; shift 2 ;;
    --busy) BUSY_S=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BUILD_ARG=$1; shift ;;
  esac
done
# shellcheck source=lib/agent_common.sh
source "$HERE/lib/agent_common.sh"
ab_init "$BUILD_ARG" agent-overhead
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
TCK=$(getconf CLK_TCK)

ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }  # utime+stime
kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
pct() { python3 -c "import sys; print(f'{100.0 * int(sys.argv[1]) / int(sys.argv[3]) / (int(sys.argv[2]) / 1000.0):.2f}')" "$1" "$2" "$TCK"; }

ab_repo
export INSTANCES=1
for ((s = 0; s < SERVICES; s++)); do
  LISTEN=127.0.0.1:$(ab_free_port)
  export LISTEN
  for v in 1.0.0 2.0.0; do
    "$REPO_ROOT/scripts/make-sample-tree.sh" "$WORK/tree-svc$s-$v" "$v"
    ab_publish "$WORK/tree-svc$s-$v" "svc$s" "$v"
  done
done
log "published svc0..svc$((SERVICES - 1)) 1.0.0 and 2.0.0"
ab_start_agent
for ((s = 0; s < SERVICES; s++)); do
  "$MUP" deploy "svc$s" --version 1.0.0 --strategy immediate --wait --json --root "$NODE" >/dev/null
done
PROXY_PID=$(cat "$NODE/proxy/proxy.pid")
log "deployed; agent pid $AGENT_PID, proxy pid $PROXY_PID; settling 3 s"
sleep 3

log "idle for $IDLE_S s"
a0=$(ticks "$AGENT_PID") p0=$(ticks "$PROXY_PID") t0=$(ab_ms)
sleep "$IDLE_S"
a1=$(ticks "$AGENT_PID") p1=$(ticks "$PROXY_PID") t1=$(ab_ms)
IDLE_AGENT=$(pct $((a1 - a0)) $((t1 - t0)))
IDLE_PROXY=$(pct $((p1 - p0)) $((t1 - t0)))
IDLE_RSS=$(kb "$AGENT_PID" VmRSS)
IDLE_PROXY_RSS=$(kb "$PROXY_PID" VmRSS)

log "deployment loop for $BUSY_S s"
declare -A CURV
for ((s = 0; s < SERVICES; s++)); do CURV[$s]=1.0.0; done
a0=$(ticks "$AGENT_PID") p0=$(ticks "$PROXY_PID") t0=$(ab_ms)
deadline=$((t0 + BUSY_S * 1000)) j=0 DURS=() am=0 tm=0
while (($(ab_ms) < deadline)); do
  s=$((j % SERVICES))
  [[ ${CURV[$s]} == 1.0.0 ]] && v=2.0.0 || v=1.0.0
  d0=$(ab_ms)
  "$MUP" deploy "svc$s" --version "$v" --strategy immediate --wait --json --root "$NODE" >"$WORK/d.json"
  DURS+=($(($(ab_ms) - d0)))
  [[ $(ab_field "$WORK/d.json" state) == committed ]] || { echo "svc$s $v did not commit" >&2; cat "$WORK/d.json" >&2; exit 1; }
  CURV[$s]=$v
  j=$((j + 1))
  if ((j == SERVICES)); then am=$(ticks "$AGENT_PID") tm=$(ab_ms); fi
done
a1=$(ticks "$AGENT_PID") p1=$(ticks "$PROXY_PID") t1=$(ab_ms)
BUSY_WALL=$((t1 - t0))
BUSY_AGENT=$(pct $((a1 - a0)) "$BUSY_WALL")
BUSY_PROXY=$(pct $((p1 - p0)) "$BUSY_WALL")
BUSY_RSS=$(kb "$AGENT_PID" VmRSS)
# The first round installs 2.0.0 of every service; the later ones only switch.
R1_AGENT=$(pct $((am - a0)) $((tm - t0)))
R2_AGENT=$(pct $((a1 - am)) $((t1 - tm)))
per_dep() { python3 -c "import sys; print(f'{1000.0 * int(sys.argv[1]) / int(sys.argv[3]) / int(sys.argv[2]):.0f}')" "$1" "$2" "$TCK"; }
R1_MS=$(per_dep $((am - a0)) "$SERVICES")
R2_MS=$(per_dep $((a1 - am)) $((j - SERVICES)))
HWM=$(kb "$AGENT_PID" VmHWM)
MED=$(printf '%s\n' "${DURS[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
verdict() { python3 -c "import sys; print('yes' if float(sys.argv[1]) < float(sys.argv[2]) else 'NO')" "$1" "$2"; }
mkdir -p "$(dirname "$OUT")"
{
  echo "# agent_overhead.sh — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores shared with other work ($(sed -n 's/^model name.*: //p' /proc/cpuinfo | head -1)), $(uname -sr)."
  echo "Command: \`bench/agent_overhead.sh $BUILD_ARG --idle $IDLE_S --busy $BUSY_S\`; $SERVICES services (svc0..svc$((SERVICES - 1))), 1 instance each, no client traffic."
  echo "CPU % is of one core: (utime+stime) delta from /proc/PID/stat over the wall time."
  echo
  echo "| | agent | proxy | goal (agent) | met |"
  echo "|---|---|---|---|---|"
  echo "| idle ${IDLE_S} s: CPU % | $IDLE_AGENT | $IDLE_PROXY | < 1 % | $(verdict "$IDLE_AGENT" 1) |"
  echo "| idle: RSS (MB) | $(mb "$IDLE_RSS") | $(mb "$IDLE_PROXY_RSS") | < 50 MB | $(verdict "$(mb "$IDLE_RSS")" 50) |"
  echo "| deployment loop $((BUSY_WALL / 1000)) s ($j immediate deployments, median ${MED} ms each): CPU % | $BUSY_AGENT | $BUSY_PROXY | < 5 % | $(verdict "$BUSY_AGENT" 5) |"
  echo "| … first round ($SERVICES deployments, each installing 2.0.0, $(((tm - t0) / 1000)) s): CPU %, agent CPU ms per deployment | $R1_AGENT ($R1_MS ms/deployment) | | | |"
  echo "| … later rounds ($((j - SERVICES)) deployments to installed versions, $(((t1 - tm) / 1000)) s): CPU %, agent CPU ms per deployment | $R2_AGENT ($R2_MS ms/deployment) | | | |"
  echo "| after the loop: RSS / peak RSS (MB) | $(mb "$BUSY_RSS") / $(mb "$HWM") | | | |"
} | tee "$OUT"
