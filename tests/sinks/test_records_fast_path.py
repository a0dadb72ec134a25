"""records.event_line (the events.log fast path) writes exactly what the general path writes.

The general path, ``encode_line(event_record(event))``, is the definition of an events.log line;
event_line builds the original's four kinds straight to JSON text. The differential tests here
run both over events of every kind the sinks know (and some they do not), every field present,
absent, odd or mistyped -- non-UTF-8 text, newlines, long paths -- and require the same bytes or
the same RecordError. Coverage is checked, not hoped for: every field of every kind must have
been written by the fast path (for its four kinds) and by the general path.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from bus.envelope import Envelope
from bus.text import from_wire
from bus.topics import ANALYZER_EVENT, ANALYZER_SESSION
from sinks import records
from sinks.jsonl import JsonlSink, LogPaths
from tests.sinks.sink_maps import README_ALERT_TS_NS, exec_event, session_map

ODD_TEXTS = [
    "", "/tmp/plain", "caf\u00e9 \u2028 \u2029", 'quote" back\\slash', "new\nline\r\ttab\x00nul\x1f",
    from_wire(b"/tmp/odd\xff\xfe"), "/tmp/" + "x" * 5000, "\U0001f600 emoji", "\x7f\x80", "rel/../x",
]
ODD_BYTES = [b"/tmp/odd\xff\xfe", b"\xc3", b"new\nline\xff", b"/" + b"\xfe" * 4096]
INTS = [0, 1, -1, 7, -100, 0o4755, 2**31, 2**63 - 1, 2**64 - 1]
FD_TYPES = ["none", "file", "dir", "pipe", "tty", "char", "inet", "unix", "socket", "other"]
FAST_KINDS = ("exec", "open", "connect", "exit")
MISTYPED: dict[Any, list[Any]] = {   # per converter: values the general path refuses
    records._text: [5, 1.5, ["x"]], records._int: [1.5, "7", True, [1]], records._hex: ["0x1", 2.0],
    records._true: [1, "yes"], records._bool: [0, "no"], records._texts: ["x", [1]],
    records._ints: [[True], ["1"], 3], records._stdio: [["pipe"], "x", [{"type": 3}]],
    records._ld_env: [["LD_PRELOAD"], {"LD_PRELOAD": 5}],
}


def slow_line(event: Any) -> bytes | None:
    record = records.event_record(event)
    return None if record is None else records.encode_line(record)


def outcome(fn: Any, event: Any) -> tuple[str, Any]:
    try:
        return "line", fn(event)
    except records.RecordError as exc:
        return "error", str(exc)


def good_value(rng: random.Random, convert: Any, odd_bytes: bool) -> Any:
    """A well-typed wire value for a converter (text as bytes only when ``odd_bytes``)."""
    def txt() -> Any:
        return rng.choice(ODD_BYTES) if odd_bytes and rng.random() < 0.5 else rng.choice(ODD_TEXTS)
    if convert is records._text:
        return txt()
    if convert in (records._int, records._hex):
        return rng.choice(INTS)
    if convert in (records._true, records._bool):
        return rng.random() < 0.7
    if convert is records._texts:
        return [txt() for _ in range(rng.randint(0, 4))]
    if convert is records._ints:
        return [rng.choice([-1, 0, 1000]) for _ in range(rng.randint(0, 3))]
    if convert is records._stdio:
        return [{"type": rng.choice(FD_TYPES), **({"ino": rng.randint(1, 9**9)} if rng.random() < .5 else {}),
                 **({"family": 2, "addr": "127.0.0.1", "port": 4444} if rng.random() < .2 else {})}
                for _ in range(3)]
    if convert is records._ld_env:
        names = rng.sample(["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"], rng.randint(0, 3))
        return {n: txt() for n in names}
    raise AssertionError(f"no values for {convert}")


def random_event(rng: random.Random, kind: str, *, odd_bytes: bool, mistype: bool) -> dict[str, Any]:
    """An event of ``kind``: common fields, each field of the kind (and extras) present or not."""
    ev: dict[str, Any] = {"kind": kind, "ts_ns": README_ALERT_TS_NS + rng.choice([0, 1, 10**9, -10**9]),
                          "tgid": rng.randint(1, 2**22), "tid": rng.randint(-1, 2**22),
                          "ppid": rng.randint(0, 9), "uid": rng.choice([0, 1000, 2**32 - 1]),
                          "comm": rng.choice(ODD_BYTES + ODD_TEXTS) if odd_bytes else rng.choice(ODD_TEXTS),
                          "session_id": 7, "root": 1, "depth": 2, "tree_id": 9, "shard": 9}
    spec = records.KINDS.get(kind)
    if spec is not None:
        for _, name, convert in spec.fields:
            if rng.random() < 0.95:
                ev[name] = good_value(rng, convert, odd_bytes)
        for _, name, convert in spec.extras:
            if rng.random() < 0.5:
                ev[name] = good_value(rng, convert, odd_bytes)
        if kind == "exec" and rng.random() < 0.8:
            ev["exe"] = rng.choice([None, "", ev.get("path", ""), "memfd:x (deleted)", rng.choice(ODD_TEXTS)])
        if mistype:
            out_name, name, convert = rng.choice(spec.fields + spec.extras or ((None, "tid", records._int),))
            ev[name] = rng.choice(MISTYPED[convert])
    sid = rng.random()                  # session_id absent, or (mistyped) refused, beside the rest
    if sid < 0.1:
        del ev["session_id"]
    elif sid < 0.2 and mistype:
        ev["session_id"] = rng.choice([True, "7", 1.5])
    return ev


def all_events(seed: int, n: int, **kw: Any) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    kinds = list(records.KINDS) + ["fork", "root", "loss", "newkind"]
    for _ in range(n):
        yield random_event(rng, rng.choice(kinds), **kw)


def test_every_kind_and_field_gives_the_same_bytes_on_both_paths(chicago: None) -> None:
    """Well-typed str text: the fast path's own ground; all of it must match."""
    for ev in all_events(seed=11, n=6000, odd_bytes=False, mistype=False):
        fast, slow = outcome(records.event_line, ev), outcome(slow_line, ev)
        assert fast == slow, ev
        if fast[0] == "line" and fast[1] is not None:
            line = fast[1]
            assert line.endswith(b"\n") and line.count(b"\n") == 1 and json.loads(line)
            line.decode("utf-8")                                 # valid UTF-8 throughout


