#!/usr/bin/env bash
# update_transfer.sh -- what a node downloads, in how many requests and how long, over HTTP on
# 127.0.0.1, side by side in one run (issue 12, bars for cold installs and few requests):
#   - cold install of v2 (a node with nothing): mup (index + cold pack) against
#     `tar | zstd -19 --long` of the same tree, and against mup's pieces one by one (the
#     figure before cold packs: `mup plan` full_bytes);
#   - update v1 -> v2: mup install (index delta + update bundle) against ostree pull of its
#     static delta (both served by one nginx, requests and bytes from its access log), and
#     against mup's pieces one by one (before bundles: `mup plan --seed-index` bytes_to_fetch).
#
# usage: bench/update_transfer.sh [PAIR...]      (default: every pair of the corpus)
# env: CORPUS (../corpus), RESULTS (bench/results/update-transfer-<date>), REPS=3 (timed
#      installs and pulls, medians), ZSTD_T=0 (threads of the tar.zst peer), KEEP=1 keeps the
#      work dirs (repositories, nodes, nginx logs), OSTREE_DELTA_ARGS (default "--inline
#      --min-fallback-size=2048", as ../shared/bench/measure.sh; "" for ostree's defaults; the
#      model pairs need a delta without --inline: ostree pull refuses a superblock over 10 MB),
#      OSTREE=0 skips ostree, SETTLE=35 (seconds between making the timed runs' copies and
#      the first run: see the timed loop)
# needs: scripts/install-deps.sh --bench (nginx, ostree, zstd, python3), a Release build
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
MUP=${MUP:-$ROOT/build/src/cli/mup}
CORPUS=${CORPUS:-$(dirname "$ROOT")/corpus}
RESULTS=$(realpath -m "${RESULTS:-$ROOT/bench/results/update-transfer-$(date -u +%Y%m%dT%H%M%SZ)}")
REPS=${REPS:-3}
ZSTD_T=${ZSTD_T:-0}
[ -x "$MUP" ] || { echo "no mup binary at $MUP: run make build" >&2; exit 1; }
# The os tree carries setuid helpers (bin/su, ...): the node must allow them for its type.
export MUP_ALLOW_SPECIAL_MODES=${MUP_ALLOW_SPECIAL_MODES:-application}
for t in nginx ostree zstd python3; do
  command -v "$t" > /dev/null || { echo "needs $t: scripts/install-deps.sh --bench" >&2; exit 1; }
done
mkdir -p "$RESULTS/logs"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" | tee -a "$RESULTS/logs/run.log" >&2; }
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }
NGINX_PID=
cleanup() { [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2> /dev/null || true; }
trap cleanup EXIT

# One nginx, two roots: the mup repository and the ostree archive repository.
start_nginx() {  # WORK MUP_REPO OSTREE_REPO -> sets PORT_MUP PORT_OST
  local w=$1
  PORT_MUP=$((20000 + RANDOM % 10000)) PORT_OST=$((30000 + RANDOM % 10000))
  mkdir -p "$w/nginx"
  cat > "$w/nginx/nginx.conf" << EOF
daemon off;
worker_processes 2;
pid $w/nginx/nginx.pid;
error_log $w/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log $w/nginx/access.log combined;
  log_format bytes '\$server_port \$status \$body_bytes_sent \$request_uri';
  client_body_temp_path $w/nginx/tmp; proxy_temp_path $w/nginx/tmp; fastcgi_temp_path $w/nginx/tmp;
  uwsgi_temp_path $w/nginx/tmp; scgi_temp_path $w/nginx/tmp;
  sendfile on; keepalive_requests 100000;
  server { listen 127.0.0.1:$PORT_MUP; root $2; access_log $w/nginx/requests.log bytes; }
  server { listen 127.0.0.1:$PORT_OST; root $3; access_log $w/nginx/requests.log bytes; }
}
EOF
  mkdir -p "$w/nginx/tmp"
  nginx -c "$w/nginx/nginx.conf" -p "$w/nginx" &
  NGINX_PID=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT_MUP/" && break; sleep 0.1; done
}
# Requests and bytes served on a port since line $2 of the request log: "N BYTES".
served() {
  awk -v p="$1" -v from="$2" 'NR > from && $1 == p {n++; b += $3} END {print n+0, b+0}' \
    "$WORK/nginx/requests.log"
}
log_lines() { wc -l < "$WORK/nginx/requests.log"; }

