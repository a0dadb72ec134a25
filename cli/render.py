"""Bus messages as JSON lines that stay valid, single-line and lossless.

Text fields that were not UTF-8 travel as msgpack ``bin`` (bus/text.py). They are printed as
strings whose undecodable bytes appear as ``\\udcXX`` escapes, the same convention as the JSONL
sinks, so ``bus.to_bytes(json.loads(line)[...])`` gives the original bytes back.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bus import Envelope, from_wire

__all__ = ["json_line", "envelope_lines"]

_LONE_SURROGATE = re.compile("[\udc80-\udcff]")


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return from_wire(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _plain(obj: Any) -> Any:
    """Decode bytes everywhere first: json's ``default`` hook is not called for dict keys."""
    if isinstance(obj, bytes):
        return from_wire(obj)
    if isinstance(obj, dict):
        return {(_plain(k) if isinstance(k, bytes) else k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def json_line(obj: Any) -> str:
    """One JSON object on one line; lone surrogates are written as ``\\udcXX`` escapes."""
    text = json.dumps(_plain(obj), ensure_ascii=False, separators=(",", ":"), default=_default)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def envelope_lines(env: Envelope) -> list[str]:
    """One line per event; a heartbeat (no events) is one line with its counters."""
    head = {"topic": env.topic, "stream": env.stream, "seq": env.seq}
    if not env.events:
        return [json_line({**head, "last_seq": env.last_seq, "counters": env.counters})]
    return [json_line({**head, "event": event}) for event in env.events]
