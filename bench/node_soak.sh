#!/usr/bin/env bash
# node_soak.sh -- does a node's cost follow what is live, not its history? (issue 12)
#
# Cycles of one small component (a ~4.7 MB tree, a few files changing per version): publish
# 1.0.N (--delta-from 1.0.N-1), `mup install`, `mup rollback`, `mup activate 1.0.N`, and `mup gc`
# every 10 cycles; after each cycle the node's disk (du, hard links once) and file count, and
# each command's wall time and max RSS (GNU time). Prints the figures at cycle 50 and at the
# end, their ratio (the bar: flat within 10% after the first 50 cycles), and a trend table.
#
# With --prune-keep K, the publisher also runs `mup repo prune --keep K` every 10 cycles (before
# the node's gc), as a repository that does not keep every version forever would: without it
# the node's cached copy of the component's targets role grows by ~0.6 kB per version ever
# published.
#
# usage: bench/node_soak.sh [--cycles N] [--prune-keep K] [--out FILE]   (default 1000 cycles)
# env: MUP (build/src/cli/mup), WORK (a temp dir under $TMPDIR, removed at exit unless
#      KEEP_WORK=1),
#      PUBLISH_ARGS (extra publish flags, e.g. "--cold-pack-level 3" for a shorter run),
#      GC_ARGS (extra flags of the node's gc, e.g. "--history-keep 150 --audit-keep 150")
# needs: GNU time (Debian package time), python3, a Release build
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
MUP=${MUP:-$ROOT/build/src/cli/mup}
CYCLES=1000 OUT= PRUNE_KEEP=
while [ $# -gt 0 ]; do
  case $1 in
    --cycles) CYCLES=$2; shift 2 ;;
    --prune-keep) PRUNE_KEEP=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
