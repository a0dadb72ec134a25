"""Listening to the stages' heartbeats: the source of `casa status` rates, liveness and
`casa reload` results.

Every stage publishes ``<stage>.heartbeat`` once a second with its counters (docs/bus.md §8.3).
A listener is a SUB on every live stream subscribed to heartbeats only, so it costs the stages
nothing but one more copy of a small message per second. Its liveness verdicts follow the same
rule, and the same code (bus/liveness.py), as a stage's view of its upstreams: a stream that
sends no heartbeat for ``HEARTBEAT_LIVENESS`` intervals is dead, counted from the start of
listening for a stream not heard at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from bus import Subscriber, connect_subscriber
from bus.topics import is_heartbeat

__all__ = ["Beat", "HeartbeatListener", "Liveness", "event_rate"]

POLL_MS = 100


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat as received."""

    stream: str
    epoch: int
    recv_s: float                  # monotonic time of receipt
    counters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Liveness:
    """A listener's verdict on one stream."""

    state: str                     # "alive", "dead", or "unknown": not heard, listened too briefly
    silent_s: float | None = None  # dead: seconds since its last heartbeat (or since listening began)


@dataclass(slots=True)
class HeartbeatListener:
    """Collects heartbeats per stream; close() when done."""

    directory: Path
    streams: list[str]
    beats: dict[str, list[Beat]] = field(default_factory=dict)
    _ctx: zmq.Context | None = None
    _sock: zmq.Socket | None = None
    _sub: Subscriber | None = None

    def __post_init__(self) -> None:
        self._ctx = zmq.Context()
        stages = sorted({s.split("-", 1)[0] for s in self.streams})
        topics = [f"{stage}.heartbeat" for stage in stages]
        self._sock = connect_subscriber(self._ctx, self.streams, topics, self.directory)
        self._sub = Subscriber(self._sock, topics)
        now = time.monotonic()
        for stream in self.streams:            # listed: a stream silent from the start is dead too
            self._sub.liveness.expect(stream, now)

    def listen(self, seconds: float, until: Any = None) -> None:
        """Collect for ``seconds``, or until ``until(self)`` is true."""
        assert self._sock is not None and self._sub is not None
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._sock.poll(int(min(left, POLL_MS / 1000) * 1000) or 1):
                for env in self._sub.receive():
                    if is_heartbeat(env.topic):
                        self.beats.setdefault(env.stream, []).append(
                            Beat(env.stream, env.epoch, time.monotonic(), dict(env.counters or {})))
            if until is not None and until(self):
                return

    def latest(self, stream: str) -> Beat | None:
        got = self.beats.get(stream)
        return got[-1] if got else None

    def liveness(self, now_s: float | None = None) -> dict[str, Liveness]:
        """Every listed stream's verdict as of ``now_s`` (default: now)."""
        assert self._sub is not None
        tracker = self._sub.liveness
        now = time.monotonic() if now_s is None else now_s
        tracker.check(now)
        out = {}
        for stream in self.streams:
            st = tracker.streams.get(stream)
            if st is not None and st.dead:
                out[stream] = Liveness("dead", round(st.silent_s(now), 1))
            else:
                out[stream] = Liveness("alive" if tracker.heard(stream) else "unknown")
        return out

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
        if self._ctx is not None:
            self._ctx.term()
        self._sock = self._ctx = None


def event_rate(beats: list[Beat], counter: str = "sent_events") -> float | None:
    """Events per second between the first and last heartbeat of one epoch; None if unknown."""
    same = [b for b in beats if beats and b.epoch == beats[-1].epoch and isinstance(b.counters.get(counter), int)]
    if len(same) < 2 or same[-1].recv_s <= same[0].recv_s:
        return None
    return (same[-1].counters[counter] - same[0].counters[counter]) / (same[-1].recv_s - same[0].recv_s)
