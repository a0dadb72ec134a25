"""analyzer.decision maps -> the records of audit.log and alert.log. Pure: no I/O, no clock.

    audit.log     decision_record(analyzer.decision map) when audit_due(...)
    alert.log     decision_record(analyzer.decision map) when alert_due(...)

The README's alert shape: ``timestamp`` (the triggering event's), ``session_id``, ``event`` (the
events.log body, sinks/records.py), ``decision`` with the original's fields, plus
``rules_version`` and, additive, ``evidence``: the events that made each context field of the
newly matched rules true, as bounded references with RFC3339 times (docs/sinks.md, FIELDS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.response_records import chosen_response
from sinks.records import TYPE_NAMES, RecordError, as_map, event_body, int_field, rfc3339nano, text

__all__ = ["decision_record", "evidence_record", "evidence_ref", "audit_due", "alert_due",
           "MAX_EVIDENCE_FIELDS", "MAX_EVIDENCE_REFS"]

MAX_EVIDENCE_FIELDS = 16     # context fields with evidence per decision record
MAX_EVIDENCE_REFS = 4        # references per field (the analyzer keeps at most 4 too)


def _rules(decision: Mapping[str, Any]) -> list[dict[str, Any]]:
    rules = decision.get("triggered_rules") or []
    if not isinstance(rules, list):
        raise RecordError("field 'triggered_rules' is not a list")
    out = []
    for r in rules:
        r = as_map(r, "triggered rule")
        item: dict[str, Any] = {"name": text(r.get("name"))}
        if r.get("expr"):
            item["expr"] = text(r.get("expr"))         # omitted when empty, as in the original
        if r.get("weight"):
            item["weight"] = int_field(r, "weight")    # omitted when zero
        out.append(item)
    return out


def _score(decision: Mapping[str, Any], name: str) -> int | float:
    value = decision.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"field {name!r} is missing or not a number")
    return value


def audit_due(decision: Mapping[str, Any]) -> bool:
    """An audit record iff rules newly triggered and score >= log threshold (the original's rule)."""
    return bool(decision.get("triggered_rules")) and \
        _score(decision, "score") >= _score(decision, "log_threshold")


def alert_due(decision: Mapping[str, Any]) -> bool:
    """An alert record iff rules newly triggered and score >= alert threshold."""
    return bool(decision.get("triggered_rules")) and \
        _score(decision, "score") >= _score(decision, "alert_threshold")


def evidence_ref(ref: Any) -> dict[str, Any]:
    """One analyzer reference ``{ts_ns, tgid, kind, <what>}`` as a record: ``{"timestamp", "pid",
    "type", <what>}``, where <what> is the first the reference has of ``path`` (text), ``addr``
    (``ip:port``), ``target`` (a pid: ptrace, vm_read) and ``detail`` (text: socket family/type,
    the euid a setid gave, a capset mask). Raises RecordError for a malformed one."""
    ref = as_map(ref, "evidence reference")
    kind = ref.get("kind")
    out: dict[str, Any] = {"timestamp": rfc3339nano(int_field(ref, "ts_ns", None)),
                           "pid": int_field(ref, "tgid", None),
                           "type": TYPE_NAMES.get(kind, "OTHER") if type(kind) is str else "OTHER"}
    for key in _REF_WHAT:
        value = ref.get(key)
        if value is not None:
            out[key] = int_field(ref, key) if key == "target" and not isinstance(value, (str, bytes)) \
                else text(value)
            break
    return out


_REF_WHAT = ("path", "addr", "target", "detail")      # what an evidence reference names


def evidence_record(evidence: Any) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """``{"group.field": [ref, ...]}`` -> its records, bounded, and how many were left out.

    At most MAX_EVIDENCE_FIELDS fields of MAX_EVIDENCE_REFS references each. A malformed field
    or reference is left out too, never the decision: an alert without part of its explanation
    is better than no alert. ``omitted`` counts both (fields count as their references, or 1).
    """
    if evidence is None:
        return {}, 0
    if not isinstance(evidence, Mapping):
        return {}, 1
    out: dict[str, list[dict[str, Any]]] = {}
    omitted = 0
    for name, refs in evidence.items():
        if len(out) >= MAX_EVIDENCE_FIELDS or type(name) is not str or not isinstance(refs, list):
            omitted += len(refs) if isinstance(refs, list) else 1
            continue
        kept = []
        for ref in refs:
            try:
                if len(kept) < MAX_EVIDENCE_REFS:
                    kept.append(evidence_ref(ref))
                    continue
            except RecordError:
                pass
            omitted += 1
        if kept:
            out[name] = kept
    return out, omitted


def decision_record(decision: Mapping[str, Any]) -> dict[str, Any]:
    """One audit.log / alert.log line: the README's alert shape plus ``rules_version`` and,
    when the decision carries it, ``evidence`` (``evidence_omitted`` when some was left out)."""
    decision = as_map(decision, "decision")
    event = as_map(decision.get("event"), "decision event")
    body: dict[str, Any] = {
        "action": text(decision.get("action")),
        "score": _score(decision, "score"),
        "log_threshold": _score(decision, "log_threshold"),
        "alert_threshold": _score(decision, "alert_threshold"),
        "triggered_rules": _rules(decision),
        "rules_version": text(decision.get("rules_version")),
    }
    evidence, omitted = evidence_record(decision.get("evidence"))
    if evidence:
        body["evidence"] = evidence
    if omitted:
        body["evidence_omitted"] = omitted
    chosen = chosen_response(decision)
    if chosen is not None:
        body["response"] = chosen
    return {"timestamp": rfc3339nano(int_field(event, "ts_ns", None)),
            "session_id": int_field(decision, "session_id", None),
            "event": event_body(event), "decision": body}
