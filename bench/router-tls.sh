#!/usr/bin/env bash
# TLS benchmark: `berth router` (standalone, one thread) terminating TLS
# against HAProxy (one thread) with the same certificate, the same nginx
# backend, the same client (h2load), in one run.
#
#   bench/router-tls.sh [--rounds N] [--seconds N] [--berth PATH]
#
# --berth PATH benchmarks that binary instead of building one.
#
# Measures, as ratios router/HAProxy (rounds interleaved, medians):
#   1. HTTP/2 over TLS: 50 connections, 10 streams each (h2load)
#   2. HTTP/1.1 over TLS: 50 keep-alive connections (h2load --h1)
#   3. TLS handshakes: 200 connections of 10 requests each (h2load -n, new
#      connections all the way through)
#
# Needs: h2load (Debian nghttp2-client), haproxy, nginx-light, openssl.
# Numbers on a shared 2-core machine are noisy: compare ratios, use --rounds 5+.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_args router-tls.sh 17 "$@"

for tool in h2load haproxy nginx openssl; do
  command -v "$tool" >/dev/null || { echo "router-tls.sh: $tool not found (apt-get install nghttp2-client haproxy nginx-light openssl)" >&2; exit 2; }
done
bench_binary

bench_dir router-tls-bench

bench_cert
cat "$DIR/bench.pem" "$DIR/bench.key" > "$DIR/haproxy.pem"

BPORT=$(free_port)
cat > "$DIR/backend.conf" <<EOF
worker_processes 1; daemon on; pid $DIR/backend.pid; error_log $DIR/backend.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BPORT backlog=4096; location / { return 200 "hello world\n"; } } }
EOF
nginx -c "$DIR/backend.conf"

start_router router "$BERTH" "127.0.0.1:$BPORT" tls
RTLS=$ROUTER_TLS
HTLS=$(free_port)
haproxy_cfg "127.0.0.1:$HTLS ssl crt $DIR/haproxy.pem alpn h2,http/1.1" "127.0.0.1:$BPORT" \
  "ssl-default-bind-options ssl-min-ver TLSv1.2"
haproxy -f "$DIR/haproxy.cfg" -D
wait_port "$HTLS"

# h2load's summary: "finished in 8.00s, 41234.50 req/s, ..." and
# "time for request: min max mean sd"; prints "req/s mean_ms failed".
run() {
  local port=$1; shift
  $PIN h2load "$@" "https://bench.localhost:$port/" --connect-to="127.0.0.1:$port" 2>&1 |
    awk '/^finished in/ {rps=$4}
         /^requests:/ {failed=$10+$12}
         /^time for request:/ {m=$6; if (m ~ /us$/) m=m/1000; else if (m ~ /ms$/) m=m+0; else if (m ~ /s$/) m=m*1000}
         END { printf "%s %.3f %d\n", rps+0, m, failed+0 }'
}
compare() {
  local name=$1; shift
  : > "$DIR/$name-router"; : > "$DIR/$name-haproxy"
  for _ in $(seq 1 "$ROUNDS"); do
    run "$HTLS" "$@" >> "$DIR/$name-haproxy"
    run "$RTLS" "$@" >> "$DIR/$name-router"
  done
  for t in haproxy router; do
    printf "  %-8s %10.0f req/s  mean %8.3f ms  failed %s\n" "$t" \
      "$(awk '{print $1}' "$DIR/$name-$t" | med)" "$(awk '{print $2}' "$DIR/$name-$t" | med)" \
      "$(awk '{s+=$3} END {print s+0}' "$DIR/$name-$t")"
  done
  awk -v r="$(awk '{print $1}' "$DIR/$name-router" | med)" -v h="$(awk '{print $1}' "$DIR/$name-haproxy" | med)" \
      -v rm="$(awk '{print $2}' "$DIR/$name-router" | med)" -v hm="$(awk '{print $2}' "$DIR/$name-haproxy" | med)" \
      'BEGIN { printf "  ratio router/haproxy req/s: %.2f   mean latency: %.2f\n", r/h, rm/hm }'
}

echo "== HTTP/2 over TLS, 50 connections x 10 streams, ${SECS}s"
compare h2 -c 50 -m 10 -t 1 -D "$SECS"
echo "== HTTP/1.1 over TLS, 50 keep-alive connections, ${SECS}s"
compare h1 --h1 -c 50 -t 1 -D "$SECS"
echo "== TLS handshakes: 2000 requests on 200 new connections (HTTP/2)"
compare hs -c 200 -n 2000 -t 1
