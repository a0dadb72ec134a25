"""Stream liveness (bus/liveness.py, Subscriber.check_liveness): HEARTBEAT_LIVENESS missed
heartbeats make a stream dead, its next heartbeat alive again; logged once each way.

The tracker and the subscriber run on a fake clock here; the last test runs a real publisher and
subscriber over ZeroMQ with a short interval. The live stack test (a stage stopped for real under
supervisord) is tests/stack/test_liveness_live.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import zmq

from bus import Publisher, Subscriber, bind_publisher, connect_subscriber
from bus.counters import STAGES
from bus.envelope import Envelope, pack
from bus.liveness import HEARTBEAT_LIVENESS, MAX_INTERVAL_S, LivenessTracker

S = 1_000_000_000


# -- the tracker ------------------------------------------------------------------------------

def test_three_missed_intervals_make_a_stream_dead_and_a_heartbeat_brings_it_back() -> None:
    t = LivenessTracker()
    t.beat("analyzer-0", 1.0, sent_ns=10 * S, now_s=10.0)
    assert t.check(12.9) == []                                  # 2.9 intervals: late, not dead
    assert t.check(13.0) == ["analyzer-0"]                      # the third interval missed
    assert t.check(20.0) == []                                  # reported once
    assert t.dead() == ["analyzer-0"] and t.deaths == 1
    assert t.beat("analyzer-0", 1.0, sent_ns=21 * S, now_s=21.0) == pytest.approx(11.0)   # silent 11 s
    assert t.dead() == [] and t.beat("analyzer-0", 1.0, 22 * S, 22.0) is None              # once
    assert t.check(24.5) == [] and t.check(25.0) == ["analyzer-0"] and t.deaths == 2


def test_the_timeout_is_liveness_times_the_streams_own_interval() -> None:
    t = LivenessTracker()
    t.beat("slow", 2.5, sent_ns=S, now_s=0.0)
    t.beat("fast", 0.1, sent_ns=S, now_s=0.0)
    assert t.check(0.29) == [] and t.check(0.31) == ["fast"]
    assert t.check(7.4) == [] and t.check(7.5) == ["slow"]
    assert HEARTBEAT_LIVENESS == 3


@pytest.mark.parametrize("claimed", [None, "1", 0, -1, float("nan"), True])
def test_a_heartbeat_without_a_sane_interval_is_held_to_the_default(claimed: Any) -> None:
    t = LivenessTracker()
    t.beat("x", claimed, sent_ns=S, now_s=0.0)
    assert t.check(3.0) == ["x"]


def test_a_stream_cannot_claim_an_interval_that_makes_it_undying() -> None:
    t = LivenessTracker()
    t.beat("x", 1e12, sent_ns=S, now_s=0.0)
    assert t.check(3 * MAX_INTERVAL_S) == ["x"]


def test_a_stream_never_heard_is_not_reported_unless_expected() -> None:
    t = LivenessTracker()
    t.beat("a", 1.0, sent_ns=S, now_s=0.0)
    assert t.check(100.0) == ["a"]                    # "b" was never heard: a late start, not a death
    t.expect("b", now_s=100.0)                        # casa status: the stage should be up
    assert not t.heard("b") and t.check(102.9) == [] and t.check(103.0) == ["b"]


def test_with_input_queued_only_the_bus_clock_proves_a_stream_dead() -> None:
    """A paused subscriber resumes to a full queue: its upstreams' heartbeats are in it."""
    t = LivenessTracker()
    t.beat("analyzer-0", 1.0, sent_ns=10 * S, now_s=10.0)
    t.beat("analyzer-1", 1.0, sent_ns=10 * S, now_s=10.0)
    assert t.check(60.0, input_pending=True) == []               # nothing newer read: no proof
    t.beat("analyzer-0", 1.0, sent_ns=12 * S, now_s=60.1)        # read from the queue
    assert t.check(60.2, input_pending=True) == []               # 2 s newer: analyzer-1 may be next
    t.beat("analyzer-0", 1.0, sent_ns=13 * S, now_s=60.3)
    assert t.check(60.4, input_pending=True) == ["analyzer-1"]   # 3 s of analyzer-0, none of it
    assert t.dead() == ["analyzer-1"]


