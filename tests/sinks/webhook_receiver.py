"""Real local HTTP endpoints for the webhook tests (127.0.0.1, a free port each).

    with WebhookReceiver(statuses=[500, 200]) as rx:    # answers 500 once, then 200
        ... rx.url ...; rx.wait_for(1)                   # requests that got a 2xx
    with HangingServer() as hang: ...                    # accepts, never answers (tests.harness)
    url = refused_url()                                  # nothing listens there

Reused by the stack test (tests/stack/test_notify_live.py).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.harness.http_servers import HangingServer, LocalHttpServer
from tests.harness.polling import wait_for

__all__ = ["WebhookReceiver", "HangingServer", "TricklingServer", "Received", "refused_url"]


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int                      # what the server answered


class WebhookReceiver(LocalHttpServer):
    """Records every POST; answers the next status of ``statuses`` (then 200 forever)."""

    def __init__(self, statuses: list[int] | None = None, path: str = "/hook") -> None:
        self.statuses = list(statuses or [])
        self.received: list[Received] = []
        super().__init__(path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}?token=s3cr3t-in-url"

    def handle_post(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else 200
            self.received.append(Received(h.path, {k.lower(): v for k, v in h.headers.items()}, body, status))
        h.send_response(status)
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"ok")

    def delivered(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def wait_for(self, n: int, timeout_s: float = 20.0) -> list[Received]:
        """The delivered requests once there are ``n``; AssertionError with how many on timeout."""
        (got,) = wait_for(lambda: (d,) if len(d := self.delivered()) >= n else None, timeout_s,
                          lambda: f"webhook receiver: {n} requests delivered (got {len(self.delivered())})")
        return got


class TricklingServer(HangingServer):
    """Answers a 200 status line, then one header byte every 0.1 s, forever: every single read
    succeeds in time, the answer never ends."""

    def on_connection(self, conn: socket.socket) -> None:
        threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self._stop.is_set():
                conn.sendall(b"a")
                time.sleep(0.1)
        except OSError:
            return


def refused_url() -> str:
    """A URL on a port nothing listens on (bound, then closed: the kernel refuses connects)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/hook"
