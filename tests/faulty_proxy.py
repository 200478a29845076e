"""A small HTTP proxy for the tests: forwards to an upstream server, and answers chosen
requests with 503 or drops their connection (transient faults), or fails every request
for one key (a permanent fault)."""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FaultyProxy:
    """``every``: fault every Nth request (0: none), ``mode``: "503" or "drop";
    ``broken``: a path fragment whose requests always fail with 500."""

    def __init__(self, upstream: str, every: int = 0, mode: str = "503", broken: str | None = None):
        self.upstream = urlsplit(upstream)
        self.every, self.mode, self.broken = every, mode, broken
        self.counter = itertools.count(1)
        self.faults = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                n = next(proxy.counter)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.broken and proxy.broken in self.path:
                    return self._error(500, "InternalError")
                if proxy.every and n % proxy.every == 0:
                    proxy.faults += 1
                    if proxy.mode == "drop":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return None
                    return self._error(503, "SlowDown")
                up = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port,
                                                timeout=60)  # fmt: skip
                up.request(self.command, self.path, body=body, headers=dict(self.headers))
                resp = up.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                size = resp.getheader("Content-Length") if self.command == "HEAD" else len(data)
                self.send_header("Content-Length", str(size or 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                up.close()
                return None

            def _error(self, status: int, code: str):
                data = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
