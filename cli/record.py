"""casa record: save bus traffic to a .casarec file (raw frames plus receive time).

usage: casa record FILE [--topic PREFIX ...] [--stream NAME ...] [-n COUNT] [-d SECONDS]

The file format is in cli/recording.py and docs/operating.md. Heartbeats are recorded too (they
are what lets a reader count loss). Ends on Ctrl-C, -n or -d, and always leaves a readable file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import zmq

from bus import Subscriber, bus_dir, connect_subscriber
from cli.discovery import live_streams
from stage.flags import Flags
from cli.recording import RecordingWriter

__all__ = ["main", "parse_args"]

POLL_MS = 200
EXIT_OK, EXIT_ERROR, EXIT_NOT_RUNNING = 0, 1, 3

EXAMPLES = """examples:
  casa record /tmp/run.casarec                          # everything until Ctrl-C
  casa record /tmp/raw.casarec --stream collector -d 30 # the collector's output for 30 s
  casa record /tmp/dec.casarec --topic analyzer.decision
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="casa record", description="Record bus traffic to a file.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, metavar="FILE", help="output .casarec file (overwritten)")
    p.add_argument("--topic", action="append", default=[], metavar="PREFIX", help="topic prefix (repeatable; default all)")
    p.add_argument("--stream", action="append", default=[], metavar="NAME", help="stream (repeatable; default every live one)")
    p.add_argument("-n", "--count", type=int, default=0, metavar="COUNT", help="stop after COUNT messages")
    p.add_argument("-d", "--duration", type=float, default=0.0, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("--bus-dir", type=Path, default=None, help="bus directory (default $CASA_BUS_DIR or /run/casa)")
    args = p.parse_args(argv)
    if args.count < 0 or args.duration < 0:
        p.error("-n and -d must not be negative")
    return args


def run(args: argparse.Namespace) -> int:
    directory = args.bus_dir or bus_dir()
    live = live_streams(directory)
    streams = [s for s in (args.stream or live) if s in live]
    if not streams:
        sys.stderr.write(f"casa record: no live stream in {directory}; is the stack running (casa status)?\n")
        return EXIT_NOT_RUNNING
    topics = Subscriber.subscriptions(args.topic) if args.topic else [""]
    flags = Flags().install(reload=False)       # Ctrl-C and SIGTERM end the loop, cleanly
    try:
        out = open(args.file, "wb")
    except OSError as exc:
        sys.stderr.write(f"casa record: cannot write {args.file}: {exc.strerror}\n")
        return EXIT_ERROR
    ctx = zmq.Context()
    sock = connect_subscriber(ctx, streams, topics, directory)
    writer = RecordingWriter(out, streams, topics, str(directory))
    writer.write_header()
    sys.stderr.write(f"Recording {', '.join(streams)} to {args.file}... Ctrl-C to end.\n")
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while not flags.stop and (deadline is None or time.monotonic() < deadline):
            if not sock.poll(POLL_MS):
                continue
            while not (args.count and writer.written >= args.count):
                try:
                    writer.write(sock.recv_multipart(flags=zmq.NOBLOCK))
                except zmq.Again:
                    break
            out.flush()
            if args.count and writer.written >= args.count:
                break
    finally:
        out.close()
        sock.close(0)
        ctx.term()
    sys.stderr.write(f"casa record: {writer.written} messages | file={args.file}\n")
    return EXIT_OK

