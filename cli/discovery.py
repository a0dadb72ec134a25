"""Which bus streams exist right now: the ``<stream>.sock`` files in the bus directory.

A stream is live when its stage has bound its socket. Stale files of a crashed stage still look
live until the stage is restarted (it unlinks and rebinds); a tap connected to one simply receives
nothing until then.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["STREAM_ORDER", "live_streams", "stream_sort_key"]

STREAM_RE = re.compile(r"^(collector|sessionizer|analyzer-\d+|sinks-[a-z]+)\.sock$")
STREAM_ORDER = ("collector", "sessionizer", "analyzer", "sinks")


def stream_sort_key(stream: str) -> tuple[int, int, str]:
    """Pipeline order: collector, sessionizer, analyzer-0, analyzer-1, ..., sinks-jsonl, sinks-otel."""
    stage, _, index = stream.partition("-")
    rank = STREAM_ORDER.index(stage) if stage in STREAM_ORDER else len(STREAM_ORDER)
    return rank, int(index) if index.isdigit() else 0, stream


def live_streams(directory: Path) -> list[str]:
    """Streams whose socket file exists in ``directory``, in pipeline order."""
    try:
        names = [p.name for p in directory.iterdir()]
    except OSError:
        return []
    found = [m.group(1) for n in names if (m := STREAM_RE.match(n))]
    return sorted(found, key=stream_sort_key)
