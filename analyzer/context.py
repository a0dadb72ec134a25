"""The derived context of a session and the CEL feature map rules see (docs/original.md §8.7).

``execution`` and ``capability`` are sticky aggregates updated on exec (and exit) events;
``history`` comes from the per-tree indices (``history_mode: "indexed"``) or, for the original
eight fields in ``"original"`` mode, from the window (§7 ApplyEvent). A Context is a small frozen
value, so it doubles as the cache key for rule results (analyzer/rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.capability_flags import CapabilityFlags, capability_flags
from analyzer.evidence import Evidence, Ref
from analyzer.execution_flags import ExecutionFlags, execution_flags, exit_masquerade
from analyzer.history_flags import HistoryFlags, history_flags
from analyzer.path_classes import PathClasses
from analyzer.session_state import EXEC, EXIT, ProcessState, SessionState
from analyzer.tree_index import X_BIT
from policy import Analysis

__all__ = ["Context", "advance", "Step", "FlagMemo", "with_tree_fields"]


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
                cap.gained_dangerous_caps, cap.privilege_gained, self.history)


@dataclass(slots=True)
class Step:
    """What one exec/exit needs beyond the session: the policy's path classes, the agent root's
    CapEff (lifecycle ``root_cap_eff``), where evidence goes, the event's reference and comm."""

    classes: PathClasses
    evidence: Evidence
    ref: Ref
    comm: str = ""
    root_cap_eff: int | None = None
    memo: FlagMemo | None = None


@dataclass(slots=True)
class FlagMemo:
    """Per-process flag values by their inputs, one per policy (made again at a reload): see
    execution_flags and capability_flags."""

    execution: dict[tuple[Any, ...], ExecutionFlags] = field(default_factory=dict)
    capability: dict[tuple[Any, ...], CapabilityFlags] = field(default_factory=dict)


def advance(ctx: Context, kind: str, proc: ProcessState, session: SessionState, a: Analysis,
            history: HistoryFlags | None = None, step: Step | None = None) -> Context:
    """The context after ``session`` folded one event of ``kind`` by ``proc`` (§7 ApplyEvent).

    ``history``: the flags kept incrementally; without it they are recomputed over the window
    (the original's reference definition). ``ctx`` itself is returned when nothing changed, so
    the caller can skip the rule-cache key by identity. Fields that turn true record
    ``step.ref`` as their evidence.
    """
    if step is None:
        step = Step(PathClasses(a), Evidence(), (0, proc.tgid, kind, proc.exec_path))
    execution, capability = ctx.execution, ctx.capability
    memo = step.memo
    if kind in (EXEC, EXIT):
        mine = execution_flags(proc, session, a, step.classes, memo.execution if memo else None)
        if kind == EXIT and exit_masquerade(proc, step.comm, a, step.classes):
            mine = ExecutionFlags(*(v or f == "masquerade" for f, v in mine.as_map().items()))
        execution = execution.merge(mine)
        if execution is not ctx.execution:
            for name in execution.newly_true(ctx.execution):
                step.evidence.add("execution." + name, (step.ref,))
    if kind == EXEC:
        mine_cap = capability_flags(proc, a, step.root_cap_eff, memo.capability if memo else None)
        capability = capability.merge(mine_cap)
        if capability is not ctx.capability:
            for name in capability.newly_true(ctx.capability):
                step.evidence.add("capability." + name, (step.ref,))
    if history is None:
        history = history_flags(session, a)
    if execution is ctx.execution and capability is ctx.capability and history is ctx.history:
        return ctx
    return Context(execution, capability, history)


_TREE_FIELDS: dict[int, tuple[ExecutionFlags, CapabilityFlags]] = {}


def with_tree_fields(ctx: Context, xbits: int) -> Context:
    """``ctx`` with the execution and capability fields the tree set (``SessionMarks.xbits``,
    tree_index.X_BIT) OR-ed in: sticky like the fields the session's own execs set."""
    extra = _TREE_FIELDS.get(xbits)
    if extra is None:
        on = {name for name, bit in X_BIT.items() if xbits & bit}
        extra = _TREE_FIELDS[xbits] = (
            ExecutionFlags(**{f.partition(".")[2]: True for f in on if f.startswith("execution.")}),
            CapabilityFlags(privilege_gained="capability.privilege_gained" in on))
    execution, capability = ctx.execution.merge(extra[0]), ctx.capability.merge(extra[1])
    if execution is ctx.execution and capability is ctx.capability:
        return ctx
    return Context(execution, capability, ctx.history)
