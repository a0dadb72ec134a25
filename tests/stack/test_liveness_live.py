"""Liveness on the real stack under the real supervisord (docs/bus.md §8.2).

analyzer-0 is paused for real (SIGSTOP): supervisord still calls it RUNNING, so only heartbeats
can tell. Every stage that reads it (the four sinks, the responder) must report the stream dead
after HEARTBEAT_LIVENESS silent intervals (log line, counter, ``dead_streams`` in its own
heartbeat), and `casa status` must show analyzer-0 DEAD and the sinks' dead upstream, exit 3.
Resumed (SIGCONT), the stream is alive again everywhere, logged once, and the resumed analyzer,
which finds a full queue, does not call its own upstream dead.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.stack.stack import Stack

pytestmark = [pytest.mark.root, pytest.mark.stack, pytest.mark.timeout(240)]

READERS = ["sinks-jsonl", "sinks-otel", "sinks-webhook", "sinks-program", "responder"]
DEAD_LINE = "upstream stream dead: no heartbeat for 3 intervals | stream=analyzer-0"
ALIVE_LINE = "upstream stream alive again | stream=analyzer-0"


def _status_rows(st: Stack) -> tuple[int, dict[str, dict]]:
    out = st.casa("status", "--url", st.url, "--json")
    return out.returncode, {r["name"]: r for r in map(json.loads, out.stdout.splitlines())}


def test_a_paused_analyzer_is_dead_downstream_and_in_casa_status_then_alive_again(tmp_path) -> None:
    with Stack(tmp_path) as st:
        everyone = ["analyzer-0", *READERS]
        st.counters(everyone, lambda c: len(c) == len(everyone))      # all heard: the readers too
        pid = st.pid("analyzer-0")
        os.kill(pid, signal.SIGSTOP)
        try:
            dead = st.counters(READERS, lambda c: len(c) == len(READERS) and all(
                x.get("dead_streams") == "analyzer-0" for x in c.values()), timeout_s=30)
            assert all(c["stream_deaths"] == 1 for c in dead.values()), dead
            text = st.casa("status", "--url", st.url)
            code, rows = _status_rows(st)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert text.returncode == 3, text.stdout + text.stderr
        line = next(x for x in text.stdout.splitlines() if x.startswith("analyzer-0"))
        assert "RUNNING" in line and "DEAD: no heartbeat for" in line, text.stdout
        assert "upstream dead: analyzer-0" in text.stdout.split("sinks-jsonl", 1)[1], text.stdout
        assert code == 3 and rows["analyzer-0"]["heartbeat"] == "dead" and rows["analyzer-0"]["silent_s"] >= 3
        assert rows["analyzer-0"]["state"] == "RUNNING"
        assert all(rows[r]["dead_upstreams"] == ["analyzer-0"] for r in READERS), rows
        assert all(rows[r]["heartbeat"] == "alive" for r in READERS + ["sessionizer", "collector"]), rows
        for name in READERS:
            assert st.stage_log(name).count(DEAD_LINE) == 1, st.stage_log(name)[-1500:]

        back = st.counters(everyone, lambda c: len(c) == len(everyone) and all(
            x.get("dead_streams") == "" for x in c.values()), timeout_s=30)
        assert all(back[r]["stream_deaths"] == 1 for r in READERS), back
        assert back["analyzer-0"]["stream_deaths"] == 0, back["analyzer-0"]     # the resumed reader
        assert st.pid("analyzer-0") == pid                                       # resumed, not restarted
        for name in READERS:
            log = st.stage_log(name)
            assert log.count(ALIVE_LINE) == 1 and log.index(ALIVE_LINE) > log.index(DEAD_LINE), log[-1500:]
        assert "upstream stream dead" not in st.stage_log("analyzer-0")
        code, rows = _status_rows(st)
        assert code == 0 and all(r["heartbeat"] == "alive" and not r["dead_upstreams"] for r in rows.values()), rows
