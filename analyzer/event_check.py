"""Is a sessionizer event well-formed enough to analyse? (malformed events are counted, dropped)."""

from __future__ import annotations

from typing import Any

__all__ = ["event_problem", "is_int", "INT64_LIMIT"]

INT64_LIMIT = 2**63           # session ids are CEL ints (int64)
_TEXT_FIELDS = ("path", "exe", "comm", "addr")
_NO_ARGV: list[Any] = []    # an absent argv passes the type test


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def event_problem(ev: Any) -> str | None:
    """Why an event cannot be analysed (None: fine).

    The first test is the one every well-formed event passes in a few type checks; anything it
    does not accept gets the field-by-field check below, which says what is wrong.
    """
    if type(ev) is dict:
        get = ev.get
        sid = get("session_id")
        # text fields as str only (bytes for a non-UTF-8 path are fine, but the slow path says so)
        if (type(get("kind")) is str and type(sid) is int and type(get("ts_ns")) is int
                and type(get("tgid")) is int and 0 <= sid < INT64_LIMIT
                and type(get("path", "")) is str and type(get("exe", "")) is str
                and type(get("comm", "")) is str and type(get("addr", "")) is str
                and type(get("argv", _NO_ARGV)) is list):
            return None
    return _slow_event_problem(ev)


def _slow_event_problem(ev: Any) -> str | None:
    if not isinstance(ev, dict):
        return f"event is {type(ev).__name__}, not a map"
    if not isinstance(ev.get("kind"), str):
        return "missing kind"
    for name in ("session_id", "ts_ns", "tgid"):
        if not is_int(ev.get(name)):
            return f"{ev['kind']}: field {name!r} must be an integer"
    if not 0 <= ev["session_id"] < INT64_LIMIT:
        return f"{ev['kind']}: session_id {ev['session_id']} is out of range"
    for name in _TEXT_FIELDS:
        if name in ev and not isinstance(ev[name], (str, bytes)):
            return f"{ev['kind']}: field {name!r} must be text"
    if "argv" in ev and not isinstance(ev["argv"], list):
        return f"{ev['kind']}: field 'argv' must be a list"
    return None
