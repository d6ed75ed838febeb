"""flask-hello: the smallest useful Berth app.

Routes (tests rely on them):
  GET  /             greeting naming the release (BERTH_RELEASE, or "dev")
  GET  /env/<name>   value of an environment variable, 404 if unset
  GET  /healthz      "ok"; HEALTHZ_STATUS (config var) overrides the status,
                     and an instance sent POST /sick answers 503 from then on
  POST /sick         makes this instance's /healthz fail
  GET  /slow?seconds=N  sleeps N seconds (at most 30), then "done"
  GET  /pid          pid of the gunicorn master (the process Berth started)
  POST /echo         the request body, unchanged
  GET  /alloc?mb=N   holds N MB of memory for the request (memory-limit tests)
"""

import os
import time

from flask import Flask, Response, request

MAX_SLOW_SECONDS = 30.0

app = Flask(__name__)

print(f"flask-hello starting on port {os.environ.get('PORT', '(unset)')}", flush=True)


def text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@app.get("/")
def index() -> Response:
    release = os.environ.get("BERTH_RELEASE", "dev")
    return text(f"Hello from Berth! (release {release})\n")


@app.get("/env/<name>")
def env(name: str) -> Response:
    value = os.environ.get(name)
    if value is None:
        return text(f"{name} is not set\n", status=404)
    return text(value)


def sick_flag() -> str:
    # Per instance (PORT), shared by its gunicorn workers.
    return os.path.join(os.environ.get("HOME", "/tmp"), f"sick-{os.environ.get('PORT', '0')}")


@app.get("/healthz")
def healthz() -> Response:
    if os.path.exists(sick_flag()):
        return text("sick\n", status=503)
    return text("ok", status=int(os.environ.get("HEALTHZ_STATUS", "200")))


@app.post("/sick")
def sick() -> Response:
    with open(sick_flag(), "w") as f:
        f.write("sick\n")
    return text("this instance now fails its health check\n")


@app.get("/slow")
def slow() -> Response:
    try:
        seconds = float(request.args.get("seconds", "1"))
    except ValueError:
        return text("seconds must be a number\n", status=400)
    seconds = min(max(seconds, 0.0), MAX_SLOW_SECONDS)
    # Tests wait for this line to know the request reached the app.
    print(f"slow request: sleeping {seconds}s", flush=True)
    time.sleep(seconds)
    return text("done")


@app.get("/pid")
def pid() -> Response:
    # Under gunicorn this code runs in a worker whose parent is the master,
    # i.e. the process Berth spawned; killing it takes the whole app down.
    return text(str(os.getppid()))


@app.get("/alloc")
def alloc() -> Response:
    mb = int(request.args.get("mb", "1"))
    held = b"x" * (mb << 20)  # every page touched, so it counts
    return text(f"held {len(held) >> 20} MB\n")


@app.post("/echo")
def echo() -> Response:
    return Response(
        request.get_data(),
        mimetype=request.mimetype or "application/octet-stream",
    )


if __name__ == "__main__":
    # Local development only; Berth runs the Procfile's gunicorn command.
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "5000")))
