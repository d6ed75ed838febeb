"""A WebSocket echo server for the router's tests, on the `websockets`
library (a conforming RFC 6455 + permessage-deflate implementation).

Binds 127.0.0.1:0 and writes one JSON object per line on stdout:
`{"event": "listening", "port": N}` first, then per connection
`{"event": "open", "path": ..., "headers": [[name, value], ...]}` and
`{"event": "close", "code": ..., "reason": ...}`, so a test can see what
reached the backend and how each session ended.

Every message is echoed back as it came (text as text, binary as binary).
Messages of any size are taken: the Autobahn cases send up to 16 MiB.
"""

import asyncio
import json
import sys

from websockets.asyncio.server import serve


def emit(**event):
    print(json.dumps(event), flush=True)


async def echo(ws):
    emit(event="open", path=ws.request.path, headers=list(ws.request.headers.raw_items()))
    try:
        async for message in ws:
            await ws.send(message)
    except Exception:  # a broken peer is what some tests make on purpose
        pass
    finally:
        emit(event="close", code=ws.close_code, reason=ws.close_reason)


async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        emit(event="listening", port=port)
        # Ends when the test closes our stdin (or goes away).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


asyncio.run(main())
