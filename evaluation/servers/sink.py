"""Upload sink (the original's post_sink.py): every POST is appended as one JSON line.

Each line: ts_ns, client, path, headers, body (UTF-8 with replacement). Answers ``ok``. GET also
answers ``ok`` so a reachability check works.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["SINK_PORT", "SinkServer", "serve_sink"]

SINK_PORT = 18000
MAX_BODY_BYTES = 1 << 20


class SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, out_path: Path) -> None:
        super().__init__(("127.0.0.1", port), _SinkHandler)
        self.out_path = out_path
        self.lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock, open(self.out_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


class _SinkHandler(BaseHTTPRequestHandler):
    server: SinkServer

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _ok(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def do_GET(self) -> None:
        self._ok()

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES)
        body = self.rfile.read(length)
        self.server.record({"ts_ns": time.time_ns(), "client": self.client_address[0], "path": self.path,
                            "headers": dict(self.headers), "body": body.decode("utf-8", "replace")})
        self._ok()

    do_PUT = do_POST


def serve_sink(out_path: Path, port: int = SINK_PORT) -> SinkServer:
    srv = SinkServer(port, out_path)
    threading.Thread(target=srv.serve_forever, name="sink", daemon=True).start()
    return srv
