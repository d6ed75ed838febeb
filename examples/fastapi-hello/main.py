"""fastapi-hello: an ASGI app for Berth, dependencies locked in uv.lock."""

import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI(title="fastapi-hello")


@app.get("/")
def index() -> dict[str, str]:
    return {"hello": "fastapi", "release": os.environ.get("BERTH_RELEASE", "dev")}


@app.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"
