"""A subscriber read by a thread of its own, for tools that watch the bus while they do something
else: the benchmarks' and the evaluation's collectors, tests that follow a live stack. Stages never
use it; they read on their own loop (bus.runtime), one message at a time.

    tap = BackgroundSubscriber(bus_dir, ["analyzer-0"], ["analyzer.decision"], on_envelope).start()
    ...
    tap.stop()

``on_envelope(envelope, recv_ns)`` runs on the thread: ``recv_ns`` is the wall clock when the
socket became readable, the arrival time a latency is measured to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from bus.endpoints import connect_subscriber
from bus.envelope import Envelope
from bus.subscriber import Subscriber

__all__ = ["BackgroundSubscriber"]

STOP_WAIT_S = 5.0


@dataclass(slots=True)
class BackgroundSubscriber:
    """``streams`` subscribed to ``topics`` (prefixes; the named stages' heartbeats are added),
    each envelope handed to ``on_envelope`` on a daemon thread until :meth:`stop`."""

    bus_dir: Path | None
    streams: list[str]
    topics: list[str]
    on_envelope: Callable[[Envelope, int], None]
    on_loss: Callable[[str, str, int], None] | None = None
    poll_ms: int = 100
    max_messages: int = 256                 # read per wake-up (Subscriber.receive)
    name: str = "bus-background"
    subscriber: Subscriber | None = None
    _ctx: zmq.Context | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> BackgroundSubscriber:
        self._ctx = zmq.Context()
        topics = Subscriber.subscriptions(self.topics)
        sock = connect_subscriber(self._ctx, self.streams, topics, self.bus_dir)
        self.subscriber = Subscriber(sock, topics, on_loss=self.on_loss)
        self._thread = threading.Thread(target=self._loop, args=(self.subscriber,), name=self.name, daemon=True)
        self._thread.start()
        return self

    def _loop(self, sub: Subscriber) -> None:
        try:
            while not self._stop.is_set():
                if not sub.sock.poll(self.poll_ms):
                    continue
                now = time.time_ns()
                for env in sub.receive(self.max_messages):
                    self.on_envelope(env, now)
        finally:
            sub.sock.close(0)       # on the thread that used it: ZeroMQ sockets are not thread-safe

    def stop(self) -> None:
        """Stop the thread and close the socket (the context too, once the thread has let go)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)
            if self._thread.is_alive():
                return
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
