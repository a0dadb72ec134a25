"""responder.result maps -> the response record of alert.log, and the request an ALERT carries.

An ALERT whose policy asks for a response is written at once, with ``decision.response`` =
what the policy chose (``action``, ``dry_run``, ``rules``): the alert is never held back waiting
for the responder, and it is written even when the responder is down. The responder's result
follows as its own alert.log record, keyed like the alert (same ``session_id``, same
``timestamp`` and ``event``: the triggering event), with a ``response`` object saying what was
done or, in a dry run, what would have been: the pids, the refused pids and why, errors, and the
time from the triggering event's kernel timestamp to the first and the last signal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.records import RecordError, as_map, event_body, int_field, rfc3339nano, text

__all__ = ["response_record", "chosen_response", "MAX_PIDS"]

MAX_PIDS = 1024          # pids and refusals per record (a fork bomb's tree is summarised)


def _ms(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError("a response time is not a number")
    return round(float(value), 3)


def _pids(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise RecordError("response pids is not a list")
    return [v for v in value if type(v) is int][:MAX_PIDS]


def chosen_response(decision: Mapping[str, Any]) -> dict[str, Any] | None:
    """``decision.response`` of an alert.log/audit.log record: the policy's choice only."""
    r = decision.get("response")
    if not isinstance(r, Mapping):
        return None
    return {"action": text(r.get("action")), "dry_run": r.get("dry_run") is True,
            "rules": [text(x) for x in r.get("rules") or ()]}


def response_record(result: Mapping[str, Any]) -> dict[str, Any]:
    """One alert.log line for one responder.result map."""
    result = as_map(result, "response result")
    r = as_map(result.get("response"), "response")
    refused = r.get("refused") or []
    if not isinstance(refused, list):
        raise RecordError("response refused is not a list")
    body = {
        "action": text(r.get("action")), "dry_run": r.get("dry_run") is True,
        "rules": [text(x) for x in r.get("rules") or ()],
        "pids": _pids(r.get("pids") or []),
        "refused": [{"pid": x[0], "reason": text(x[1])} for x in refused[:MAX_PIDS]
                    if isinstance(x, list) and len(x) == 2 and type(x[0]) is int],
        "errors": [text(x) for x in (r.get("errors") or [])[:MAX_PIDS]],
        "latency_ms": _ms(r.get("latency_ms")), "done_ms": _ms(r.get("done_ms")),
    }
    if body["dry_run"]:
        body["would_signal"] = body.pop("pids")
    event = result.get("event")
    return {"timestamp": rfc3339nano(int_field(result, "ts_ns", None)),
            "session_id": int_field(result, "session_id", None),
            "event": event_body(event) if isinstance(event, Mapping) and event else {},
            "response": body}
