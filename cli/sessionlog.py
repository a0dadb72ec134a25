"""Sessions as the logs tell them: one summary per session id, from sessions.log snapshots,
audit.log/alert.log decisions and events.log lines (docs/sinks.md, FIELDS).

No single log has everything: sessions.log has the profile, leader, times, completeness and (since
the verdict fields were added) the score and action, but only for sessions that were flushed or
closed; a decision exists only when rules matched at or above the log threshold; events.log has
every accepted event with its ``session_id`` (older lines have none). A summary takes each fact
from the log that has it, so a session that is still open and was never flushed still shows up
(from its events or its decisions).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.logs import SID_TAIL, LogReader, LogSet, parse_time_ns

__all__ = ["ACTIONS", "SessionSummary", "EventStats", "Decision", "load_decisions",
           "event_stats", "summaries", "action_rank"]

ACTIONS = ("IGNORE", "LOG", "ALERT")
_HEAD_TS = re.compile(rb'^\{"timestamp":"([^"]+)"')


def action_rank(action: str | None) -> int:
    """IGNORE 0, LOG 1, ALERT 2; anything else -1 (never above a real action)."""
    return ACTIONS.index(action) if action in ACTIONS else -1


@dataclass(slots=True)
class EventStats:
    """What events.log says of one session: how many lines, first and last time."""

    count: int = 0
    first_ns: int | None = None
    last_ns: int | None = None

    def add(self, ts_ns: int | None) -> None:
        self.count += 1
        if ts_ns is not None:
            self.first_ns = ts_ns if self.first_ns is None else min(self.first_ns, ts_ns)
            self.last_ns = ts_ns if self.last_ns is None else max(self.last_ns, ts_ns)


@dataclass(frozen=True, slots=True)
class Decision:
    """One audit/alert record (an alert is in both files: read once)."""

    session_id: int
    ts_ns: int
    record: dict[str, Any]

    @property
    def body(self) -> dict[str, Any]:
        d = self.record.get("decision")
        return d if isinstance(d, dict) else {}

    @property
    def key(self) -> tuple[Any, ...]:
        rules = tuple(str(r.get("name")) for r in self.body.get("triggered_rules") or [] if isinstance(r, dict))
        return self.session_id, self.record.get("timestamp"), self.body.get("score"), rules


@dataclass(slots=True)
class SessionSummary:
    """One row of ``casa sessions``; the header of ``casa explain``."""

    session_id: int
    profile: str = ""
    leader: int | None = None
    start_ns: int | None = None
    end_ns: int | None = None          # closed_at, else the last activity seen
    closed: bool = False
    events: int | None = None          # events.log lines (None: the lines carry no session id)
    score: int | float | None = None
    action: str = "IGNORE"
    complete: bool | None = None       # None: no sessions.log snapshot yet
    incomplete_reason: str = ""
    lost_events: int = 0
    tree_id: int | None = None
    parent_session_id: int | None = None
    rules: list[str] = field(default_factory=list)
    snapshot: str = ""                 # the latest snapshot's reason, "" if none

    @property
    def duration_s(self) -> float | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return max(0, self.end_ns - self.start_ns) / 1e9


def load_decisions(reader: LogReader, logs: LogSet) -> dict[int, list[Decision]]:
    """session id -> its decisions in time order, audit.log and alert.log merged, each once."""
    seen: set[tuple[Any, ...]] = set()
    out: dict[int, list[Decision]] = {}
    for path in (logs.audit, logs.alert):
        for rec in reader.records(path):
            sid, ts = rec.get("session_id"), parse_time_ns(rec.get("timestamp"))
            if type(sid) is not int or ts is None:
                reader.bad_lines += 1
                continue
            d = Decision(sid, ts, rec)
            if d.key not in seen:
                seen.add(d.key)
                out.setdefault(sid, []).append(d)
    for items in out.values():
        items.sort(key=lambda d: d.ts_ns)
    return out


def event_stats(reader: LogReader, path: Path) -> dict[int, EventStats]:
    """session id -> its events.log line count and time span, read from each line's head and
    tail only (the sink writes ``timestamp`` first and ``session_id`` last): events.log is the
    big one."""
    stats: dict[int, EventStats] = {}
    for gen in reader.generations(path):
        for raw in reader.lines(gen):
            tail = SID_TAIL.search(raw)
            if tail is None:
                continue
            head = _HEAD_TS.match(raw)
            stamp = parse_time_ns(head.group(1).decode("ascii", "replace")) if head else None
            stats.setdefault(int(tail.group(1)), EventStats()).add(stamp)
    return stats


def _apply_snapshot(s: SessionSummary, rec: dict[str, Any]) -> None:
    body = rec.get("session") if isinstance(rec.get("session"), dict) else {}
    s.snapshot = str(rec.get("reason") or "")
    s.profile = str(body.get("profile") or s.profile)
    s.leader = body.get("leader_tgid") if type(body.get("leader_tgid")) is int else s.leader
    s.start_ns = parse_time_ns(body.get("created_at")) or s.start_ns
    closed = parse_time_ns(body.get("closed_at"))
    s.closed = closed is not None
    s.end_ns = closed or parse_time_ns(body.get("updated_at")) or s.end_ns
    s.complete = body.get("complete") is not False
    s.incomplete_reason = str(body.get("incomplete_reason") or "")
    s.lost_events = body.get("lost_events") if type(body.get("lost_events")) is int else 0
    s.tree_id = body.get("tree_id") if type(body.get("tree_id")) is int else None
    s.parent_session_id = body.get("parent_session_id") if type(body.get("parent_session_id")) is int else None
    if isinstance(body.get("score"), (int, float)) and not isinstance(body.get("score"), bool):
        s.score = body["score"]
    if body.get("action") in ACTIONS:
        s.action = body["action"]
    if isinstance(body.get("triggered_rules"), list):
        s.rules = [str(r) for r in body["triggered_rules"]]


def _apply_decisions(s: SessionSummary, decisions: Iterable[Decision]) -> None:
    """Decisions are cumulative: the highest score and the most severe action win; the rules are
    every rule any decision newly matched, in order."""
    for d in decisions:
        body = d.body
        score = body.get("score")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            s.score = score if s.score is None else max(s.score, score)
        if action_rank(body.get("action")) > action_rank(s.action):
            s.action = body["action"]
        for r in body.get("triggered_rules") or []:
            name = str(r.get("name")) if isinstance(r, dict) else ""
            if name and name not in s.rules:
                s.rules.append(name)
        if s.start_ns is None or d.ts_ns < s.start_ns:
            s.start_ns = d.ts_ns if s.snapshot == "" else s.start_ns
        if not s.closed and (s.end_ns is None or d.ts_ns > s.end_ns):
            s.end_ns = d.ts_ns


def summaries(reader: LogReader, logs: LogSet, *, count_events: bool = True,
              decisions: dict[int, list[Decision]] | None = None) -> dict[int, SessionSummary]:
    """Every session any of the four logs names, keyed by id."""
    out: dict[int, SessionSummary] = {}
    for rec in reader.records(logs.sessions):
        sid = rec.get("session_id")
        if type(sid) is not int:
            reader.bad_lines += 1
            continue
        _apply_snapshot(out.setdefault(sid, SessionSummary(sid)), rec)
    stats = event_stats(reader, logs.events) if count_events else {}
    for sid, st in stats.items():
        s = out.setdefault(sid, SessionSummary(sid))
        s.events = st.count
        if s.start_ns is None or (st.first_ns is not None and st.first_ns < s.start_ns):
            s.start_ns = st.first_ns if s.snapshot == "" else s.start_ns
        if not s.closed and st.last_ns is not None and (s.end_ns is None or st.last_ns > s.end_ns):
            s.end_ns = st.last_ns
    if count_events and stats:
        for s in out.values():
            if s.events is None:
                s.events = 0
    for sid, items in (decisions if decisions is not None else load_decisions(reader, logs)).items():
        _apply_decisions(out.setdefault(sid, SessionSummary(sid)), items)
    return out
