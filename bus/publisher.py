"""Publisher: batching, sequence numbers, heartbeats, and never blocking the caller.

Events are appended per topic and sent as one message when ``batch_max`` events are waiting or
when :meth:`flush` is called (stages call it on every pass of their poll loop, so the added
latency is bounded by the loop's timeout). Each message takes the next ``seq`` of its topic even
when it cannot be delivered, so subscribers see undelivered messages as exact gaps; the publisher
counts them too (``undelivered_events``).

The publisher owns its failures: an event that cannot be packed (a value the encoder does not take) is
dropped and counted (``unpublishable``, a loss counter in every heartbeat) while the rest of its
batch goes out, so one bad map never blocks a topic's queue; and :meth:`Publisher.publish_now`
flushes every queue itself, so callers never flush before it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import zmq

from bus.counters import for_stage
from bus.envelope import ENCODE_ERRORS, Envelope, encode, pack, pack_raw
from bus.topics import heartbeat_topic

__all__ = ["Publisher", "BATCH_MAX_EVENTS", "HEARTBEAT_INTERVAL_S"]

BATCH_MAX_EVENTS = 64
HEARTBEAT_INTERVAL_S = 1.0
PACK_ERRORS = ENCODE_ERRORS          # what the encoder raises for a value it cannot take

log = logging.getLogger("casa.bus")


class Publisher:
    """Stamps and sends envelopes for one stream (one stage instance)."""

    def __init__(self, sock: Any, stage: str, stream: str | None = None, *,
                 batch_max: int = BATCH_MAX_EVENTS, clock: Callable[[], int] = time.time_ns,
                 heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self.sock = sock
        self.stage = stage
        self.stream = stream or stage
        self.batch_max = batch_max
        self.clock = clock
        self.epoch = clock()
        self.heartbeat_interval_s = heartbeat_interval_s
        self.last_seq: dict[str, int] = {}
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.sent_events = 0
        self.sent_messages = 0
        self.undelivered_events = 0
        self.undelivered_messages = 0
        self.unpublishable = 0                 # events dropped because they cannot be packed
        self._next_heartbeat = 0.0
        self._checked_counters: set[str] = set()

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        """Queue one event; sends the topic's batch when it is full."""
        batch = self.pending.setdefault(topic, [])
        batch.append(event)
        if len(batch) >= self.batch_max:
            self._send(topic, batch)
            self.pending[topic] = []

    def publish_now(self, topic: str, events: list[dict[str, Any]]) -> bool:
        """Flush every queue, then send ``events`` as one message (control, lifecycle).

        Flushing all topics (not only ``topic``) keeps the order subscribers see across topics: a
        lifecycle "closed" or a reload never overtakes events queued before it on another topic.
        """
        self.flush()
        return self._send(topic, events)

    def publish_raw(self, topic: str, events: bytes, count: int) -> bool:
        """Send ``count`` events already packed as one msgpack array (``Envelope.raw_events`` of
        a batch passed on unchanged) as one message, after the topic's queued events.

        The bytes are sent as they are: a stage forwards a whole batch it did not change without
        packing its maps again (the analyzer's pass-through, its largest single cost per event
        after the fold itself).
        """
        self._flush_topic(topic)
        seq = self.last_seq.get(topic, 0) + 1
        self.last_seq[topic] = seq
        env = Envelope(topic=topic, stream=self.stream, epoch=self.epoch, seq=seq, sent_ns=self.clock())
        return self._deliver(pack_raw(env, events), count)

    def flush(self) -> None:
        """Send every partial batch (call once per poll-loop pass)."""
        for topic in list(self.pending):
            self._flush_topic(topic)

    def _flush_topic(self, topic: str) -> None:
        batch = self.pending.get(topic)
        if batch:
            self._send(topic, batch)
            self.pending[topic] = []

    def _send(self, topic: str, events: list[dict[str, Any]]) -> bool:
        seq = self.last_seq.get(topic, 0) + 1
        env = Envelope(topic=topic, stream=self.stream, epoch=self.epoch, seq=seq,
                       sent_ns=self.clock(), events=events)
        try:
            frames = pack(env)
        except PACK_ERRORS:
            env.events = self._packable(topic, events)
            if not env.events:
                return False                   # nothing to send: the seq is not used
            frames = pack(env)
        self.last_seq[topic] = seq
        return self._deliver(frames, len(env.events))

    def _packable(self, topic: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events of a batch that failed to pack which pack alone; the others are counted
        and logged (the slow path: taken only when a batch failed)."""
        kept = []
        for ev in events:
            try:
                encode(ev)
            except PACK_ERRORS as exc:
                self.unpublishable += 1
                log.error("dropped an event that cannot be packed | topic=%s reason=%s total=%d",
                          topic, exc, self.unpublishable)
                continue
            kept.append(ev)
        return kept

    def _deliver(self, frames: list[bytes], n_events: int) -> bool:
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.undelivered_messages += 1
            self.undelivered_events += n_events
            return False
        self.sent_messages += 1
        self.sent_events += n_events
        return True

    def heartbeat_due(self, now_s: float | None = None) -> bool:
        return (now_s if now_s is not None else time.monotonic()) >= self._next_heartbeat

    def counters(self) -> dict[str, int]:
        """The publisher's own counters, added to every heartbeat (bus/counters.py PUBLISHER)."""
        return {"sent_events": self.sent_events, "undelivered_events": self.undelivered_events,
                "undelivered_messages": self.undelivered_messages, "unpublishable": self.unpublishable,
                "pid": os.getpid()}

    def heartbeat(self, counters: dict[str, Any] | None = None, now_s: float | None = None) -> None:
        """Flush, then announce the last seq of every topic plus this stage's counters."""
        self.flush()
        self._next_heartbeat = (now_s if now_s is not None else time.monotonic()) + self.heartbeat_interval_s
        topic = heartbeat_topic(self.stage)
        seq = self.last_seq.get(topic, 0) + 1
        self.last_seq[topic] = seq
        merged = {**self.counters(), **(counters or {})}
        self._check_declared(merged)
        env = Envelope(topic=topic, stream=self.stream, epoch=self.epoch, seq=seq,
                       sent_ns=self.clock(), events=[],
                       last_seq={t: s for t, s in self.last_seq.items() if t != topic},
                       counters=merged, interval_s=self.heartbeat_interval_s)
        self._deliver(pack(env), 0)

    def _check_declared(self, counters: dict[str, Any]) -> None:
        """Warn once per name about a counter bus/counters.py does not declare: `casa status`
        classifies counters by those declarations, so an undeclared loss counter would be
        published and never shown."""
        new = counters.keys() - self._checked_counters
        if not new:
            return
        self._checked_counters |= new
        spec = for_stage(self.stage)
        unknown = spec.undeclared(new) if spec is not None else []
        if unknown:
            log.warning("heartbeat counters not declared in bus/counters.py; casa status will not "
                        "show them | stage=%s counters=%s", self.stage, ",".join(unknown))
