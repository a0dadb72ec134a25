"""The sink stage docs/operating.md §7.2 shows (one module of wiring plus its core) runs on the
real bus as printed there: it receives decisions and heartbeats from an analyzer stream,
publishes its own heartbeats, and stops on SIGTERM with exit 0 and its stopped line.

The code under test is the docs' block itself, so the walk-through cannot drift from what runs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import zmq

import bus
from bus.topics import ANALYZER_DECISION

CHECKOUT = Path(__file__).resolve().parents[2]
MARK = "<!-- example: sinks_alerts.py -->"


def example_module(dest: Path) -> Path:
    text = (CHECKOUT / "docs" / "operating.md").read_text()
    block = text[text.index(MARK):].split("```python\n", 1)[1].split("\n```", 1)[0]
    dest.write_text(block + "\n")
    return dest


def wait_subscribed(xpub: zmq.Socket, topics: set[str], timeout_s: float = 20.0) -> None:
    """An XPUB socket hears each subscription as b"\\x01" + topic: wait for all of them."""
    end = time.monotonic() + timeout_s
    while topics and time.monotonic() < end:
        if xpub.poll(200):
            topics.discard(xpub.recv()[1:].decode())
    assert not topics, f"the sink never subscribed to {topics}"


def test_the_documented_sink_runs_on_the_runtime(tmp_path: Path) -> None:
    module = example_module(tmp_path / "sinks_alerts.py")
    bus_dir = tmp_path / "bus"
    bus_dir.mkdir()
    alerts = tmp_path / "alerts.txt"
    ctx = zmq.Context()
    analyzer = bus.Publisher(bus.bind_publisher(ctx, "analyzer-0", bus_dir), "analyzer", "analyzer-0")
    watch = bus.Subscriber(bus.connect_subscriber(ctx, ["sinks-alerts"], ["sinks.heartbeat"], bus_dir),
                           ["sinks.heartbeat"])
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "ALERTS_FILE": str(alerts),
           "CASA_ANALYZER_INSTANCES": "1"}
    proc = subprocess.Popen([sys.executable, str(module), "--bus-dir", str(bus_dir)], cwd=tmp_path,
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_subscribed(analyzer.sock, {ANALYZER_DECISION, "analyzer.heartbeat"})
        analyzer.publish_now(ANALYZER_DECISION, [{"action": "ALERT", "session_id": 7, "score": 90},
                                                 {"action": "LOG", "session_id": 8, "score": 20}])
        beat: dict = {}
        end = time.monotonic() + 20
        while time.monotonic() < end and beat.get("alerts_written") != 1:
            analyzer.heartbeat({})
            if watch.sock.poll(300):
                beat = next((e.counters for e in reversed(watch.receive()) if e.counters), beat)
        assert beat.get("alerts_written") == 1, beat
        assert beat["pid"] == proc.pid and beat["received_events"] == 2 and beat["lost_messages"] == 0
        assert beat["received_messages"] >= 2             # the decisions and the analyzer's heartbeats
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        ctx.destroy(0)
    assert proc.returncode == 0, err
    assert "sink running | stream=sinks-alerts" in err
    stopped = re.search(r"sink stopped \| stream=sinks-alerts (.*)", err)
    assert stopped is not None, err
    fields = dict(kv.split("=", 1) for kv in stopped.group(1).split())
    assert fields["alerts_written"] == "1" and fields["received_events"] == "2"
    assert fields["unpublishable"] == "0" and fields["undelivered_events"] == "0"
    assert alerts.read_text() == "7 90\n"
