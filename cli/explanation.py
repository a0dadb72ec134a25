"""One session as a person reads it, built from the logs: the process tree, the accepted events,
each rule as it fired with its evidence and the running score, the verdict.

The events are the session's events.log lines (each names its ``session_id``). Logs written
before that field existed have none: the timeline then falls back to the session's last
snapshot's ``recent_events`` (at most the analyzer's ``recent_event_limit``) and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cli.logs import LogReader, LogSet, parse_time_ns
from cli.sessionlog import Decision, SessionSummary, load_decisions, summaries

__all__ = ["Proc", "FiredRule", "Explanation", "explain", "process_tree", "fired_rules"]


@dataclass(slots=True)
class Proc:
    """A process of the session: its execs in order, when it was first seen and when it exited."""

    pid: int
    ppid: int
    comm: str
    first_ns: int
    execs: list[dict[str, Any]] = field(default_factory=list)   # {"ts_ns", "path", "args"}
    exit_ns: int | None = None
    children: list["Proc"] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "ppid": self.ppid, "comm": self.comm, "first_ns": self.first_ns,
                "exit_ns": self.exit_ns, "execs": self.execs,
                "children": [c.to_json() for c in self.children]}


@dataclass(slots=True)
class FiredRule:
    """A rule as it fired: the decision that carried it, the score after it, its evidence."""

    name: str
    weight: int | float
    expr: str
    ts_ns: int
    score_after: int | float
    action_after: str
    pid: int | None
    evidence: dict[str, list[dict[str, Any]]]


@dataclass(slots=True)
class Explanation:
    summary: SessionSummary
    events: list[dict[str, Any]]
    decisions: list[Decision]
    rules: list[FiredRule]
    tree: list[Proc]
    events_source: str            # "events.log", "recent_events" or "none"
    thresholds: dict[str, Any]
    evidence_omitted: int = 0

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        return {
            "session": {"session_id": s.session_id, "profile": s.profile, "leader": s.leader,
                        "start_ns": s.start_ns, "end_ns": s.end_ns, "closed": s.closed,
                        "duration_s": s.duration_s, "events": s.events, "tree_id": s.tree_id,
                        "parent_session_id": s.parent_session_id},
            "processes": [p.to_json() for p in self.tree],
            "events_source": self.events_source,
            "timeline": self.events,
            "rules": [{"name": r.name, "weight": r.weight, "expr": r.expr, "ts_ns": r.ts_ns,
                       "score_after": r.score_after, "action_after": r.action_after, "pid": r.pid,
                       "evidence": r.evidence} for r in self.rules],
            "verdict": {"action": s.action, "score": s.score, **self.thresholds,
                        "rules": list(s.rules), "complete": s.complete,
                        "incomplete_reason": s.incomplete_reason, "lost_events": s.lost_events,
                        "evidence_omitted": self.evidence_omitted},
        }


def process_tree(events: list[dict[str, Any]]) -> list[Proc]:
    """The session's processes nested by ppid; a process whose parent is not in the session is a
    top of the tree (the leader, or a process the agent runtime started directly)."""
    procs: dict[int, Proc] = {}
    for ev in events:
        pid, ts = ev.get("pid"), ev.get("ts_ns") or 0
        if type(pid) is not int:
            continue
        proc = procs.get(pid)
        if proc is None:
            ppid = ev.get("ppid") if type(ev.get("ppid")) is int else 0
            proc = procs[pid] = Proc(pid, ppid, str(ev.get("comm") or ""), ts)
        if ev.get("type") == "EXECVE":
            proc.execs.append({"ts_ns": ts, "path": ev.get("path", ""), "args": ev.get("args") or []})
        elif ev.get("type") == "EXIT":
            proc.exit_ns = ts
    tops = []
    for proc in procs.values():
        parent = procs.get(proc.ppid)
        if parent is not None and parent is not proc:
            parent.children.append(proc)
        else:
            tops.append(proc)
    for proc in procs.values():
        proc.children.sort(key=lambda p: (p.first_ns, p.pid))
    return sorted(tops, key=lambda p: (p.first_ns, p.pid))


def _fields_of(expr: str, evidence: dict[str, Any]) -> list[str]:
    """The evidence fields a rule's expression names (``history.write_then_exec_same_path``);
    every field when the expression was not recorded (the sink omits an empty one)."""
    if not expr:
        return list(evidence)
    return [f for f in evidence if re.search(rf"(?<![\w.]){re.escape(f)}(?!\w)", expr)]


def fired_rules(decisions: list[Decision]) -> list[FiredRule]:
    """Each newly matched rule of each decision, with the running score: a decision's score is
    the session's after its rules, so the score before them is that minus their weights."""
    out: list[FiredRule] = []
    for d in decisions:
        body = d.body
        rules = [r for r in body.get("triggered_rules") or [] if isinstance(r, dict)]
        evidence = body.get("evidence") if isinstance(body.get("evidence"), dict) else {}
        score = body.get("score") if isinstance(body.get("score"), (int, float)) else 0
        running = score - sum(r.get("weight") or 0 for r in rules
                              if isinstance(r.get("weight"), (int, float)))
        event = d.record.get("event") if isinstance(d.record.get("event"), dict) else {}
        for r in rules:
            weight = r.get("weight") if isinstance(r.get("weight"), (int, float)) else 0
            running += weight
            expr = str(r.get("expr") or "")
            out.append(FiredRule(str(r.get("name") or "?"), weight, expr, d.ts_ns, running,
                                 _action_at(running, body), event.get("pid"),
                                 {f: _refs(evidence[f]) for f in _fields_of(expr, evidence)}))
    return out


