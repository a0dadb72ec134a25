"""Stamp each line appended to a file with the time it was seen (``tail -F`` with a clock).

    python -m bench.tail --file alert.log --out observed.jsonl

The latency benchmark runs it on alert.log: the time an alert record is on disk is when this
process reads its complete line (polled every POLL_S). Writes {"observed_ns", "line"} per line at
SIGTERM, so the polling loop does nothing but read (one descriptor kept open: at POLL_S, opening
the file per poll would cost more than reading it).

:class:`Appended` is the same idea polled less often from inside another process (the
throughput benchmark's line counter, the evaluation's overhead tail): what a file grew by since
the last look, reopened each time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Appended", "main"]

POLL_S = 0.0005


@dataclass(slots=True)
class Appended:
    """What was appended to ``path`` since the last read; a file that does not exist yet is empty."""

    path: Path
    offset: int = 0
    partial: bytes = b""        # the unfinished last line, for :meth:`lines`

    def skip_existing(self) -> None:
        """Start from the file's current end: only what is appended from now on counts."""
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return b""
        self.offset += len(chunk)
        return chunk

    def lines(self) -> list[bytes]:
        """The complete lines appended since the last call (a line is complete at its newline)."""
        *lines, self.partial = (self.partial + self.read()).split(b"\n")
        return lines


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
