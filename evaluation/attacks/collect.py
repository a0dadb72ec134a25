"""Which of CASA's records belong to one scenario run, and its verdict.

A scenario's **tree** is its launcher's pid and every process descending from it, followed through
the collector's raw ``fork`` and ``exec`` events (``child_tgid``, ``ppid``) and the ``root``
field — not through sessions, because a scenario may produce several: a detached run after the
invocation closed, a runtime session split by an idle gap, a session opened by a fake CLI. Its
**sessions** are every session that holds an analyzer event of a tree process, plus the
invocation session the launcher's exec opened (``leader_tgid``). The run is complete when each of
them has published its ``closed`` record.

The verdict is the most severe action over those sessions; the score the highest session score;
the rules the union; time-to-alert is from the kernel timestamp of the event that triggered the
first ALERT to that decision's arrival on the bus.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from evaluation.attacks.recorder import Mark, Recorder
from evaluation.cases import Received, closed_sessions

__all__ = ["tree_pids", "Verdict", "Collected", "collect", "verdict_of", "SEVERITY"]

SEVERITY = {"IGNORE": 0, "LOG": 1, "ALERT": 2}
SETTLE_S = 1.0            # after the keeper is done: a session not seen by then is not coming
CLOSE_TIMEOUT_S = 40.0    # runtime sessions close idle_gap_s (5 s) after their last event


def tree_pids(raw: list[dict[str, Any]], roots: int | Iterable[int]) -> set[int]:
    """The launcher (or several roots: OpenClaw's gateway and CLI) and its descendants, from raw
    events in arrival order (two passes, so an exec whose fork arrived later in the stream is
    still placed)."""
    pids = {roots} if isinstance(roots, int) else set(roots)
    for _ in range(2):
        for ev in raw:
            kind = ev.get("kind")
            tgid = int(ev.get("tgid", 0))
            if kind == "fork" and tgid in pids:
                pids.add(int(ev.get("child_tgid", 0)))
            elif int(ev.get("ppid", -1)) in pids or int(ev.get("root", -1)) in pids:
                pids.add(tgid)
    pids.discard(0)
    return pids


@dataclass(slots=True)
class Verdict:
    action: str = "IGNORE"
    score: int = 0
    rules: list[str] = field(default_factory=list)
    time_to_alert_ms: float | None = None
    sessions: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True


@dataclass(slots=True)
class Collected:
    pids: set[int]
    raw: list[dict[str, Any]]            # the tree's raw collector events
    session_ids: set[int]
    closed: bool                         # every session closed before the timeout
    verdict: Verdict
    event_kinds: dict[str, int]
    session_events: list[dict[str, Any]]  # the analyzer's events of those sessions (as published)


def _true_flags(context: Any) -> list[str]:
    """``group.flag`` for every context flag that is true in a session's last analysis."""
    if not isinstance(context, dict):
        return []
    return sorted(f"{g}.{k}" for g, flags in context.items() if isinstance(flags, dict)
                  for k, v in flags.items() if v is True)


def _names(rules: Any) -> list[str]:
    return [r.get("name", "") if isinstance(r, dict) else str(r) for r in rules or []]


def _session_ids(events: list[Received], sessions: list[Received], pids: set[int]) -> set[int]:
    ids = {int(i.item["session_id"]) for i in events if int(i.item.get("tgid", 0)) in pids}
    ids |= {int(i.item["session_id"]) for i in sessions if int(i.item.get("leader_tgid", 0)) in pids}
    return ids


def verdict_of(decisions: list[Received], sessions: list[Received], ids: set[int]) -> Verdict:
    """The most severe action, highest score, union of rules and time-to-alert over ``ids``."""
    v = Verdict()
    rules: set[str] = set()
    latest: dict[int, dict[str, Any]] = {}
    for i in sessions:
        sid = int(i.item["session_id"])
        if sid in ids:
            latest[sid] = i.item
    mine = [d for d in decisions if int(d.item.get("session_id", 0)) in ids]
    for rec in [d.item for d in mine] + list(latest.values()):
        action = rec.get("action") or "IGNORE"
        if SEVERITY.get(action, 0) > SEVERITY[v.action]:
            v.action = action
        v.score = max(v.score, int(rec.get("score") or 0))
        rules.update(_names(rec.get("triggered_rules")))
    v.rules = sorted(r for r in rules if r)
    alerts = [d for d in mine if d.item.get("action") == "ALERT"]
    if alerts:
        first = min(alerts, key=lambda d: d.recv_ns)
        ts = int((first.item.get("event") or {}).get("ts_ns", 0) or first.item.get("ts_ns", 0))
        v.time_to_alert_ms = round((first.recv_ns - ts) / 1e6, 3) if ts else None
    v.sessions = [{"session_id": sid, "profile": s.get("profile"), "origin": s.get("origin"),
                   "state": s.get("state"), "action": s.get("action") or "IGNORE",
                   "score": int(s.get("score") or 0), "complete": s.get("complete", True),
                   "parent_session_id": s.get("parent_session_id"), "event_count": s.get("event_count"),
                   "flags": _true_flags(s.get("context"))}
                  for sid, s in sorted(latest.items())]
    v.complete = all(s["complete"] is not False for s in v.sessions)
    return v


def collect(rec: Recorder, mark: Mark, launcher_pid: int | Iterable[int], ended_ns: int) -> Collected:
    """Wait for the scenario's sessions to close and gather their records (see module docstring);
    ``launcher_pid`` may be several roots (evaluation/attacks/openclaw.py: the gateway and the CLI)."""
    rec.wait_heartbeats(["collector"], ended_ns)
    settle_until = time.monotonic() + SETTLE_S
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    while True:
        raw, events, decisions, sessions = rec.since(mark)
        pids = tree_pids([i.item for i in raw], launcher_pid)
        ids = _session_ids(events, sessions, pids)
        done = bool(ids) and closed_sessions(sessions, ids) == ids
        if (time.monotonic() >= settle_until and done) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    tree = [i.item for i in raw if int(i.item.get("tgid", 0)) in pids]
    kinds: dict[str, int] = {}
    for ev in tree:
        kinds[str(ev.get("kind"))] = kinds.get(str(ev.get("kind")), 0) + 1
    return Collected(pids=pids, raw=tree, session_ids=ids, closed=done,
                     verdict=verdict_of(decisions, sessions, ids), event_kinds=kinds,
                     session_events=[i.item for i in events if int(i.item.get("session_id", 0)) in ids])
