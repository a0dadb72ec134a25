"""A stand-in consumer for one stream: reads and decodes everything, prints the counts at SIGTERM.

    python -m bench.drain --bus-dir DIR --stream collector

bench/overhead.py attaches it to the collector so the collector publishes to a live subscriber,
as it does under the real stack, without a sessionizer competing for the two cores.
Prints one JSON line at exit: {"events": N, "lost_messages": M, "malformed": K}.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

import zmq

import bus


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.drain")
    p.add_argument("--bus-dir", type=Path, required=True)
    p.add_argument("--stream", default="collector")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stage = args.stream.split("-")[0]
    topics = bus.Subscriber.subscriptions([stage + "."])
    sock = bus.connect_subscriber(zmq.Context.instance(), [args.stream], topics, args.bus_dir)
    sub = bus.Subscriber(sock, topics)
    print("subscribed", flush=True)
    while not stop.is_set():
        if sock.poll(100):
            sub.receive(1024)
    c = sub.counters
    print(json.dumps({"events": c.received_events, "lost_messages": c.lost_messages,
                      "malformed": c.malformed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
