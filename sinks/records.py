"""Bus maps -> the JSON records of the four logs (casa-original.md §11). Pure: no I/O, no clock.

    events.log    event_record(analyzer.event map)
    sessions.log  session_record(analyzer.session map, now_ns)   (flushed/closed/shutdown only)
    audit.log     decision_record(analyzer.decision map) when audit_due(...)
    alert.log     decision_record(analyzer.decision map) when alert_due(...)

Field names and meanings are the original's, so its consumers keep working. Additive fields
(never a renamed or removed one): ``exe`` on EXECVE when it differs from ``path`` (an fd exec:
``memfd:x (deleted)``), ``rules_version`` in decisions, ``complete`` and ``lost_events`` in
session snapshots.

Text arrives as ``str`` or, when it was not valid UTF-8, as ``bytes`` (bus/text.py); both become
``str`` with surrogateescape. :func:`encode_line` writes the surrogates as JSON ``\\udcXX``
escapes, so a line stays valid, single-line JSON and ``bus.to_bytes(json.loads(line)[...])`` gives
back the exact original bytes. Newlines in paths are escaped by JSON itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from bus.text import from_wire

__all__ = ["RecordError", "TYPE_NAMES", "rfc3339nano", "event_type", "event_record",
           "event_body", "decision_record", "audit_due", "alert_due", "session_record",
           "SESSION_REASONS", "encode_line", "event_line", "text"]

# bus kind -> the original's event type name (§3.3). Anything else is "OTHER".
TYPE_NAMES = {"exec": "EXECVE", "open": "OPENAT", "connect": "CONNECT", "exit": "EXIT"}

# analyzer.session state -> sessions.log reason (§11.2). "opened" writes nothing.
SESSION_REASONS = {"flushed": "periodic_flush", "closed": "session_closed", "shutdown": "shutdown"}

NS_PER_S = 1_000_000_000


class RecordError(ValueError):
    """A bus map that cannot become a record (missing or mistyped field). Counted and dropped."""


def rfc3339nano(ts_ns: int) -> str:
    """Local time as Go's time.RFC3339Nano prints it: trailing fraction zeros trimmed, Z for UTC.

    ``2026-05-02T17:44:19.027509477-05:00``; ``...:19Z`` when the fraction is zero in UTC.
    Events arrive many per second, so the seconds part and zone of the last second are
    remembered (localtime + strftime were ~10% of the sink's time per event).
    """
    sec, ns = divmod(ts_ns, NS_PER_S)
    last = _last_second
    if sec == last[0] and time.tzname == last[1]:      # a tzset() (TZ change) starts afresh
        stamp, zone = last[2], last[3]
    else:
        stamp, zone = _second(sec, ts_ns)
        last[:] = [sec, time.tzname, stamp, zone]
    return stamp + (f".{ns:09d}".rstrip("0") if ns else "") + zone


_last_second: list[Any] = [None, None, "", ""]      # [second, tzname, "YYYY-MM-DDTHH:MM:SS", zone]


def _second(sec: int, ts_ns: int) -> tuple[str, str]:
    """The seconds part and the zone (``Z`` or ``+hh:mm``) of ``sec`` in local time."""
    try:
        local = time.localtime(sec)
    except (OverflowError, OSError, ValueError) as exc:
        raise RecordError(f"timestamp {ts_ns} ns is out of range: {exc}") from None
    off = local.tm_gmtoff
    if off == 0:
        zone = "Z"
    else:
        sign = "+" if off > 0 else "-"
        zone = f"{sign}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local), zone


def text(value: Any) -> str:
    """A wire text value (str, or bytes when not UTF-8) as a stage-side str; None -> ""."""
    if value is None:
        return ""
    if isinstance(value, (str, bytes)):
        return from_wire(value)
    raise RecordError(f"expected text, got {type(value).__name__}")


def _int(m: Mapping[str, Any], name: str, default: int | None = 0) -> int:
    """An integer field; a missing one takes ``default`` (None: required)."""
    value = m.get(name)
    if value is None:
        if default is None:
            raise RecordError(f"missing field {name!r}")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"field {name!r} is {type(value).__name__}, not an integer")
    return value


def _map(m: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(m, Mapping):
        raise RecordError(f"{what} is {type(m).__name__}, not a map")
    return m


def event_type(event: Mapping[str, Any]) -> str:
    """``exec`` -> ``EXECVE`` ...; unknown kinds are ``OTHER`` as in the original."""
    return TYPE_NAMES.get(str(event.get("kind")), "OTHER")


def _args(event: Mapping[str, Any]) -> list[str]:
    argv = event.get("argv")
    if argv is None:
        return []
    if not isinstance(argv, list):
        raise RecordError(f"field 'argv' is {type(argv).__name__}, not a list")
    return [text(a) for a in argv]


def event_body(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event object shared by events.log and decisions: pid=tgid, tid, ppid, uid, type, comm, ...

    Without ``timestamp`` (decisions carry it one level up).
    """
    event = _map(event, "event")
    kind_name = event_type(event)
    body: dict[str, Any] = {
        "pid": _int(event, "tgid", None), "tid": _int(event, "tid"), "ppid": _int(event, "ppid"),
        "uid": _int(event, "uid"), "type": kind_name, "comm": text(event.get("comm")),
    }
    if kind_name == "EXECVE":
        path = text(event.get("path"))
        body["path"] = path
        body["args"] = _args(event)
        exe = text(event.get("exe"))
        if exe and exe != path:
            body["exe"] = exe          # additive: what really ran (fd and memfd execs)
    elif kind_name == "OPENAT":
        body["path"] = text(event.get("path"))
        body["flags"] = _int(event, "flags")
        body["mode"] = _int(event, "mode")
    elif kind_name == "CONNECT":
        body["addr"] = text(event.get("addr"))
        body["port"] = _int(event, "port")
    return body


def event_record(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """One events.log line (§11.1), or None for kinds the original never logged (fork, root, loss)."""
    event = _map(event, "event")
    if event_type(event) == "OTHER":
        return None
    return {"timestamp": rfc3339nano(_int(event, "ts_ns", None)), **event_body(event)}


def _rules(decision: Mapping[str, Any]) -> list[dict[str, Any]]:
    rules = decision.get("triggered_rules") or []
    if not isinstance(rules, list):
        raise RecordError("field 'triggered_rules' is not a list")
    out = []
    for r in rules:
        r = _map(r, "triggered rule")
        item: dict[str, Any] = {"name": text(r.get("name"))}
        if r.get("expr"):
            item["expr"] = text(r.get("expr"))         # omitted when empty, as in the original
        if r.get("weight"):
            item["weight"] = _int(r, "weight")         # omitted when zero
        out.append(item)
    return out


def _score(decision: Mapping[str, Any], name: str) -> int | float:
    value = decision.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"field {name!r} is missing or not a number")
    return value


def audit_due(decision: Mapping[str, Any]) -> bool:
    """§10: an audit record iff rules newly triggered and score >= log threshold."""
    return bool(decision.get("triggered_rules")) and \
        _score(decision, "score") >= _score(decision, "log_threshold")


def alert_due(decision: Mapping[str, Any]) -> bool:
    """§10: an alert record iff rules newly triggered and score >= alert threshold."""
    return bool(decision.get("triggered_rules")) and \
        _score(decision, "score") >= _score(decision, "alert_threshold")


def decision_record(decision: Mapping[str, Any]) -> dict[str, Any]:
    """One audit.log / alert.log line (§11.3, the README's alert shape) plus ``rules_version``."""
    decision = _map(decision, "decision")
    event = _map(decision.get("event"), "decision event")
    return {
        "timestamp": rfc3339nano(_int(event, "ts_ns", None)),
        "session_id": _int(decision, "session_id", None),
        "event": event_body(event),
        "decision": {
            "action": text(decision.get("action")),
            "score": _score(decision, "score"),
            "log_threshold": _score(decision, "log_threshold"),
            "alert_threshold": _score(decision, "alert_threshold"),
            "triggered_rules": _rules(decision),
            "rules_version": text(decision.get("rules_version")),
        },
    }


def _recent_event(item: Mapping[str, Any]) -> dict[str, Any]:
    """A recent_events entry (§11.2): timestamp, type, pid, then per type.

    Accepts a bus event map (``kind``, ``ts_ns``, ``tgid``) or an entry already in §11.2 shape.
    A session snapshot carries up to 64 of them, so the well-typed bus map is built directly
    (about 0.25 us per accepted event over the benchmark); anything else takes the general path.
    """
    if type(item) is dict:
        kind, ts, pid = item.get("kind"), item.get("ts_ns"), item.get("tgid")
        if type(kind) is str and type(ts) is int and type(pid) is int:
            out = _typed_recent_event(item, TYPE_NAMES.get(kind, "OTHER"), ts, pid)
            if out is not None:
                return out
    return _recent_event_general(item)


def _typed_recent_event(item: dict[str, Any], kind_name: str, ts: int, pid: int) -> dict[str, Any] | None:
    """The fast path of _recent_event; None when a per-type field is not of its exact type."""
    get = item.get
    out: dict[str, Any] = {"timestamp": rfc3339nano(ts), "type": kind_name, "pid": pid}
    if kind_name == "OPENAT":
        path, flags, mode = get("path"), get("flags"), get("mode")
        if not ((path is None or type(path) is str) and (flags is None or type(flags) is int)
                and (mode is None or type(mode) is int)):
            return None
        if path:
            out["path"] = path
        if flags:
            out["flags"] = flags
        if mode:
            out["mode"] = mode
    elif kind_name == "EXECVE":
        path = get("path")
        if type(path) is not str:
            return None
        out["path"] = path
    elif kind_name == "CONNECT":
        addr, port = get("addr"), get("port")
        if type(addr) is not str or type(port) is not int:
            return None
        out["addr"], out["port"] = addr, port
    return out


def _recent_event_general(item: Mapping[str, Any]) -> dict[str, Any]:
    """_recent_event for any map: bytes text, missing fields, the §11.2 shape; raises RecordError."""
    item = _map(item, "recent event")
    if "kind" in item:
        kind_name, pid = event_type(item), _int(item, "tgid", None)
        stamp = rfc3339nano(_int(item, "ts_ns", None))
    else:
        kind_name, pid = text(item.get("type")) or "OTHER", _int(item, "pid", None)
        stamp = text(item.get("timestamp")) if "timestamp" in item else \
            rfc3339nano(_int(item, "ts_ns", None))
    out: dict[str, Any] = {"timestamp": stamp, "type": kind_name, "pid": pid}
    if kind_name == "OPENAT":                  # each omitted when empty or zero
        if item.get("path"):
            out["path"] = text(item.get("path"))
        for name in ("flags", "mode"):
            if _int(item, name):
                out[name] = _int(item, name)
    elif kind_name == "EXECVE":
        out["path"] = text(item.get("path"))
    elif kind_name == "CONNECT":
        out["addr"] = text(item.get("addr"))
        out["port"] = _int(item, "port")
    return out


def session_record(session: Mapping[str, Any], now_ns: int, *,
                   sink_saw_loss: bool = False) -> dict[str, Any] | None:
    """One sessions.log line (§11.2) for a flushed/closed/shutdown map; None for ``opened``.

    ``complete`` is false when the analyzer says so or when this sink itself lost analyzer
    messages while the session was open (``sink_saw_loss``).
    """
    session = _map(session, "session")
    state = text(session.get("state"))
    if state == "opened":
        return None
    if state not in SESSION_REASONS:
        raise RecordError(f"unknown session state {state!r}")
    recent = session.get("recent_events") or []
    if not isinstance(recent, list):
        raise RecordError("field 'recent_events' is not a list")
    body: dict[str, Any] = {
        "created_at": rfc3339nano(_int(session, "created_ns", None)),
        "updated_at": rfc3339nano(_int(session, "updated_ns", None)),
    }
    closed_ns = _int(session, "closed_ns")
    if closed_ns:
        body["closed_at"] = rfc3339nano(closed_ns)
    body["recent_events"] = [_recent_event(e) for e in recent]
    body["complete"] = bool(session.get("complete", True)) and not sink_saw_loss
    body["lost_events"] = _int(session, "lost_events")
    return {"timestamp": rfc3339nano(now_ns), "session_id": _int(session, "session_id", None),
            "reason": SESSION_REASONS[state], "session": body}


# One encoder for every line: json.dumps with options builds a new JSONEncoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_line(record: Mapping[str, Any]) -> bytes:
    """One compact JSON line, UTF-8, with non-UTF-8 bytes (surrogates) escaped as ``\\udcXX``.

    Python's ``backslashreplace`` writes a lone surrogate as exactly the JSON escape ``\\udcXX``,
    and surrogates only ever occur inside JSON strings, so the line is valid JSON.
    """
    line = _ENCODER.encode(record)
    return (line + "\n").encode("utf-8", "backslashreplace")


# The C string encoder the JSONEncoder above uses itself for str (ensure_ascii=False), so a string
# written by the fast path below is byte-for-byte what encode_line would write.
_quote = json.encoder.encode_basestring


def event_line(event: Any) -> bytes | None:
    """``encode_line(event_record(event))`` (None for kinds never logged), ~3x cheaper.

    Every accepted event passes here, so the common, well-typed map is written straight to JSON
    text without building the record dict (decode + sink 7.8 -> 4.5 us per event on the
    benchmark recording). Anything else (bytes text, missing or mistyped fields, unknown kinds)
    takes the general path, which gives the same bytes or raises the same RecordError.
    """
    if type(event) is dict:
        get = event.get
        kind, ts, tgid, tid, ppid, uid, comm = (get("kind"), get("ts_ns"), get("tgid"), get("tid"),
                                                get("ppid"), get("uid"), get("comm"))
        if type(kind) is str and type(ts) is int and type(tgid) is int and type(tid) is int \
                and type(ppid) is int and type(uid) is int and type(comm) is str:
            tail = _event_tail(event, kind)
            if tail is not None:              # an f-string: 0.14 us cheaper than str.format here
                return (f'{{"timestamp":"{rfc3339nano(ts)}","pid":{tgid},"tid":{tid},"ppid":{ppid},'
                        f'"uid":{uid},"type":"{TYPE_NAMES[kind]}","comm":{_quote(comm)}{tail}'
                        ).encode("utf-8", "backslashreplace")
    record = event_record(event)
    return None if record is None else encode_line(record)


def _event_tail(event: dict[str, Any], kind: str) -> str | None:
    """The per-kind end of a fast-path events.log line; None sends the event to the general path."""
    get = event.get
    if kind == "open":
        path, flags, mode = get("path"), get("flags"), get("mode")
        if type(path) is str and type(flags) is int and type(mode) is int:
            return f',"path":{_quote(path)},"flags":{flags},"mode":{mode}}}\n'
    elif kind == "connect":
        addr, port = get("addr"), get("port")
        if type(addr) is str and type(port) is int:
            return f',"addr":{_quote(addr)},"port":{port}}}\n'
    elif kind == "exit":
        return "}\n"
    elif kind == "exec":
        path, argv, exe = get("path"), get("argv"), get("exe")
        if type(path) is str and type(argv) is list and (exe is None or type(exe) is str) \
                and all(type(a) is str for a in argv):
            args = ",".join(map(_quote, argv))
            extra = f',"exe":{_quote(exe)}' if exe and exe != path else ""
            return f',"path":{_quote(path)},"args":[{args}]{extra}}}\n'
    return None