TSV=$RESULTS/results.tsv
printf 'pair\ttree_bytes\ttar_zst_bytes\tcold_bytes\tcold_requests\tcold_s\tcold_before_bytes\tcold_before_pieces\tupdate_bytes\tupdate_requests\tupdate_s\tupdate_before_bytes\tupdate_before_pieces\tostree_bytes\tostree_requests\tostree_s\tverify\tpieces_bytes\tpieces_requests\tpieces_s\n' > "$TSV"
PAIRS=${*:-$(cd "$CORPUS/pairs" && ls -1)}
for PAIR in $PAIRS; do
  P=$CORPUS/pairs/$PAIR WORK=$RESULTS/work/$PAIR
  rm -rf "$WORK"; mkdir -p "$WORK"
  if [ -d "$P/v1" ]; then S1=$P/v1 S2=$P/v2; else
    mkdir -p "$WORK/t1/model" "$WORK/t2/model"
    ln "$P/v1" "$WORK/t1/model/weights" 2> /dev/null || cp "$P/v1" "$WORK/t1/model/weights"
    ln "$P/v2" "$WORK/t2/model/weights" 2> /dev/null || cp "$P/v2" "$WORK/t2/model/weights"
    S1=$WORK/t1 S2=$WORK/t2
  fi
  tree_bytes=$(du -sb --apparent-size "$S2" | cut -f1)
  log "== $PAIR: tar | zstd -19 --long of v2"
  tar_zst=$(tar -C "$S2" -cf - . | zstd -19 --long -T"$ZSTD_T" -q -c | wc -c)

  log "$PAIR: mup publish v1, v2 --delta-from v1"
  "$MUP" repo init "$WORK/repo" --keys "$WORK/keys" > /dev/null
  "$MUP" publish "$WORK/repo" "$S1" --keys "$WORK/keys" --component c --version 1.0.0 \
    --type application --json > "$RESULTS/logs/$PAIR.pub1.json"
  "$MUP" publish "$WORK/repo" "$S2" --keys "$WORK/keys" --component c --version 2.0.0 \
    --type application --delta-from 1.0.0 --json > "$RESULTS/logs/$PAIR.pub2.json"
  # Before packs and bundles: the pieces one by one (the plumbing planner, same store).
  idx1=$(ls "$WORK"/repo/targets/c/1.0.0/*tree.idx) idx2=$(ls "$WORK"/repo/targets/c/2.0.0/*tree.idx)
  read -r cold_before cold_before_pieces < <("$MUP" plan "$idx2" --store "$WORK/repo" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["full_bytes"], j["chunks"] + j["deltas"])')
  read -r upd_before upd_before_pieces < <("$MUP" plan "$idx2" --store "$WORK/repo" --seed "$S1" \
    --seed-index "$idx1" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["bytes_to_fetch"], j["chunks"] + j["deltas"])')

  OSTREE=${OSTREE:-1}
  log "$PAIR: ostree commit v1, v2, static delta v1 -> v2 (OSTREE=$OSTREE)"
  OST=$WORK/ost-archive
  mkdir -p "$OST"
  if [ "$OSTREE" = 1 ]; then
    ostree --repo="$OST" init --mode=archive
    cargs=(--owner-uid=0 --owner-gid=0 --no-xattrs --timestamp=2024-01-01T00:00:00Z)
    ostree --repo="$OST" commit -b v1 -s v1 --tree=dir="$S1" "${cargs[@]}" > /dev/null
    ostree --repo="$OST" commit -b v2 -s v2 --tree=dir="$S2" "${cargs[@]}" > /dev/null
    # shellcheck disable=SC2086
    ostree --repo="$OST" static-delta generate --from=v1 --to=v2 ${OSTREE_DELTA_ARGS---inline --min-fallback-size=2048} > /dev/null
    ostree --repo="$OST" summary -u

  fi
  start_nginx "$WORK" "$WORK/repo" "$OST"
  url=http://127.0.0.1:$PORT_MUP
  # mup: a node with v1 (template), a cold install of v2, then updates on copies of the template.
  "$MUP" remote add origin "$url" --trusted-root "$WORK/repo/metadata/1.root.json" --root "$WORK/node1" > /dev/null
  "$MUP" install c --version 1.0.0 --root "$WORK/node1" --no-snapshot > /dev/null
  "$MUP" remote add origin "$url" --trusted-root "$WORK/repo/metadata/1.root.json" --root "$WORK/cold" > /dev/null
  from=$(log_lines); t0=$(now)
  "$MUP" install c --version 2.0.0 --root "$WORK/cold" --no-snapshot --json | tail -1 > "$RESULTS/logs/$PAIR.cold.json"
  cold_s=$(echo "$(now) - $t0" | bc)
  read -r cold_req cold_bytes < <(served "$PORT_MUP" "$from")
  verify=$(diff -r --no-dereference -q "$WORK/cold/components/c/current/" "$S2" > /dev/null && echo ok || echo FAIL)
  rm -rf "$WORK/cold"
  # ostree: a bare repo with v1 (template), then pulls of v2 through the static delta.
  CT=$WORK/ost-client-tmpl
  if [ "$OSTREE" = 1 ]; then
    ostree --repo="$CT" init --mode=bare
    ostree --repo="$CT" remote add --no-gpg-verify o "http://127.0.0.1:$PORT_OST"
    ostree --repo="$CT" pull o v1 > /dev/null
  fi
  # Timed updates, mup and ostree in turn (so both meet the same machine load). Every node and
  # ostree client copy is made first, and nothing is deleted until all runs are done, then
  # SETTLE seconds pass: on ext4 without a journal (this machine's), creating files within
  # ~30 s of deleting many makes each create scan past the recently deleted inodes
  # (find_inode_bit -> recently_deleted: most of an install's system time after an rm -rf of
  # the previous run's tree, 0.46 s -> 2.4 s for svc-pg); a node's update does not follow such
  # a deletion, and the tool creating more files paid more.
  ws=() os=()
  rm -rf "$WORK/node" "$WORK"/node.* "$WORK"/ost-client.*
  for ((i = 1; i <= REPS; i++)); do
    cp -a "$WORK/node1" "$WORK/node.$i"
    [ "$OSTREE" = 1 ] && cp -a "$CT" "$WORK/ost-client.$i"
  done
  sync; sleep "${SETTLE:-35}"
  for ((i = 1; i <= REPS; i++)); do
    from=$(log_lines); t0=$(now)
    "$MUP" install c --root "$WORK/node.$i" --no-snapshot --json | tail -1 > "$RESULTS/logs/$PAIR.update.json"
    ws+=("$(echo "$(now) - $t0" | bc)")
    read -r upd_req upd_bytes < <(served "$PORT_MUP" "$from")
    ost_req=0 ost_bytes=0
    os+=(0)
    [ "$OSTREE" = 1 ] || continue
    from=$(log_lines); t0=$(now)
    ostree --repo="$WORK/ost-client.$i" pull --require-static-deltas o v2 > "$RESULTS/logs/$PAIR.ostree-pull.txt"
    os[-1]=$(echo "$(now) - $t0" | bc)
    read -r ost_req ost_bytes < <(served "$PORT_OST" "$from")
    log "$PAIR: run $i: mup ${ws[-1]} s, ostree ${os[-1]} s ($ost_req requests)"
  done
  mv "$WORK/node.$REPS" "$WORK/node"
  rm -rf "$WORK"/node.* "$WORK"/ost-client.*
  # Before bundles: the same update with its pieces one by one (a mirror without bundles/: the
  # node says so and falls back), measured the same way.
  mv "$WORK/repo/bundles" "$WORK/repo/bundles.off"
  cp -a "$WORK/node1" "$WORK/node-pieces"; sync; sleep "${SETTLE:-35}"
  from=$(log_lines); t0=$(now)
  "$MUP" install c --root "$WORK/node-pieces" --no-snapshot --json | tail -1 > "$RESULTS/logs/$PAIR.update-pieces.json"
  pieces_s=$(echo "$(now) - $t0" | bc)
  read -r pieces_req pieces_bytes < <(served "$PORT_MUP" "$from")
  mv "$WORK/repo/bundles.off" "$WORK/repo/bundles"
  upd_s=$(printf '%s\n' "${ws[@]}" | median)
  ost_s=$(printf '%s\n' "${os[@]}" | median)
  [ "$verify" = ok ] && verify=$(diff -r --no-dereference -q "$WORK/node/components/c/current/" "$S2" > /dev/null && echo ok || echo FAIL)
  [ "$verify" = ok ] && verify=$(diff -r --no-dereference -q "$WORK/node-pieces/components/c/current/" "$S2" > /dev/null && echo ok || echo FAIL)
  kill "$NGINX_PID" 2> /dev/null || true; wait "$NGINX_PID" 2> /dev/null || true; NGINX_PID=

  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$PAIR" "$tree_bytes" \
    "$tar_zst" "$cold_bytes" "$cold_req" "$cold_s" "$cold_before" "$cold_before_pieces" \
    "$upd_bytes" "$upd_req" "$upd_s" "$upd_before" "$upd_before_pieces" "$ost_bytes" "$ost_req" \
    "$ost_s" "$verify" >> "$TSV"
  sed -i "\$s/\$/\t$pieces_bytes\t$pieces_req\t$pieces_s/" "$TSV"
  log "$PAIR: cold $cold_bytes B in $cold_req requests (tar.zst $tar_zst); update $upd_bytes B in $upd_req requests, ${upd_s}s (ostree $ost_bytes B, $ost_req requests, ${ost_s}s); $verify"
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
done

python3 - "$TSV" << 'EOF' | tee "$RESULTS/results.md"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
def n(x): return int(float(x))
def r(a, b): return f"{float(a) / float(b):.3f}" if float(b) else "-"
print("Cold install of v2 (a node with nothing), bytes and requests on the wire (nginx log):\n")
print("| pair | tree | tar \\| zstd -19 --long | mup cold | ratio | requests | s | before: pieces one by one | ratio | pieces |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for x in rows:
    print(f"| {x['pair']} | {n(x['tree_bytes']):,} | {n(x['tar_zst_bytes']):,} | {n(x['cold_bytes']):,} | "
          f"{r(x['cold_bytes'], x['tar_zst_bytes'])} | {x['cold_requests']} | {float(x['cold_s']):.2f} | "
          f"{n(x['cold_before_bytes']):,} | {r(x['cold_before_bytes'], x['tar_zst_bytes'])} | {x['cold_before_pieces']} |")
print("\nUpdate v1 -> v2 over HTTP (medians of REPS), mup against ostree's pull of its static delta:\n")
print("| pair | mup bytes | requests | mup s | ostree bytes | requests | ostree s | time ratio | before: pieces one by one, bytes | requests | s | verify |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for x in rows:
    pb, pr, ps = x.get('pieces_bytes') or '0', x.get('pieces_requests') or '-', x.get('pieces_s') or '0'
    print(f"| {x['pair']} | {n(x['update_bytes']):,} | {x['update_requests']} | {float(x['update_s']):.2f} | "
          f"{n(x['ostree_bytes']):,} | {x['ostree_requests']} | {float(x['ostree_s']):.2f} | "
          f"{r(x['update_s'], x['ostree_s'])} | {n(pb):,} | {pr} | {float(ps):.2f} | {x['verify']} |")
print("\n(bytes and requests: everything the node asked nginx for during the command, TUF metadata included;"
      " the planner's figure for a node holding v1's directory: " +
      ", ".join(f"{x['pair']} {n(x['update_before_bytes']):,} B in {x['update_before_pieces']} pieces" for x in rows) + ")")
EOF
