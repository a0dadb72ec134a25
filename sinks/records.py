"""Bus maps -> the JSON records of events.log, audit.log and alert.log. Pure: no I/O, no clock.

    events.log    event_line(analyzer.event map)  (== encode_line(event_record(map)), faster)

The event of a decision is :func:`event_body` too (audit.log / alert.log:
sinks/decision_records.py); sessions.log is sinks/session_records.py. Field names and meanings of the original's four kinds
(EXECVE, OPENAT, CONNECT, EXIT) are the original's, so its consumers keep working; everything
else is additive and written only when the event carries it (docs/sinks.md, FIELDS): ``role``,
the schema-2 path fields (``abspath``, ``path_truncated``), the exec's ``stdio``/``ld_env``/
``euid`` facts, the kinds of the detection signals (CHMOD ... CAPSET) and ``exe``. Events a noise filter ``hidden`` are not records at all: the
sinks count them before they get here.

Text arrives as ``str`` or, when it was not valid UTF-8, as ``bytes`` (bus/text.py); both become
``str`` with surrogateescape. :func:`encode_line` writes the surrogates as JSON ``\\udcXX``
escapes, so a line stays valid, single-line JSON and ``bus.to_bytes(json.loads(line)[...])`` gives
back the exact original bytes. Newlines in paths are escaped by JSON itself.
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bus.text import from_wire

__all__ = ["RecordError", "KindSpec", "KINDS", "TYPE_NAMES", "rfc3339nano", "event_type",
           "event_record", "event_body", "encode_line", "event_line", "text", "int_field", "as_map"]

NS_PER_S = 1_000_000_000


class RecordError(ValueError):
    """A bus map that cannot become a record (missing or mistyped field). Counted and dropped."""


# --------------------------------------------------------------------------- times and fields

def rfc3339nano(ts_ns: int) -> str:
    """Local time as Go's time.RFC3339Nano prints it: trailing fraction zeros trimmed, Z for UTC.

    ``2026-05-02T17:44:19.027509477-05:00``; ``...:19Z`` when the fraction is zero in UTC.
    Events arrive many per second, so the seconds part and zone of the last second are
    remembered (localtime + strftime per event cost more than the rest of the timestamp).
    """
    sec, ns = divmod(ts_ns, NS_PER_S)
    last = _last_second
    if sec != last[0] or time.tzname != last[1]:      # a tzset() (TZ change) starts afresh
        last[:] = [sec, time.tzname, *_second(sec, ts_ns)]
    if ns:                                            # one f-string: no intermediate strings
        return f"{last[2]}.{('%09d' % ns).rstrip('0')}{last[3]}"
    return last[2] + last[3]


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
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, (str, bytes)):
        return from_wire(value)
    raise RecordError(f"expected text, got {type(value).__name__}")


def int_field(m: Mapping[str, Any], name: str, default: int | None = 0) -> int:
    """An integer field; a missing one takes ``default`` (None: required)."""
    value = m.get(name)
    if value is None:
        if default is None:
            raise RecordError(f"missing field {name!r}")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"field {name!r} is {type(value).__name__}, not an integer")
    return value


def as_map(m: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(m, Mapping):
        raise RecordError(f"{what} is {type(m).__name__}, not a map")
    return m


# --------------------------------------------------------------------------- field converters
# Each takes the wire value (never None: an absent field is handled by its caller) and the field
# name, and returns what the record holds, or _OMIT.

_OMIT: Any = object()


def _text(value: Any, name: str) -> str:
    return text(value)


def _int(value: Any, name: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"field {name!r} is {type(value).__name__}, not an integer")
    return value


def _hex(value: Any, name: str) -> str:
    """Capability masks and hashes: hex text (u64 values lose digits in JSON readers' doubles)."""
    return f"{_int(value, name):#x}"


def _true(value: Any, name: str) -> Any:
    """A flag written only when true (absent = false on the bus)."""
    if not isinstance(value, bool):
        raise RecordError(f"field {name!r} is {type(value).__name__}, not a boolean")
    return True if value else _OMIT


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"field {name!r} is {type(value).__name__}, not a boolean")
    return value


def _list(value: Any, name: str) -> list[Any]:
    if type(value) is not list and not isinstance(value, list):
        raise RecordError(f"field {name!r} is {type(value).__name__}, not a list")
    return value


