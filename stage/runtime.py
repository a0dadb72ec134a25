"""The loop every stage runs: poll a source, act on signal flags, flush, checkpoint, heartbeat.

One pass of :meth:`Runtime.loop`:

1. ``source.poll(poll_ms)``: wait up to ``poll_ms`` for input and handle what came (a bus
   subscriber: up to 256 messages, decoded and handed to the core one at a time; the collector:
   the eBPF ring buffer);
2. a SIGHUP seen since the last pass: ``hooks.reload()``;
3. ``hooks.each_pass(read)``: the stage's own per-pass work (timers, drains);
4. ``pub.flush()``: partial batches go out, so a batch waits at most one pass;
5. the checkpoint cadence: ``hooks.checkpoint(False)`` every ``checkpoint_s`` (and sooner, at most
   every ``checkpoint_min_gap_s``, when ``hooks.checkpoint_wanted()``);
6. the heartbeat cadence (the publisher's interval): ``source.before_heartbeat()`` (a subscriber
   reports upstream streams silent for HEARTBEAT_LIVENESS intervals dead), ``hooks.on_heartbeat()``,
   then a heartbeat carrying ``hooks.counters()``.

At SIGTERM/SIGINT the loop ends after the pass and :meth:`Runtime.finish` runs:
``hooks.stopping()``, ``hooks.checkpoint(True)`` (the clean one), a last heartbeat, the line
``<label> stopped | <identity> <counters>`` (the heartbeat's: the publisher's and the stage's),
sockets closed. Signal handlers only set
:class:`~stage.flags.Flags`; nothing here runs inside one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq

from bus.envelope import Envelope
from bus.publisher import Publisher
from bus.subscriber import Subscriber
from stage.flags import Flags
from stage.memory import tune_gc

__all__ = ["Hooks", "Runtime", "Source", "SubscriberSource", "MAX_MESSAGES_PER_POLL", "kv"]

MAX_MESSAGES_PER_POLL = 256      # then the pass's timers, flush and heartbeat get their turn

log = logging.getLogger("casa.stage")


class Source(Protocol):
    """Where a stage's input comes from."""

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for input, handle what is there; return how much was read."""
        ...

    def before_heartbeat(self) -> None:
        """Once per heartbeat interval, before the stage's own heartbeat (upstream liveness)."""
        ...

    def close(self) -> None: ...


class SubscriberSource:
    """A bus subscriber read one message at a time, each handed to ``handle`` as it is decoded.

    One at a time, not a list from ``Subscriber.receive``: the subscriber reports a sequence gap
    (``on_loss``) while decoding the message after it, and by then the core must have handled
    every message before the gap, or it would blame the loss on sessions opened later.
    """

    __slots__ = ("sub", "handle", "max_messages", "_poller")

    def __init__(self, sub: Subscriber, handle: Callable[[Envelope], Any],
                 max_messages: int = MAX_MESSAGES_PER_POLL) -> None:
        self.sub = sub
        self.handle = handle
        self.max_messages = max_messages
        self._poller = zmq.Poller()
        self._poller.register(sub.sock, zmq.POLLIN)

    def poll(self, timeout_ms: int) -> int:
        try:
            if not self._poller.poll(timeout_ms):
                return 0
        except zmq.ZMQError:           # EINTR: a signal arrived; the loop looks at the flags
            return 0
        return self.read(self.max_messages)

    def read(self, max_messages: int) -> int:
        """Decode and handle what is waiting, up to ``max_messages``; return how many were read."""
        recv, decode, handle = self.sub.sock.recv_multipart, self.sub.handle_frames, self.handle
        for n in range(max_messages):
            try:
                frames = recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return n
            env = decode(frames)          # counts malformed messages and loss
            if env is not None:
                handle(env)
        return max_messages

    def before_heartbeat(self) -> None:
        """Upstream streams silent for HEARTBEAT_LIVENESS intervals are reported dead (logged,
        counted, and carried in the heartbeat about to go out: docs/bus.md §8.2.1)."""
        self.sub.check_liveness()

    def close(self) -> None:
        self.sub.sock.close(0)


