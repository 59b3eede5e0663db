#!/usr/bin/env bash
# The main job end to end, in a temp dir: pack v1 and v2 of a sample component, show what a
# node holding v1 must fetch for v2 (against the full size), rebuild v2 from v1 plus those
# pieces, and verify the result byte for byte.
#   scripts/demo.sh [path/to/mup]
set -euo pipefail
MUP=$(realpath "${1:-build/src/cli/mup}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mup-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "making a sample component: v1 and v2 (binaries rebuilt, config edited, a file added, one removed)"
mkdir -p v1/bin v1/lib v1/etc v1/share/doc
for b in ninja cmake ctest; do cp "$(command -v $b)" v1/bin/; done
cp /usr/lib/x86_64-linux-gnu/libzstd.so.1.* v1/lib/
seq 1 20000 | sed 's/^/setting_/; s/$/ = on/' > v1/etc/app.conf
echo "mup demo component, version 1" > v1/share/doc/README
echo "retired in v2" > v1/share/doc/OLD
ln -s ../lib/$(basename v1/lib/libzstd.so.1.*) v1/lib/libzstd.so
cp -a v1 v2
# A "rebuild": a few KB of code patched in the middle of each binary, and the file grows.
for f in v2/bin/*; do
  size=$(stat -c %s "$f")
  head -c 4096 /dev/urandom | dd of="$f" bs=1 seek=$((size / 3)) conv=notrunc status=none
  head -c 2048 /dev/urandom >> "$f"
done
sed -i 's/^setting_1234 = on/setting_1234 = off/' v2/etc/app.conf
echo "mup demo component, version 2" > v2/share/doc/README
rm v2/share/doc/OLD
head -c 300000 /dev/urandom > v2/share/new-asset.bin
du -sh --apparent-size v1 v2

say "publisher: mup pack v1, then v2 with v1 as the delta base"
"$MUP" pack v1 --store repo --index v1.idx
"$MUP" pack v2 --store repo --index v2.idx --base v1.idx --base-tree v1
"$MUP" index show v2.idx | head -4

say "node holding v1: what must it fetch for v2?"
"$MUP" plan v2.idx --store repo --seed v1 --seed-index v1.idx
"$MUP" plan v2.idx --store repo --seed v1 --seed-index v1.idx --json > plan.json
full_raw=$(du -sb --apparent-size v2 | cut -f1)
echo "(v2 is $full_raw bytes uncompressed)"

say "node: rebuild v2 from v1 plus those pieces, every file verified"
"$MUP" unpack v2.idx --store repo --seed v1 --out node-v2

say "check: the rebuilt tree is byte-identical to v2"
diff -r --no-dereference node-v2 v2 && echo "identical: OK"

say "a corrupt piece is refused and leaves nothing behind"
victim=$(find repo/deltas -type f | head -1)
printf 'X' | dd of="$victim" bs=1 seek=20 conv=notrunc status=none
if "$MUP" unpack v2.idx --store repo --seed v1 --out node-v2-bad; then
  echo "FAILED: a corrupt delta was accepted" >&2; exit 1
fi
[ ! -e node-v2-bad ] && ! ls -a | grep -q mup-tmp && echo "refused, nothing written: OK"
say "publisher: a signed repository (TUF), v1 and v2 published with a delta, checked offline"
"$MUP" repo init repo-signed --keys keys
"$MUP" publish repo-signed v1 --keys keys --component demo --version 1.0.0 --type service
"$MUP" publish repo-signed v2 --keys keys --component demo --version 1.1.0 --type service --delta-from 1.0.0 \
  --priority high --description "rebuilt binaries, new config"
"$MUP" repo verify repo-signed

say "serving it on loopback; a node with v1 installed asks what is new (every byte checked against signed metadata)"
port=$((20000 + RANDOM % 20000))
"$MUP" repo serve repo-signed --listen 127.0.0.1:$port > serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do grep -q serving serve.log && break; sleep 0.1; done
"$MUP" remote add origin http://127.0.0.1:$port --trusted-root repo-signed/metadata/1.root.json --root node
mkdir -p node/state/demo && echo "visits=1" > node/state/demo/counter

say "node: install 1.0.0 (nothing held yet: fetches everything), then see what is new"
"$MUP" install demo --version 1.0.0 --root node
"$MUP" check --repo http://127.0.0.1:$port --trusted-root repo-signed/metadata/1.root.json --root node

say "node: install 1.1.0: only the missing chunks and deltas, staged beside 1.0.0, switched atomically"
"$MUP" install demo --root node
diff -r --no-dereference node/components/demo/current/ v2 && echo "active tree is byte-identical to v2: OK"
echo "visits=2 (migrated by 1.1.0)" > node/state/demo/counter
"$MUP" versions demo --root node

say "node: roll back (no network needed: the server is stopped first), restoring the state snapshot"
kill $server; wait $server 2>/dev/null || true
"$MUP" rollback demo --restore-state --root node
diff -r --no-dereference node/components/demo/current/ v1 && echo "active tree is byte-identical to v1: OK"
grep -q "visits=1" node/state/demo/counter && echo "state restored: OK"

say "node: activate 1.1.0, the process SIGKILLed just after the switch; the next command recovers"
set +e
MUP_FAULT_AT=store.activate.after_switch MUP_FAULT_ACTION=kill "$MUP" activate demo 1.1.0 --root node
code=$?
set -e
echo "mup activate exited with $code (killed)"
"$MUP" status --root node
[ "$(readlink node/components/demo/current)" = "1.1.0" ] && echo "recovered forward: 1.1.0 active, recorded done: OK"
"$MUP" rollback demo --root node > /dev/null

say "node: history, status and the tamper-evident audit log"
"$MUP" history --root node
"$MUP" status --root node
"$MUP" audit verify --root node
echo
echo "demo passed"
