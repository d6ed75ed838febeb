"""An HTTP/2 client that misbehaves on purpose, for the router's tests.

Usage: python h2peer.py MODE ADDR HOST
Prints one JSON object with what happened. Modes:
  request           one GET (with a Host header equal to :authority)
  host-mismatch     a GET whose Host header names another host
  content-length    a POST declaring content-length 10 with 5 bytes of DATA
  rapid-reset       1000 streams, each HEADERS then RST_STREAM at once
  continuation      HEADERS without END_HEADERS, then CONTINUATION frames
                    until the router closes (at most 64 MiB)
  ping-flood        10 000 PINGs, 100 at a time, reading the ACKs of each
                    batch, until the router closes
  settings-flood    the same with empty SETTINGS frames
  empty-data-flood  a POST, then 10 000 empty DATA frames without END_STREAM
  window-update-flood  10 000 connection WINDOW_UPDATEs of one byte
  browser           2 000 GETs, 20 at a time, with the control frames of a
                    chatty browser: a stream WINDOW_UPDATE per request, a
                    PING every 10, a connection WINDOW_UPDATE and a cancelled
                    request (HEADERS then RST_STREAM) every 50, SETTINGS
                    every 100
"""

import json
import socket
import ssl
import struct
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack


def connect(addr, host):
    ip, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((ip, int(port)), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname=host)
    assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, validate_outbound_headers=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def read_until_done(sock, conn, stream_id=None):
    """Reads frames until the stream ends, the connection ends, or GOAWAY."""
    out = {"status": None, "body": b"", "reset": None, "goaway": None, "closed": False}
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            # Still open: the router did not end it.
            out["timeout"] = True
            break
        except (ConnectionError, ssl.SSLError) as e:
            out["closed"] = True
            out["error"] = repr(e)
            break
        if not data:
            out["closed"] = True
            break
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            out["error"] = repr(e)
            break
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == stream_id:
                out["status"] = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == stream_id:
                out["body"] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == stream_id:
                out["reset"] = int(ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                out["goaway"] = int(ev.error_code)
        try:
            sock.sendall(conn.data_to_send())
        except (ConnectionError, ssl.SSLError):
            out["closed"] = True
            break
        if out["goaway"] is not None:
            break
        if stream_id is not None and (out["reset"] is not None or any(
            isinstance(ev, h2.events.StreamEnded) and ev.stream_id == stream_id for ev in events
        )):
            break
    out["body"] = out["body"].decode("utf-8", "replace")
    return out


def headers(host, method="GET", path="/", extra=()):
    return [(":method", method), (":scheme", "https"), (":authority", host), (":path", path), *extra]


def main():
    mode, addr, host = sys.argv[1:4]
    sock, conn = connect(addr, host)
    if mode == "request":
        conn.send_headers(1, headers(host, path="/headers", extra=[("host", host)]), end_stream=True)
        sock.sendall(conn.data_to_send())
        print(json.dumps(read_until_done(sock, conn, 1)))
    elif mode == "host-mismatch":
        conn.send_headers(1, headers(host, extra=[("host", "other." + host)]), end_stream=True)
        sock.sendall(conn.data_to_send())
        print(json.dumps(read_until_done(sock, conn, 1)))
    elif mode == "content-length":
        conn.send_headers(1, headers(host, "POST", "/", [("content-length", "10")]))
        # h2 (the library) checks lengths too; send the frame by hand.
        payload = b"12345"
        sock.sendall(conn.data_to_send() + frame(0x0, 0x1, 1, payload))
        print(json.dumps(read_until_done(sock, conn, 1)))
    elif mode == "rapid-reset":
        sent = 0
        try:
            for i in range(1000):
                sid = 1 + 2 * i
                conn.send_headers(sid, headers(host, path="/slow"), end_stream=True)
                conn.reset_stream(sid)
                sent += 1
                if i % 50 == 49:
                    sock.sendall(conn.data_to_send())
            sock.sendall(conn.data_to_send())
        except (ConnectionError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        out = read_until_done(sock, conn)
        out["sent"] = sent
        print(json.dumps(out))
    elif mode == "continuation":
        enc = hpack.Encoder()
        first = enc.encode(headers(host), huffman=False)
        sock.sendall(frame(0x1, 0x1, 1, first))  # END_STREAM, no END_HEADERS
        sent = 0
        closed = False
        i = 0
        while sent < 64 << 20:
            block = enc.encode([("x-flood-%d" % i, "a" * 16000)], huffman=False)
            i += 1
            try:
                sock.sendall(frame(0x9, 0x0, 1, block))
            except socket.timeout:
                break
            except (ConnectionError, ssl.SSLError):
                closed = True
                break
            sent += len(block)
        print(json.dumps({"sent": sent, "closed": closed}))
    elif mode == "ping-flood":
        pings = iter(range(1 << 62))
        send = lambda: conn.ping(struct.pack(">Q", next(pings)))
        print(json.dumps(flood(sock, conn, send, h2.events.PingAckReceived)))
    elif mode == "settings-flood":
        send = lambda: conn.update_settings({})
        print(json.dumps(flood(sock, conn, send, h2.events.SettingsAcknowledged)))
    elif mode == "empty-data-flood":
        conn.send_headers(1, headers(host, "POST", "/echo"))
        send = lambda: conn.send_data(1, b"")
        print(json.dumps(flood(sock, conn, send, None)))
    elif mode == "window-update-flood":
        send = lambda: conn.increment_flow_control_window(1)
        print(json.dumps(flood(sock, conn, send, None)))
    elif mode == "browser":
        print(json.dumps(browser(sock, conn, host, 2000)))
    else:
        raise SystemExit("unknown mode " + mode)


def flood(sock, conn, send_one, ack, total=10_000, batch=100):
    """Sends `total` frames by `send_one`, `batch` at a time; with an `ack`
    event type, waits for the answers to each batch. Stops when the router
    ends the connection; reports how far it got."""
    out = {"sent": 0, "acked": 0, "goaway": None, "closed": False}
    try:
        while out["sent"] < total and not out["closed"] and out["goaway"] is None:
            for _ in range(batch):
                send_one()
            out["sent"] += batch
            sock.sendall(conn.data_to_send())
            while ack is not None and out["acked"] < out["sent"] and out["goaway"] is None:
                data = sock.recv(65536)
                if not data:
                    out["closed"] = True
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, ack):
                        out["acked"] += 1
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        out["goaway"] = int(ev.error_code)
                sock.sendall(conn.data_to_send())
    except socket.timeout:
        out["timeout"] = True
    except (ConnectionError, ssl.SSLError, OSError) as e:
        out["closed"] = True
        out["error"] = repr(e)
    if not out["closed"] and out["goaway"] is None and not out.get("timeout"):
        # Everything sent: does the router end the connection now?
        sock.settimeout(3)
        end = read_until_done(sock, conn)
        out["closed"], out["goaway"] = end["closed"], end["goaway"]
        out["timeout"] = end.get("timeout", False)
    return out


def browser(sock, conn, host, total, batch=20):
    """`total` GETs over one connection, with the control frames a busy
    browser sends around them. Reports how many got 200."""
    out = {"ok": 0, "other": 0, "cancelled": 0, "pings": 0, "goaway": None, "closed": False}
    started = 0
    sid = 1
    statuses = {}
    while started < total and out["goaway"] is None and not out["closed"]:
        pending = set()
        for _ in range(min(batch, total - started)):
            conn.send_headers(sid, headers(host, path="/r%d" % sid), end_stream=True)
            conn.increment_flow_control_window(65535, stream_id=sid)
            pending.add(sid)
            sid += 2
            started += 1
            if started % 10 == 0:
                conn.ping(struct.pack(">Q", started))
                out["pings"] += 1
            if started % 50 == 0:
                conn.increment_flow_control_window(65535)
                conn.send_headers(sid, headers(host, path="/cancelled"), end_stream=True)
                conn.reset_stream(sid)
                out["cancelled"] += 1
                sid += 2
            if started % 100 == 0:
                conn.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0})
        try:
            sock.sendall(conn.data_to_send())
            while pending and out["goaway"] is None:
                data = sock.recv(65536)
                if not data:
                    out["closed"] = True
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        statuses[ev.stream_id] = int(dict(ev.headers)[b":status"])
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in pending:
                        pending.discard(ev.stream_id)
                        if statuses.get(ev.stream_id) == 200:
                            out["ok"] += 1
                        else:
                            out["other"] += 1
                    elif isinstance(ev, h2.events.StreamReset):
                        pending.discard(ev.stream_id)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        out["goaway"] = int(ev.error_code)
                sock.sendall(conn.data_to_send())
        except socket.timeout:
            out["timeout"] = True
            break
        except (ConnectionError, ssl.SSLError, OSError) as e:
            out["closed"] = True
            out["error"] = repr(e)
    return out


def frame(kind, flags, stream_id, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


if __name__ == "__main__":
    main()