# -- the subscriber ---------------------------------------------------------------------------

class FakeSock:
    """What Subscriber reads: frames queued by the test; EVENTS says whether any are left."""

    def __init__(self) -> None:
        self.frames: list[list[bytes]] = []

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self.frames:
            raise zmq.Again()
        return self.frames.pop(0)

    def getsockopt(self, opt: int) -> int:
        return zmq.POLLIN if self.frames else 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _heartbeat(stream: str, seq: int, interval_s: float = 1.0) -> list[bytes]:
    stage = stream.split("-")[0]
    return pack(Envelope(topic=f"{stage}.heartbeat", stream=stream, epoch=1, seq=seq, sent_ns=time.time_ns(),
                         last_seq={}, counters={}, interval_s=interval_s))


def _subscriber() -> tuple[Subscriber, FakeSock, Clock]:
    sock, clock = FakeSock(), Clock()
    return Subscriber(sock, ["analyzer.decision"], monotonic=clock), sock, clock


def test_the_subscriber_logs_counts_and_names_a_dead_stream_once_each_way(caplog) -> None:
    sub, sock, clock = _subscriber()
    caplog.set_level(logging.WARNING, "casa.bus")
    sock.frames += [_heartbeat("analyzer-0", 1), _heartbeat("analyzer-1", 1)]
    sub.receive()
    clock.now += 3.5
    sock.frames.append(_heartbeat("analyzer-1", 2))
    sub.receive()
    assert sub.check_liveness() == ["analyzer-0"] and sub.check_liveness() == []
    counters = sub.counters.as_dict()
    assert counters["dead_streams"] == "analyzer-0" and counters["stream_deaths"] == 1
    dead = [r.getMessage() for r in caplog.records if "dead" in r.getMessage()]
    assert dead == ["upstream stream dead: no heartbeat for 3 intervals | stream=analyzer-0 silent_s=3.5 "
                    "interval_s=1 dead_streams=analyzer-0"]
    clock.now += 10
    sock.frames += [_heartbeat("analyzer-0", 2), _heartbeat("analyzer-0", 3)]
    sub.receive()
    assert sub.counters.dead_streams == "" and sub.counters.stream_deaths == 1
    alive = [r.getMessage() for r in caplog.records if "alive again" in r.getMessage()]
    assert alive == ["upstream stream alive again | stream=analyzer-0 silent_s=13.5 dead_streams=none"]


def test_a_subscriber_that_only_reads_data_is_not_slowed_and_declares_nothing() -> None:
    """Data messages are no proof of life and cost nothing: only heartbeats feed liveness."""
    sub, sock, clock = _subscriber()
    sock.frames.append(pack(Envelope(topic="analyzer.decision", stream="analyzer-0", epoch=1, seq=1,
                                     sent_ns=time.time_ns(), events=[])))
    sub.receive()
    clock.now += 100
    assert sub.check_liveness() == [] and sub.liveness.streams == {}


def test_every_stage_that_subscribes_declares_the_liveness_counters() -> None:
    for stage in ("analyzer", "sinks", "responder"):
        assert STAGES[stage].kind("stream_deaths").value == "problem"
        assert STAGES[stage].spec("dead_streams") is not None
    assert STAGES["sessionizer"].kind("bus_stream_deaths").value == "problem"
    assert STAGES["sinks"].shown({"stream_deaths": 2, "dead_streams": "analyzer-1"}) == {"stream_deaths": 2}


# -- real ZeroMQ ------------------------------------------------------------------------------

