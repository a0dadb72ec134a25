"""Real HTTP endpoints on 127.0.0.1 for the sinks that post (webhook, OTLP/HTTP export).

    class Recorder(LocalHttpServer):          # a free port unless ``port`` is given
        def handle_post(self, h): ...         # h is the BaseHTTPRequestHandler of one POST
    with Recorder("/hook") as rx: ... rx.port ...
    with HangingServer("/v1/traces") as hang: ... hang.url ...     # accepts, never answers

Each server runs on its own daemon threads and is closed by ``close()`` or the ``with`` block.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LocalHttpServer", "HangingServer"]


class LocalHttpServer:
    """A ThreadingHTTPServer whose every POST is handed to ``handle_post`` (no access log)."""

    def __init__(self, path: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.path = path
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                owner.handle_post(self)

            def log_message(self, fmt: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.host, self.port = self.server.server_address[0], self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def handle_post(self, h: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "LocalHttpServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HangingServer:
    """A listening socket that accepts connections but never answers (a wedged peer)."""

    def __init__(self, path: str = "/hook") -> None:
        self.path = path
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            self.on_connection(conn)

    def on_connection(self, conn: socket.socket) -> None:
        """What to do with an accepted connection: here, nothing (read nothing, answer nothing)."""
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()

    def __enter__(self) -> "HangingServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
