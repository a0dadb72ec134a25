"""records.event_line (the events.log fast path) writes exactly what the general path writes.

The fast path only takes well-typed dict events; everything else must fall back to
``encode_line(event_record(...))`` and give the same bytes or the same RecordError. Both sides
are exercised here: the fast path with ``event_record`` disabled, the fallback by counting calls.
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
    from_wire(b"/tmp/odd\xff\xfe"), "/tmp/" + "x" * 5000, "\U0001f600 emoji", "\x7f\x80",
]


def slow_line(event: Any) -> bytes | None:
    record = records.event_record(event)
    return None if record is None else records.encode_line(record)


def well_typed_events(seed: int, n: int) -> Iterator[dict[str, Any]]:
    """Random events of the four logged kinds, every field of its exact wire type."""
    rng = random.Random(seed)
    for _ in range(n):
        kind = rng.choice(["exec", "open", "connect", "exit"])
        ev: dict[str, Any] = {
            "kind": kind, "ts_ns": README_ALERT_TS_NS + rng.choice([0, 1, 10**9, -10**9, 120_000_000]),
            "tgid": rng.randint(1, 2**22), "tid": rng.randint(-1, 2**22), "ppid": rng.randint(0, 9),
            "uid": rng.choice([0, 1000, 2**32 - 1]), "comm": rng.choice(ODD_TEXTS),
            "session_id": 7, "root": 1,
        }
        if kind == "exec":
            path = rng.choice(ODD_TEXTS)
            ev.update(path=path, argv=[rng.choice(ODD_TEXTS) for _ in range(rng.randint(0, 4))],
                      exe=rng.choice([None, "", path, "memfd:x (deleted)", rng.choice(ODD_TEXTS)]))
        elif kind == "open":
            ev.update(path=rng.choice(ODD_TEXTS), flags=rng.randint(0, 2**20), mode=rng.choice([0, 0o644]))
        elif kind == "connect":
            ev.update(addr=rng.choice(["127.0.0.1", "::1", ""]), port=rng.randint(0, 65535))
        yield ev


@pytest.fixture
def no_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(event: Any) -> None:
        raise AssertionError(f"general path taken for {event!r:.80}")
    monkeypatch.setattr(records, "event_record", refuse)


@pytest.fixture
def general_path_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    real = records.event_record

    def counted(event: Any) -> Any:
        calls.append(event)
        return real(event)
    monkeypatch.setattr(records, "event_record", counted)
    return calls


def test_fast_path_lines_equal_the_general_path(chicago: None) -> None:
    events = list(well_typed_events(seed=11, n=3000))
    expected = [slow_line(e) for e in events]
    for ev, want in zip(events, expected):
        assert records.event_line(ev) == want
        assert json.loads(want)                       # still one valid JSON object  # type: ignore[arg-type]


def test_fast_path_never_calls_the_general_path_for_well_typed_events(
        chicago: None, no_general_path: None) -> None:
    lines = [records.event_line(e) for e in well_typed_events(seed=5, n=500)]
    assert all(line is not None and line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)


@pytest.mark.parametrize("over", [
    {"path": b"/tmp/odd\xff"},                        # non-UTF-8 text arrives as bytes
    {"comm": b"b\xffsh"},
    {"argv": [b"\xff", "x"]},
    {"argv": None},
    {"exe": b"/bin/\xff"},
    {"tid": None}, {"ppid": None}, {"uid": None},     # missing ints default to 0
    {"comm": None},                                   # missing text is ""
])
def test_odd_exec_events_fall_back_and_match(chicago: None, general_path_calls: list[Any],
                                             over: dict[str, Any]) -> None:
    ev = exec_event(**over)
    line = records.event_line(ev)
    assert general_path_calls and line == slow_line(ev)


@pytest.mark.parametrize("ev", [
    {"kind": "open", "ts_ns": README_ALERT_TS_NS, "tgid": 3, "path": b"\xfe", "flags": 1, "mode": 0},
    {"kind": "open", "ts_ns": README_ALERT_TS_NS, "tgid": 3, "path": "/x"},    # no flags/mode
    {"kind": "connect", "ts_ns": README_ALERT_TS_NS, "tgid": 3, "addr": None, "port": None},
    {"kind": "exit", "ts_ns": README_ALERT_TS_NS, "tgid": 3},                  # no tid/ppid/uid/comm
    MappingProxyType(exec_event()),                                            # a Mapping, not a dict
])
def test_other_kinds_and_shapes_fall_back_and_match(chicago: None, general_path_calls: list[Any],
                                                    ev: Any) -> None:
    line = records.event_line(ev)
    assert general_path_calls and line == slow_line(ev) and line is not None


@pytest.mark.parametrize("ev", [
    {"kind": "fork", "ts_ns": 1, "tgid": 1, "tid": 1, "ppid": 0, "uid": 0, "comm": "x"},
    {"kind": "loss", "ts_ns": 1},
    {"kind": 5, "ts_ns": 1, "tgid": 1},
])
def test_kinds_never_logged_give_none(ev: dict[str, Any]) -> None:
    assert records.event_line(ev) is None


@pytest.mark.parametrize("bad,reason", [
    (exec_event(ts_ns=None), "missing field 'ts_ns'"),
    (exec_event(tgid=True), "field 'tgid' is bool"),
    (exec_event(flags=1, argv="x"), "field 'argv' is str"),
    ({"kind": "open", "ts_ns": 1, "tgid": 1, "path": "/x", "flags": 1.5}, "field 'flags' is float"),
    ({"kind": "connect", "ts_ns": 1, "tgid": 1, "addr": 7, "port": 1}, "expected text, got int"),
    (exec_event(ts_ns=10**40), "out of range"),
    ("not a map", "event is str, not a map"),
])
def test_malformed_events_raise_the_general_paths_error(bad: Any, reason: str) -> None:
    with pytest.raises(records.RecordError, match=reason):
        records.event_line(bad)


def test_event_batch_counts_as_before(tmp_path: Path, chicago: None) -> None:
    """A mixed analyzer.event batch: written, skipped, malformed, joined-midway and late counts."""
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
    ]
    sink.handle(Envelope(ANALYZER_EVENT, "analyzer-0", 1, 0, 0, batch))
    c = sink.counters()
    assert (c["events_written"], c["skipped_kinds"], c["malformed_maps"]) == (4, 1, 3)
    assert (c["late_messages"], c["sessions_joined_midway"], c["open_sessions"]) == (1, 2, 2)
    lines = (tmp_path / "events.log").read_bytes().splitlines(keepends=True)
    assert lines == [slow_line(e) for e in (batch[0], batch[1], batch[2], batch[7])]


def recent_events(seed: int, n: int) -> list[Any]:
    """Bus maps as in analyzer.session recent_events: well-typed, optional fields absent, odd ones."""
    rng = random.Random(seed)
    out: list[Any] = []
    for ev in well_typed_events(seed, n):
        out.append({k: ev[k] for k in ("kind", "ts_ns", "tgid", "path", "flags", "mode", "addr", "port")
                    if k in ev and (k in ("kind", "ts_ns", "tgid") or rng.random() > 0.1)})
    out += [{"kind": "open", "ts_ns": 1, "tgid": 2, "path": b"/tmp/\xff", "flags": 0},
            {"kind": "exec", "ts_ns": 1, "tgid": 2},                       # no path: ""
            {"kind": "connect", "ts_ns": 1, "tgid": 2, "addr": "::1"},     # no port: 0
            {"kind": "fork", "ts_ns": 1, "tgid": 2},
            {"timestamp": "T", "type": "EXECVE", "pid": 3, "path": "/bin/true"},
            MappingProxyType({"kind": "open", "ts_ns": 1, "tgid": 2, "path": "/x", "mode": 1})]
    return out


def test_recent_events_fast_path_equals_the_general_path(
        chicago: None, monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_map("closed", closed_ns=README_ALERT_TS_NS, recent_events=recent_events(3, 800))
    general_calls: list[Any] = []
    real_general = records._recent_event_general
    monkeypatch.setattr(records, "_recent_event_general",
                        lambda item: general_calls.append(item) or real_general(item))
    fast = records.encode_line(records.session_record(session, README_ALERT_TS_NS))
    assert 0 < len(general_calls) < 100              # missing or odd fields only; 806 entries
    monkeypatch.setattr(records, "_typed_recent_event", lambda *a: None)
    general = records.encode_line(records.session_record(session, README_ALERT_TS_NS))
    assert fast == general and len(json.loads(fast)["session"]["recent_events"]) > 700


@pytest.mark.parametrize("bad,reason", [
    ({"kind": "open", "ts_ns": 1, "tgid": 2, "flags": True}, "field 'flags' is bool"),
    ({"kind": "exec", "ts_ns": 1, "tgid": 2, "path": 5}, "expected text, got int"),
    ({"kind": "exec", "ts_ns": "1", "tgid": 2}, "field 'ts_ns' is str"),
    ("x", "recent event is str"),
])
def test_malformed_recent_events_raise_the_general_paths_error(bad: Any, reason: str) -> None:
    with pytest.raises(records.RecordError, match=reason):
        records.session_record(session_map("flushed", recent_events=[bad]), README_ALERT_TS_NS)
