"""analyzer.session maps -> sessions.log records. Pure: no I/O; the write time is passed in.

    sessions.log  session_record(analyzer.session map, now_ns)   (flushed/closed/shutdown only)

The original's shape: ``{"timestamp", "session_id", "reason", "session": {"created_at",
"updated_at", "closed_at", "recent_events"}}``. Additive: ``complete``, ``lost_events`` and,
when the lifecycle map carries them, ``profile``, ``leader_tgid``, ``tree_id``,
``parent_session_id`` and ``incomplete_reason``, and the analyzer's verdict so far (``score``,
``action``, ``triggered_rules``: what ``casa sessions`` lists); ``recent_events`` entries of the schema-2 kinds
(CHMOD ... CAPSET) with the path or address the analyzer kept of them (docs/sinks.md, FIELDS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.records import RecordError, as_map, event_type, int_field, rfc3339nano, text

__all__ = ["SESSION_REASONS", "session_record", "recent_event"]

# analyzer.session state -> sessions.log reason. "opened" writes nothing.
SESSION_REASONS = {"flushed": "periodic_flush", "closed": "session_closed", "shutdown": "shutdown"}

# The lifecycle fields a snapshot adds when present: (name, is text).
_LIFECYCLE_FIELDS = (("profile", True), ("leader_tgid", False), ("tree_id", False),
                     ("parent_session_id", False), ("incomplete_reason", True))


def recent_event(item: Mapping[str, Any]) -> dict[str, Any]:
    """A recent_events entry: timestamp, type, pid, then per type.

    Accepts a bus event map (``kind``, ``ts_ns``, ``tgid``) or an entry already in the sessions.log
    shape (``timestamp``, ``type``, ``pid``). Raises RecordError for a malformed one.
    """
    item = as_map(item, "recent event")
    if "kind" in item:
        type_name, pid = event_type(item), int_field(item, "tgid", None)
        stamp = rfc3339nano(int_field(item, "ts_ns", None))
    else:
        type_name, pid = text(item.get("type")) or "OTHER", int_field(item, "pid", None)
        stamp = text(item.get("timestamp")) if "timestamp" in item else \
            rfc3339nano(int_field(item, "ts_ns", None))
    out: dict[str, Any] = {"timestamp": stamp, "type": type_name, "pid": pid}
    if type_name == "OPENAT":                  # each omitted when empty or zero (the original's)
        if item.get("path"):
            out["path"] = text(item.get("path"))
        for name in ("flags", "mode"):
            if int_field(item, name):
                out[name] = int_field(item, name)
    elif type_name == "EXECVE":
        out["path"] = text(item.get("path"))
    elif type_name == "CONNECT":
        out["addr"] = text(item.get("addr"))
        out["port"] = int_field(item, "port")
    elif type_name != "OTHER":                  # the schema-2 types: what the analyzer kept
        if item.get("path"):
            out["path"] = text(item.get("path"))
        if item.get("addr") is not None:
            out["addr"] = text(item.get("addr"))
            out["port"] = int_field(item, "port")
    return out


def _lifecycle(session: Mapping[str, Any]) -> dict[str, Any]:
    """The additive lifecycle fields the map carries (None and "" are "not present")."""
    out: dict[str, Any] = {}
    for name, is_text in _LIFECYCLE_FIELDS:
        if session.get(name) is None:
            continue
        value = text(session.get(name)) if is_text else int_field(session, name)
        if value != "":
            out[name] = value
    return out


def _verdict(session: Mapping[str, Any]) -> dict[str, Any]:
    """The analyzer's verdict so far, when the map carries it: ``score``, ``action`` and the
    names of the rules matched (a sessionizer-only map has none of them)."""
    out: dict[str, Any] = {}
    if session.get("score") is not None:
        out["score"] = int_field(session, "score")
    if session.get("action") is not None:
        out["action"] = text(session.get("action"))
    rules = session.get("triggered_rules")
    if rules is not None:
        if not isinstance(rules, list):
            raise RecordError("field 'triggered_rules' is not a list")
        out["triggered_rules"] = [text(r) for r in rules]
    return out


def session_record(session: Mapping[str, Any], now_ns: int, *,
                   sink_saw_loss: bool = False) -> dict[str, Any] | None:
    """One sessions.log line for a flushed/closed/shutdown map; None for ``opened``.

    ``complete`` is false when the analyzer says so or when this sink itself lost analyzer
    messages while the session was open (``sink_saw_loss``).
    """
    session = as_map(session, "session")
    state = text(session.get("state"))
    if state == "opened":
        return None
    if state not in SESSION_REASONS:
        raise RecordError(f"unknown session state {state!r}")
    recent = session.get("recent_events") or []
    if not isinstance(recent, list):
        raise RecordError("field 'recent_events' is not a list")
    body: dict[str, Any] = {
        "created_at": rfc3339nano(int_field(session, "created_ns", None)),
        "updated_at": rfc3339nano(int_field(session, "updated_ns", None)),
    }
    closed_ns = int_field(session, "closed_ns")
    if closed_ns:
        body["closed_at"] = rfc3339nano(closed_ns)
    body["recent_events"] = [recent_event(e) for e in recent]
    body["complete"] = bool(session.get("complete", True)) and not sink_saw_loss
    body["lost_events"] = int_field(session, "lost_events")
    body.update(_lifecycle(session))
    body.update(_verdict(session))
    return {"timestamp": rfc3339nano(now_ns), "session_id": int_field(session, "session_id", None),
            "reason": SESSION_REASONS[state], "session": body}