def _refs(refs: Any) -> list[dict[str, Any]]:
    """Evidence references with their time as ns too (``ts_ns``), for ordering and offsets."""
    return [{**r, "ts_ns": parse_time_ns(r.get("timestamp"))} for r in refs if isinstance(r, dict)] \
        if isinstance(refs, list) else []


def _action_at(score: int | float, body: dict[str, Any]) -> str:
    alert, log = body.get("alert_threshold"), body.get("log_threshold")
    if isinstance(alert, (int, float)) and score >= alert:
        return "ALERT"
    if isinstance(log, (int, float)) and score >= log:
        return "LOG"
    return "IGNORE"


def _with_ts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [{**r, "ts_ns": parse_time_ns(r.get("timestamp"))} for r in records]
    return sorted(out, key=lambda r: r["ts_ns"] or 0)


def _events(reader: LogReader, logs: LogSet, s: SessionSummary,
            snapshot_recent: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    events = list(reader.session_events(logs.events, s.session_id))
    if events:
        return _with_ts(events), "events.log"
    if snapshot_recent:
        return _with_ts(snapshot_recent), "recent_events"
    return [], "none"


def _latest_recent(reader: LogReader, logs: LogSet, session_id: int) -> list[dict[str, Any]]:
    latest: list[dict[str, Any]] = []
    for rec in reader.records(logs.sessions):
        body = rec.get("session")
        if rec.get("session_id") == session_id and isinstance(body, dict):
            latest = [e for e in body.get("recent_events") or [] if isinstance(e, dict)]
    return latest


def explain(reader: LogReader, logs: LogSet, session_id: int) -> Explanation | None:
    """The explanation of one session; None when no log names it."""
    decisions = load_decisions(reader, logs)
    s = summaries(reader, logs, count_events=False, decisions=decisions).get(session_id)
    if s is None:
        s = SessionSummary(session_id)
    mine = decisions.get(session_id, [])
    events, source = _events(reader, logs, s, _latest_recent(reader, logs, session_id))
    if source == "none" and not mine and s.snapshot == "":
        return None
    if source == "events.log":
        s.events = len(events)
        if s.start_ns is None:
            s.start_ns = events[0]["ts_ns"]
    last = mine[-1].body if mine else {}
    thresholds = {k: last[k] for k in ("log_threshold", "alert_threshold", "rules_version") if k in last}
    omitted = sum(d.body.get("evidence_omitted") or 0 for d in mine
                  if isinstance(d.body.get("evidence_omitted"), int))
    return Explanation(s, events, mine, fired_rules(mine), process_tree(events), source,
                       thresholds, omitted)
