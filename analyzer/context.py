"""The derived context of a session and the CEL feature map rules see (casa-original.md §8.7).

``execution`` and ``capability`` are sticky aggregates updated on exec (and exit) events;
``history`` is recomputed over the window after every event (§7 ApplyEvent). A Context is a
small frozen value, so it doubles as the cache key for rule results (analyzer/rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.capability_flags import CapabilityFlags, capability_flags
from analyzer.execution_flags import ExecutionFlags, execution_flags
from analyzer.history_flags import HistoryFlags, history_flags
from analyzer.session_state import EXEC, EXIT, ProcessState, SessionState
from policy import Analysis

__all__ = ["Context", "advance"]


@dataclass(frozen=True, slots=True)
class Context:
    execution: ExecutionFlags = field(default_factory=ExecutionFlags)
    capability: CapabilityFlags = field(default_factory=CapabilityFlags)
    history: HistoryFlags = field(default_factory=HistoryFlags)

    def as_map(self) -> dict[str, dict[str, Any]]:
        """The three groups as plain maps (decisions, session snapshots, CEL)."""
        return {"execution": self.execution.as_map(), "capability": self.capability.as_map(),
                "history": self.history.as_map()}

    def rule_key(self) -> tuple[Any, ...]:
        """Everything a rule can see except session_id (``unknown`` is invisible to CEL)."""
        cap = self.capability
        return (self.execution, cap.has_dangerous_caps, cap.dangerous_count, cap.seccomp_disabled,
                self.history)


def advance(ctx: Context, kind: str, proc: ProcessState, session: SessionState, a: Analysis,
            history: HistoryFlags | None = None) -> Context:
    """The context after ``session`` folded one event of ``kind`` by ``proc`` (§7 ApplyEvent).

    ``history``: the flags kept incrementally (analyzer/history_window.py); without it they are
    recomputed over the window (the reference definition). ``ctx`` itself is returned when
    nothing changed, so the caller can skip the rule-cache key by identity.
    """
    execution, capability = ctx.execution, ctx.capability
    if kind in (EXEC, EXIT):
        execution = execution.merge(execution_flags(proc, session, a))
    if kind == EXEC:
        capability = capability.merge(capability_flags(proc, a))
    if history is None:
        history = history_flags(session, a)
    if execution is ctx.execution and capability is ctx.capability and history is ctx.history:
        return ctx
    return Context(execution, capability, history)
