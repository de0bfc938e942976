"""A loopback HTTP file server like an object store, for GDAL's ``/vsicurl/``: byte ranges,
persistent connections (HTTP/1.1), a fixed latency per request, and faults on demand.

It counts what a reader costs: requests, TCP connections and body bytes sent. Faults:
``fail_next(n, status)`` answers the next ``n`` requests with ``status`` (a transient 503),
``fail_every(n)`` every ``n``-th;
``stall_after(n)`` makes every body stop after ``n`` bytes and hang (a stalled server), until
the server is closed. Used by ``bench/gdal_profile_bench.py`` and ``tests/test_io_remote.py``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Counts:
    requests: int = 0
    ranges: int = 0  # requests with a Range header
    connections: int = 0
    bytes: int = 0
    failed: int = 0  # answered with an injected error status


class RangeServer:
    """Serve ``root``'s files at ``url`` (``http://127.0.0.1:PORT/``) until closed."""

    def __init__(self, root: Path, latency: float = 0.0) -> None:
        self.root = root.resolve()
        self.latency = latency
        self.counts = Counts()
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._fail_every: int | None = None
        self._fail_status = 503
        self._stall_after: int | None = None
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def reset(self) -> Counts:
        """The counts so far; counting starts again from zero."""
        with self._lock:
            counts, self.counts = self.counts, Counts()
        return counts

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._failures = [status] * count

    def fail_every(self, count: int | None, status: int = 503) -> None:
        """Answer every ``count``-th request with ``status`` (``None``: never)."""
        with self._lock:
            self._fail_every, self._fail_status = count, status

    def stall_after(self, count: int | None) -> None:
        self._stall_after = count

    def __enter__(self) -> RangeServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                with owner._lock:
                    owner.counts.connections += 1
                super().process_request(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _next_failure(self) -> int | None:
        with self._lock:
            self.counts.requests += 1
            if self._failures:
                return self._failures.pop(0)
            every = self._fail_every
            return self._fail_status if every and self.counts.requests % every == 0 else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as object stores offer
    server_owner: RangeServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        owner = self.server_owner
        if owner.latency:
            time.sleep(owner.latency)
        status = owner._next_failure()
        if status is not None:
            with owner._lock:
                owner.counts.failed += 1
            self._empty(status)
            return
        path = (owner.root / self.path.split("?")[0].lstrip("/")).resolve()
        if not path.is_relative_to(owner.root) or not path.is_file():
            self._empty(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        match = _RANGE.match(self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            if start >= size:
                self._empty(416)
                return
            with owner._lock:
                owner.counts.ranges += 1
        self.send_response(206 if match else 200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if match:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        with path.open("rb") as file:
            file.seek(start)
            data = file.read(end - start + 1)
        stall = owner._stall_after
        if stall is not None and stall < len(data):
            self.wfile.write(data[:stall])
            self.wfile.flush()
            with owner._lock:
                owner.counts.bytes += stall
            owner._closing.wait()  # hang mid-body until the server closes
            self.close_connection = True
            return
        self.wfile.write(data)
        with owner._lock:
            owner.counts.bytes += len(data)

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
