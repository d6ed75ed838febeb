#!/usr/bin/env bash
# Measures, with hyperfine, against references run in the same go:
# 1. a code-only redeploy with a warm cache: from `berth deploy` to the new
#    version answering through the router; reference: the same app deployed
#    by hand (fresh uv venv from the same warm cache, gunicorn started,
#    polled until it answers);
# 2. a rollback: from `berth rollback` to the other version answering;
#    reference: starting gunicorn by hand on the built app and polling it
#    (the least any switch of version costs).
#
#   bench/redeploy.sh [--runs N]
#
# Needs: uv, hyperfine (installed with apt-get when missing), curl.
# Prints hyperfine's table and the ratio berth/reference.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=5
[ "${1:-}" = "--runs" ] && RUNS="$2"
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release -q -p berth
BERTH="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-bench.XXXXXX)
export HOME="$W/home" BERTH_UV_CACHE_DIR="$W/uv-cache"
mkdir -p "$HOME"
cleanup() { kill "$(cat "$W/up.pid" 2>/dev/null)" 2>/dev/null || true; sleep 2; rm -rf "$W"; }
trap cleanup EXIT

"$BERTH" up --data-dir "$W/data" --api-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$W/up.log" 2>&1 &
echo $! >"$W/up.pid"
for _ in $(seq 100); do grep -q "apps:" "$W/up.log" && break; sleep 0.1; done
PORT=$(grep -o 'localhost:[0-9]*' "$W/up.log" | head -1 | cut -d: -f2)
cp -r examples/flask-hello "$W/src"
"$BERTH" apps create bench >/dev/null
"$BERTH" deploy "$W/src" --app bench >/dev/null   # warms the uv cache

# Each run writes a new marker into the code, then waits until it is served.
cat >"$W/berth-run.sh" <<SH
#!/usr/bin/env bash
set -e
m=\$RANDOM\$RANDOM
sed -i "s/Hello from Berth![^(]*/Hello from Berth! \$m /" "$W/src/app.py"
"$BERTH" deploy "$W/src" --app bench >/dev/null
until curl -sf -H 'Host: bench.localhost' http://127.0.0.1:$PORT/ | grep -q "\$m"; do sleep 0.02; done
SH
cat >"$W/manual-run.sh" <<SH
#!/usr/bin/env bash
set -e
m=\$RANDOM\$RANDOM
d="$W/manual"
rm -rf "\$d"; cp -r "$W/src" "\$d"
sed -i "s/Hello from Berth![^(]*/Hello from Berth! \$m /" "\$d/app.py"
cd "\$d"
UV_CACHE_DIR="$W/uv-cache" uv venv -q .venv
UV_CACHE_DIR="$W/uv-cache" uv pip install -q --python .venv/bin/python -r requirements.txt
p=\$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=\$p .venv/bin/gunicorn app:app --bind 127.0.0.1:\$p --workers 2 >/dev/null 2>&1 &
g=\$!
until curl -sf http://127.0.0.1:\$p/ | grep -q "\$m"; do sleep 0.02; done
kill \$g; wait \$g 2>/dev/null || true
SH
chmod +x "$W/berth-run.sh" "$W/manual-run.sh"
hyperfine --warmup 1 --runs "$RUNS" --export-json "$W/result.json" \
  -n "berth deploy (code change, warm cache)" "$W/berth-run.sh" \
  -n "reference: same app by hand (uv venv + install + gunicorn)" "$W/manual-run.sh"
python3 - "$W/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
b, m = r[0]["mean"], r[1]["mean"]
print(f"berth redeploy: {b:.2f}s mean; reference: {m:.2f}s; ratio berth/reference: {b/m:.2f}")
PY

# Rollback: two releases serving different markers; each run rolls back to
# the one not live and waits for its marker.
sed -i "s/Hello from Berth![^(]*/Hello from Berth! marker-a /" "$W/src/app.py"
"$BERTH" deploy "$W/src" --app bench >/dev/null
A=$("$BERTH" releases --app bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["version"])')
sed -i "s/Hello from Berth![^(]*/Hello from Berth! marker-b /" "$W/src/app.py"
"$BERTH" deploy "$W/src" --app bench >/dev/null
B=$((A + 1))
cat >"$W/rollback-run.sh" <<SH
#!/usr/bin/env bash
set -e
if curl -sf -H 'Host: bench.localhost' http://127.0.0.1:$PORT/ | grep -q marker-a; then
  "$BERTH" rollback v$B --app bench >/dev/null; want=marker-b
else
  "$BERTH" rollback v$A --app bench >/dev/null; want=marker-a
fi
until curl -sf -H 'Host: bench.localhost' http://127.0.0.1:$PORT/ | grep -q "\$want"; do sleep 0.02; done
SH
cat >"$W/start-run.sh" <<SH
#!/usr/bin/env bash
set -e
cd "$W/manual"
p=\$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/gunicorn app:app --bind 127.0.0.1:\$p --workers 2 >/dev/null 2>&1 &
g=\$!
until curl -sf http://127.0.0.1:\$p/ >/dev/null; do sleep 0.02; done
kill \$g; wait \$g 2>/dev/null || true
SH
chmod +x "$W/rollback-run.sh" "$W/start-run.sh"
hyperfine --warmup 1 --runs "$RUNS" --export-json "$W/rollback.json" \
  -n "berth rollback" "$W/rollback-run.sh" \
  -n "reference: gunicorn started by hand" "$W/start-run.sh"
python3 - "$W/rollback.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
b, m = r[0]["mean"], r[1]["mean"]
print(f"berth rollback: {b:.2f}s mean; reference: {m:.2f}s; ratio berth/reference: {b/m:.2f}")
PY
