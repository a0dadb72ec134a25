"""casa tap: print what flows on the bus, one JSON line per event (the Espresso pattern).

usage: casa tap [--topic PREFIX ...] [--stream NAME ...] [-n COUNT] [-d SECONDS] [-H]

A tap is one more SUB socket on the stages' XPUB sockets: it sees what the next stage sees and
changes nothing for it. Each line is {"topic", "stream", "seq", "event"}; heartbeats (hidden unless
-H) are {"topic", "stream", "seq", "last_seq", "counters"}. Loss and malformed messages seen by the
tap are summarised on stderr at the end. Once every tapped stream has been heard from (each sends
a heartbeat every second), ``casa tap: subscribed`` goes to stderr: from then on nothing published
is missed, which a script can wait for instead of sleeping. Needs root or the casa group (the bus
is 0660 root:casa).

caveats: a tap that cannot keep up is a slow subscriber like any other; XPUB_NODROP then makes the
stage count undelivered messages, so do not leave a tap piped into a pager that is not being read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

import zmq

from bus import Subscriber, bus_dir, connect_subscriber
from bus.topics import heartbeat_topic, is_heartbeat
from cli.discovery import live_streams
from stage.flags import Flags
from cli.render import envelope_lines

__all__ = ["main", "parse_args", "Tap"]

POLL_MS = 200
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3

EXAMPLES = """examples:
  casa tap                                  # everything, from every live stream
  casa tap --topic analyzer.decision        # decisions only
  casa tap --stream collector -n 20         # the first 20 raw events, then exit
  casa tap --topic sessionizer.session -d 60
  casa tap -H --topic collector.heartbeat   # the collector's heartbeats and counters
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="casa tap", description="Print bus messages as JSON lines.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", action="append", default=[], metavar="PREFIX",
                   help="topic prefix to subscribe to (repeatable; default: all)")
    p.add_argument("--stream", action="append", default=[], metavar="NAME",
                   help="stream to connect to, e.g. collector, analyzer-0 (repeatable; default: every live one)")
    p.add_argument("-n", "--count", type=int, default=0, metavar="COUNT",
                   help="exit after printing COUNT lines")
    p.add_argument("-d", "--duration", type=float, default=0.0, metavar="SECONDS",
                   help="exit after SECONDS")
    p.add_argument("-H", "--heartbeats", action="store_true", help="print heartbeats too")
    p.add_argument("--bus-dir", type=Path, default=None, help="bus directory (default $CASA_BUS_DIR or /run/casa)")
    args = p.parse_args(argv)
    if args.count < 0 or args.duration < 0:
        p.error("-n and -d must not be negative")
    return args


class Tap:
    """Reads envelopes and writes lines until a count, a duration or a signal ends it."""

    def __init__(self, sub: Subscriber, out: TextIO, *, count: int, show_heartbeats: bool,
                 streams: list[str] | None = None, err: TextIO | None = None,
                 printed_topics: list[str] | None = None) -> None:
        self.sub = sub
        self.out = out
        self.count = count
        self.show_heartbeats = show_heartbeats
        self.printed = 0
        self.waiting = set(streams or [])      # streams not heard from yet
        self.err = err
        self.printed_topics = tuple(printed_topics or [""])   # what the user asked for (prefixes)

    def pump(self) -> bool:
        """Print what is waiting; False once COUNT lines were printed."""
        for env in self.sub.receive():
            self._heard(env.stream)
            if is_heartbeat(env.topic) and not self.show_heartbeats \
                    or not env.topic.startswith(self.printed_topics):
                continue
            for line in envelope_lines(env):
                self.out.write(line + "\n")
                self.printed += 1
                if self.count and self.printed >= self.count:
                    self.out.flush()
                    return False
        self.out.flush()
        return True

    def _heard(self, stream: str) -> None:
        """The first message of every stream proves the subscription is live there (a heartbeat
        comes every second; heartbeats are always subscribed): say so once, for scripts that wait
        before they make something happen."""
        if self.waiting and stream in self.waiting:
            self.waiting.discard(stream)
            if not self.waiting and self.err is not None:
                self.err.write("casa tap: subscribed | every stream heard from\n")
                self.err.flush()


def _topics(args: argparse.Namespace) -> list[str]:
    if not args.topic:
        return [""]
    return Subscriber.subscriptions(args.topic)


def _streams(args: argparse.Namespace, directory: Path) -> tuple[list[str], list[str]]:
    live = live_streams(directory)
    wanted = args.stream or live
    return [s for s in wanted if s in live], [s for s in wanted if s not in live]


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    directory = args.bus_dir or bus_dir()
    streams, missing = _streams(args, directory)
    for s in missing:
        err.write(f"{s}: ERROR (not running: no {directory / (s + '.sock')})\n")
    if not streams:
        err.write(f"casa tap: no live stream in {directory}; is the stack running (casa status)?\n")
        return EXIT_NOT_RUNNING
    flags = Flags().install(reload=False)       # Ctrl-C and SIGTERM end the loop, cleanly
    topics = printed = _topics(args)
    if topics != [""]:                 # every tapped stream's heartbeat: readiness and tail loss
        topics = sorted(set(topics) | {heartbeat_topic(s.split("-", 1)[0]) for s in streams})
    ctx = zmq.Context()
    sock = connect_subscriber(ctx, streams, topics, directory)
    tap = Tap(Subscriber(sock, [t for t in topics if t] or [""]), out, count=args.count,
              show_heartbeats=args.heartbeats or any(is_heartbeat(t) for t in args.topic),
              streams=streams, err=err, printed_topics=printed)
    shown = ", ".join(args.topic) if args.topic else "all"
    err.write(f"Tapping {', '.join(streams)} (topics: {shown})... Ctrl-C to end.\n")
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while not flags.stop and (deadline is None or time.monotonic() < deadline):
            if sock.poll(POLL_MS) and not tap.pump():
                break
    except BrokenPipeError:
        pass
    finally:
        sock.close(0)
        ctx.term()
    c = tap.sub.counters
    err.write(f"casa tap: {tap.printed} lines | lost_messages={c.lost_messages} malformed={c.malformed} "
              f"unknown_version={c.unknown_version} publisher_restarts={c.publisher_restarts}\n")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