def test_a_publisher_that_stops_heartbeating_is_dead_and_alive_again_over_real_sockets(tmp_path: Path) -> None:
    bus_dir = Path("/tmp") / f"casa-live-{uuid.uuid4().hex[:8]}"
    bus_dir.mkdir()
    ctx = zmq.Context()
    try:
        xpub = bind_publisher(ctx, "analyzer-0", bus_dir)
        topics = Subscriber.subscriptions(["analyzer.decision"])
        sock = connect_subscriber(ctx, ["analyzer-0"], topics, bus_dir)
        sub = Subscriber(sock, ["analyzer.decision"])
        pub = Publisher(xpub, "analyzer", "analyzer-0", heartbeat_interval_s=0.05)
        assert xpub.poll(5000)
        xpub.recv()                                   # the subscription: the SUB is connected

        def run(seconds: float, beat: bool) -> list[str]:
            died: list[str] = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if beat and pub.heartbeat_due():
                    pub.heartbeat()
                if sock.poll(10):
                    sub.receive()
                died += sub.check_liveness()
            return died
        assert run(0.4, beat=True) == []
        assert sub.liveness.heard("analyzer-0")
        assert run(0.5, beat=False) == ["analyzer-0"]          # 3 x 0.05 s silent, with margin
        assert sub.counters.dead_streams == "analyzer-0"
        assert run(0.3, beat=True) == [] and sub.counters.dead_streams == ""
        assert sub.counters.stream_deaths == 1
    finally:
        ctx.destroy(0)
        for p in bus_dir.iterdir():
            p.unlink()
        bus_dir.rmdir()


def test_silence_the_subscriber_did_not_witness_is_judged_by_the_bus_clock() -> None:
    """Paused for 30 s (SIGSTOP: its bus I/O stopped too), a stage's first check after it resumes
    cannot tell a dead stream from one whose heartbeats are still on their way in."""
    t = LivenessTracker()
    t.beat("sessionizer", 1.0, sent_ns=10 * S, now_s=10.0)
    assert t.check(10.5) == []
    assert t.check(40.5, unwatched_s=30.0) == []                # resumed: nothing read yet
    t.beat("sessionizer", 1.0, sent_ns=40 * S, now_s=40.8)      # the queued heartbeats arrive
    assert t.check(41.5, unwatched_s=1.0) == [] and t.deaths == 0
    assert t.check(44.0, unwatched_s=1.0) == ["sessionizer"]    # silent since, while watched


def test_a_stream_that_died_while_the_subscriber_was_paused_is_dead_at_once_or_an_interval_later() -> None:
    t = LivenessTracker()
    t.beat("sessionizer", 1.0, sent_ns=10 * S, now_s=10.0)
    t.beat("analyzer-0", 1.0, sent_ns=10 * S, now_s=10.0)
    t.beat("analyzer-0", 1.0, sent_ns=40 * S, now_s=40.2)       # the other stream's news: bus clock
    assert t.check(40.5, unwatched_s=30.0) == ["sessionizer"]   # proven by the bus clock at once
    t2 = LivenessTracker()
    t2.beat("sessionizer", 1.0, sent_ns=10 * S, now_s=10.0)
    assert t2.check(40.5, unwatched_s=30.0) == []               # no evidence yet
    assert t2.check(41.5, unwatched_s=1.0) == ["sessionizer"]   # watched for an interval: dead


def test_the_subscriber_measures_how_long_it_was_not_checking() -> None:
    clock = [10.0]
    sub = Subscriber(sock=None, topics=["sessionizer.event", "sessionizer.heartbeat"],
                     monotonic=lambda: clock[0])
    sub.handle_frames(pack(Envelope("sessionizer.heartbeat", "sessionizer", 1, 1, 10 * S,
                                    last_seq={}, counters={}, interval_s=1.0)))
    assert sub.check_liveness() == []
    clock[0] = 40.0                                             # a 30 s pause
    assert sub.check_liveness() == [] and sub.counters.stream_deaths == 0
    clock[0] = 41.0
    assert sub.check_liveness() == ["sessionizer"] and sub.counters.stream_deaths == 1
