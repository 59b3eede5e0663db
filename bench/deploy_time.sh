#!/usr/bin/env bash
# deploy_time.sh -- `mup deploy --wait` end to end (CLI to final state, wall clock), the
# default strategy (immediate), for two service trees:
#   web     the sample service (scripts/make-sample-tree.sh, 2 instances, ~2 MB tree);
#   svc-pg  the corpus pair of the node benches (Debian postgresql-15 15.18 -> 15.20, ~62 MB,
#           ~2,000 files) made a real service: bin/mup-sample-service and a mup-service.toml
#           that runs it from inside that tree are added to both v1 and v2 (postgres itself
#           is not started: its files are the payload the install moves).
# Per round (5 rounds, each on a fresh node root against the same served repository):
#   deploy v1 (first install, nothing to start from), v2 (install included: a new version,
#   fetched and applied incrementally), v1 again and v2 again (install excluded: versions
#   already installed). Reported: medians over the rounds of the wall time, of the
#   deployment's own duration, and of its install step.
# usage: bench/deploy_time.sh [BUILD] [--rounds R] [--no-pg] [--out FILE]
# env: CORPUS (default ../corpus beside the repository if it has pairs/svc-pg, else
#      ${TMPDIR:-/tmp}/mup-corpus, built there with ../shared/bench/make-corpus.sh svc-pg
#      when missing: apt-get download of 10 Debian packages; left in place as a cache).
# Needs: python3 (bench only), curl; for svc-pg: apt-get, dpkg-deb.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_ARG=build ROUNDS=5 PG=1 OUT=$HERE/results/deploy_time.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --no-pg) PG=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BUILD_ARG=$1; shift ;;
  esac
done
# shellcheck source=lib/agent_common.sh
source "$HERE/lib/agent_common.sh"
ab_init "$BUILD_ARG" deploy-time
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

PG_PAIR=
if ((PG)); then
  if [[ -z ${CORPUS:-} ]]; then
    CORPUS=$(dirname "$REPO_ROOT")/corpus
    [[ -d $CORPUS/pairs/svc-pg/v1 ]] || CORPUS=${TMPDIR:-/tmp}/mup-corpus
  fi
  if [[ ! -d $CORPUS/pairs/svc-pg/v2 ]]; then
    MAKE_CORPUS=$(dirname "$REPO_ROOT")/shared/bench/make-corpus.sh
    log "building the svc-pg pair into $CORPUS ($MAKE_CORPUS svc-pg)"
    bash "$MAKE_CORPUS" "$CORPUS" svc-pg >&2 || log "could not build svc-pg: skipped"
  fi
  [[ -d $CORPUS/pairs/svc-pg/v2 ]] && PG_PAIR=$CORPUS/pairs/svc-pg
fi

ab_repo
export INSTANCES=2
LISTEN_WEB=127.0.0.1:$(ab_free_port)
LISTEN_PG=127.0.0.1:$(ab_free_port)
LISTEN=$LISTEN_WEB "$REPO_ROOT/scripts/make-sample-tree.sh" "$WORK/web-1" 1.0.0
LISTEN=$LISTEN_WEB "$REPO_ROOT/scripts/make-sample-tree.sh" "$WORK/web-2" 2.0.0
ab_publish "$WORK/web-1" web 1.0.0
ab_publish "$WORK/web-2" web 2.0.0
COMPONENTS=(web)
declare -A V1=([web]=1.0.0) V2=([web]=2.0.0) DESC
DESC[web]="sample service ($(du -sh --apparent-size "$WORK/web-1" | cut -f1) tree, 2 instances)"
if [[ -n $PG_PAIR ]]; then
  for v in 1 2; do
    t=$WORK/pg-$v
    cp -a "$PG_PAIR/v$v" "$t"
    # A service tree: the sample service's binary and service file added inside it.
    LISTEN=$LISTEN_PG INSTANCES=1 "$REPO_ROOT/scripts/make-sample-tree.sh" "$WORK/pg-svc-$v" "15.$((16 + 2 * v)).0"
    mkdir -p "$t/bin"
    cp "$WORK/pg-svc-$v/bin/mup-sample-service" "$t/bin/"
    cp "$WORK/pg-svc-$v/mup-service.toml" "$WORK/pg-svc-$v/VERSION" "$t/"
  done
  log "publishing svc-pg 15.18.0 and 15.20.0 ($(du -sh --apparent-size "$WORK/pg-1" | cut -f1) each)"
  ab_publish "$WORK/pg-1" svc-pg 15.18.0
  ab_publish "$WORK/pg-2" svc-pg 15.20.0
  COMPONENTS+=(svc-pg)
  V1[svc-pg]=15.18.0 V2[svc-pg]=15.20.0
  DESC[svc-pg]="svc-pg pair ($(du -sh --apparent-size "$WORK/pg-1" | cut -f1), $(find "$WORK/pg-1" -type f | wc -l) files, 1 instance of the sample service inside)"
