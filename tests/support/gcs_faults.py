"""Fault injection between the GCS client and the emulator: an HTTP proxy that fails chosen requests, and an
endpoint that accepts connections and never answers (a network that swallows packets)."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_HEADERS = {"host", "connection", "content-length", "transfer-encoding", "expect", "keep-alive"}


class FaultyProxy(ThreadingHTTPServer):
    """Forwards to `target`; the first `fail_uploads` upload requests get a 503 (a transient error)."""

    daemon_threads = True

    def __init__(self, target: str, fail_uploads: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fail_uploads = fail_uploads
        self.injected = 0
        self.forwarded_uploads = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def should_fail(self, method: str, path: str) -> bool:
        if method != "POST" or not path.startswith("/upload/"):
            return False
        with self.lock:
            if self.injected < self.fail_uploads:
                self.injected += 1
                return True
            self.forwarded_uploads += 1
            return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultyProxy

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        body = self._body()
        if self.server.should_fail(self.command, self.path):
            self._reply(503, "Service Unavailable", [], b"injected")
            return
        upstream = http.client.HTTPConnection(*self.server.target, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS]
        self._reply(response.status, response.reason, kept, data)

    def _reply(self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status, reason)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


@contextmanager
def faulty_proxy(target: str, fail_uploads: int) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(target, fail_uploads)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


@contextmanager
def silent_endpoint() -> Iterator[str]:
    """A port whose connections are accepted by the kernel and never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
