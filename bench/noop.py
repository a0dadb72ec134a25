"""Attach the do-nothing probe set (bench/noop_probes.bpf.c) until SIGTERM: the overhead floor.

    python -m bench.noop        # root; prints "attached" on stdout once every probe is live

bench/overhead.py runs this in place of the collector to measure what merely enabling the same
tracepoints costs every process on the machine, tracked or not.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

PROBES = Path(__file__).resolve().parent / "noop_probes.bpf.c"


def main() -> int:
    try:
        from bcc import BPF
    except ImportError:
        print("bcc is missing: apt-get install -y python3-bpfcc (see setup.sh)", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    bpf = BPF(src_file=str(PROBES).encode())
    print("attached", flush=True)
    stop.wait()
    bpf.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
