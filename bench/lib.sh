# Shared by the router benchmarks: sourced, not run.
#
#   . "$(dirname "$0")/lib.sh"
#   bench_args NAME HELP_LAST_LINE "$@"   # sets ROUNDS SECS BERTH ROOT TARGET
#   bench_binary                          # builds berth (release) unless --berth
#   bench_dir PREFIX                      # sets DIR; *.pid in it are killed at exit
#   free_port; wait_port PORT; bench_cert; start_router NAME BIN BACKEND [tls]
#   haproxy_cfg BIND BACKEND [GLOBAL_LINE]; cpu_ticks PID; med; $PIN

bench_args() {
  local name="$1" help_last="$2"
  shift 2
  ROUNDS=3 SECS=8 BERTH=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --rounds) ROUNDS="$2"; shift 2 ;;
      --seconds) SECS="$2"; shift 2 ;;
      --berth) BERTH="$2"; shift 2 ;;
      -h|--help) sed -n "2,${help_last}p" "$0"; exit 0 ;;
      *) echo "$name: unknown argument $1" >&2; exit 2 ;;
    esac
  done
  ROOT=$(cd "$(dirname "$0")/.." && pwd)
  TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
  PATH="$PATH:/usr/sbin"
}

bench_binary() {
  if [ -z "$BERTH" ]; then
    (cd "$ROOT" && cargo build --release -p berth)
    BERTH="$TARGET/release/berth"
  fi
}

bench_dir() {
  DIR=$(mktemp -d "/tmp/$1.XXXXXX")
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "$DIR"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  rm -rf "$DIR"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s), else
# the logs in $DIR and exit 2.
wait_port() {
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "$(basename "$0"): nothing listens on $1" >&2; cat "$DIR"/*.log >&2 || true; exit 2
}

# bench_cert: $DIR/bench.pem and bench.key, one ECDSA P-256 certificate for
# bench.localhost, as most sites serve today.
bench_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench.localhost -addext "subjectAltName=DNS:bench.localhost" \
    -keyout "$DIR/bench.key" -out "$DIR/bench.pem" 2>/dev/null
}

# start_router NAME BIN BACKEND [tls]: `BIN router` standalone on one thread,
# routing bench.localhost to BACKEND (host:port), from $DIR/NAME.toml; with
# `tls`, HTTPS too with bench_cert's certificate. Sets ROUTER_PID,
# ROUTER_PORT and ROUTER_TLS (empty without tls); returns once it listens.
start_router() {
  local name=$1 bin=$2 backend=$3 tls=${4:-}
  ROUTER_PORT=$(free_port) ROUTER_TLS=""
  [ -n "$tls" ] && ROUTER_TLS=$(free_port)
  {
    echo "listen = \"127.0.0.1:$ROUTER_PORT\""
    [ -n "$tls" ] && echo "listen_tls = \"127.0.0.1:$ROUTER_TLS\""
    echo "threads = 1"
    echo "# 1,000 benchmark connections come from one address."
    echo "max_connections_per_ip = 4096"
    [ -n "$tls" ] && printf '[[certificates]]\ncert = "bench.pem"\nkey = "bench.key"\n'
    printf '[[apps]]\nname = "bench"\nhosts = ["bench.localhost"]\nbackends = ["%s"]\n' "$backend"
  } > "$DIR/$name.toml"
  BERTH_LOG=warn "$bin" router --config "$DIR/$name.toml" --threads 1 >"$DIR/$name.log" 2>&1 &
  ROUTER_PID=$!
  echo "$ROUTER_PID" > "$DIR/$name.pid"
  wait_port "$ROUTER_PORT"
  [ -z "$ROUTER_TLS" ] || wait_port "$ROUTER_TLS"
}

# haproxy_cfg BIND BACKEND [GLOBAL_LINE]: $DIR/haproxy.cfg for HAProxy on one
# thread, least-conn and connection reuse to BACKEND, as lb-compare sets it.
haproxy_cfg() {
  cat > "$DIR/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 8192
  pidfile $DIR/haproxy.pid
${3:+  $3}
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind $1
  default_backend be
backend be
  balance leastconn
  http-reuse always
  server s1 $2
CFG
}

# User + kernel CPU of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The median of the numbers on stdin.
med() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The load generator runs on CPU 1 when there are two or more, as lb-compare
# pins wrk: "$PIN wrk ...".
PIN=""
[ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null && PIN="taskset -c 1"
