"""The replayer: stands in for an upstream stage by binding its stream and publishing batches.

    feeder = Feeder.bind("collector", bus_dir)
    feeder.wait_for_subscribers(1)
    feeder.send(COLLECTOR_EVENT, events)          # stamps ts_ns = now, packs, sends (latency runs)
    blobs = prepack(events, rate_hint=60_000)     # ts_ns spaced at the hinted rate, packed once
    feeder.send_packed(COLLECTOR_EVENT, blobs)    # the as-fast-as-possible replay (throughput runs)
    feeder.send_packed(COLLECTOR_EVENT, blobs, rate=50_000)   # paced: the steady-state run

Throughput runs pre-pack each 64-event batch's ``events`` array (bus.envelope.pack_events) before
timing starts, so the replayer spends almost no CPU per event and the two cores go to the stages
under test; the envelope around it (bus.envelope.pack_raw: v, stream, epoch, seq, sent_ns, schema)
is fresh per message and byte-for-byte what bus.pack produces for the same events.
Sequence numbers are the feeder's own; heartbeats announce them so subscribers can count loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

import bus
from bus.envelope import Envelope, pack_events, pack_raw
from bus.publisher import BATCH_MAX_EVENTS

__all__ = ["Feeder", "prepack", "batches"]

SUBSCRIBE_WAIT_S = 15.0


def batches(events: list[dict[str, Any]], size: int = BATCH_MAX_EVENTS) -> list[list[dict[str, Any]]]:
    return [events[i:i + size] for i in range(0, len(events), size)]


def prepack(events: list[dict[str, Any]], rate_hint: float, start_ns: int | None = None,
            size: int = BATCH_MAX_EVENTS) -> list[tuple[int, bytes]]:
    """Stamp ``ts_ns`` as if the events arrived at ``rate_hint``/s from now; pack per batch.

    Returns (event count, packed events array) per batch.
    """
    base = start_ns if start_ns is not None else time.time_ns()
    step = 1e9 / rate_hint
    for i, e in enumerate(events):
        e["ts_ns"] = base + int(i * step)
    return [(len(b), pack_events(b)) for b in batches(events, size)]


@dataclass(slots=True)
class Feeder:
    """One bound XPUB plus a bus.Publisher for its stream."""

    ctx: zmq.Context
    sock: zmq.Socket
    publisher: bus.Publisher
    subscribers: int = 0

    @classmethod
    def bind(cls, stream: str, bus_dir: Path, stage: str | None = None) -> Feeder:
        ctx = zmq.Context.instance()
        sock = bus.bind_publisher(ctx, stream, bus_dir)
        return cls(ctx, sock, bus.Publisher(sock, stage or stream.split("-")[0], stream))

    def wait_for_subscribers(self, count: int, timeout_s: float = SUBSCRIBE_WAIT_S) -> None:
        """Block until ``count`` subscription messages arrived (ZeroMQ's slow-joiner problem)."""
        deadline = time.monotonic() + timeout_s
        while self.subscribers < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"only {self.subscribers} of {count} subscribers connected to "
                                   f"{self.publisher.stream} within {timeout_s:.0f} s; did a stage fail to start?")
            if self.sock.poll(int(min(left, 0.2) * 1000)):
                msg = self.sock.recv()
                if msg[:1] == b"\x01":
                    self.subscribers += 1

    def send(self, topic: str, events: list[dict[str, Any]], stamp: bool = True) -> bool:
        """Send ``events`` as one message now; ``ts_ns`` (the kernel time stand-in) = now."""
        if stamp:
            now = time.time_ns()
            for e in events:
                e["ts_ns"] = now
        return self.publisher.publish_now(topic, events)

    def send_packed(self, topic: str, blobs: list[tuple[int, bytes]], rate: float | None = None,
                    tick_s: float = 0.005) -> None:
        """Replay pre-packed batches as fast as the socket takes them (never dropping), or, with
        ``rate``, paced in the collector's rhythm: it reads its ring buffer every 5 ms
        (collector.__main__.POLL_TIMEOUT_MS), so a steady source sends what is due once per
        ``tick_s``, never before it is due.

        Each message takes the publisher's next seq and a fresh ``sent_ns``; its envelope is
        bus.envelope.pack_raw around the batch's bytes, as a stage passing a batch through sends it.
        """
        pub = self.publisher
        env = Envelope(topic=topic, stream=pub.stream, epoch=pub.epoch, seq=0, sent_ns=0)
        start, due = time.monotonic(), 0
        for count, blob in blobs:
            if rate is not None:
                ahead = start + due / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(max(ahead, tick_s))
                due += count
            env.seq = pub.last_seq.get(topic, 0) + 1
            pub.last_seq[topic] = env.seq
            env.sent_ns = time.time_ns()
            frames = pack_raw(env, blob)
            while True:
                try:
                    self.sock.send_multipart(frames, flags=zmq.NOBLOCK)
                    break
                except zmq.Again:       # the high-water mark: wait instead of dropping
                    time.sleep(0.0005)
            pub.sent_messages += 1
            pub.sent_events += count
            if pub.heartbeat_due():
                pub.heartbeat()

    def heartbeat(self) -> None:
        self.publisher.heartbeat()

    def close(self) -> None:
        self.publisher.heartbeat()
        self.sock.close(linger=1000)