fi

RES=$WORK/results.tsv
: >"$RES"
# deploy COMPONENT VERSION KIND: one timed `mup deploy --wait`, a line in results.tsv.
timed_deploy() {
  local c=$1 v=$2 kind=$3 t0 t1
  t0=$(ab_ms)
  "$MUP" deploy "$c" --version "$v" --wait --json --root "$NODE" >"$WORK/d.json" ||
    { echo "$c $v did not commit" >&2; cat "$WORK/d.json" >&2; exit 1; }
  t1=$(ab_ms)
  python3 - "$WORK/d.json" "$c" "$kind" $((t1 - t0)) >>"$RES" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
steps = d.get("steps", [])
inst = 0
for a, b in zip(steps, steps[1:]):
    if a["state"] == "install":
        inst = b["at_ms"] - a["at_ms"]
assert d["state"] == "committed", d["state"]
print(sys.argv[2], sys.argv[3], sys.argv[4], d["duration_ms"], inst, sep="\t")
PY
}

BASE=$WORK/nodes
for ((r = 1; r <= ROUNDS; r++)); do
  NODE=$BASE/$r
  "$MUP" remote add origin "$REPO_URL" --trusted-root "$WORK/repo/metadata/1.root.json" \
    --root "$NODE" >/dev/null
  ab_start_agent
  for c in "${COMPONENTS[@]}"; do
    timed_deploy "$c" "${V1[$c]}" first
    timed_deploy "$c" "${V2[$c]}" new
    timed_deploy "$c" "${V1[$c]}" installed
    timed_deploy "$c" "${V2[$c]}" installed2
  done
  log "round $r/$ROUNDS: $(tail -n $((4 * ${#COMPONENTS[@]})) "$RES" | awk '{printf "%s %s %s ms; ", $1, $2, $3}')"
  ab_kill_agent
  ab_stop_data_plane
  sleep 0.3
done

mkdir -p "$(dirname "$OUT")"
{
  echo "# deploy_time.sh — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores shared with other work ($(sed -n 's/^model name.*: //p' /proc/cpuinfo | head -1)), $(uname -sr)."
  echo "Command: \`bench/deploy_time.sh $BUILD_ARG --rounds $ROUNDS\`; strategy immediate (the default), repository on loopback."
  for c in "${COMPONENTS[@]}"; do echo "- $c: ${DESC[$c]}"; done
  echo
  python3 - "$RES" "$ROUNDS" <<'PY'
import sys
from statistics import median
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
kinds = [("first", "first install (empty node)"), ("new", "new version: install included"),
         ("installed", "installed version: install excluded")]
print("| service | deploy | n | wall median (min–max) ms | deployment duration median ms | install step median ms | goal < 5 min |")
print("|---|---|---|---|---|---|---|")
for comp in dict.fromkeys(r[0] for r in rows):
    for k, name in kinds:
        sel = [r for r in rows if r[0] == comp and (r[1] == k or (k == "installed" and r[1] == "installed2"))]
        if k == "installed":
            sel = [r for r in sel if r[1] == "installed"]  # back to v1: one per round
        w = [int(r[2]) for r in sel]
        dur = [int(r[3]) for r in sel]
        ins = [int(r[4]) for r in sel]
        if not w:
            continue
        ok = "yes" if median(w) < 300000 else "NO"
        print(f"| {comp} | {name} | {len(w)} | {median(w):.0f} ({min(w)}–{max(w)}) | {median(dur):.0f} | {median(ins):.0f} | {ok} |")
PY
} | tee "$OUT"