def _texts(value: Any, name: str) -> list[str]:
    return [text(v) for v in _list(value, name)]


def _ints(value: Any, name: str) -> list[int]:
    return [_int(v, name) for v in _list(value, name)]


def _stdio(value: Any, name: str) -> list[str]:
    """``[{"type": "pipe", "ino": 7}, ...]`` -> ``["pipe", ...]``: what a reader needs of fds 0-2."""
    out = []
    for fd in _list(value, name):
        if type(fd) is not dict and not isinstance(fd, Mapping):
            raise RecordError(f"an item of {name!r} is {type(fd).__name__}, not a map")
        out.append(text(fd.get("type")))
    return out


def _ld_env(value: Any, name: str) -> Any:
    """LD_* name -> value (the kernel reports three names, values up to 255 bytes); {} omitted."""
    env = as_map(value, f"field {name!r}")
    return {text(k): text(v) for k, v in env.items()} or _OMIT


Convert = Callable[[Any, str], Any]
Field = tuple[str, str, Convert]        # (record name, bus name, converter)


@dataclass(frozen=True, slots=True)
class KindSpec:
    """How one bus kind becomes an events.log record.

    ``fields`` are always written, in order (an absent one as "" / 0 / []): for the original's
    four kinds exactly the original's. ``extras`` are written, in order, only when the event
    carries them (and, for flags, only when true); ``role`` leads them for every kind.
    """

    type_name: str
    fields: tuple[Field, ...] = ()
    extras: tuple[Field, ...] = ()


_ROLE: Field = ("role", "role", _text)
_PATH_EXTRAS: tuple[Field, ...] = (("abspath", "abspath", _text), ("path_truncated", "path_truncated", _true))
_IN_TREE: Field = ("target_in_tree", "target_in_tree", _bool)
_CALL: tuple[Field, ...] = (("syscall", "syscall", _text), ("ret", "ret", _int))
_PATH: Field = ("path", "path", _text)
_ADDR: tuple[Field, ...] = (("addr", "addr", _text), ("port", "port", _int))

KINDS: dict[str, KindSpec] = {
    "exec": KindSpec("EXECVE", (_PATH, ("args", "argv", _texts)), (
        _ROLE, *_PATH_EXTRAS, ("stdio", "stdio", _stdio), ("parent_stdio", "parent_stdio", _texts),
        ("ld_env", "ld_env", _ld_env), ("ld_env_truncated", "ld_env_truncated", _true),
        ("env_truncated", "env_truncated", _true), ("euid", "euid", _int),
        ("prev_euid", "prev_euid", _int))),
    "open": KindSpec("OPENAT", (_PATH, ("flags", "flags", _int), ("mode", "mode", _int)), (
        _ROLE, *_PATH_EXTRAS, ("target_tgid", "target_tgid", _int), _IN_TREE)),
    "connect": KindSpec("CONNECT", _ADDR, (_ROLE,)),
    "exit": KindSpec("EXIT", (), (_ROLE,)),
    # schema 2: the detection signals (docs/bus.md, Events); syscall and ret lead, since a failed
    # attempt (ptrace EPERM) reads differently from a done one.
    "chmod": KindSpec("CHMOD", (*_CALL, _PATH, ("mode", "mode", _int)), (_ROLE, *_PATH_EXTRAS)),
    "unlink": KindSpec("UNLINK", (*_CALL, _PATH, ("flags", "flags", _int)), (_ROLE, *_PATH_EXTRAS)),
    "rename": KindSpec("RENAME", (*_CALL, _PATH, ("new_path", "new_path", _text), ("flags", "flags", _int)), (
        _ROLE, *_PATH_EXTRAS, ("new_abspath", "new_abspath", _text),
        ("new_path_truncated", "new_path_truncated", _true))),
    "truncate": KindSpec("TRUNCATE", (*_CALL, _PATH, ("length", "length", _int)), (_ROLE, *_PATH_EXTRAS)),
    "memfd": KindSpec("MEMFD", (*_CALL, ("name", "name", _text), ("flags", "flags", _int)), (_ROLE,)),
    "ptrace": KindSpec("PTRACE", (*_CALL, ("request", "request", _int), ("target", "target", _int)),
                       (_ROLE, _IN_TREE)),
    "vm_read": KindSpec("VM_READ", (*_CALL, ("target", "target", _int)), (_ROLE, _IN_TREE)),
    "send": KindSpec("SEND", (*_CALL, *_ADDR, ("bytes", "bytes", _int)), (
        _ROLE, ("dns_qname_len", "dns_qname_len", _int), ("dns_qname_hash", "dns_qname_hash", _hex))),
    "bind": KindSpec("BIND", (*_CALL, *_ADDR), (_ROLE,)),
    "listen": KindSpec("LISTEN", (*_CALL, *_ADDR, ("backlog", "backlog", _int)), (_ROLE,)),
    "socket": KindSpec("SOCKET", (*_CALL, ("family", "family", _int), ("sock_type", "type", _int),
                                  ("protocol", "protocol", _int)), (_ROLE,)),
    "setid": KindSpec("SETID", (*_CALL, ("ids", "ids", _ints), ("euid", "euid", _int)), (_ROLE,)),
    "capset": KindSpec("CAPSET", (*_CALL, ("effective", "effective", _hex),
                                  ("permitted", "permitted", _hex), ("inheritable", "inheritable", _hex)),
                       (_ROLE,)),
}

