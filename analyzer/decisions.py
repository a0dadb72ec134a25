"""The decision engine of docs/original.md §10: per-session dedupe and cumulative score.

Each rule scores once per session. On an evaluation, ``newly = matched - already triggered``;
with nothing new the action is IGNORE whatever the score (a repeat logs nothing). Otherwise the
new weights are added and the action is ALERT at ``score >= alert``, LOG at ``score >= log``,
else IGNORE. A reload does not reset this state (§9.4); closing the session drops it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from policy import Rule, Thresholds

__all__ = ["Action", "DecisionState", "Result", "decide"]


class Action(enum.IntEnum):
    IGNORE = 0   # nothing new, or the score is below the log threshold
    LOG = 1      # newly triggered rules and score >= log: an audit record
    ALERT = 2    # newly triggered rules and score >= alert: audit and alert records


@dataclass(slots=True)
class DecisionState:
    triggered: set[str] = field(default_factory=set)
    triggered_order: list[str] = field(default_factory=list)
    score: int = 0
    worst: Action = Action.IGNORE     # most severe action so far (for session snapshots)


@dataclass(frozen=True, slots=True)
class Result:
    """One evaluation's outcome: the session's action and score after it, the rules that newly
    matched (``increment`` is their weight), and the thresholds it was judged against."""

    action: Action
    score: int
    increment: int
    newly: tuple[Rule, ...]
    log_threshold: int
    alert_threshold: int


def decide(state: DecisionState, matched: tuple[Rule, ...], th: Thresholds) -> Result:
    """Apply §10 steps 2-6 to ``state`` (mutated) and return the result."""
    newly = tuple(r for r in matched if r.name not in state.triggered)
    increment = sum(r.weight for r in newly)
    score = state.score + increment
    if not newly:
        return Result(Action.IGNORE, score, 0, (), th.log, th.alert)
    for r in newly:
        state.triggered.add(r.name)
        state.triggered_order.append(r.name)
    state.score = score
    action = Action.ALERT if score >= th.alert else Action.LOG if score >= th.log else Action.IGNORE
    state.worst = max(state.worst, action)
    return Result(action, score, increment, newly, th.log, th.alert)
