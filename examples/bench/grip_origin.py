#!/usr/bin/env python3
"""A minimal GRIP origin for Pushpin (https://pushpin.org/docs/protocols/grip/), for the
side-by-side benchmarks: every SSE request is held as a stream on channel `bench`, and every
WebSocket (WebSocket-over-HTTP) is subscribed to `bench` when it opens.

Usage: grip_origin.py PORT
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        # SSE: hold the response open on the channel; Pushpin sends published content.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Grip-Hold", "stream")
        self.send_header("Grip-Channel", "bench")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        out = b""
        if body.startswith(b"OPEN"):
            control = b'c:{"type": "subscribe", "channel": "bench"}'
            out = b"OPEN\r\n" + b"TEXT %x\r\n" % len(control) + control + b"\r\n"
        elif b"CLOSE" in body:
            out = b"CLOSE\r\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/websocket-events")
        self.send_header("Sec-WebSocket-Extensions", "grip")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class Server(ThreadingHTTPServer):
    request_queue_size = 4096  # Pushpin opens many origin connections at once
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Origin).serve_forever()