# bus kind -> type name. Anything else is "OTHER", as in the original (fork, root, loss: no record).
TYPE_NAMES = {kind: spec.type_name for kind, spec in KINDS.items()}
_EMPTY = {_text: "", _int: 0, _hex: "0x0", _texts: [], _ints: []}     # a field the event lacks
# kind -> the bus names of its additive fields: an event with none of them needs no converter
_EXTRA_NAMES = {kind: frozenset(name for _, name, _c in spec.extras) for kind, spec in KINDS.items()}


def event_type(event: Mapping[str, Any]) -> str:
    """``exec`` -> ``EXECVE`` ...; unknown kinds are ``OTHER`` as in the original."""
    return TYPE_NAMES.get(event.get("kind"), "OTHER") if type(event.get("kind")) is str else "OTHER"


def _extras(event: Mapping[str, Any], kind: str) -> list[tuple[str, Any, Convert]]:
    """The additive fields ``event`` carries, in the spec's order, each with its converter
    (shared by both line builders: the fast one writes a value by its converter's type)."""
    out = []
    get = event.get
    for out_name, name, convert in KINDS[kind].extras:
        value = get(name)
        if value is not None:
            value = convert(value, name)
            if value is not _OMIT:
                out.append((out_name, value, convert))
    return out


# --------------------------------------------------------------------------- events