class Hooks:
    """What a stage's wiring gives the runtime. Every method is called from the loop (never
    from a signal handler); the defaults do nothing, so a stage overrides only what it uses."""

    def each_pass(self, read: int) -> None:
        """After every poll (``read`` messages or records handled), before the flush."""

    def reload(self) -> None:
        """SIGHUP: re-read the configuration (validate, then swap; keep the old one on error)."""

    def on_heartbeat(self) -> None:
        """Work due once per heartbeat, just before it is sent."""

    def counters(self) -> Mapping[str, Any]:
        """What the heartbeat and the stopped line carry (bus/counters.py declares the names)."""
        return {}

    def checkpoint_wanted(self) -> bool:
        """True to checkpoint before ``checkpoint_s`` is up (at most every ``checkpoint_min_gap_s``)."""
        return False

    def checkpoint(self, clean: bool) -> None:
        """Save restart state; ``clean`` once, at the stop, after :meth:`stopping`."""

    def stopping(self) -> None:
        """At the stop, before the clean checkpoint and the last heartbeat: flush what is held."""


def kv(*maps: Mapping[str, Any]) -> str:
    """``k=v k=v`` for a log line's machine part."""
    return " ".join(f"{k}={v}" for m in maps for k, v in m.items())


@dataclass
class Runtime:
    """Runs one stage: ``hooks`` over ``source``, publishing on ``pub`` (module doc)."""

    label: str                          # names the running and stopped lines: "analyzer", "sink"
    hooks: Hooks
    source: Source
    pub: Publisher
    ctx: zmq.Context | None = None      # terminated at the end, after the sockets are closed
    ident: dict[str, Any] = field(default_factory=dict)     # first in both lines: stream=...
    running: dict[str, Any] | None = None   # the rest of the running line (None: the stage logs its own)
    poll_ms: int = 100                  # also bounds how long a partial batch waits
    checkpoint_s: float | None = None   # periodic checkpoint(False); None: the stage has none
    checkpoint_min_gap_s: float = 0.0
    linger_ms: int = 1000               # at the close: time for the queued batches to leave
    flags: Flags = field(default_factory=Flags)
    clock: Callable[[], float] = time.monotonic

    def run(self) -> int:
        """Install the signal flags, tune the GC, loop until a stop signal, finish; exit code 0."""
        self.flags.install()
        tune_gc()                       # start-up is done: freeze it, batch young collections
        if self.running is not None:
            log.info("%s running | %s", self.label, kv(self.ident, self.running))
        try:
            self.loop()
        finally:
            self.finish()
        return 0

    def loop(self) -> None:
        flags, hooks, pub, source, clock = self.flags, self.hooks, self.pub, self.source, self.clock
        every, gap = self.checkpoint_s, self.checkpoint_min_gap_s
        next_checkpoint = early_after = clock()
        while not flags.stop:
            read = source.poll(self.poll_ms)
            if flags.reload:
                flags.reload = False
                hooks.reload()
            hooks.each_pass(read)
            pub.flush()
            now = clock()
            if every is not None and (now >= next_checkpoint
                                      or (now >= early_after and hooks.checkpoint_wanted())):
                next_checkpoint, early_after = now + every, now + gap
                hooks.checkpoint(False)
            if pub.heartbeat_due(now):
                source.before_heartbeat()
                hooks.on_heartbeat()
                pub.heartbeat(dict(hooks.counters()), now)

    def finish(self) -> None:
        """The stop: what is held goes out, the clean checkpoint, a last heartbeat, the line."""
        try:
            self.hooks.stopping()
            self.hooks.checkpoint(True)
            final = dict(self.hooks.counters())
            self.pub.heartbeat(final, self.clock())
            log.info("%s stopped | %s", self.label, kv(self.ident, {**self.pub.counters(), **final}))
        finally:
            self.source.close()
            self.pub.sock.close(linger=self.linger_ms)
            if self.ctx is not None:
                self.ctx.term()
