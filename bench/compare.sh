#!/usr/bin/env bash
# compare.sh -- mup's incremental engine side by side with the peers, on the shared corpus,
# in one run.
#
# usage: bench/compare.sh [PAIR...]          (default: every pair of the corpus)
#
# For each pair (v1 -> v2) it measures, for mup:
#   bytes     `mup plan v2.idx --seed v1 --seed-index v1.idx --json`.bytes_to_fetch
#             (index delta + deltas + chunks a node holding v1 downloads)
#   make      `mup pack v2 --base v1.idx --base-tree v1` into a store already holding v1
#   apply     `mup unpack v2.idx --seed v1` (hashes the seed, links, applies, verifies)
#   nobase    `mup pack v2` into an empty store (throughput without a base)
# and, with ../shared/bench/measure.sh, the peers named in PEERS (bsdiff: the best transfer;
# casync: chunking make/extract). Each timed step is run REPS times (median wall, max RSS),
# once when it takes over SLOW_S seconds. Every mup rebuild is checked with diff -r / cmp.
#
# env: CORPUS (default ../corpus beside the repo; built with ../shared/bench/make-corpus.sh if missing)
#      RESULTS (default bench/results/<date>), REPS=3, SLOW_S=120, PEERS="bsdiff casync"
#      PEER_RESULTS=DIR: reuse peer rows from an earlier run instead of measuring them again
# needs: scripts/install-deps.sh --bench, a Release build in build/ (make build)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
SHARED=${SHARED:-$(dirname "$ROOT")/shared}
MUP=${MUP:-$ROOT/build/src/cli/mup}
CORPUS=${CORPUS:-$(dirname "$ROOT")/corpus}
RESULTS=$(realpath -m "${RESULTS:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}")
REPS=${REPS:-3}; SLOW_S=${SLOW_S:-120}
PEERS=${PEERS:-"bsdiff casync"}
export REPS SLOW_S
[ -x "$MUP" ] || { echo "no mup binary at $MUP: run make build" >&2; exit 1; }
if [ ! -d "$CORPUS/pairs" ]; then
  echo "building the corpus in $CORPUS (~3 GB, ~10 min)" >&2
  bash "$SHARED/bench/make-corpus.sh" "$CORPUS"
fi
mkdir -p "$RESULTS/logs"
TSV=$RESULTS/mup.tsv
printf 'pair\tbytes_to_fetch\tindex_bytes\tdelta_bytes\tchunk_bytes\tfull_bytes\tmake_s\tmake_rss_mb\tapply_s\tapply_rss_mb\tnobase_s\tnobase_mb_s\tverify\n' > "$TSV"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" | tee -a "$RESULTS/logs/compare.log" >&2; }

