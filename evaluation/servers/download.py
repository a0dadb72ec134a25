"""Download server: stands in for example.com / example.org and serves a small shell script.

    GET /            an "Example Domain" page        GET /org   the same, as example.org
    GET /update.sh   a harmless script that echoes   HEAD *     200
    GET /status/N    answers with status N (for connectivity checks)
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DOWNLOAD_PORT", "serve_download", "EXAMPLE_PAGE", "UPDATE_SCRIPT"]

DOWNLOAD_PORT = 18081
EXAMPLE_PAGE = (b"<!doctype html><html><head><title>Example Domain</title></head><body>"
                b"<h1>Example Domain</h1><p>This domain is for use in illustrative examples.</p>"
                b"</body></html>\n")
UPDATE_SCRIPT = b"#!/bin/sh\necho 'update applied (demo)'\n"


class _DownloadHandler(BaseHTTPRequestHandler):
    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: bytes, ctype: str, head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/status/") and path[8:].isdigit():
            self._reply(int(path[8:]), b"", "text/plain", head)
        elif path.endswith(".sh"):
            self._reply(200, UPDATE_SCRIPT, "text/x-shellscript", head)
        else:
            self._reply(200, EXAMPLE_PAGE, "text/html", head)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)


def serve_download(port: int = DOWNLOAD_PORT) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", port), _DownloadHandler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, name="download", daemon=True).start()
    return srv
