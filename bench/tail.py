"""Stamp each line appended to a file with the time it was seen (``tail -F`` with a clock).

    python -m bench.tail --file alert.log --out observed.jsonl

The latency benchmark runs it on alert.log: the time an alert record is on disk is when this
process reads its complete line (polled every POLL_S). Writes {"observed_ns", "line"} per line at
SIGTERM, so the polling loop does nothing but read.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

POLL_S = 0.0005


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.tail")
    p.add_argument("--file", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seen: list[tuple[int, bytes]] = []
    fd, buf = -1, b""
    print("tailing", flush=True)
    while not stop.is_set():
        if fd < 0:
            try:
                fd = os.open(args.file, os.O_RDONLY)
            except FileNotFoundError:
                time.sleep(POLL_S)
                continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            time.sleep(POLL_S)
            continue
        now = time.time_ns()
        buf += chunk
        *lines, buf = buf.split(b"\n")
        seen.extend((now, line) for line in lines)
    with open(args.out, "w") as out:
        for ns, line in seen:
            out.write(json.dumps({"observed_ns": ns, "line": line.decode("utf-8", "replace")}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
