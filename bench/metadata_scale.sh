#!/usr/bin/env bash
# metadata_scale.sh -- repository metadata that scales with what changed (issue 12 item 1).
#
# K components x V versions of small synthetic packages are published into one signed
# repository (version-major order: every component gets 1.1.0, then every one 1.2.0, ...,
# so the last publish sees the whole history). Each publish is timed with GNU time
# (%e seconds, %M max RSS KiB). Then:
#   - first vs last publish: time and RSS (medians of the first and last K publishes, and
#     the single first and last); bar: last <= 1.2x first;
#   - what a fresh node's `mup check --component X --json` downloads (the files its tuf dir
#     holds afterwards, root.json excluded: it was given out of band); bar: <= 20 KB;
#   - repository metadata bytes on disk vs the live metadata (root chain + timestamp + the
#     snapshot the timestamp names + every role it names), before and after
#     `mup repo prune --keep 3`, and after a second prune (the next scheduled run, past the
#     grace: simulated with --grace 0s; the first keeps the files of the snapshots it and the
#     last publish replaced, for nodes reading them at that moment);
#     bar after prune: <= 2x. The node check is repeated after each.
#
# usage: bench/metadata_scale.sh [--quick] [--components K] [--versions V] [--until HH:MM]
#   --quick: 10 x 10. Default 100 x 100 (10,000 publishes). --until: stop publishing after
#   the version round that passes this UTC time (the report says how many were done).
# env: MUP (default build/src/cli/mup), OUT (default bench/results/metadata_scale.md),
#      WORK (default a temp dir, removed unless KEEP_WORK=1)
# needs: GNU time (/usr/bin/time, Debian package "time"), python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
MUP=${MUP:-$ROOT/build/src/cli/mup}
OUT=${OUT:-$ROOT/bench/results/metadata_scale.md}
K=100 V=100
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) K=10 V=10 ;;
    --components) K=$2; shift ;;
    --versions) V=$2; shift ;;
    --until)  # the next such time (tomorrow's when today's has passed)
      UNTIL=$(date -u -d "$2" +%s)
      [ "$UNTIL" -gt "$(date -u +%s)" ] || UNTIL=$((UNTIL + 86400))
      shift ;;
    *) echo "usage: $0 [--quick] [--components K] [--versions V]" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$MUP" ] || { echo "no mup binary at $MUP (ninja -C build mup)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
WORK=${WORK:-$(mktemp -d /tmp/mup-metadata-scale.XXXXXX)}
mkdir -p "$WORK"
[ "${KEEP_WORK:-0}" = 1 ] || trap 'kill "${SERVER:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
REPO=$WORK/repo KEYS=$WORK/keys TSV=$WORK/publish.tsv

"$MUP" repo init "$REPO" --keys "$KEYS" > /dev/null
printf 'n\tcomponent\tversion\tseconds\tmax_rss_kb\trole_bytes\n' > "$TSV"

# A small tree per publish: a 4 KiB file that changes with each version, one that does not.
make_src() {  # component version
  local d=$WORK/src
  rm -rf "$d"; mkdir -p "$d/bin" "$d/etc"
  head -c 4096 /dev/urandom > "$d/bin/tool"
  printf '%s %s\n' "$1" "$2" > "$d/etc/version"
  [ -f "$WORK/common" ] || head -c 16384 /dev/urandom > "$WORK/common"
  cp "$WORK/common" "$d/etc/common"
}

log "publishing $K components x $V versions into $REPO"
n=0
START=$(date +%s)
for ((v = 1; v <= V; v++)); do
  for ((k = 1; k <= K; k++)); do
    c=comp-$k ver=1.$v.0
    make_src "$c" "$ver"
    t0=$(date +%s%N)
    /usr/bin/time -f '%e,%M' -o "$WORK/time" "$MUP" publish "$REPO" "$WORK/src" --keys "$KEYS" \
      --component "$c" --version "$ver" --type application --json > "$WORK/pub.json"
    t1=$(date +%s%N)
    n=$((n + 1))
    IFS=, read -r _ rss < "$WORK/time"  # GNU time's %e has 10 ms steps: wall time from date
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
    rv=$(sed -n 's/.*"role_version": \([0-9]*\).*/\1/p' "$WORK/pub.json")
    printf '%d\t%s\t%s\t%s\t%s\t%d\n' "$n" "$c" "$ver" "$secs" "$rss" \
      "$(stat -c %s "$REPO/metadata/$rv.$c.json")" >> "$TSV"
  done
  log "version 1.$v.0 of every component published ($n publishes, $(( $(date +%s) - START ))s)"
  if [ -n "${UNTIL:-}" ] && [ "$(date -u +%s)" -ge "$UNTIL" ] && [ "$v" -lt "$V" ]; then
    log "stopping after $v of $V versions (--until)"; PLANNED_V=$V; V=$v; break
  fi
done

