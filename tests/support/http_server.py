"""A loopback HTTP server with fault injection, for download tests and benchmarks.

Real sockets, no internet: each test starts a :class:`FaultyServer` on 127.0.0.1 (a free
port), puts bytes under names and tells it how to misbehave: drop the connection mid-body,
ignore ``Range``, corrupt a byte, answer an error status first, stall, send a body without
Content-Length, or redirect a name elsewhere (to an ftp:// URL, say). Every request is
recorded (path, Range, If-Range, answered status) so a test can assert what the client did.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ETAG = '"v1"'


@dataclass
class Faults:
    """How the server misbehaves; each fault is used up as it happens."""

    #: Statuses answered (with an empty body) before the file is served, e.g. [500].
    statuses: deque[int] = field(default_factory=deque)
    #: Close the connection after this many body bytes, for the next ``drops`` responses.
    drop_after: int | None = None
    drops: int = 0
    #: Answer every request with the whole file (200), as servers without Range support do.
    ignore_range: bool = False
    #: Flip the byte at this offset of every body sent.
    corrupt_at: int | None = None
    #: Seconds to wait after the headers before sending the body (a stalled server).
    stall: float = 0.0
    #: Advertise this ETag (None: none at all).
    etag: str | None = ETAG
    #: Send no Content-Length (the body ends when the connection closes), as some servers
    #: and proxies do for generated or recompressed content.
    no_length: bool = False
    #: Name -> Location: answer 302 with that Location instead of serving the name.
    redirects: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    path: str
    range: str | None
    if_range: str | None
    status: int


class FaultyServer:
    """``with FaultyServer({"a.zip": data}) as server: fetch(server.url("a.zip"), ...)``."""

    def __init__(self, files: dict[str, bytes | Path] | None = None) -> None:
        self.files: dict[str, bytes | Path] = dict(files or {})
        self.faults = Faults()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # release stalled handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def body(self, name: str) -> bytes | None:
        data = self.files.get(name)
        return data.read_bytes() if isinstance(data, Path) else data


def _handler_for(server: FaultyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            faults = server.faults
            range_header, if_range = self.headers.get("Range"), self.headers.get("If-Range")
            if faults.statuses:
                return self._answer(faults.statuses.popleft(), name, range_header, if_range)
            if name in faults.redirects:
                headers = {"Location": faults.redirects[name]}
                return self._answer(302, name, range_header, if_range, headers)
            data = server.body(name)
            if data is None:
                return self._answer(404, name, range_header, if_range)
            start, status = 0, 200
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            honour = match and not faults.ignore_range and if_range in (None, faults.etag)
            if honour:
                start, status = int(match.group(1)), 206
                if start >= len(data):
                    headers = {"Content-Range": f"bytes */{len(data)}"}
                    return self._answer(416, name, range_header, if_range, headers)
            body = bytearray(data[start:])
            if faults.corrupt_at is not None and start <= faults.corrupt_at < len(data):
                body[faults.corrupt_at - start] ^= 0xFF
            server.record(Request(name, range_header, if_range, status))
            self.send_response(status)
            if faults.no_length:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if faults.etag:
                self.send_header("ETag", faults.etag)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if faults.stall and server._stop.wait(faults.stall):
                return
            if faults.drops and faults.drop_after is not None:
                faults.drops -= 1
                self.wfile.write(body[: faults.drop_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def _answer(
            self,
            status: int,
            name: str,
            range_header: str | None,
            if_range: str | None,
            headers: dict[str, str] | None = None,
        ) -> None:
            server.record(Request(name, range_header, if_range, status))
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler
