"""Checkpoint and restore of an analyzer instance's open sessions (issue 5, restart).

``$CASA_STATE_DIR/analyzer-<i>.json`` holds, per open session: its processes, recent events,
derived context, triggered rules and score, plus the lifecycle map last seen. It is a
stage.state_file.StateFile (atomic and fsync'd, one version key, unusable files set aside)
written every few seconds and at SIGTERM, and read once at start.

What a restart can lose: the messages the sessionizer published while no analyzer was
subscribed (ZeroMQ does not queue for absent subscribers, and a fresh subscriber cannot see
that gap) and anything after the last periodic checkpoint if the analyzer was killed. So every
restored session is marked incomplete, even after a clean stop (``clean`` only records how the
file was written), and so is every session the analyzer joins mid-way. Rules that already scored are remembered, so they are not reported twice.

The checkpoint also keeps the last (epoch, seq) handled per sessionizer (stream, topic), saved
with the sessions it describes. At start they are put into the subscriber's sequence tracker
(:meth:`Checkpointer.resume_positions`), so the first message after a restart reveals how many
messages the restored state never saw (counted in ``lost_messages``; open sessions are marked
incomplete), instead of the restart hiding them.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analyzer.capability_flags import CapabilityFlags
from analyzer.context import Context
from analyzer.core import Analyzer, Tracked
from analyzer.decisions import Action, DecisionState
from analyzer.execution_flags import ExecutionFlags
from analyzer.evidence import Evidence
from analyzer.history_flags import HistoryFlags
from analyzer.tree_checkpoint import dump_tree, load_trees
from analyzer.tree_history import SessionMarks
from analyzer.session_state import DELETED_MARK, ProcessState, RecentEvent, SessionState
from bus.sequence import SequenceTracker, StreamState
from bus.text import from_wire, to_wire
from stage.state_file import VERSION_KEY, StateFile, read_positions

__all__ = ["Checkpointer", "dump_session", "load_session", "FORMAT_VERSION"]

FORMAT_VERSION = 1
SLICE_BUDGET_S = 0.002        # serializing sessions per loop pass, in the background checkpoint
MAX_CPU_SHARE = 0.02          # periodic checkpoints take at most this share of the stage's CPU

log = logging.getLogger("casa.analyzer")


@dataclass(slots=True)
class _Slices:
    """A periodic checkpoint in progress: input positions taken at its start, sessions so far."""

    positions: list[dict[str, Any]]
    todo: deque[int]
    trees_todo: deque[int]
    done: dict[int, str] = field(default_factory=dict)    # session_id -> its JSON
    trees_done: dict[int, str] = field(default_factory=dict)   # tree key -> its JSON


class Checkpointer:
    """Saves and restores one instance's sessions at ``path``.

    ``save()`` writes everything at once (shutdown, tests). The periodic checkpoint is spread
    over loop passes instead (``begin()`` then ``step()`` on every pass): serializing 300 busy
    sessions takes ~80 ms of CPU, which, done in one go, would stall every event behind it and
    set the p99 of the alert latency. ``step()`` serializes sessions for at most ``SLICE_BUDGET_S``
    per pass and writes the file when all are done. The input positions are those at ``begin()``:
    the sessions serialized later may include a few later messages, so after a restore the gap is
    counted from the earlier position (more messages reported lost than were, never fewer).
    Sessions closed before the write are left out; sessions opened after ``begin()`` wait for the
    next checkpoint, as if they had opened after it.

    The periodic checkpoint's cost grows with the open state (~0.5 ms of CPU per busy session),
    not with the event rate, so a fixed cadence would let a few hundred open sessions spend 7 %
    of a core re-serializing every 5 s. :meth:`due` caps that share: after a checkpoint that cost
    ``c`` seconds of CPU, the next one is due no sooner than ``c / MAX_CPU_SHARE`` after it.
    Small states keep the stage's cadence; a large one stretches it, and a kill then loses up to
    that interval of state (counted as loss at the restart, as always).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = StateFile(path, FORMAT_VERSION, "analyzer checkpoint",
                              "sessions will not survive a restart")
        self.positions: dict[tuple[str, str], StreamState] = {}   # read by restore()
        self._slices: _Slices | None = None
        self._cost_s = 0.0                # CPU spent on the checkpoint in progress
        self.last_cost_s = 0.0            # CPU the last finished periodic checkpoint took
        self.last_done_s: float | None = None    # monotonic time it finished

    @property
    def failed(self) -> bool:
        """The last write failed (warned once, then quiet until a write works again)."""
        return self.file.failed

    @property
    def in_progress(self) -> bool:
        return self._slices is not None

    def due(self, now_s: float) -> bool:
        """Whether a periodic checkpoint may start at ``now_s`` (monotonic): none is running, and
        the last one's CPU is at most ``MAX_CPU_SHARE`` of the time since it finished."""
        if self._slices is not None:
            return False
        last = self.last_done_s
        return last is None or now_s - last >= self.last_cost_s / MAX_CPU_SHARE

    def begin(self, core: Analyzer, tracker: SequenceTracker | None = None) -> None:
        """Start a spread checkpoint (a running one is restarted from scratch)."""
        t0 = time.thread_time()
        self._slices = _Slices(positions=_bus_positions(tracker), todo=deque(core.sessions),
                               trees_todo=deque(core.trees.trees))
        self._cost_s = time.thread_time() - t0

    def step(self, core: Analyzer, budget_s: float = SLICE_BUDGET_S) -> bool | None:
        """Serialize sessions for up to ``budget_s`` (at least one); write when all are done.

        Returns None while in progress (or with nothing started), else whether the write worked.
        """
        sl = self._slices
        if sl is None:
            return None
        t0 = time.thread_time()
        try:
            return self._step(sl, core, budget_s)
        finally:
            self._cost_s += time.thread_time() - t0
            if self._slices is None:          # finished (written or failed): its cost sets the pace
                self.last_cost_s, self.last_done_s = self._cost_s, time.monotonic()

    def _step(self, sl: _Slices, core: Analyzer, budget_s: float) -> bool | None:
        deadline = time.perf_counter() + budget_s
        try:
            if not _serialize(sl, core, deadline):
                return None
        except (TypeError, ValueError) as exc:
            self._slices = None
            return self._write(lambda: _raise(exc))
        self._slices = None
        sessions = [text for sid, text in sl.done.items() if sid in core.sessions]
        trees = [text for key, text in sl.trees_done.items() if key in core.trees.trees]
        return self._write(lambda: _encode(self._head(core, False, sl.positions))[:-1]
                           + ',"sessions":[' + ",".join(sessions) + '],"trees":['
                           + ",".join(trees) + "]}")

    def save(self, core: Analyzer, clean: bool = False, tracker: SequenceTracker | None = None) -> bool:
        """Everything now, in one go (drops a spread checkpoint in progress)."""
        self._slices = None
        doc = {**self._head(core, clean, _bus_positions(tracker)),
               "sessions": [dump_session(t) for t in core.sessions.values()],
               "trees": [dump_tree(k, t) for k, t in core.trees.trees.items()]}
        return self._write(lambda: _encode(doc))

    @staticmethod
    def _head(core: Analyzer, clean: bool, positions: list[dict[str, Any]]) -> dict[str, Any]:
        return {VERSION_KEY: FORMAT_VERSION, "clean": clean, "instance": core.instance,
                "instances": core.instances, "closed": list(core.closed), "bus": positions}

    def _write(self, text: Callable[[], str]) -> bool:
        """Encode (``text()``) and write atomically; any failure is reported once, then quiet."""
        try:
            data = text()
        except (TypeError, ValueError) as exc:
            self.file.write_failed(exc)
            return False
        return self.file.write_text(data)

    def restore(self, core: Analyzer, now_ns: int) -> int:
        """Load the checkpoint into ``core``; return the number of sessions restored.

        Restored sessions count as silent from ``now_ns``: if the sessionizer never mentions one
        again, ``Analyzer.tick`` closes it (it ended while this analyzer was down).
        """
        doc = self.file.load()
        if doc is None:
            return 0
        try:
            self.positions = read_positions(doc.get("bus"))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignored the damaged input positions of the checkpoint | reason=%s", exc)
        load_trees(doc.get("trees") or [], core.trees, lambda route: core.owns(route),
                   lambda exc: log.warning("skipped a damaged tree in the checkpoint | reason=%s", exc))
        n = 0
        for raw in doc.get("sessions", []):
            try:
                tracked = load_session(raw)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("skipped a damaged session in the checkpoint | reason=%s", exc)
                continue
            if not core.owns(tracked.state.session_id, tracked.shard):
                continue
            tracked.state.complete = False
            tracked.restored, tracked.last_message_ns = True, now_ns
            tracked.state.reclassify(core._classify)
            _relink(tracked, raw.get("trees") or [], core)
            core.sessions[tracked.state.session_id] = tracked
            n += 1
        core.closed.extend(s for s in doc.get("closed", []) if isinstance(s, int))
        log.info("restored analyzer sessions from checkpoint | path=%s sessions=%d clean=%s",
                 self.path, n, bool(doc.get("clean")))
        return n


    def resume_positions(self, tracker: SequenceTracker) -> None:
        """Resume loss accounting where the restored state stopped (call before reading)."""
        tracker.streams.update(
            {key: StreamState(st.epoch, st.last_seq) for key, st in self.positions.items()})


