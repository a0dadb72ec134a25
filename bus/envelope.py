"""The envelope: frame 1 is the topic (UTF-8), frame 2 one msgpack map.

    {"v": 1, "stream": "collector", "epoch": <publisher start, ns>, "seq": <per stream+topic>,
     "sent_ns": <wall clock at send>, "schema": 2, "events": [<event map>, ...]}

``schema`` is the event schema the sender speaks (bus.events.SCHEMA; absent in messages of
publishers from before schema 2, read as 1). Receivers that predate it keep it in ``extra``.

Heartbeats use the same map with ``events`` empty plus ``last_seq`` ({topic: last seq sent}),
``interval_s`` and ``counters`` ({name: int}). See docs/bus.md §Envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import ormsgpack

from bus.errors import MalformedMessage, UnknownVersion
from bus.events import SCHEMA

__all__ = ["VERSION", "Envelope", "encode", "pack", "pack_events", "pack_raw", "unpack"]

VERSION = 1
# ormsgpack encodes and decodes a batch in half the time msgpack takes (every stage decodes
# every event, and the sessionizer packs every one again); map keys other than text are allowed
# both ways, as msgpack's strict_map_key=False did
_OPTION = ormsgpack.OPT_NON_STR_KEYS
ENCODE_ERRORS = (TypeError, ValueError, OverflowError)   # what the encoder raises for a value it cannot take


@dataclass(slots=True)
class Envelope:
    """One bus message after decoding. ``events`` are plain dicts (see bus.events)."""

    topic: str
    stream: str
    epoch: int
    seq: int
    sent_ns: int
    events: list[dict[str, Any]] = field(default_factory=list)
    last_seq: dict[str, int] | None = None     # heartbeats only
    counters: dict[str, Any] | None = None     # heartbeats only
    interval_s: float | None = None            # heartbeats only
    extra: dict[str, Any] | None = None        # unknown keys, kept for taps
    schema: int = SCHEMA                       # event schema of the sender (1 when absent)
    # ``events`` as received, still packed (unpack(keep_raw=True)): a stage that passes a whole
    # batch on unchanged sends these bytes instead of packing the maps again (pack_raw)
    raw_events: bytes | None = field(default=None, compare=False, repr=False)


def pack(env: Envelope) -> list[bytes]:
    """Encode an envelope into its two frames."""
    body: dict[str, Any] = {
        "v": VERSION, "stream": env.stream, "epoch": env.epoch, "seq": env.seq,
        "sent_ns": env.sent_ns, "schema": env.schema, "events": env.events,
    }
    if env.last_seq is not None:
        body["last_seq"] = env.last_seq
    if env.counters is not None:
        body["counters"] = env.counters
    if env.interval_s is not None:
        body["interval_s"] = env.interval_s
    return [env.topic.encode(), encode(body)]


def encode(value: Any) -> bytes:
    """One value as msgpack (text as str, bytes as bin: what msgpack's ``use_bin_type=True``
    writes, byte for byte); raises one of ``ENCODE_ERRORS`` for a value it cannot take."""
    return ormsgpack.packb(value, option=_OPTION)


def pack_events(events: list[dict[str, Any]]) -> bytes:
    """``events`` as the msgpack array :func:`pack` writes, the bytes :func:`pack_raw` takes: a
    sender that packs its batches ahead of time (the benchmarks' replayer) packs them here."""
    return encode(events)


_EVENTS_KEY = msgpack.packb("events")
_FIXMAP6, _FIXMAP7 = 0x86, 0x87


def pack_raw(env: Envelope, events: bytes) -> list[bytes]:
    """Like :func:`pack`, with ``events`` already packed (a msgpack array, :func:`pack_events`):
    the benchmarks' replayer packs its batches before the clock starts.

    The result is byte-identical to ``pack`` of the decoded events: the header map is packed as
    usual and ``events`` appended as its seventh entry.
    """
    head = msgpack.packb({"v": VERSION, "stream": env.stream, "epoch": env.epoch, "seq": env.seq,
                          "sent_ns": env.sent_ns, "schema": env.schema}, use_bin_type=True)
    if head[0] != _FIXMAP6:
        raise ValueError("envelope header is not a 6-entry map")
    return [env.topic.encode(), bytes((_FIXMAP7,)) + head[1:] + _EVENTS_KEY + events]


_IS_MAP = dict.__instancecheck__       # isinstance(e, dict), mapped in C over a batch
_KNOWN = {"v", "stream", "epoch", "seq", "sent_ns", "events", "last_seq", "counters", "interval_s",
          "schema"}


def unpack(frames: list[bytes], keep_raw: bool = False) -> Envelope:
    """Decode two frames; raise MalformedMessage (or UnknownVersion) instead of anything else.

    With ``keep_raw``, a message that carries events also keeps them packed, as received
    (``Envelope.raw_events``), for a stage that forwards them unchanged.
    """
    if len(frames) != 2:
        raise MalformedMessage(f"expected 2 frames (topic, body), got {len(frames)}")
    try:
        topic = frames[0].decode()
        body = _decode(frames[1])
    except (UnicodeDecodeError, ValueError, msgpack.UnpackException, TypeError) as exc:
        raise MalformedMessage(f"undecodable body: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedMessage(f"body is {type(body).__name__}, not a map")
    if body.get("v") != VERSION:
        raise UnknownVersion(f"envelope version {body.get('v')!r}, this build speaks {VERSION}")
    stream, epoch, seq, sent = body.get("stream"), body.get("epoch"), body.get("seq"), body.get("sent_ns")
    events = body.get("events", [])
    schema = body.get("schema", 1)
    if not isinstance(stream, str) or not all(isinstance(x, int) for x in (epoch, seq, sent, schema)):
        raise MalformedMessage("stream must be a string; epoch, seq, sent_ns and schema integers")
    if not isinstance(events, list) or not all(map(_IS_MAP, events)):
        raise MalformedMessage("events must be a list of maps")
    last_seq = body.get("last_seq")
    if last_seq is not None and not (isinstance(last_seq, dict)
                                     and all(isinstance(v, int) for v in last_seq.values())):
        raise MalformedMessage("last_seq must map topics to integers")
    extra = {k: v for k, v in body.items() if k not in _KNOWN} or None
    return Envelope(topic=topic, stream=stream, epoch=epoch, seq=seq, sent_ns=sent, events=events,
                    last_seq=last_seq, counters=body.get("counters"),
                    interval_s=body.get("interval_s"), extra=extra, schema=schema,
                    raw_events=_events_bytes(frames[1]) if keep_raw and events else None)


def _decode(body: bytes) -> Any:
    """The one msgpack value ``body`` holds. ormsgpack decodes (and checks text is UTF-8) but
    ignores whatever follows the first value, so msgpack's parser skips through the body too
    (nothing is built: about a seventh of the decode) to prove it is exactly one complete value."""
    value = ormsgpack.unpackb(body, option=_OPTION)
    reader = msgpack.Unpacker(max_buffer_size=len(body))
    reader.feed(body)
    reader.skip()
    if reader.tell() != len(body):
        raise ValueError(f"{len(body) - reader.tell()} bytes after the body's map")
    return value


def _events_bytes(body: bytes) -> bytes | None:
    """The packed ``events`` value of a body ``unpackb`` already accepted (so it is one complete
    map): the header keys are read, every other value skipped, and the events' bytes sliced out;
    no event is decoded twice. None if the key is somehow absent."""
    reader = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(body))
    reader.feed(body)
    entries = reader.read_map_header()
    for i in range(entries):
        key = reader.unpack()
        if key == "events":
            start = reader.tell()
            if i == entries - 1:            # the last entry (pack() writes it last): the rest
                return body[start:]
            reader.skip()
            return body[start:reader.tell()]
        reader.skip()
    return None
