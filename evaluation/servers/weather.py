"""Weather server: stands in for wttr.in. ``GET /<City>?format=3`` -> ``<City>: ⛅️ +5°C``."""

from __future__ import annotations

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["WEATHER_PORT", "serve_weather", "weather_line"]

WEATHER_PORT = 18082


def weather_line(path: str) -> str:
    city = urllib.parse.unquote(path.split("?", 1)[0].strip("/")) or "Chicago"
    return f"{city}: +5°C, light wind (demo)\n"


class _WeatherHandler(BaseHTTPRequestHandler):
    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = weather_line(self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_weather(port: int = WEATHER_PORT) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", port), _WeatherHandler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, name="weather", daemon=True).start()
    return srv
