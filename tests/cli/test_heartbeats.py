"""casa status liveness (cli/heartbeats.py, cli/status.py): a stage silent for HEARTBEAT_LIVENESS
heartbeat intervals is DEAD, by the same rule a stage applies to its upstreams, in the table and
in --json; a stage's own report of dead upstreams is shown under it.

Stand-in stages are real publishers on real ipc sockets, heartbeating from a thread while the
listener (or the `casa status` process) listens. The real stack with a stage stopped for real is
tests/stack/test_liveness_live.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from bus import Publisher, bind_publisher
from cli.heartbeats import Beat, HeartbeatListener, Liveness
from cli.status import collect, dead_upstreams, exit_status, render
from cli.supervisor import ProcessInfo

CHECKOUT = Path(__file__).resolve().parents[2]


class StandIns:
    """analyzer-0 heartbeats throughout (reporting sessionizer dead), analyzer-1 once and then
    never again, sessionizer binds its socket and never heartbeats (a hung stage)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stop = threading.Event()
        self.bound = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ctx = zmq.Context()
        socks = {s: bind_publisher(ctx, s, self.directory) for s in ("sessionizer", "analyzer-0", "analyzer-1")}
        alive = Publisher(socks["analyzer-0"], "analyzer", "analyzer-0")
        once = Publisher(socks["analyzer-1"], "analyzer", "analyzer-1")
        self.bound.set()
        first = True
        try:
            while not self.stop.is_set():
                if alive.heartbeat_due():
                    alive.heartbeat({"dead_streams": "sessionizer", "stream_deaths": 1})
                if first and socks["analyzer-1"].poll(0):     # a subscriber came: one beat, then silence
                    once.heartbeat()
                    first = False
                time.sleep(0.02)
        finally:
            ctx.destroy(0)

    def __enter__(self) -> StandIns:
        self.thread.start()
        assert self.bound.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def bus_dir() -> Iterator[Path]:
    d = Path("/tmp") / f"casa-hb-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def test_the_listener_calls_silent_stages_dead_and_beating_ones_alive(bus_dir: Path) -> None:
    with StandIns(bus_dir):
        listener = HeartbeatListener(bus_dir, ["sessionizer", "analyzer-0", "analyzer-1"])
        try:
            early = listener.liveness()
            listener.listen(3.5)
            verdicts = listener.liveness()
        finally:
            listener.close()
    assert early["sessionizer"] == Liveness("unknown")               # not heard, not yet 3 intervals
    assert verdicts["analyzer-0"] == Liveness("alive")
    assert verdicts["sessionizer"].state == "dead" and verdicts["sessionizer"].silent_s >= 3.0
    assert verdicts["analyzer-1"].state == "dead", verdicts       # heard once, then silent


def test_status_renders_dead_stages_and_the_upstreams_a_stage_reports_dead() -> None:
    class Listener:
        beats = {"analyzer-0": [Beat("analyzer-0", 1, 0.0, {"sent_events": 1, "dead_streams": "sessionizer",
                                                             "stream_deaths": 1})]}
    procs = [ProcessInfo("sessionizer", "sessionizer", "RUNNING", 10, 5, ""),
             ProcessInfo("analyzer-0", "analyzer", "RUNNING", 11, 5, "")]
    rows = collect(procs, Listener(), {"sessionizer": Liveness("dead", 4.2),       # type: ignore[arg-type]
                                       "analyzer-0": Liveness("alive")})
    lines = render(rows)
    assert lines[1].endswith("DEAD: no heartbeat for 4.2 s"), lines
    assert "stream_deaths=1" in lines[2] and lines[3].strip() == "upstream dead: sessionizer", lines
    assert (rows[0].heartbeat, rows[0].silent_s, rows[1].dead_upstreams) == ("dead", 4.2, ["sessionizer"])
    assert all(len(line) < 80 for line in lines)
    assert exit_status(rows, supervised=True, unknown_names=False) == 3         # RUNNING, yet dead
    assert exit_status(rows[1:], supervised=True, unknown_names=False) == 0     # a dead upstream: still 0


def test_the_sessionizer_reports_its_upstreams_under_its_bus_prefix() -> None:
    assert dead_upstreams({"bus_dead_streams": "collector"}) == ["collector"]
    assert dead_upstreams({"dead_streams": "analyzer-0,analyzer-2"}) == ["analyzer-0", "analyzer-2"]
    assert dead_upstreams({"dead_streams": ""}) == [] and dead_upstreams({"dead_streams": 3}) == []


def test_casa_status_json_and_exit_status_say_dead(bus_dir: Path) -> None:
    env = {**os.environ, "CASA_BUS_DIR": str(bus_dir), "CASA_SUPERVISOR_URL": f"unix://{bus_dir / 'none.sock'}"}
    with StandIns(bus_dir):
        out = subprocess.run([sys.executable, "-m", "cli", "status", "--json"], capture_output=True,
                             text=True, env=env, cwd=CHECKOUT, timeout=60)
    rows = {r["name"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert out.returncode == 3, out.stderr
    assert rows["analyzer-0"]["heartbeat"] == "alive" and rows["analyzer-0"]["dead_upstreams"] == ["sessionizer"]
    assert rows["sessionizer"]["heartbeat"] == "dead" and rows["sessionizer"]["silent_s"] >= 3.0
    assert rows["analyzer-1"]["heartbeat"] == "dead"
