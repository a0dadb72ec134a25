"""casa replay: feed a recording's collector events into the pipeline in place of the collector.

usage: casa replay FILE [--speed FACTOR | --fast] [--wait SECONDS] [--linger SECONDS]

Binds the collector's endpoint (``<bus dir>/collector.sock``), waits for a subscriber of
``collector.event`` (the sessionizer), then publishes every recorded ``collector.event`` batch of
stream ``collector``, one message per recorded message, with this run's own epoch and fresh seq
numbers. Event maps go out unchanged (including their original ``ts_ns``). Heartbeats are sent
every second and for ``--linger`` seconds at the end, so downstream stages see the tail.

caveats: the real collector must not be running (stop it: ``supervisorctl stop collector``);
replay binds its socket. Stages that time sessions by the wall clock rather than by event ``ts_ns``
may group events differently under ``--fast``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import zmq

from bus import MalformedMessage, Publisher, bind_publisher, bus_dir, unpack
from bus.topics import COLLECTOR_EVENT
from cli.recording import Recorded, RecordingError, read_recording

__all__ = ["main", "parse_args", "Batch", "collector_batches", "Replayer"]

EXIT_OK, EXIT_ERROR, EXIT_NOT_RUNNING = 0, 1, 3
STREAM = "collector"
MAX_SLEEP_S = 0.2          # sleep in slices so heartbeats and Ctrl-C stay timely

EXAMPLES = """examples:
  supervisorctl -c supervisord.conf stop collector
  casa replay tests/fixtures/recordings/write-then-exec.casarec --fast
  casa replay /tmp/run.casarec --speed 10      # ten times faster than recorded
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="casa replay", description="Replay a recording in place of the collector.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, metavar="FILE", help="a .casarec recording")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, default=1.0, metavar="FACTOR",
                       help="time scale: 2 replays twice as fast as recorded (default 1.0)")
    speed.add_argument("--fast", action="store_true", help="no pauses between batches")
    p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for a collector.event subscriber (default 10)")
    p.add_argument("--linger", type=float, default=2.0, metavar="SECONDS",
                   help="keep heartbeating this long after the last batch (default 2)")
    p.add_argument("--bus-dir", type=Path, default=None, help="bus directory (default $CASA_BUS_DIR or /run/casa)")
    args = p.parse_args(argv)
    if args.speed <= 0:
        p.error("--speed must be positive")
    if args.wait < 0 or args.linger < 0:
        p.error("--wait and --linger must not be negative")
    return args


@dataclass(frozen=True, slots=True)
class Batch:
    """One recorded collector.event message: when it was received, and its events."""

    recv_ns: int
    events: list[dict[str, Any]]


def collector_batches(messages: Iterable[Recorded]) -> tuple[list[Batch], int]:
    """The recording's collector.event batches of stream ``collector``; and how many were unreadable."""
    batches, malformed = [], 0
    for rec in messages:
        if rec.frames[0] != COLLECTOR_EVENT.encode():
            continue
        try:
            env = unpack(rec.frames)
        except MalformedMessage:
            malformed += 1
            continue
        if env.stream == STREAM and env.events:
            batches.append(Batch(rec.recv_ns, env.events))
    return batches, malformed


def _subscribed(frame: bytes) -> bool:
    """An XPUB subscription frame (b"\\x01" + prefix) that covers collector.event."""
    return frame[:1] == b"\x01" and COLLECTOR_EVENT.encode().startswith(frame[1:])


def wait_for_subscriber(xpub: zmq.Socket, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if xpub.poll(int(min(left, MAX_SLEEP_S) * 1000)) and _subscribed(xpub.recv()):
            return True
    return False


class Replayer:
    """Publishes batches with the recorded spacing (scaled), heartbeating as it goes."""

    def __init__(self, pub: Publisher, *, speed: float, fast: bool) -> None:
        self.pub = pub
        self.speed = speed
        self.fast = fast
        self.replayed_events = 0
        self.replayed_batches = 0
        self.stop = False

    def counters(self) -> dict[str, int]:
        return {"replay": 1, "replayed_events": self.replayed_events, "replayed_batches": self.replayed_batches}

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stop and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, MAX_SLEEP_S))
            self._beat()

    def _beat(self) -> None:
        if self.pub.heartbeat_due():
            self.pub.heartbeat(self.counters())

    def play(self, batches: list[Batch]) -> None:
        start_ns = batches[0].recv_ns if batches else 0
        t0 = time.monotonic()
        for batch in batches:
            if self.stop:
                return
            if not self.fast:
                self._pause(t0 + (batch.recv_ns - start_ns) / 1e9 / self.speed - time.monotonic())
            self.pub.publish_now(COLLECTOR_EVENT, batch.events)
            self.replayed_batches += 1
            self.replayed_events += len(batch.events)
            self._beat()

    def linger(self, seconds: float) -> None:
        self.pub.heartbeat(self.counters())
        self._pause(seconds)
        self.pub.heartbeat(self.counters())


def run(args: argparse.Namespace) -> int:
    try:
        header, messages = read_recording(args.file)
        batches, malformed = collector_batches(messages)
    except RecordingError as exc:
        sys.stderr.write(f"casa replay: {exc}\n")
        return EXIT_ERROR
    directory = args.bus_dir or bus_dir()
    ctx = zmq.Context()
    try:
        xpub = bind_publisher(ctx, STREAM, directory)
    except Exception as exc:       # BusPermissionError and ZMQError both mean: cannot take the endpoint
        sys.stderr.write(f"casa replay: ERROR ({exc})\n")
        ctx.term()
        return EXIT_ERROR
    replayer = Replayer(Publisher(xpub, STREAM), speed=args.speed, fast=args.fast)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        replayer.stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not wait_for_subscriber(xpub, args.wait):
            sys.stderr.write(f"casa replay: nobody subscribed to {COLLECTOR_EVENT} on {directory} within "
                             f"{args.wait:g} s; is the sessionizer running (casa status)?\n")
            return EXIT_NOT_RUNNING
        sys.stderr.write(f"Replaying {len(batches)} batches from {args.file} "
                         f"({'fast' if args.fast else f'speed {args.speed:g}'})... Ctrl-C to end.\n")
        replayer.play(batches)
        replayer.linger(args.linger)
    finally:
        xpub.close(linger=1000)
        ctx.term()
    pub = replayer.pub
    sys.stderr.write(f"casa replay: {replayer.replayed_events} events in {replayer.replayed_batches} batches | "
                     f"undelivered_events={pub.undelivered_events} malformed_in_file={malformed}\n")
    return EXIT_ERROR if pub.undelivered_events else EXIT_OK