def _serialize(sl: _Slices, core: Analyzer, deadline: float) -> bool:
    """Sessions, then trees, until ``deadline``; True when everything is done."""
    while sl.todo:
        sid = sl.todo.popleft()
        tracked = core.sessions.get(sid)
        if tracked is not None:
            sl.done[sid] = _encode(dump_session(tracked))
        if time.perf_counter() >= deadline:
            return False
    while sl.trees_todo:
        key = sl.trees_todo.popleft()
        tree = core.trees.trees.get(key)
        if tree is not None:
            sl.trees_done[key] = _encode(dump_tree(key, tree))
        if time.perf_counter() >= deadline:
            return False
    return True


def _relink(tracked: Tracked, keys: list[Any], core: Analyzer) -> None:
    """A restored session uses its trees again (restored ones, or fresh if they were lost)."""
    for key in keys:
        if isinstance(key, int) and not isinstance(key, bool):
            tree = tracked.trees[key] = core.trees.get(key, tracked.shard if tracked.shard is not None
                                                       else tracked.state.session_id)
            tree.sessions += 1


def _bus_positions(tracker: SequenceTracker | None) -> list[dict[str, Any]]:
    return tracker.positions() if tracker else []


def _raise(exc: Exception) -> str:
    raise exc


def _encode(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    """Wire bytes (non-UTF-8 text) become surrogate-escaped str; load_session turns them back."""
    if isinstance(value, bytes):
        return from_wire(value)
    raise TypeError(f"{type(value).__name__} cannot be checkpointed")


def dump_session(t: Tracked) -> dict[str, Any]:
    s = t.state
    return {
        "session_id": s.session_id, "recent_limit": s.recent_limit, "artifact_limit": s.artifact_limit,
        "created_ns": s.created_ns, "updated_ns": s.updated_ns, "lifecycle": s.lifecycle,
        "complete": s.complete, "events": s.events,
        "recent": [_recent(e) for e in s.recent],
        "processes": [_process(p) for p in s.processes.values()],
        "context": {**t.ctx.as_map(), "capability_unknown": t.ctx.capability.unknown},
        "decision": {"triggered": t.decision.triggered_order, "score": t.decision.score,
                     "worst": t.decision.worst.name},
        "last_message_ns": t.last_message_ns,
        "marks": {"bits": t.marks.bits, "xbits": t.marks.xbits, "evidence": t.marks.evidence.dump()},
        "trees": list(t.trees), "shard": t.shard,
    }


def _recent(e: RecentEvent) -> dict[str, Any]:
    return {"kind": e.kind, "tgid": e.tgid, "ts_ns": e.ts_ns, "path": e.path, "exe": e.exe,
            "flags": e.flags, "mode": e.mode, "addr": e.addr, "port": e.port, "resolved": e.resolved}


def _process(p: ProcessState) -> dict[str, Any]:
    return {"tgid": p.tgid, "ppid": p.ppid, "uid": p.uid, "comm": p.comm, "exec_path": p.exec_path,
            "exe": p.exe, "args": list(p.args), "lineage_tgids": list(p.lineage_tgids),
            "depth": p.depth, "cap_eff": p.cap_eff, "seccomp": p.seccomp, "opens": list(p.opens or ()),
            "connects": [list(c) for c in p.connects or ()], "first_seen_ns": p.first_seen_ns,
            "last_seen_ns": p.last_seen_ns, "exit_ns": p.exit_ns, "exec_seen": p.exec_seen,
            "role": p.role, "is_root": p.is_root, "euid": p.euid, "prev_euid": p.prev_euid,
            "prev_cap_eff": p.prev_cap_eff, "exec_resolved": p.exec_resolved, "reimaged": p.reimaged}


def load_session(raw: dict[str, Any]) -> Tracked:
    state = SessionState(session_id=int(raw["session_id"]), recent_limit=int(raw["recent_limit"]),
                         artifact_limit=int(raw["artifact_limit"]))
    state.created_ns, state.updated_ns = raw["created_ns"], raw["updated_ns"]
    state.lifecycle = {k: to_wire(v) if isinstance(v, str) else v for k, v in raw["lifecycle"].items()}
    state.complete, state.events = bool(raw["complete"]), raw["events"]
    state.recent.extend(RecentEvent(**e) for e in raw["recent"])
    for p in raw["processes"]:
        proc = ProcessState(**{**p, "args": tuple(p["args"]), "lineage_tgids": tuple(p["lineage_tgids"]),
                               "opens": deque(p["opens"], maxlen=state.artifact_limit),
                               "connects": deque((tuple(c) for c in p["connects"]),
                                                 maxlen=state.artifact_limit)})
        state.processes[proc.tgid] = proc
        state.deleted_opens += sum(1 for o in proc.opens or () if DELETED_MARK in o)
    c = raw["context"]
    ctx = Context(ExecutionFlags(**c["execution"]),
                  CapabilityFlags(**c["capability"], unknown=bool(c.get("capability_unknown"))),
                  HistoryFlags(**c["history"]))
    d = raw["decision"]
    decision = DecisionState(triggered=set(d["triggered"]), triggered_order=list(d["triggered"]),
                             score=int(d["score"]), worst=Action[d["worst"]])
    marks = raw.get("marks") or {}
    shard = raw.get("shard")
    return Tracked(state=state, ctx=ctx, decision=decision, last_message_ns=int(raw["last_message_ns"]),
                   marks=SessionMarks(int(marks.get("bits", ctx.history.bits())),
                                      Evidence.load(marks.get("evidence")), int(marks.get("xbits", 0))),
                   shard=shard if isinstance(shard, int) and not isinstance(shard, bool) else None,
                   hbits=ctx.history.bits(), xbits=int(marks.get("xbits", 0)))
