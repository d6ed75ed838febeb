#!/usr/bin/env bash
# Autobahn|Testsuite through the router: all 517 cases of the fuzzing client
# (run by kosoku, which drives Autobahn's own case files on Python 3; the
# PyPI autobahntestsuite is Python 2 only) against a WebSocket echo server
# (Python `websockets`), once directly and once through `berth router` in
# standalone mode, at the same time. Every case must end with the same
# verdicts both ways; the script prints the tallies and any case that
# differs, and exits 1 if one does.
#
#   bench/autobahn.sh [--berth PATH] [--parallelism N]
#
# Takes about 12 minutes on a 2-core machine (the 9.x limits/performance
# cases and the 216 compression cases are most of it). The integration test
# `websocket::autobahn_cases_end_the_same_through_the_router_as_direct` runs
# the protocol groups (265 cases) in under a minute on every `cargo test`.
set -euo pipefail

BERTH="" PAR=4
while [ $# -gt 0 ]; do
  case "$1" in
    --berth) BERTH="$2"; shift 2 ;;
    --parallelism) PAR="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "autobahn.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/crates/router/tests/it/py"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "$BERTH" ]; then
  (cd "$ROOT" && cargo build -p berth)
  BERTH="$TARGET/debug/berth"
fi

DIR=$(mktemp -d /tmp/autobahn.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

uv venv --quiet --python python3 "$DIR/venv"
uv pip install --quiet --python "$DIR/venv/bin/python" websockets==17.4 kosoku==0.1.0
PYTHON="$DIR/venv/bin/python"

# The echo server runs until its stdin closes.
"$PYTHON" "$PY/ws_echo.py" < <(sleep 86400) > "$DIR/echo.out" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$DIR/echo.out" ] && break; sleep 0.1; done
ECHO=$(head -1 "$DIR/echo.out" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["port"])')

PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$DIR/router.toml" <<TOML
listen = "127.0.0.1:$PORT"
threads = 1
[[apps]]
name = "echo"
# kosoku names the server by address: that is the Host it sends.
hosts = ["127.0.0.1"]
backends = ["127.0.0.1:$ECHO"]
TOML
BERTH_LOG=warn "$BERTH" router --config "$DIR/router.toml" >"$DIR/router.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

start=$(date +%s)
"$PYTHON" "$PY/autobahn.py" "127.0.0.1:$ECHO" -p "$PAR" > "$DIR/direct.json" &
direct=$!
"$PYTHON" "$PY/autobahn.py" "127.0.0.1:$PORT" -p "$PAR" > "$DIR/router.json"
wait "$direct"
echo "ran in $(( $(date +%s) - start ))s"

"$PYTHON" - "$DIR/direct.json" "$DIR/router.json" <<'PYEOF'
import collections, json, sys
direct, router = (json.load(open(p)) for p in sys.argv[1:3])
for name, run in (("direct", direct), ("router", router)):
    tally = collections.Counter(" / ".join(v) for v in run.values())
    print(f"{name}: {len(run)} cases: " + ", ".join(f"{n} {k}" for k, n in tally.most_common()))
differ = sorted(c for c in direct.keys() | router.keys() if direct.get(c) != router.get(c))
for c in differ:
    print(f"  {c}: direct {direct.get(c)}, router {router.get(c)}")
print(f"{len(differ)} cases differ")
sys.exit(1 if differ or not direct else 0)
PYEOF