# timed CMD... : one run under GNU time; sets W (wall s) R (max RSS MB)
timed() {
  /usr/bin/time -f '%e %M' -o "$WORK/.time" "$@" > "$WORK/.out" 2> "$WORK/.err" ||
    { log "failed: $*"; tail -5 "$WORK/.err" >&2; return 1; }
  read -r W R < "$WORK/.time"; R=$((R / 1024))
}
# best PREP CMD... : REPS runs (PREP untimed before each); median wall, max RSS -> BW BR
best() {
  local prep=$1; shift
  local ws=() rmax=0 i
  for ((i = 1; i <= REPS; i++)); do
    $prep; timed "$@" || return 1
    ws+=("$W"); ((R > rmax)) && rmax=$R
    awk -v w="$W" -v s="$SLOW_S" 'BEGIN{exit !(w>s)}' && break
  done
  BW=$(printf '%s\n' "${ws[@]}" | sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
  BR=$rmax
}

PAIRS=${*:-$(cd "$CORPUS/pairs" && ls -1)}
for PAIR in $PAIRS; do
  P=$CORPUS/pairs/$PAIR WORK=$RESULTS/work/$PAIR
  rm -rf "$WORK"; mkdir -p "$WORK"
  log "== $PAIR: mup"
  "$MUP" pack "$P/v1" --store "$WORK/store" --index "$WORK/v1.idx" -q
  prep_make() { rm -rf "$WORK/store.v2"; cp -al "$WORK/store" "$WORK/store.v2"; rm -f "$WORK/v2.idx"; }
  best prep_make "$MUP" pack "$P/v2" --store "$WORK/store.v2" --index "$WORK/v2.idx" \
    --base "$WORK/v1.idx" --base-tree "$P/v1" --json
  make_s=$BW make_mb=$BR
  cp "$WORK/.out" "$RESULTS/logs/$PAIR.pack.json"
  "$MUP" plan "$WORK/v2.idx" --store "$WORK/store.v2" --seed "$P/v1" --seed-index "$WORK/v1.idx" --json \
    > "$RESULTS/logs/$PAIR.plan.json"
  j() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$RESULTS/logs/$PAIR.plan.json" "$1"; }
  prep_apply() { rm -rf "$WORK/out"; }
  best prep_apply "$MUP" unpack "$WORK/v2.idx" --store "$WORK/store.v2" --seed "$P/v1" --out "$WORK/out" -q
  apply_s=$BW apply_mb=$BR
  if [ -d "$P/v2" ]; then verify=$(diff -r --no-dereference -q "$WORK/out" "$P/v2" > /dev/null && echo ok || echo FAIL)
  else verify=$(cmp -s "$WORK/out" "$P/v2" && echo ok || echo FAIL); fi
  prep_nobase() { rm -rf "$WORK/store.empty" "$WORK/nb.idx"; }
  best prep_nobase "$MUP" pack "$P/v2" --store "$WORK/store.empty" --index "$WORK/nb.idx" -q
  nobase_s=$BW
  size=$(du -sb --apparent-size "$P/v2" | cut -f1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$PAIR" "$(j bytes_to_fetch)" "$(j index_bytes)" \
    "$(j delta_bytes)" "$(j chunk_bytes)" "$(j full_bytes)" "$make_s" "$make_mb" "$apply_s" "$apply_mb" "$nobase_s" \
    "$(awk -v s="$size" -v t="$nobase_s" 'BEGIN{printf "%.0f", s/1e6/t}')" "$verify" >> "$TSV"
  log "   bytes $(j bytes_to_fetch) make ${make_s}s ${make_mb}MB apply ${apply_s}s ${apply_mb}MB nobase ${nobase_s}s verify $verify"
  rm -rf "$WORK"
  if [ -z "${PEER_RESULTS:-}" ]; then
    log "== $PAIR: peers ($PEERS)"
    METHODS="$PEERS" CASYNC_CHUNKS=65536 bash "$SHARED/bench/measure.sh" "$CORPUS" "$RESULTS/peers" "$PAIR" \
      2>> "$RESULTS/logs/peers.log"
  fi
done
PEER_TSV=${PEER_RESULTS:-$RESULTS/peers}/results.tsv

# The side-by-side table: ratios are mup / peer (below 1 is better for mup).
python3 - "$TSV" "$PEER_TSV" > "$RESULTS/table.md" <<'PY'
import csv, sys
mup = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
peers = {}
for r in csv.DictReader(open(sys.argv[2]), delimiter='\t'):
    peers[(r['pair'], r['method'])] = r
def f(x):
    try: return float(x)
    except (TypeError, ValueError): return None
def ratio(a, b):
    a, b = f(a), f(b)
    return f"{a / b:.2f}" if a is not None and b else "–"
print("| pair | mup bytes | bsdiff bytes | ratio | mup make s | bsdiff make s | ratio | make RSS MB | "
      "mup apply s | casync apply s | ratio | mup pack, no base s | casync make s | ratio | verify |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for m in mup:
    b = peers.get((m['pair'], 'bsdiff'), {})
    c = peers.get((m['pair'], 'casync-65536'), {})
    print(f"| {m['pair']} | {int(m['bytes_to_fetch']):,} | {b.get('transfer_bytes', '–')} | "
          f"{ratio(m['bytes_to_fetch'], b.get('transfer_bytes'))} | {m['make_s']} | {b.get('make_wall_s', '–')} | "
          f"{ratio(m['make_s'], b.get('make_wall_s'))} | {m['make_rss_mb']} | {m['apply_s']} | "
          f"{c.get('apply_wall_s', '–')} | {ratio(m['apply_s'], c.get('apply_wall_s'))} | {m['nobase_s']} | "
          f"{c.get('make_wall_s', '–')} | {ratio(m['nobase_s'], c.get('make_wall_s'))} | {m['verify']} |")
PY
cat "$RESULTS/table.md"
log "done: $RESULTS/table.md"
