#!/usr/bin/env bash
# Autobahn|Testsuite through the router: all 517 cases of the fuzzing client
# (run by kosoku, which drives Autobahn's own case files on Python 3; the
# PyPI autobahntestsuite is Python 2 only) against a WebSocket echo server
# (Python `websockets`), once directly and once through `berth router` in
# standalone mode, at the same time. Every case must end with the same
# verdicts both ways; the script prints the tallies and any case that
# differs (run again once, one side after the other, since the timed cases
# can tip over under load), and exits 1 if one still does.
#
#   bench/autobahn.sh [--berth PATH] [--parallelism N] [--include CASE]...
#
# --include runs only those cases (`9.*`, `12.3.1`; repeatable). The whole
# suite takes 10 to 20 minutes on a 2-core machine (19 with other builds
# running); the 9.x limits cases and the 216 compression cases are most of
# it. The integration test
# `websocket::autobahn_cases_end_the_same_through_the_router_as_direct` runs
# the protocol groups (265 cases) in under a minute on every `cargo test`.
set -euo pipefail

BERTH="" PAR=4 CASES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --berth) BERTH="$2"; shift 2 ;;
    --parallelism) PAR="$2"; shift 2 ;;
    --include) CASES+=(-i "$2"); shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
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

# The echo server runs until its stdin closes: this script holds the
# writing end of a FIFO, so it ends with the script whatever happens.
mkfifo "$DIR/echo.in"
"$PYTHON" "$PY/ws_echo.py" < "$DIR/echo.in" > "$DIR/echo.out" &
PIDS+=($!)
exec 4> "$DIR/echo.in"
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
"$PYTHON" "$PY/autobahn.py" "127.0.0.1:$ECHO" -p "$PAR" "${CASES[@]}" > "$DIR/direct.json" &
direct=$!
"$PYTHON" "$PY/autobahn.py" "127.0.0.1:$PORT" -p "$PAR" "${CASES[@]}" > "$DIR/router.json"
wait "$direct"
echo "ran in $(( $(date +%s) - start ))s"

compare() {
  "$PYTHON" - "$@" <<'PYEOF'
import collections, json, sys
direct, router = (json.load(open(p)) for p in sys.argv[1:3])
for name, run in (("direct", direct), ("router", router)):
    tally = collections.Counter(" / ".join(v) for v in run.values())
    print(f"{name}: {len(run)} cases: " + ", ".join(f"{n} {k}" for k, n in tally.most_common()))
differ = sorted(c for c in direct.keys() | router.keys() if direct.get(c) != router.get(c))
for c in differ:
    print(f"  {c}: direct {direct.get(c)}, router {router.get(c)}")
print(f"{len(differ)} cases differ")
with open(sys.argv[3], "w") as out:
    out.write("".join(f"-i\n{c}\n" for c in differ))
sys.exit(1 if differ or not direct else 0)
PYEOF
}

compare "$DIR/direct.json" "$DIR/router.json" "$DIR/differ" && exit 0
# The limits and compression cases time themselves, and two runs at once on
# two cores can tip one over on either side: run those that differ again,
# one side after the other, and count only a difference that stays.
echo "running the cases that differ again, one side after the other"
mapfile -t AGAIN < "$DIR/differ"
"$PYTHON" "$PY/autobahn.py" "127.0.0.1:$ECHO" "${AGAIN[@]}" > "$DIR/direct2.json"
"$PYTHON" "$PY/autobahn.py" "127.0.0.1:$PORT" "${AGAIN[@]}" > "$DIR/router2.json"
compare "$DIR/direct2.json" "$DIR/router2.json" "$DIR/differ2"