[ -x "$MUP" ] || { echo "no mup binary at $MUP: run make build" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mup-soak.XXXXXX")}
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2> /dev/null || true
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
TSV=$WORK/cycles.tsv

# The tree: 40 files of ~120 KB of text and binary; version N rewrites 3 of them.
python3 - "$WORK/src" << 'EOF'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(1)
words = [''.join(rnd.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rnd.randint(2, 9))) for _ in range(3000)]
for i in range(40):
    d = os.path.join(root, f"d{i % 5}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        if i % 3 == 0:
            f.write(rnd.randbytes(120000))
        else:
            f.write(' '.join(rnd.choice(words) for _ in range(20000)).encode()[:120000])
EOF
mutate() {  # version N: rewrite 3 files
  python3 - "$WORK/src" "$1" << 'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(n)
for i in rnd.sample(range(40), 3):
    with open(os.path.join(root, f"d{i % 5}", f"f{i}"), "r+b") as f:
        f.seek(rnd.randrange(0, 100000))
        f.write(rnd.randbytes(rnd.randint(100, 8000)))
EOF
}

"$MUP" repo init "$WORK/repo" --keys "$WORK/keys" > /dev/null
port=$((20000 + RANDOM % 20000))
"$MUP" repo serve "$WORK/repo" --listen 127.0.0.1:$port > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do grep -q serving "$WORK/serve.log" && break; sleep 0.1; done
"$MUP" remote add origin http://127.0.0.1:$port --trusted-root "$WORK/repo/metadata/1.root.json" \
  --root "$WORK/node" > /dev/null
timed() {  # NAME CMD... -> "seconds,rss_kib" on stdout
  /usr/bin/time -f '%e,%M' -o "$WORK/time.out" "$@" > /dev/null
  cat "$WORK/time.out"
}
printf 'cycle\tdisk_bytes\tfiles\tpublish_s\tpublish_kib\tinstall_s\tinstall_kib\trollback_s\tactivate_s\tgc_s\n' > "$TSV"
for ((n = 1; n <= CYCLES; n++)); do
  mutate "$n"
  extra=()
  [ "$n" -gt 1 ] && extra=(--delta-from "1.0.$((n - 1))")
  pub=$(timed "$MUP" publish "$WORK/repo" "$WORK/src" --keys "$WORK/keys" --component soak \
    --version "1.0.$n" --type application "${extra[@]}" ${PUBLISH_ARGS:-} --json)
  ins=$(timed "$MUP" install soak --root "$WORK/node")
  rb=-
  [ "$n" -gt 1 ] && rb=$(timed "$MUP" rollback soak --root "$WORK/node" | cut -d, -f1)
  act=$(timed "$MUP" activate soak "1.0.$n" --root "$WORK/node" 2> /dev/null | cut -d, -f1 || echo -)
  gc=-
  if [ -n "$PRUNE_KEEP" ] && [ $((n % 10)) -eq 0 ]; then
    "$MUP" repo prune "$WORK/repo" --keys "$WORK/keys" --keep "$PRUNE_KEEP" > /dev/null
  fi
  # shellcheck disable=SC2086  # GC_ARGS is a list of flags
  [ $((n % 10)) -eq 0 ] && gc=$(timed "$MUP" gc --root "$WORK/node" ${GC_ARGS:-} | cut -d, -f1)
  disk=$(du -sb "$WORK/node" | cut -f1)
  files=$(find "$WORK/node" | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$disk" "$files" "${pub%,*}" "${pub#*,}" \
    "${ins%,*}" "${ins#*,}" "$rb" "$act" "$gc" >> "$TSV"
  [ $((n % 50)) -eq 0 ] && echo "cycle $n: node $disk bytes, $files files" >&2
done
[ -n "$OUT" ] && cp "$TSV" "$OUT.tsv"

python3 - "$TSV" "$CYCLES" "${PRUNE_KEEP:-}" "${GC_ARGS:-}" "${PUBLISH_ARGS:-}" << 'EOF' | tee ${OUT:+"$OUT.md"}
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
def at(n, k):  # the cycle after the last gc at or before n (a gc every 10 cycles)
    r = [x for x in rows if int(x['cycle']) <= n and int(x['cycle']) % 10 == 0]
    return float(r[-1][k]) if r else float(rows[min(n, len(rows)) - 1][k])
def med(lo, hi, k):
    v = [float(x[k]) for x in rows[lo:hi] if x[k] not in ('-', '')]
    return statistics.median(v) if v else float('nan')
n = len(rows); base = min(50, n)
prune, gc_args, pub_args = sys.argv[3:6]
print(f"{n} cycles (publish 1.0.N{' ' + pub_args if pub_args else ''}, install, rollback, activate; "
      f"every 10: {'repo prune --keep ' + prune + ', ' if prune else ''}gc{' ' + gc_args if gc_args else ''})\n")
print("| measure | at cycle %d | at the end | ratio | bar |" % base)
print("|---|---:|---:|---:|---|")
for k, name in (('disk_bytes', 'node disk after gc (bytes)'), ('files', 'node files after gc')):
    a, b = at(base, k), at(n, k)
    print(f"| {name} | {a:,.0f} | {b:,.0f} | {b / a:.3f} | within 10%: {'pass' if abs(b / a - 1) <= 0.10 else 'FAIL'} |")
    if n >= 500:  # once gc's history retention (500 operations, 1,000 audit records) is reached
        a = at(400, k)
        print(f"| {name}: at cycle 400 (instead of {base}) | {a:,.0f} | {b:,.0f} | {b / a:.3f} | |")
w = max(10, n // 10)
for k, name in (('publish_s', 'publish s'), ('publish_kib', 'publish max RSS KiB'), ('install_s', 'install s'),
                ('install_kib', 'install max RSS KiB'), ('rollback_s', 'rollback s'), ('activate_s', 'activate s')):
    a, b = med(base - min(base, w) , base, k), med(n - w, n, k)
    print(f"| {name} (median of {w} cycles) | {a:.3f} | {b:.3f} | {b / a:.2f} | |")
print("\n| cycles | node disk (bytes) | files | publish s | install s |")
print("|---|---:|---:|---:|---:|")
for lo in range(0, n, w):
    hi = min(n, lo + w)
    print(f"| {lo + 1}-{hi} | {float(rows[hi - 1]['disk_bytes']):,.0f} | {rows[hi - 1]['files']} | "
          f"{med(lo, hi, 'publish_s'):.3f} | {med(lo, hi, 'install_s'):.3f} |")
EOF
