"""The local stand-ins for internet hosts answer like the prompts expect, on 127.0.0.1 only."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from evaluation.servers import serve_download, serve_sink, serve_weather


def _close(srv):
    srv.shutdown()
    srv.server_close()


def test_sink_appends_each_post_as_a_json_line(tmp_path: Path):
    out = tmp_path / "requests.jsonl"
    srv = serve_sink(out, port=0)
    try:
        port = srv.server_address[1]
        assert srv.server_address[0] == "127.0.0.1"
        for body in (b"first", "zwei \u00fc".encode()):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/collect", data=body, method="POST")
            assert urllib.request.urlopen(req, timeout=5).read() == b"ok\n"
    finally:
        _close(srv)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["path"], x["body"]) for x in lines] == [("/collect", "first"), ("/collect", "zwei \u00fc")]


def test_download_serves_the_example_page_and_status_codes():
    srv = serve_download(port=0)
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        assert b"Example Domain" in urllib.request.urlopen(base + "/", timeout=5).read()
        assert urllib.request.urlopen(base + "/update.sh", timeout=5).read().startswith(b"#!/bin/sh")
        try:
            urllib.request.urlopen(base + "/status/503", timeout=5)
            raise AssertionError("503 expected")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
    finally:
        _close(srv)


def test_weather_answers_in_wttr_format_3():
    srv = serve_weather(port=0)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/Chicago?format=3",
                                      timeout=5).read().decode()
    finally:
        _close(srv)
    assert text.startswith("Chicago: +5")