def event_body(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event object shared by events.log and decisions: pid=tgid, tid, ppid, uid, type, comm, ...

    Without ``timestamp`` (decisions carry it one level up). This is the definition of an
    events.log record; :func:`event_line` is a faster way to the same bytes.
    """
    event = as_map(event, "event")
    body: dict[str, Any] = {
        "pid": int_field(event, "tgid", None), "tid": int_field(event, "tid"),
        "ppid": int_field(event, "ppid"), "uid": int_field(event, "uid"),
        "type": event_type(event), "comm": text(event.get("comm")),
    }
    spec = KINDS.get(event["kind"]) if body["type"] != "OTHER" else None
    if spec is None:
        return body
    for out_name, name, convert in spec.fields:
        value = event.get(name)
        body[out_name] = _EMPTY[convert] if value is None else convert(value, name)
    if spec.type_name == "EXECVE":
        exe = text(event.get("exe"))
        if exe and exe != body["path"]:
            body["exe"] = exe          # what really ran (fd and memfd execs)
    body.update((name, value) for name, value, _ in _extras(event, event["kind"]))
    return body


def event_record(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """One events.log line, or None for kinds that have no record (fork, root, loss, unknown)."""
    event = as_map(event, "event")
    if event_type(event) == "OTHER":
        return None
    record = {"timestamp": rfc3339nano(int_field(event, "ts_ns", None)), **event_body(event)}
    if event.get("session_id") is not None:
        record["session_id"] = int_field(event, "session_id")     # last: additive (casa explain)
    return record


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
_encode = _ENCODER.encode


def event_line(event: Any) -> bytes | None:
    """``encode_line(event_record(event))`` (None for kinds without a record), about 2x cheaper.

    Every accepted event passes here, and building the record dict and encoding it is most of
    the jsonl sink's cost (docs/performance.md, "sinks"), so the original's four kinds with their
    fields of the exact wire types are written straight to JSON text. The additive fields come
    from the same converters as :func:`event_body` (``_extras``), each value through the same
    encoder. Anything else (bytes text in an original field, missing or mistyped fields, the
    schema-2 kinds, other shapes) takes the general path, which gives the same bytes or raises
    the same RecordError (tests/sinks/test_records_fast_path.py proves both).
    """
    common = None
    if type(event) is dict:
        try:
            common = _common(event)                  # one C call; a field missing: general path
        except KeyError:
            pass
    if common is not None and tuple(map(type, common)) == _COMMON_TYPES:
        kind, ts, tgid, tid, ppid, uid, comm = common
        if kind in _FAST_KINDS:
            stamp = rfc3339nano(ts)                  # first, as event_record raises it first
            tail = _event_tail(event, kind)
            if tail is not None:                     # an f-string: cheaper than str.format here
                return (f'{{"timestamp":"{stamp}","pid":{tgid},"tid":{tid},"ppid":{ppid},'
                        f'"uid":{uid},"type":"{TYPE_NAMES[kind]}","comm":{_quote(comm)}{tail}'
                        ).encode("utf-8", "backslashreplace")
    record = event_record(event)
    return None if record is None else encode_line(record)


def _event_tail(event: dict[str, Any], kind: str) -> str | None:
    """The per-kind end of a fast-path events.log line; None sends the event to the general path.

    The kind's own fields are checked first, then session_id, then the extras (the order in
    which the general path raises); an event with none of its kind's extras (most of them)
    skips the converters after one C-level key check.
    """
    get = event.get
    if kind == "open":
        path, flags, mode = get("path"), get("flags"), get("mode")
        if type(path) is not str or type(flags) is not int or type(mode) is not int:
            return None
        head = f',"path":{_quote(path)},"flags":{flags},"mode":{mode}'
    elif kind == "exec":
        path, argv, exe = get("path"), get("argv"), get("exe")
        if type(path) is not str or type(argv) is not list or not (exe is None or type(exe) is str) \
                or not all(type(a) is str for a in argv):
            return None
        extra = f',"exe":{_quote(exe)}' if exe and exe != path else ""
        head = f',"path":{_quote(path)},"args":[{",".join(map(_quote, argv))}]{extra}'
    elif kind == "connect":
        addr, port = get("addr"), get("port")
        if type(addr) is not str or type(port) is not int:
            return None
        head = f',"addr":{_quote(addr)},"port":{port}'
    else:                                            # exit: the common fields only
        head = ""
    sid = get("session_id")
    if sid is None:
        end = "}\n"
    elif type(sid) is int:
        end = f',"session_id":{sid}}}\n'
    else:
        return None                                  # the general path words the error
    if event.keys().isdisjoint(_EXTRA_NAMES[kind]):
        return head + end
    return head + "".join([f',"{name}":{_WRITE[convert](value)}'
                           for name, value, convert in _extras(event, kind)]) + end


def _strs(value: list[str]) -> str:
    return "[" + ",".join(map(_quote, value)) + "]"


def _str_map(value: dict[str, str]) -> str:
    return "{" + ",".join([f"{_quote(k)}:{_quote(v)}" for k, v in value.items()]) + "}"


# Each converter's result written as the encoder writes it (str: _quote; int: int.__repr__, as
# json.encoder does), without building a new C encoder per value as JSONEncoder.encode does.
_WRITE: dict[Convert, Callable[[Any], str]] = {
    _text: _quote, _hex: _quote, _int: int.__repr__, _true: lambda v: "true",
    _bool: lambda v: "true" if v else "false", _texts: _strs, _stdio: _strs,
    _ints: lambda v: "[" + ",".join(map(int.__repr__, v)) + "]", _ld_env: _str_map,
}


_FAST_KINDS = frozenset({"exec", "open", "connect", "exit"})
# the common fields of a fast-path line and their exact types (no bool posing as an int)
_common = operator.itemgetter("kind", "ts_ns", "tgid", "tid", "ppid", "uid", "comm")
_COMMON_TYPES = (str, int, int, int, int, int, str)
