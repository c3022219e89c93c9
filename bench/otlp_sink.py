#!/usr/bin/env python3
"""A collector that takes every OTLP/HTTP export and keeps nothing, for
bench/traces.sh: it answers 200 to each POST once its body is read, and
counts the bytes. Prints its port on stdout, then serves until killed.
Knobs: none; the port is a free one on 127.0.0.1."""

import http.server
import signal
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 16))
            if not chunk:
                break
            n -= len(chunk)
            Sink.received += len(chunk)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    sys.stderr.write(f"otlp sink: {Sink.received} bytes of spans received\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
