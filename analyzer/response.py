"""The ``response`` request an ALERT decision carries to the responder (docs/bus.md §7.2).

The analyzer is the stage that knows a session's processes, so it names them: the responder
needs no copy of the event stream (a second subscriber to every event would cost a core at
50k events/s) and acts on the decision alone. What the analyzer names is a *claim*: the
responder still checks every pid against /proc (ancestry to the session's anchor, start time,
never CASA, never pid 1) before it signals anything (responder/targets.py).

``tgids`` lists the session's processes that have not exited, each with the wall-clock ns the
session first saw it: a pid whose process started after that time is a recycled pid, not the
session's process, and the responder refuses it.
"""

from __future__ import annotations

from typing import Any

from analyzer.session_state import SessionState
from policy.response import Chosen

__all__ = ["response_request", "MAX_TGIDS"]

MAX_TGIDS = 4096        # bound on the pids one request names (the newest are kept)


def response_request(chosen: Chosen, state: SessionState, ev: dict[str, Any]) -> dict[str, Any]:
    """The decision's ``response`` map: the policy's choice plus what the session knows."""
    live = [[p.tgid, p.first_seen_ns] for p in state.processes.values()
            if p.exit_ns is None and p.tgid > 0]
    leader = state.lifecycle.get("leader_tgid")
    root = ev.get("root")
    return {**chosen.as_map(),
            "trigger_tgid": ev.get("tgid", 0),
            "leader_tgid": leader if type(leader) is int else 0,
            "root": root if type(root) is int else 0,
            "profile": ev.get("profile", ""),
            "tgids": live[-MAX_TGIDS:]}
