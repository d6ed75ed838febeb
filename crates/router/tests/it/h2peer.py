"""An HTTP/2 client that misbehaves on purpose, for the router's tests.

Usage: python h2peer.py MODE ADDR HOST
Prints one JSON object with what happened. Modes:
  request           one GET (with a Host header equal to :authority)
  host-mismatch     a GET whose Host header names another host
  content-length    a POST declaring content-length 10 with 5 bytes of DATA
  rapid-reset       1000 streams, each HEADERS then RST_STREAM at once
  continuation      HEADERS without END_HEADERS, then CONTINUATION frames
                    until the router closes (at most 64 MiB)
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
    else:
        raise SystemExit("unknown mode " + mode)


def frame(kind, flags, stream_id, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


if __name__ == "__main__":
    main()
