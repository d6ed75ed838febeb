#!/usr/bin/env bash
# How long `berth restart` keeps the replaced instance draining (its
# "draining" to "stopped" events), under `berth up --websocket-grace 5s`,
# with an ASGI WebSocket echo on uvicorn:
#   none   — no WebSocket session open: the reference (no added wait);
#   closed — one session, which the client closes 1 s into the drain: the
#            drain should end ~1 s + one router report later;
#   held   — one session the client keeps: the router closes it (1001) at
#            the end of its grace, and the drain ends then.
# Prints each case's mean over the rounds and its excess over the reference.
#
#   bench/ws-drain.sh [--rounds N] [--berth PATH]
#
# Needs: uv (the client uses `websockets` from PyPI), python3.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_args ws-drain 13 "$@"
bench_binary
bench_dir berth-ws-drain
export HOME="$DIR/home" BERTH_UV_CACHE_DIR="${BERTH_UV_CACHE_DIR:-$DIR/uv-cache}"
mkdir -p "$HOME" "$DIR/chat"

cat >"$DIR/chat/app.py" <<'PY'
import os

RELEASE = os.environ.get("BERTH_RELEASE", "dev")


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": RELEASE.encode()})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": event.get("text")})
PY
printf 'uvicorn==0.54.0\nwsproto==1.3.2\n' >"$DIR/chat/requirements.txt"
echo 'web: uvicorn app:app --host 127.0.0.1 --port $PORT --ws wsproto --lifespan off' >"$DIR/chat/Procfile"

"$BERTH" up --data-dir "$DIR/data" --api-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --websocket-grace 5s >"$DIR/up.log" 2>&1 &
echo $! >"$DIR/up.pid"
for _ in $(seq 100); do grep -q "apps:" "$DIR/up.log" && break; sleep 0.1; done
PORT=$(grep -o 'localhost:[0-9]*' "$DIR/up.log" | head -1 | cut -d: -f2)
"$BERTH" apps create chat >/dev/null
"$BERTH" deploy "$DIR/chat" --app chat >/dev/null

cat >"$DIR/drive.py" <<'PY'
"""One restart per case and round; prints `case seconds` per drain."""
import asyncio, json, subprocess, sys, time

from websockets.asyncio.client import connect

berth, port, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])


def events():
    out = subprocess.run([berth, "events", "--app", "chat", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def old_stopped(seen):
    """The last drain's duration, once its instance stopped."""
    new = events()[seen:]
    drains = [e["ts"] for e in new if e["line"].endswith(": draining")]
    stops = [e["ts"] for e in new if ": stopped" in e["line"]]
    if drains and stops:
        return (stops[-1] - drains[-1]) / 1000
    return None


async def restart_and_measure(case):
    seen = len(events())
    ws = None
    if case != "none":
        ws = await connect(f"ws://chat.localhost:{port}/", host="127.0.0.1", port=int(port))
        await ws.send("hi")
        await ws.recv()
    subprocess.run([berth, "restart", "--app", "chat"], check=True, capture_output=True)
    if case == "closed":
        await asyncio.sleep(1)
        await ws.close()
    while (took := old_stopped(seen)) is None:
        await asyncio.sleep(0.05)
    if case == "held":
        assert ws.close_code == 1001, ws.close_code
    return took


async def main():
    for _ in range(rounds):
        for case in ("none", "closed", "held"):
            print(case, await restart_and_measure(case), flush=True)


asyncio.run(main())
PY
uv run -q --no-project --with websockets==17.4 python "$DIR/drive.py" "$BERTH" "$PORT" "$ROUNDS" \
  | tee "$DIR/result.txt"
python3 - "$DIR/result.txt" <<'PY'
import sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    case, secs = line.split()
    runs[case].append(float(secs))
mean = {c: sum(v) / len(v) for c, v in runs.items()}
ref = mean["none"]
for case in ("none", "closed", "held"):
    print(f"{case:>6}: drain {mean[case]:.3f}s mean over {len(runs[case])}; "
          f"{mean[case] - ref:+.3f}s over no session; ratio {mean[case] / ref:.1f}")
PY
