"""A stand-in consumer for one stream: reads everything, reports counts and arrival times at SIGTERM.

    python -m bench.drain --bus-dir DIR --stream collector
    python -m bench.drain --bus-dir DIR --stream sessionizer --save frames.msgpack
    python -m bench.drain --bus-dir DIR --stream analyzer-0 --decisions decisions.jsonl

The throughput benchmark uses it as the consumer of a stage measured in isolation: it only stores
raw frames and arrival times while the run lasts (no decoding on the hot path, so it takes as
little CPU from the stage under test as possible) and decodes at the end. ``--save`` keeps the
frames for replay into the next stage. ``--decisions`` (latency benchmark) writes one JSON line per
``analyzer.decision`` as it arrives: {recv_ns, ts_ns, tgid, action}. bench/overhead.py attaches it to
the collector so the collector publishes to a live subscriber, as under the real stack.

Prints one JSON line at exit: {"events", "messages", "first_ns", "last_ns" (per topic),
"events_by_topic", "lost_messages", "malformed"}.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgpack
import zmq

import bus
from bus.topics import ANALYZER_DECISION, is_heartbeat


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.drain")
    p.add_argument("--bus-dir", type=Path, required=True)
    p.add_argument("--stream", default="collector")
    p.add_argument("--save", type=Path, help="write every non-heartbeat frame pair here (msgpack stream)")
    p.add_argument("--decisions", type=Path, help="write one JSON line per analyzer.decision")
    return p.parse_args(argv)


def save_frames(path: Path, saved: list[list[bytes]]) -> None:
    """The ``--save`` file: each kept message's frames (topic, body) as one msgpack array."""
    with open(path, "wb") as f:
        for frames in saved:
            f.write(msgpack.packb(frames))


def load_saved(path: Path) -> Iterator[bus.Envelope]:
    """The messages of a ``--save`` file, in arrival order, decoded by bus.unpack."""
    with open(path, "rb") as f:
        for topic, body in msgpack.Unpacker(f, raw=False):
            yield bus.unpack([topic.encode() if isinstance(topic, str) else topic, body])


def _decision_lines(frames: list[bytes], recv_ns: int, out: IO[str]) -> None:
    env = bus.unpack(frames)
    for d in env.events:
        ev = d.get("event") or {}
        out.write(json.dumps({"recv_ns": recv_ns, "ts_ns": ev.get("ts_ns"), "tgid": ev.get("tgid"),
                              "action": d.get("action"), "session_id": d.get("session_id")}) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stage = args.stream.split("-")[0]
    topics = bus.Subscriber.subscriptions([stage + "."])
    sock = bus.connect_subscriber(zmq.Context.instance(), [args.stream], topics, args.bus_dir)
    kept: list[list[bytes]] = []
    first_ns = 0
    last_ns: dict[bytes, int] = {}
    decisions = open(args.decisions, "w") if args.decisions else None
    print("subscribed", flush=True)
    while not stop.is_set():
        if not sock.poll(100):
            continue
        while True:
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            now = time.time_ns()
            kept.append(frames)
            if is_heartbeat(frames[0].decode(errors="replace")):
                continue
            first_ns = first_ns or now
            last_ns[frames[0]] = now
            if decisions is not None and frames[0] == ANALYZER_DECISION.encode():
                _decision_lines(frames, now, decisions)
    sub = bus.Subscriber(None, topics)
    saved = []
    by_topic: dict[str, int] = {}
    for frames in kept:
        env = sub.handle_frames(frames)
        if env is not None and not is_heartbeat(env.topic):
            saved.append(frames)
            by_topic[env.topic] = by_topic.get(env.topic, 0) + len(env.events)
    if args.save:
        save_frames(args.save, saved)
    c = sub.counters
    print(json.dumps({"events": c.received_events, "messages": len(saved), "first_ns": first_ns,
                      "last_ns": {t.decode(errors="replace"): ns for t, ns in last_ns.items()},
                      "events_by_topic": by_topic, "lost_messages": c.lost_messages,
                      "malformed": c.malformed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