# Live metadata (root chain + timestamp + the current snapshot + what it names) vs disk.
metadata_bytes() {
  python3 - "$REPO/metadata" <<'EOF'
import json, os, sys
m = sys.argv[1]
size = lambda f: os.path.getsize(os.path.join(m, f))
ts = json.load(open(os.path.join(m, "timestamp.json")))
sv = ts["signed"]["meta"]["snapshot.json"]["version"]
snap = json.load(open(os.path.join(m, f"{sv}.snapshot.json")))
live = size("timestamp.json") + size(f"{sv}.snapshot.json")
live += sum(size(f) for f in os.listdir(m) if f.endswith(".root.json"))
for name, meta in snap["signed"]["meta"].items():
    live += size(f"{meta['version']}.{name}")
disk = sum(size(f) for f in os.listdir(m))
print(disk, live, len(os.listdir(m)))
EOF
}

# What a fresh node's check of one component downloads.
node_check_bytes() {  # label
  local node=$WORK/node-$1
  rm -rf "$node"
  "$MUP" check --repo "$URL" --trusted-root "$REPO/metadata/1.root.json" --root "$node" \
    --component comp-1 --json > "$WORK/check-$1.json"
  local files bytes
  files=$(cd "$node/tuf" && ls | grep -v '^root.json$' | tr '\n' ' ')
  bytes=$(cd "$node/tuf" && ls | grep -v '^root.json$' | xargs stat -c %s | paste -sd+ | bc)
  # The same node checks again after another component's publish: what it downloads then
  # (the files its tuf dir rewrote). Only at the end: the publish changes the repository.
  if [ "$1" != after2 ]; then echo "$bytes|$files|"; return; fi
  make_src comp-2 9.0.0
  "$MUP" publish "$REPO" "$WORK/src" --keys "$KEYS" --component comp-2 --version 9.0.0 \
    --type application > /dev/null
  touch -d '1 minute ago' "$node/tuf/"*
  local mark=$node/.mark; touch "$mark"; sleep 1.1
  "$MUP" check --repo "$URL" --root "$node" --component comp-1 --json > /dev/null
  local again
  again=$(cd "$node/tuf" && find . -type f -newer "$mark" -printf '%s\n' | paste -sd+ | bc)
  echo "$bytes|$files|${again:-0}"
}

PORT=$((20000 + RANDOM % 20000))
"$MUP" repo serve "$REPO" --listen "127.0.0.1:$PORT" > "$WORK/serve.log" 2>&1 &
SERVER=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 50); do curl -sf "$URL/metadata/timestamp.json" > /dev/null && break; sleep 0.1; done

read -r DISK_BEFORE LIVE_BEFORE FILES_BEFORE < <(metadata_bytes)
CHECK_BEFORE=$(node_check_bytes before)
log "pruning --keep 3"
/usr/bin/time -f '%e,%M' -o "$WORK/prune.time" "$MUP" repo prune "$REPO" --keys "$KEYS" --keep 3 \
  --json > "$WORK/prune.json"
IFS=, read -r PRUNE_S PRUNE_RSS < "$WORK/prune.time"
"$MUP" repo verify "$REPO" > "$WORK/verify.txt"
read -r DISK_AFTER LIVE_AFTER FILES_AFTER < <(metadata_bytes)
CHECK_AFTER=$(node_check_bytes after)
log "pruning again, past the grace (--grace 0s): the replaced snapshots' files go"
"$MUP" repo prune "$REPO" --keys "$KEYS" --keep 3 --grace 0s --json > "$WORK/prune2.json"
"$MUP" repo verify "$REPO" > "$WORK/verify2.txt"
read -r DISK_AFTER2 LIVE_AFTER2 FILES_AFTER2 < <(metadata_bytes)
CHECK_AFTER2=$(node_check_bytes after2)

