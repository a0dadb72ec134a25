"""The collector's BPF sources (events.h, collector.bpf.c and the parts it #includes), shipped as
package data."""

from pathlib import Path

__all__ = ["BPF_DIR", "EVENTS_H", "COLLECTOR_C", "PARTS"]

BPF_DIR = Path(__file__).resolve().parent
EVENTS_H = BPF_DIR / "events.h"
COLLECTOR_C = BPF_DIR / "collector.bpf.c"
# #included by collector.bpf.c, in this order (helpers only: every TRACEPOINT_PROBE is in it)
PARTS = tuple(BPF_DIR / f"{name}.bpf.c" for name in ("fds", "env", "files", "net", "privilege"))