def test_bytes_text_and_mistyped_fields_give_the_same_bytes_or_the_same_error(chicago: None) -> None:
    errors = 0
    for i, ev in enumerate(all_events(seed=5, n=6000, odd_bytes=True, mistype=True)):
        fast, slow = outcome(records.event_line, ev), outcome(slow_line, ev)
        assert fast == slow, ev
        errors += fast[0] == "error"
    assert errors > 1000                                         # the error side was exercised


def test_every_field_was_written_by_both_paths(chicago: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Coverage of the two tests above: which record fields each path wrote, per type."""
    general_calls: list[Any] = []
    real = records.event_record
    monkeypatch.setattr(records, "event_record", lambda e: general_calls.append(e) or real(e))
    fast_fields: dict[str, set[str]] = {}
    for ev in all_events(seed=11, n=6000, odd_bytes=False, mistype=False):
        before = len(general_calls)
        line = records.event_line(ev)
        if line is not None and len(general_calls) == before:        # the fast path wrote it
            rec = json.loads(line)
            fast_fields.setdefault(rec["type"], set()).update(rec)
    monkeypatch.setattr(records, "event_record", real)
    general_fields: dict[str, set[str]] = {}
    for ev in all_events(seed=5, n=6000, odd_bytes=True, mistype=False):
        rec = records.event_record(ev)
        if rec is not None:
            general_fields.setdefault(rec["type"], set()).update(rec)
    for kind, spec in records.KINDS.items():
        want = {"timestamp", "pid", "tid", "ppid", "uid", "type", "comm"} | \
            {out for out, _, _ in spec.fields + spec.extras} | ({"exe"} if kind == "exec" else set()) | {"session_id"}
        assert general_fields[spec.type_name] == want, kind
        if kind in FAST_KINDS:
            assert fast_fields[spec.type_name] == want, kind
    assert set(fast_fields) == {records.TYPE_NAMES[k] for k in FAST_KINDS}


def test_well_typed_original_kinds_never_take_the_general_path(
        chicago: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(event: Any) -> None:
        raise AssertionError(f"general path taken for {event!r:.80}")
    rng = random.Random(3)
    events = [random_event(rng, rng.choice(FAST_KINDS), odd_bytes=False, mistype=False) for _ in range(800)]
    for ev in events:                       # every original field present, extras as they come
        spec = records.KINDS[ev["kind"]]
        for _, name, convert in spec.fields:
            ev.setdefault(name, good_value(rng, convert, False))
        if ev.get("exe") is None:
            ev.pop("exe", None)
        for _, name, _c in spec.extras:     # bytes text in an additive field stays on the fast path
            if name in ("abspath", "role") and rng.random() < 0.3:
                ev[name] = rng.choice(ODD_BYTES)
    monkeypatch.setattr(records, "event_record", refuse)
    lines = [records.event_line(e) for e in events]
    assert all(line is not None and line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)


def test_a_long_odd_abspath_round_trips_through_the_fast_path(chicago: None) -> None:
    from bus.text import to_bytes
    raw = b"/tmp/" + b"d\xff\n/" * 1000 + b"x"
    ev = {"kind": "open", "ts_ns": README_ALERT_TS_NS, "tgid": 3, "tid": 3, "ppid": 1, "uid": 0,
          "comm": "sh", "path": "x", "flags": 1, "mode": 0, "abspath": raw, "path_truncated": True}
    line = records.event_line(ev)
    assert line == slow_line(ev)
    rec = json.loads(line)
    assert to_bytes(rec["abspath"]) == raw and rec["path_truncated"] is True and rec["path"] == "x"


@pytest.mark.parametrize("ev", [
    {"kind": "open", "ts_ns": README_ALERT_TS_NS, "tgid": 3, "path": b"\xfe", "flags": 1, "mode": 0},
    {"kind": "open", "ts_ns": README_ALERT_TS_NS, "tgid": 3, "path": "/x"},    # no flags/mode
    {"kind": "connect", "ts_ns": README_ALERT_TS_NS, "tgid": 3, "addr": None, "port": None},
    {"kind": "exit", "ts_ns": README_ALERT_TS_NS, "tgid": 3},                  # no tid/ppid/uid/comm
    MappingProxyType(exec_event()),                                            # a Mapping, not a dict
    {**exec_event(), "kind": "chmod", "mode": 0o4755},                         # a schema-2 kind
])
def test_other_shapes_fall_back_and_match(chicago: None, monkeypatch: pytest.MonkeyPatch, ev: Any) -> None:
    calls: list[Any] = []
    real = records.event_record
    monkeypatch.setattr(records, "event_record", lambda e: calls.append(e) or real(e))
    line = records.event_line(ev)
    monkeypatch.setattr(records, "event_record", real)
    assert calls and line == slow_line(ev) and line is not None


@pytest.mark.parametrize("ev", [
    {"kind": "fork", "ts_ns": 1, "tgid": 1, "tid": 1, "ppid": 0, "uid": 0, "comm": "x"},
    {"kind": "loss", "ts_ns": 1},
    {"kind": 5, "ts_ns": 1, "tgid": 1},
    {"kind": ["exec"], "ts_ns": 1, "tgid": 1, "tid": 1, "ppid": 0, "uid": 0, "comm": "x"},
])
def test_kinds_without_a_record_give_none(ev: dict[str, Any]) -> None:
    assert records.event_line(ev) is None


@pytest.mark.parametrize("bad,reason", [
    (exec_event(ts_ns=None), "missing field 'ts_ns'"),
    (exec_event(tgid=True), "field 'tgid' is bool"),
    (exec_event(flags=1, argv="x"), "field 'argv' is str"),
    ({"kind": "open", "ts_ns": 1, "tgid": 1, "path": "/x", "flags": 1.5}, "field 'flags' is float"),
    ({"kind": "connect", "ts_ns": 1, "tgid": 1, "addr": 7, "port": 1}, "expected text, got int"),
    (exec_event(ts_ns=10**40), "out of range"),
    (exec_event(stdio=[{"type": "pipe"}, 3, {"type": "tty"}]), "an item of 'stdio' is int"),
    (exec_event(path_truncated="yes"), "field 'path_truncated' is str, not a boolean"),
    ("not a map", "event is str, not a map"),
])
def test_malformed_events_raise_the_general_paths_error(bad: Any, reason: str) -> None:
    with pytest.raises(records.RecordError, match=reason):
        records.event_line(bad)


def test_event_batch_counts_as_before(tmp_path: Path, chicago: None) -> None:
    """A mixed analyzer.event batch: written, skipped, hidden, malformed, joined-midway and late."""
    sink = JsonlSink.from_paths(LogPaths.from_env({"CASA_LOG_DIR": str(tmp_path)}))
    sink.handle(Envelope(ANALYZER_SESSION, "analyzer-0", 1, 0, 0,
                         [session_map("opened", session_id=1), session_map("closed", session_id=2,
                                                                            closed_ns=README_ALERT_TS_NS)]))  # 2: midway
    batch: list[Any] = [
        exec_event(session_id=1), exec_event(session_id=2),            # open; closed -> late
        exec_event(session_id=3),                                      # never opened: midway
        {"kind": "fork", "ts_ns": 1, "tgid": 1, "session_id": 1},      # skipped kind
        "not a map", exec_event(session_id=1, tgid="x"),               # malformed x2
        exec_event(session_id=[1]),                                    # unhashable id: malformed
        MappingProxyType(exec_event(session_id=1, path=b"/tmp/\xff")),  # general path, written
        exec_event(session_id=4, hidden="runtime_noise"),              # hidden: no line; midway
    ]
    sink.handle(Envelope(ANALYZER_EVENT, "analyzer-0", 1, 0, 0, batch))
    c = sink.counters()
    assert (c["events_written"], c["skipped_kinds"], c["malformed_maps"], c["hidden_events"]) == (4, 1, 3, 1)
    assert (c["late_messages"], c["sessions_joined_midway"], c["open_sessions"]) == (1, 3, 3)
    lines = (tmp_path / "events.log").read_bytes().splitlines(keepends=True)
    assert lines == [slow_line(e) for e in (batch[0], batch[1], batch[2], batch[7])]
