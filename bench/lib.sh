# Shared by the router benchmarks: sourced, not run.
#
#   . "$(dirname "$0")/lib.sh"
#   bench_args NAME HELP_LAST_LINE "$@"   # sets ROUNDS SECS BERTH ROOT TARGET
#   bench_binary                          # builds berth (release) unless --berth
#   bench_dir PREFIX                      # sets DIR; *.pid in it are killed at exit
#   free_port

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