python3 - "$TSV" "$K" "$V" "$OUT" "$WORK" "${PLANNED_V:-$V}" <<EOF
import json, statistics, sys
tsv, K, V, out, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
planned = int(sys.argv[6])
rows = [l.rstrip("\n").split("\t") for l in open(tsv)][1:]
secs = [float(r[3]) for r in rows]; rss = [int(r[4]) for r in rows]; role = [int(r[5]) for r in rows]
first, last = slice(0, K), slice(len(rows) - K, len(rows))
med = lambda xs: statistics.median(xs)
t1, t2 = med(secs[first]), med(secs[last]); r1, r2 = med(rss[first]), med(rss[last])
# The first round creates each component's delegation (top-level targets rewritten); the
# second is the first whose publishes touch only their own role: both are shown.
second = slice(K, 2 * K) if len(rows) >= 2 * K else first
t1b, r1b = med(secs[second]), med(rss[second])
prune = json.load(open(f"{work}/prune.json"))
prune2 = json.load(open(f"{work}/prune2.json"))
cb, fb, ib = "$CHECK_BEFORE".split("|"); ca, fa, ia = "$CHECK_AFTER".split("|"); c2, f2, i2 = "$CHECK_AFTER2".split("|")
disk_b, live_b, disk_a, live_a = $DISK_BEFORE, $LIVE_BEFORE, $DISK_AFTER, $LIVE_AFTER
disk_2, live_2 = $DISK_AFTER2, $LIVE_AFTER2
verdict = lambda ok: "**pass**" if ok else "**FAIL**"
# Trend: median publish time per tenth of the run.
tenth = max(1, len(rows) // 10)
trend = [(i * tenth + 1, med(secs[i * tenth:(i + 1) * tenth]), med(rss[i * tenth:(i + 1) * tenth]))
         for i in range(len(rows) // tenth)]
lines = [
 "# Metadata that scales with what changed (issue 12 item 1)", "",
 f"Command: \`{'WORK=' + work + ' ' if work.startswith('/dev/shm') else ''}bench/metadata_scale.sh{' --quick' if (K, planned) == (10, 10) else ''}"
 f"{'' if (K, planned) in ((10, 10), (100, 100)) else f' --components {K} --versions {planned}'}"
 f"{' --until ...' if planned != V else ''}\` "
 f"({K} components x {V} versions = {len(rows)} publishes of a small tree: a 4 KiB file that "
 "changes per version and a 16 KiB one that does not; release build, 2 shared cores"
 + ("; the repository on tmpfs, so that the publish's syncfs does not measure the shared disk's other writers" if work.startswith("/dev/shm") else "") + ")"
 + (f"; **stopped by --until after {V} of the {planned} versions** per component" if planned != V else "") + ".", "",
 "| measure | first | last | ratio | bar |", "|---|---|---|---|---|",
 f"| publish time, median of {K} publishes (s) | {t1:.3f} | {t2:.3f} | {t2/t1:.2f} | <= 1.2 {verdict(t2 <= 1.2 * t1)} |",
 f"| publish max RSS, median of {K} (KiB) | {r1:.0f} | {r2:.0f} | {r2/r1:.2f} | <= 1.2 {verdict(r2 <= 1.2 * r1)} |",
 f"| publish time, median of the second round (s) | {t1b:.3f} | {t2:.3f} | {t2/t1b:.2f} | |",
 f"| publish max RSS, median of the second round (KiB) | {r1b:.0f} | {r2:.0f} | {r2/r1b:.2f} | |",
 f"| single publish time (s) | {secs[0]:.3f} | {secs[-1]:.3f} | {secs[-1]/secs[0]:.2f} | |",
 f"| single publish max RSS (KiB) | {rss[0]} | {rss[-1]} | {rss[-1]/rss[0]:.2f} | |",
 f"| the component's role file (bytes) | {role[0]} | {role[-1]} | | grows with that component's versions only |",
 "", "| repository metadata | before prune | after \`repo prune --keep 3\` | after a second prune (\`--grace 0s\`) | bar |", "|---|---|---|---|---|",
 f"| on disk (bytes) | {disk_b:,} | {disk_a:,} | {disk_2:,} | |",
 f"| live: root chain + timestamp + current snapshot + the roles it names (bytes) | {live_b:,} | {live_a:,} | {live_2:,} | |",
 f"| disk / live | {disk_b/live_b:.2f} | {disk_a/live_a:.2f} | {disk_2/live_2:.2f} | <= 2 after prune: {verdict(disk_a <= 2 * live_a)} after one, {verdict(disk_2 <= 2 * live_2)} after the second |",
 f"| files in metadata/ | {$FILES_BEFORE} | {$FILES_AFTER} | {$FILES_AFTER2} | |",
 f"| a fresh node's \`mup check --component comp-1 --json\`: metadata downloaded (bytes) | {int(cb):,} | {int(ca):,} | {int(c2):,} | <= 20 KB (20,480): {verdict(int(cb) <= 20480)} before, {verdict(int(ca) <= 20480)} after |",
 f"| the same node's next check of comp-1, after a publish of comp-2 (bytes) | | | {int(i2):,} | |",
 "", f"Files the node fetched (besides the root.json it was given): before prune \`{fb.strip()}\`, after \`{fa.strip()}\`.",
 f"Prune: {len(prune['versions'])} versions, {len(prune['metadata'])} metadata files "
 f"({prune['metadata_bytes']:,} bytes), {len(prune['indexes'])} tree indexes, {len(prune['pieces'])} pieces "
 f"({prune['piece_bytes']:,} bytes) removed in $PRUNE_S s (max RSS $PRUNE_RSS KiB); \`mup repo verify\` passed after it. "
 f"The second prune dropped {len(prune2['versions'])} versions and removed {len(prune2['metadata'])} metadata files "
 f"({prune2['metadata_bytes']:,} bytes): those only the snapshot before the first prune named.",
 "", "Trend (median per tenth of the run; time is wall time of the whole command, process start included):", "", "| from publish # | median time (s) | median max RSS (KiB) | role file at the end (bytes) |", "|---|---|---|---|",
] + [f"| {n} | {t:.4f} | {r:.0f} | {role[min(len(role), n - 1 + tenth) - 1]} |" for n, t, r in trend]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
log "results in $OUT"
