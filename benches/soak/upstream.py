#!/usr/bin/env python3
"""The soak's upstream: a threaded HTTP/1.1 server on 127.0.0.1:PORT.

    upstream.py PORT

GET answers 200 "ok"; GET /slow/... answers the same after 2 seconds; POST echoes the body
it received (the encrypted route's upstream sees plaintext, which the client then finds,
re-encrypted to it, in the response).
"""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes: without TCP_NODELAY, Nagle's algorithm
    # holds the body back until the proxy's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(2)
        self.answer(b"ok", "text/plain")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.answer(body, self.headers.get("content-type", "application/octet-stream"))

    def answer(self, body, content_type):
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
