"""Schema-1 traffic still gives the records it gave before schema 2.

``fixtures/recordings.analyzer.msgpack`` is what the real sessionizer and analyzer published for
the three collector recordings of tests/fixtures/recordings (old schema-1 traffic: no abspath,
no stdio, no new kinds), and ``fixtures/recordings.records.json`` the four logs the jsonl sink
wrote for it before the schema-2 fields were added (TZ=UTC, write time fixed). Today's sink must
write the same lines, except what schema 2 adds on purpose: events with ``hidden`` have no line,
and additive fields (``role``, decision ``evidence``, the lifecycle fields of a session
snapshot) appear where the maps carry them. (The recordings hold no hidden event: that the sinks
skip those is tested in test_records.py and the process tests.) Every original field keeps its name, value and place.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgpack

from bus.envelope import Envelope
from sinks.jsonl import JsonlSink, LogPaths

FIXTURES = Path(__file__).resolve().parent / "fixtures"
WRITE_TIME_NS = 1_800_000_000_000_000_000
# Fields schema 2 added to records (docs/sinks.md, FIELDS): where they may appear.
ADDED = {"events": {"role", "session_id"}, "alert": {"evidence"}, "audit": {"evidence"}}
ADDED_SESSION = {"profile", "leader_tgid", "tree_id", "parent_session_id", "incomplete_reason",
                 "score", "action", "triggered_rules"}


def analyzer_output() -> list[list[Any]]:
    return msgpack.unpackb((FIXTURES / "recordings.analyzer.msgpack").read_bytes(), raw=False)


def write_logs(tmp_path: Path) -> tuple[dict[str, list[str]], JsonlSink]:
    sink = JsonlSink.from_paths(LogPaths.from_env({"CASA_LOG_DIR": str(tmp_path)}),
                                wall_clock_ns=lambda: WRITE_TIME_NS)
    for seq, (topic, stream, events) in enumerate(analyzer_output(), 1):
        sink.handle(Envelope(topic, stream, 1, seq, 0, events))
    sink.close()
    return {name: (tmp_path / f"{name}.log").read_text().splitlines()
            for name in ("events", "sessions", "audit", "alert")}, sink


def without_added(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record with schema 2's additive fields taken out (order kept)."""
    out = {k: v for k, v in record.items() if k not in ADDED.get(name, ())}
    if name in ("audit", "alert"):
        out["event"] = {k: v for k, v in out["event"].items() if k != "role"}
        out["decision"] = {k: v for k, v in out["decision"].items() if k not in ADDED[name]}
    if name == "sessions":
        out["session"] = {k: v for k, v in out["session"].items() if k not in ADDED_SESSION}
    return out


def test_the_fixture_is_schema_1_traffic_with_hidden_and_role_events() -> None:
    events = [e for topic, _, evs in analyzer_output() if topic == "analyzer.event" for e in evs]
    assert not any({"abspath", "stdio", "ld_env", "euid"} & set(e) for e in events)
    assert {e["kind"] for e in events} == {"exec", "open", "exit"}
    assert any(e.get("role") for e in events)


def test_schema_1_traffic_gives_the_same_records_plus_additive_fields(tmp_path: Path, utc: None) -> None:
    before = json.loads((FIXTURES / "recordings.records.json").read_text())
    after, sink = write_logs(tmp_path)
    assert (sink.hidden_events, sink.malformed, sink.skipped_kinds) == (0, 0, 0)
    for name in ("events", "sessions", "audit", "alert"):
        old = [json.loads(line) for line in before[name]]
        new = [without_added(name, json.loads(line)) for line in after[name]]
        assert new == old, name
        for old_line, new_line in zip(before[name], after[name]):      # same key order too
            assert list(json.loads(new_line))[:len(json.loads(old_line))] == list(json.loads(old_line))


def test_role_and_evidence_are_written_where_the_maps_carry_them(tmp_path: Path, utc: None) -> None:
    after, _ = write_logs(tmp_path)
    events = [json.loads(line) for line in after["events"]]
    assert {e.get("role") for e in events} == {None, "agent"}
    alerts = [json.loads(line) for line in after["alert"]]
    assert all(a["decision"]["evidence"] for a in alerts)
    refs = [r for a in alerts for refs in a["decision"]["evidence"].values() for r in refs]
    assert {r["type"] for r in refs} == {"OPENAT", "EXECVE"}
    assert all(set(r) == {"timestamp", "pid", "type", "path"} and r["timestamp"].endswith("Z") for r in refs)
    sessions = [json.loads(line)["session"] for line in after["sessions"]]
    assert all({"profile", "leader_tgid", "tree_id"} <= set(s) for s in sessions)
