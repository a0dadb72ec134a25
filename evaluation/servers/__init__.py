"""Local stand-ins for the internet hosts the evaluation prompts mention (all on 127.0.0.1).

    sink      port 18000  the original's post_sink.py: POST bodies appended to requests.jsonl
    download  port 18081  stands in for example.com / example.org (pages and a small script)
    weather   port 18082  stands in for wttr.in (``/Chicago?format=3`` -> "Chicago: +5°C")

These ports are the ones config/rules.eval.json keeps in ``allowed_loopback_ports``.
"""

from evaluation.servers.download import DOWNLOAD_PORT, serve_download
from evaluation.servers.sink import SINK_PORT, serve_sink
from evaluation.servers.weather import WEATHER_PORT, serve_weather

__all__ = ["SINK_PORT", "DOWNLOAD_PORT", "WEATHER_PORT", "serve_sink", "serve_download", "serve_weather"]
