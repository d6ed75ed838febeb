#!/usr/bin/env bash
# HTTP/2 PING flood benchmark: what a client sending PINGs as fast as the
# router answers them costs the router (`berth router`, standalone, one
# thread), with the flood budget (this build) against a build without it
# (--before PATH), in one run.
#
#   bench/h2-flood.sh --before PATH [--seconds N] [--berth PATH]
#
# Two attackers, each for N seconds (default 8):
#   1. one connection that never lets go: PINGs 100 at a time, reading the
#      ACKs, until the router closes it;
#   2. the same, reconnecting (TLS handshake included) each time it is cut.
# Prints, per binary: PINGs answered, connections, the router's CPU seconds
# (utime+stime from /proc/PID/stat) and CPU per answered PING.
#
# Needs: python3, openssl.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
BEFORE=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --before) BEFORE="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
bench_args h2-flood.sh 16 "${ARGS[@]+"${ARGS[@]}"}"
[ -n "$BEFORE" ] || { echo "h2-flood.sh: --before PATH (a berth without the flood budget) is needed" >&2; exit 2; }
bench_binary
bench_dir h2-flood-bench

bench_cert

cat > "$DIR/flood.py" <<'EOF'
import socket, ssl, struct, sys, time

addr, port, secs, reconnect = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
batch = frame(6, 0, 0, b"12345678") * 100
answered = conns = 0
end = time.monotonic() + secs
while time.monotonic() < end:
    try:
        s = ctx.wrap_socket(socket.create_connection((addr, port), timeout=5), server_hostname="bench.localhost")
    except OSError:
        continue
    conns += 1
    s.sendall(PREFACE + frame(4, 0, 0, b""))
    buf = b""
    try:
        while time.monotonic() < end:
            s.sendall(batch)
            want = 100
            while want:
                data = s.recv(65536)
                if not data:
                    raise ConnectionError
                buf += data
                while len(buf) >= 9:
                    n = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + n:
                        break
                    if buf[3] == 6 and buf[4] & 1:
                        want -= 1
                        answered += 1
                    elif buf[3] == 4 and not buf[4] & 1:
                        s.sendall(frame(4, 1, 0, b""))
                    buf = buf[9 + n:]
    except (OSError, ConnectionError, ssl.SSLError):
        pass
    s.close()
    if not reconnect:
        # The one connection is gone: wait out the time, as an attacker
        # that has to come back would.
        time.sleep(max(0.0, end - time.monotonic()))
print(answered, conns)
EOF

measure() {
  local name=$1 bin=$2
  # Port 9 (discard): the flood never reaches a backend.
  start_router "$name" "$bin" 127.0.0.1:9 tls
  local pid=$ROUTER_PID tls=$ROUTER_TLS
  local hz
  hz=$(getconf CLK_TCK)
  for reconnect in 0 1; do
    local t0 out t1
    t0=$(cpu_ticks "$pid")
    out=$(python3 "$DIR/flood.py" 127.0.0.1 "$tls" "$SECS" "$reconnect")
    t1=$(cpu_ticks "$pid")
    set -- $out
    awk -v n="$name" -v r="$reconnect" -v a="$1" -v c="$2" -v t=$((t1 - t0)) -v hz="$hz" -v s="$SECS" 'BEGIN {
      cpu = t / hz
      printf "  %-7s %-10s %9d PINGs answered  %5d conns  router CPU %5.2f s of %s s  %s\n",
        n, (r == "1" ? "reconnect" : "one conn"), a, c, cpu, s,
        (a > 0 ? sprintf("%.2f us/PING", cpu * 1e6 / a) : "")
    }'
  done
  kill "$pid"
}

echo "== PING flood, ${SECS}s per attacker"
measure before "$BEFORE"
measure after "$BERTH"
