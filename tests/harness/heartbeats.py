"""Listening to stages' heartbeats in tests: one SUB on their heartbeat topics only.

    with HeartbeatWatch(bus_dir, ["sinks-jsonl"]) as hb:
        wait_for(lambda: hb.poll().get("audit_written") == 1)      # the first stream's counters
    with HeartbeatWatch(bus_dir, ["analyzer-0", "sinks-jsonl"]) as hb:
        latest = hb.wait(lambda hb: "analyzer-0" in hb.latest_all(), 30, "a heartbeat of analyzer-0")

Heartbeats are the stages' readiness and progress signal (each sends one a second with its
counters, docs/bus.md §8.2-8.3): a test waits on them, never on a fixed sleep. The watch decodes
through ``bus.Subscriber`` like a stage, so malformed heartbeats and liveness are accounted as a
stage would account them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import zmq

from bus import Envelope, Subscriber, connect_subscriber
from bus.topics import heartbeat_topic, is_heartbeat

__all__ = ["HeartbeatWatch"]

T = TypeVar("T")


class HeartbeatWatch:
    """The heartbeats of ``streams`` as they arrive; :meth:`close` (or ``with``) when done."""

    def __init__(self, bus_dir: Path, streams: str | list[str]) -> None:
        self.streams = [streams] if isinstance(streams, str) else list(streams)
        topics = sorted({heartbeat_topic(s.split("-", 1)[0]) for s in self.streams})
        self.ctx = zmq.Context()
        self.sock = connect_subscriber(self.ctx, self.streams, topics, bus_dir)
        self.sub = Subscriber(self.sock, topics)
        self.beats: dict[str, list[Envelope]] = {}

    def poll(self) -> dict[str, Any]:
        """Read what has arrived (without waiting); the first stream's latest counters."""
        for env in self.sub.receive():
            if is_heartbeat(env.topic) and env.counters is not None:
                self.beats.setdefault(env.stream, []).append(env)
        return self.latest

    @property
    def latest(self) -> dict[str, Any]:
        """The first stream's latest counters ({} before its first heartbeat)."""
        return self.counters(self.streams[0])

    def counters(self, stream: str) -> dict[str, Any]:
        got = self.beats.get(stream)
        return dict(got[-1].counters or {}) if got else {}

    def latest_all(self) -> dict[str, dict[str, Any]]:
        """The latest counters of every stream heard so far."""
        return {s: self.counters(s) for s in self.streams if s in self.beats}

    def wait(self, until: Callable[[HeartbeatWatch], T], timeout_s: float = 15.0, what: str = "heartbeats",
             tick: Callable[[], object] | None = None, fail: bool = True) -> T | None:
        """Read heartbeats until ``until(self)`` is truthy and return it. After ``timeout_s``:
        AssertionError naming ``what`` and the last counters heard, or None when not ``fail``.
        ``tick`` runs on every pass (a test playing the upstream keeps heartbeating with it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if tick is not None:
                tick()
            if self.sock.poll(50):
                self.poll()
            got = until(self)
            if got:
                return got
            if time.monotonic() >= deadline:
                if not fail:
                    return None
                heard = {s: {k: v for k, v in c.items() if v} for s, c in self.latest_all().items()}
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; last heard: {heard}")

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()

    def __enter__(self) -> HeartbeatWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
