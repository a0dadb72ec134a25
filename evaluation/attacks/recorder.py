"""Everything the attack runner reads off the bus, in one background thread.

Two views of one run: the collector's raw events (what the kernel saw of the scenario's tree,
before any filter: the hygiene self-check reads these) and the analyzer's events, decisions and
session lifecycle (the verdict). Each item keeps its arrival time (``recv_ns``): time-to-alert is
measured from the triggering event's kernel timestamp to the ALERT decision's arrival here.

Scenarios run one after another, so a scenario's records are those after a :meth:`Recorder.mark`
taken just before it started.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import bus
from bus import topics
from bus.background import BackgroundSubscriber
from evaluation.cases import Received

__all__ = ["Recorder", "Mark"]

WANTED = (topics.COLLECTOR_EVENT, topics.ANALYZER_EVENT, topics.ANALYZER_DECISION, topics.ANALYZER_SESSION)


@dataclass(frozen=True, slots=True)
class Mark:
    """Positions in each list when a scenario started."""

    raw: int
    events: int
    decisions: int
    sessions: int


@dataclass(slots=True)
class Recorder:
    bus_dir: Path
    analyzers: int = 1
    raw: list[Received] = field(default_factory=list)
    events: list[Received] = field(default_factory=list)
    decisions: list[Received] = field(default_factory=list)
    sessions: list[Received] = field(default_factory=list)
    last_heartbeat_ns: dict[str, int] = field(default_factory=dict)     # stream -> sent_ns
    lost_messages: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _tap: BackgroundSubscriber | None = None

    def start(self) -> Recorder:
        streams = ["collector", *bus.analyzer_streams(self.analyzers)]
        self._tap = BackgroundSubscriber(self.bus_dir, streams, list(WANTED), self._on_envelope, on_loss=self._on_loss,
                                         poll_ms=50, max_messages=1000, name="attack-recorder").start()
        self.wait_heartbeats(streams, time.time_ns())
        return self

    def _on_loss(self, stream: str, topic: str, lost: int) -> None:
        self.lost_messages += lost

    def _on_envelope(self, env: bus.Envelope, now: int) -> None:
        targets = {topics.COLLECTOR_EVENT: self.raw, topics.ANALYZER_EVENT: self.events,
                   topics.ANALYZER_DECISION: self.decisions, topics.ANALYZER_SESSION: self.sessions}
        with self.lock:
            if topics.is_heartbeat(env.topic):
                self.last_heartbeat_ns[env.stream] = env.sent_ns
                return
            target = targets.get(env.topic)
            if target is not None:
                target.extend(Received(now, bus.from_wire(e)) for e in env.events)

    def wait_heartbeats(self, streams: list[str], after_ns: int, timeout_s: float = 30.0) -> None:
        """Until every stream in ``streams`` has sent a heartbeat after ``after_ns``: a publisher
        heartbeats after flushing, so everything it published before ``after_ns`` has arrived."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                behind = [s for s in streams if self.last_heartbeat_ns.get(s, 0) <= after_ns]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"no heartbeat from {behind} within {timeout_s:g} s: is the stack up?")
            time.sleep(0.05)

    def mark(self) -> Mark:
        with self.lock:
            return Mark(len(self.raw), len(self.events), len(self.decisions), len(self.sessions))

    def since(self, m: Mark) -> tuple[list[Received], list[Received], list[Received], list[Received]]:
        with self.lock:
            return (self.raw[m.raw:], self.events[m.events:], self.decisions[m.decisions:],
                    self.sessions[m.sessions:])

    def stop(self) -> None:
        if self._tap:
            self._tap.stop()
