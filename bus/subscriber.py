"""Subscriber: decode, account for loss, and never let one bad message stop a stage.

:meth:`Subscriber.receive` returns decoded envelopes. Malformed messages, unknown envelope
versions, sequence gaps, tail loss announced by heartbeats and lagging messages are counted in
:attr:`Subscriber.counters`, which stages report in their own heartbeats and at shutdown.

Events of a kind the topic does not carry in this build's schema (bus.events.known_kinds: a newer
publisher's new kinds) are removed from the envelope and counted as ``unknown_kind``, so a stage
never sees them and never counts them as malformed (docs/bus.md §13).

Liveness (docs/bus.md §8.2.1): every heartbeat read feeds :attr:`Subscriber.liveness`; a stage calls
:meth:`Subscriber.check_liveness` on its own heartbeat cadence, which reports an upstream stream
silent for ``HEARTBEAT_LIVENESS`` intervals as dead (logged once, counted in ``stream_deaths``,
named in ``dead_streams``) and, at its next heartbeat, alive again (logged once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import zmq

from bus.envelope import Envelope, unpack
from bus.errors import MalformedMessage, UnknownVersion
from bus.events import known_kinds
from bus.liveness import LivenessTracker
from bus.sequence import SequenceTracker
from bus.topics import heartbeat_topic, is_heartbeat, stage_of

__all__ = ["Subscriber", "SubscriberCounters", "LAG_WARN_S"]

LAG_WARN_S = 2.0          # a message older than this when read marks the subscriber as lagging
UNKNOWN_KIND_LOG_EVERY = 10_000   # unknown kinds are expected traffic: log the first, then rarely

log = logging.getLogger("casa.bus")


@dataclass(slots=True)
class SubscriberCounters:
    received_messages: int = 0
    received_events: int = 0
    malformed: int = 0
    unknown_version: int = 0
    unknown_kind: int = 0          # events of a kind this build does not know: dropped
    lost_messages: int = 0
    lagging_messages: int = 0
    publisher_restarts: int = 0
    stream_deaths: int = 0         # times an upstream stream went HEARTBEAT_LIVENESS intervals silent
    dead_streams: str = ""         # the upstream streams dead now, comma-separated ("" none)

    def as_dict(self) -> dict[str, int | str]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class Subscriber:
    """Wraps a SUB socket (or anything with ``recv_multipart``)."""

    sock: Any
    topics: list[str]
    clock: Callable[[], int] = time.time_ns
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    counters: SubscriberCounters = field(default_factory=SubscriberCounters)
    on_loss: Callable[[str, str, int], None] | None = None   # (stream, topic, lost) -> None
    monotonic: Callable[[], float] = time.monotonic           # liveness deadlines
    liveness: LivenessTracker = field(default_factory=LivenessTracker)
    last_liveness_check_s: float | None = None    # a long gap since: this stage was not reading
    keep_raw: bool = False        # keep each batch's packed events too (Envelope.raw_events)

    @staticmethod
    def subscriptions(topics: list[str]) -> list[str]:
        """``topics`` plus the heartbeat topic of each stage they name."""
        hbs = {heartbeat_topic(stage_of(t)) for t in topics if t}
        return sorted(set(topics) | hbs)

    def handle_frames(self, frames: list[bytes]) -> Envelope | None:
        """Decode and account for one message; None if it was dropped."""
        try:
            env = unpack(frames, self.keep_raw)
        except UnknownVersion as exc:
            self.counters.unknown_version += 1
            log.warning("dropped a bus message with an unknown version | reason=%s", exc)
            return None
        except MalformedMessage as exc:
            self.counters.malformed += 1
            log.warning("dropped a malformed bus message | reason=%s", exc)
            return None
        self.counters.received_messages += 1
        if is_heartbeat(env.topic):
            lost = self.tracker.observe_heartbeat(env.stream, env.epoch, env.last_seq or {},
                                                  set(self.topics))
            self._count_loss(env.stream, env.topic, lost)
            self._heard(env)
        else:
            self.counters.received_events += len(env.events)
            lost = self.tracker.observe(env.stream, env.topic, env.epoch, env.seq)
            self._count_loss(env.stream, env.topic, lost)
            self._drop_unknown_kinds(env)
        self.counters.publisher_restarts = self.tracker.restarts
        if (self.clock() - env.sent_ns) / 1e9 > LAG_WARN_S:
            self.counters.lagging_messages += 1
        return env

    def _heard(self, heartbeat: Envelope) -> None:
        """A heartbeat is the stream's proof of life; one that ends a death is logged once."""
        silent = self.liveness.beat(heartbeat.stream, heartbeat.interval_s, heartbeat.sent_ns,
                                    self.monotonic())
        if silent is not None:
            self.counters.dead_streams = ",".join(self.liveness.dead())
            log.warning("upstream stream alive again | stream=%s silent_s=%.1f dead_streams=%s",
                        heartbeat.stream, silent, self.counters.dead_streams or "none")

    def check_liveness(self, now_s: float | None = None) -> list[str]:
        """Report upstream streams silent for ``HEARTBEAT_LIVENESS`` intervals as dead (call once
        per heartbeat interval, e.g. before publishing the stage's own heartbeat); returns the
        streams that died since the last call. Never kills or disconnects anything."""
        now = self.monotonic() if now_s is None else now_s
        last, self.last_liveness_check_s = self.last_liveness_check_s, now
        newly = self.liveness.check(now, self._input_pending(), 0.0 if last is None else now - last)
        if newly:
            self.counters.stream_deaths = self.liveness.deaths
            self.counters.dead_streams = ",".join(self.liveness.dead())
            for name in newly:
                st = self.liveness.streams[name]
                log.warning("upstream stream dead: no heartbeat for %d intervals | stream=%s "
                            "silent_s=%.1f interval_s=%g dead_streams=%s", self.liveness.liveness,
                            name, st.silent_s(now), st.interval_s, self.counters.dead_streams)
        return newly

    def _input_pending(self) -> bool:
        """Unread input on the socket (a heartbeat may be queued behind it)."""
        try:
            return bool(self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN)
        except (AttributeError, zmq.ZMQError):        # a stand-in socket, or one already closed
            return False

    def _drop_unknown_kinds(self, env: Envelope) -> None:
        """Remove events whose kind ``env.topic`` does not carry in this build (counted).

        Only a text kind that is not in the table counts: an event without a kind, or a kind
        that is not text, is left for the stage's own validation (that is damage, not news).
        """
        known = known_kinds(env.topic)
        if known is None:
            return
        try:                                  # every kind known (nearly every batch): C-level
            if known.issuperset(map(dict.get, env.events, repeat("kind"))):
                return
        except TypeError:                     # an unhashable kind (damage): judged below
            pass
        kept = [ev for ev in env.events if type(ev.get("kind")) is not str or ev["kind"] in known]
        if len(kept) == len(env.events):
            return
        before = self.counters.unknown_kind
        self.counters.unknown_kind += len(env.events) - len(kept)
        every = UNKNOWN_KIND_LOG_EVERY
        if before == 0 or before // every != self.counters.unknown_kind // every:
            log.warning("dropped bus events of kinds this build does not know | stream=%s topic=%s "
                        "dropped=%d total=%d", env.stream, env.topic, len(env.events) - len(kept),
                        self.counters.unknown_kind)
        env.events, env.raw_events = kept, None

    def _count_loss(self, stream: str, topic: str, lost: int) -> None:
        if lost:
            self.counters.lost_messages += lost
            log.warning("bus messages lost | stream=%s topic=%s lost=%d", stream, topic, lost)
            if self.on_loss:
                self.on_loss(stream, topic, lost)

    def receive(self, max_messages: int = 256) -> list[Envelope]:
        """Read what is waiting (non-blocking), up to ``max_messages``.

        Loss is accounted (and ``on_loss`` called) while reading, i.e. before the caller has
        handled the envelopes returned ahead of the gap. A stage that must attribute loss to
        exactly the sessions open at that moment reads one message at a time with
        :meth:`handle_frames` instead.
        """
        out: list[Envelope] = []
        for _ in range(max_messages):
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            env = self.handle_frames(frames)
            if env is not None:
                out.append(env)
        return out
