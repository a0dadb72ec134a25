"""A null stage: subscribe to one stream, decode, re-publish every event on another. No analysis.

    python -m bench.relay --bus-dir DIR --from collector --to sessionizer

A chain of relays with the same shape as CASA's (replayer -> relay -> relay -> counter) is the
ceiling any Python stage on this bus reaches on this machine; the throughput benchmark runs it in
the same run as the real pipeline and reports the ratio. It uses the bus package exactly as the
stages do (Subscriber.receive, Publisher.publish per event, flush per poll pass, heartbeats).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

import zmq

import bus

POLL_MS = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.relay")
    p.add_argument("--bus-dir", type=Path, required=True)
    p.add_argument("--from", dest="source", required=True, help="upstream stream, e.g. collector")
    p.add_argument("--to", dest="target", required=True, help="own stream, e.g. sessionizer or analyzer-0")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ctx = zmq.Context.instance()
    stage = args.target.split("-")[0]
    out = bus.Publisher(bus.bind_publisher(ctx, args.target, args.bus_dir), stage, args.target)
    topics = bus.Subscriber.subscriptions([args.source.split("-")[0] + "."])
    sub = bus.Subscriber(bus.connect_subscriber(ctx, [args.source], topics, args.bus_dir), topics)
    topic = f"{stage}.event"
    while not stop.is_set():
        if sub.sock.poll(POLL_MS):
            for env in sub.receive():
                for event in env.events:
                    out.publish(topic, event)
        out.flush()
        if out.heartbeat_due():
            out.heartbeat(stand_in_counters(stage, sub), time.monotonic())
    out.heartbeat(stand_in_counters(stage, sub))
    return 0


def stand_in_counters(stage: str, sub: bus.Subscriber) -> dict[str, object]:
    """The subscriber's counters named as the stage the relay stands in for declares them
    (bus/counters.py): the sessionizer's carry the prefix ``bus_``, the analyzer's none."""
    counters = sub.counters.as_dict()
    return {f"bus_{k}": v for k, v in counters.items()} if stage == "sessionizer" else counters


if __name__ == "__main__":
    sys.exit(main())
