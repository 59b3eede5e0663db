#!/usr/bin/env bash
# Throughput and latency of `mup proxy` against HAProxy and nginx, same machine, same run.
#
#   bench/proxy_vs_haproxy.sh [path/to/mup]     (default build/src/cli/mup)
#
# Upstream: nginx serving a small static file (keep-alive). Then wrk (-t2 -c64 -d10s by
# default; WRK_ARGS overrides) against (a) the upstream directly, (b) mup proxy, (c) HAProxy
# in http mode with keep-alive, (d) nginx as a reverse proxy with upstream keepalive. Each
# proxy gets 2 threads/workers. Prints a markdown table. Ports: BENCH_PORT (default 28100)
# and the next four.
set -euo pipefail

MUP=${1:-build/src/cli/mup}
MUP=$(readlink -f "$MUP")
WRK_ARGS=${WRK_ARGS:-"-t2 -c64 -d10s"}
BASE=${BENCH_PORT:-28100}
UP=$BASE MUPP=$((BASE + 1)) HAP=$((BASE + 2)) NGP=$((BASE + 3))
TMP=$(mktemp -d /tmp/mup-proxy-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

mkdir -p "$TMP/www" "$TMP/up" "$TMP/ng" "$TMP/root"
chmod 755 "$TMP" "$TMP/www"  # nginx workers may run as another user
printf 'hello from the upstream\n' > "$TMP/www/index.html"

cat > "$TMP/up/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/up/nginx.pid;
error_log $TMP/up/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $TMP/up; proxy_temp_path $TMP/up; fastcgi_temp_path $TMP/up;
  uwsgi_temp_path $TMP/up; scgi_temp_path $TMP/up;
  server { listen 127.0.0.1:$UP; root $TMP/www; }
}
CONF

cat > "$TMP/ng/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $TMP/ng/nginx.pid;
error_log $TMP/ng/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $TMP/ng; proxy_temp_path $TMP/ng; fastcgi_temp_path $TMP/ng;
  uwsgi_temp_path $TMP/ng; scgi_temp_path $TMP/ng;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NGP;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF

cat > "$TMP/haproxy.cfg" <<CONF
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  option forwardfor
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAP
  default_backend be
backend be
  server up1 127.0.0.1:$UP
CONF

wait_port() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$1/index.html" && return 0
    sleep 0.05
  done
  echo "nothing answers on port $1" >&2
  return 1
}

/usr/sbin/nginx -c "$TMP/up/nginx.conf" -p "$TMP/up" & PIDS+=($!)
wait_port "$UP"
"$MUP" proxy --root "$TMP/root" --threads 2 2> "$TMP/mup.log" & PIDS+=($!)
for _ in $(seq 100); do [ -S "$TMP/root/proxy.sock" ] && break; sleep 0.05; done
curl -sf --unix-socket "$TMP/root/proxy.sock" -X PUT http://proxy/v1/routes/bench \
  -H 'Content-Type: application/json' \
  -d "{\"listen\":\"127.0.0.1:$MUPP\",\"protocol\":\"http\",\"drain_ms\":1000,
       \"backends\":[{\"id\":\"up#0\",\"version\":\"1.0.0\",\"address\":\"127.0.0.1:$UP\",\"weight\":100}]}" \
  > /dev/null
wait_port "$MUPP"
/usr/sbin/haproxy -f "$TMP/haproxy.cfg" -db > "$TMP/haproxy.log" 2>&1 & PIDS+=($!)
wait_port "$HAP"
/usr/sbin/nginx -c "$TMP/ng/nginx.conf" -p "$TMP/ng" & PIDS+=($!)
wait_port "$NGP"

# wrk --latency output -> "req_per_s p50_ms p99_ms"
measure() {
  local out
  # shellcheck disable=SC2086
  out=$(/usr/bin/wrk $WRK_ARGS --latency "http://127.0.0.1:$1/index.html")
  echo "$out" > "$TMP/wrk.$1.txt"
  local rps p50 p99 errs
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<< "$out")
  p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
  p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<< "$out" | tr '\n' ' ')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") ${errs:-none}"
}
to_ms() {  # wrk prints 1.23ms, 456.00us, 1.2s
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else print v }'
}

declare -A R
for name in direct mup haproxy nginx; do
  case $name in
    direct) port=$UP ;; mup) port=$MUPP ;; haproxy) port=$HAP ;; nginx) port=$NGP ;;
  esac
  R[$name]=$(measure "$port")
done

stats=$(curl -sf --unix-socket "$TMP/root/proxy.sock" http://proxy/v1/stats || true)
read -r mrps mp50 mp99 _ <<< "${R[mup]}"
read -r hrps hp50 hp99 _ <<< "${R[haproxy]}"
echo
echo "wrk $WRK_ARGS, $(nproc) CPUs shared by wrk, the proxy and the upstream (nginx, 1 worker)"
echo
echo "| target | req/s | p50 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---|"
for name in direct mup haproxy nginx; do
  read -r rps p50 p99 errs <<< "${R[$name]}"
  echo "| $name | $rps | $p50 | $p99 | $errs |"
done
echo
awk -v a="$mrps" -v b="$hrps" -v c="$mp50" -v d="$hp50" -v e="$mp99" -v f="$hp99" 'BEGIN {
  printf "mup/haproxy: req/s %.2f, p50 %.2f, p99 %.2f\n", a / b, c / d, e / f }'
if [ -n "$stats" ]; then
  python3 -c 'import json,sys; v=json.load(sys.stdin)["services"]["bench"]["versions"]["1.0.0"]; print("mup stats: requests=%d 2xx=%d errors=%d p50=%.3fms p99=%.3fms" % (v["requests"], v["responses"]["2xx"], v["errors"], v["latency_ms"]["p50"], v["latency_ms"]["p99"]))' <<< "$stats" || true
fi
