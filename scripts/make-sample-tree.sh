#!/usr/bin/env bash
# Makes a service tree of mup-sample-service for the agent's tests, benches and demo:
#   scripts/make-sample-tree.sh OUT_DIR VERSION [extra flags for the service...]
#   e.g. scripts/make-sample-tree.sh /tmp/web-2 2.0.0 --error-rate 0.2
# OUT_DIR/bin/mup-sample-service (copied from the build; $MUP_SAMPLE_SERVICE overrides the
# path), OUT_DIR/mup-service.toml (format: docs/agent.md) and OUT_DIR/VERSION, so two
# versions' trees differ in content as real releases do.
# Environment: LISTEN (default 127.0.0.1:18080), INSTANCES (default 2).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 OUT_DIR VERSION [extra flags...]" >&2
  exit 2
fi
OUT=$1
VERSION=$2
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MUP_SAMPLE_SERVICE:-$ROOT/build/tools/sample-service/mup-sample-service}
if [[ ! -x $BIN ]]; then
  echo "$0: no sample service at $BIN; build it: ninja -C build mup-sample-service" >&2
  exit 1
fi

# A TOML basic string: backslash and double quote escaped.
toml_string() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

mkdir -p "$OUT/bin"
cp "$BIN" "$OUT/bin/mup-sample-service"
chmod 0755 "$OUT/bin/mup-sample-service"
printf '%s\n' "$VERSION" >"$OUT/VERSION"

exec_list='"bin/mup-sample-service", "--port", "{port}", "--version", "{version}"'
for flag in "$@"; do
  exec_list+=", $(toml_string "$flag")"
done

cat >"$OUT/mup-service.toml" <<TOML
# mup-sample-service $VERSION, made by scripts/make-sample-tree.sh
[service]
exec = [$exec_list]
listen = $(toml_string "${LISTEN:-127.0.0.1:18080}")
protocol = "http"
instances = ${INSTANCES:-2}

[service.ready]
http = "/healthz"
timeout_ms = 10000

[service.stop]
signal = "TERM"
drain_ms = 5000
TOML
