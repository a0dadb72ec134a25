"""The collector's BPF sources (events.h, collector.bpf.c), shipped as package data."""

from pathlib import Path

__all__ = ["BPF_DIR", "EVENTS_H", "COLLECTOR_C"]

BPF_DIR = Path(__file__).resolve().parent
EVENTS_H = BPF_DIR / "events.h"
COLLECTOR_C = BPF_DIR / "collector.bpf.c"
