"""Carry out one response: kill the trigger, or freeze (and then kill) the session's tree.

An attacker who expects to be killed forks in a loop, so that some child is always born after
the list of targets was made. Killing "children first" from one list cannot win that race;
freezing can: every round takes a fresh /proc snapshot, SIGSTOPs each verified process not yet
stopped, and repeats until a round finds nothing new. A stopped process cannot fork, so the
rounds converge (bounded by MAX_ROUNDS, a failure to converge is reported). ``kill_session``
then SIGKILLs the frozen set through the same pidfds; ``freeze_session`` leaves it stopped for
``casa thaw``. A dry run makes the selection once and signals nothing.

Time is injected (``clock_ns``) and so are /proc (``snap``) and the signals (``sender``), so the
logic is unit-tested without touching a process.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from responder.procfs import ProcInfo, Snapshot
from responder.signals import Sender
from responder.targets import Guard, Request, Selection, select

__all__ = ["Outcome", "carry_out", "MAX_ROUNDS"]

MAX_ROUNDS = 64


@dataclass(slots=True)
class Outcome:
    """What one response did (or would have done): the ``response`` of the alert.log record."""

    request: Request
    pids: list[int] = field(default_factory=list)          # signalled (or, dry run, would be)
    frozen: list[ProcInfo] = field(default_factory=list)   # stopped and left stopped (freeze)
    refused: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_signal_ns: int = 0
    last_signal_ns: int = 0
    rounds: int = 0

    def as_map(self) -> dict[str, Any]:
        req = self.request
        ms = (lambda ns: round((ns - req.event_ts_ns) / 1e6, 3) if ns and req.event_ts_ns else None)
        return {"action": req.action, "dry_run": req.dry_run, "rules": list(req.rules),
                "pids": sorted(set(self.pids)), "refused": [[p, why] for p, why in self.refused],
                "errors": self.errors, "rounds": self.rounds,
                "latency_ms": ms(self.first_signal_ns), "done_ms": ms(self.last_signal_ns)}


def _note_refusals(out: Outcome, sel: Selection) -> None:
    seen = {p for p, _ in out.refused}
    out.refused.extend((p, why) for p, why in sel.refused if p not in seen)


def _signal(out: Outcome, sender: Sender, target: ProcInfo, sig: int,
            clock_ns: Callable[[], int]) -> bool:
    err = sender.send(target, sig)
    if err is not None:
        if err != "gone":
            out.errors.append(f"{target.pid}: {signal.Signals(sig).name}: {err}")
        return False
    now = clock_ns()
    out.first_signal_ns = out.first_signal_ns or now
    out.last_signal_ns = now
    return True


def _freeze(out: Outcome, req: Request, guard: Guard, sender: Sender, snap: Callable[[], Snapshot],
            clock_ns: Callable[[], int], quick: Callable[[], Snapshot] | None) -> list[ProcInfo]:
    """SIGSTOP the session's tree round after round until no new process appears."""
    stopped: dict[tuple[int, int], ProcInfo] = {}
    for n in range(MAX_ROUNDS):
        out.rounds += 1
        # round 0 stops the processes the session named, read one by one (fast: the first signal
        # does not wait for a scan of /proc); every later round scans all of /proc for children
        sel = select(req, quick(), guard, descendants=False) if n == 0 and quick else \
            select(req, snap(), guard)
        _note_refusals(out, sel)
        new = [t for t in sel.targets if (t.pid, t.start_ticks) not in stopped]
        if not new and n > 0:
            return list(stopped.values())
        for t in new:
            if _signal(out, sender, t, signal.SIGSTOP, clock_ns):
                stopped[(t.pid, t.start_ticks)] = t
    out.errors.append(f"the tree still grew after {MAX_ROUNDS} rounds")
    return list(stopped.values())


def carry_out(req: Request, guard: Guard, sender: Sender, snap: Callable[[], Snapshot],
              clock_ns: Callable[[], int], quick: Callable[[], Snapshot] | None = None) -> Outcome:
    """Do what ``req`` asks, within what ``guard`` allows; never raises for a process's sake.

    ``snap`` is a full /proc snapshot; ``quick`` (optional) a lazy one, for kill_process and the
    first freeze round, which need only the named pids and their ancestors."""
    out = Outcome(req)
    if req.dry_run:
        sel = select(req, snap(), guard)
        out.rounds = 1
        _note_refusals(out, sel)
        out.pids = [t.pid for t in sel.targets]
        return out
    if req.action == "kill_process":
        sel = select(req, (quick or snap)(), guard)
        out.rounds = 1
        _note_refusals(out, sel)
        out.pids = [t.pid for t in sel.targets
                    if _signal(out, sender, t, signal.SIGKILL, clock_ns)]
        return out
    frozen = _freeze(out, req, guard, sender, snap, clock_ns, quick)
    out.pids = [t.pid for t in frozen]
    if req.action == "freeze_session":
        out.frozen = frozen
        return out
    for t in frozen:
        _signal(out, sender, t, signal.SIGKILL, clock_ns)
    return out
