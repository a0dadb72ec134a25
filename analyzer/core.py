"""The analyzer's pure core: sessionizer messages in, analyzer messages out; no sockets, no clock.

``Analyzer.handle(envelope_or_map, now_ns)`` returns ``[(topic, map), ...]`` to publish, in order:

* ``sessionizer.event`` -> ``analyzer.event`` (the map unchanged) for owned sessions, then, when
  the session's derived context changed and rules newly matched, one ``analyzer.decision``;
* ``sessionizer.session`` -> ``analyzer.session`` (lifecycle + recent events, score, context);
* ``sessionizer.control`` reload -> re-read rules.json (keep the old policy if invalid), then
  forward on ``analyzer.control``.

Instance ``i`` of ``N`` owns the sessions with ``session_id % N == i`` and ignores the rest, so N
instances give the same decisions as one. Malformed events are counted and dropped.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from analyzer.context import Context, advance
from analyzer.decisions import Action, DecisionState, Result, decide
from analyzer.rules import CompiledRules
from analyzer.history_flags import Classifier
from analyzer.history_window import HistoryWindow
from analyzer.session_state import EXEC, EXIT, TRACKED_KINDS, SessionState
from bus.envelope import Envelope
from bus import topics as T
from policy import Policy, PolicyError

__all__ = ["Analyzer", "ClosedIds", "Counters", "Tracked", "CLOSED_MEMORY", "STALE_SESSION_S", "ORPHAN_AFTER_S"]

CLOSED_MEMORY = 4096          # closed session ids remembered, so late events do not revive them
STALE_SESSION_S = 6 * 3600    # close a session with no message for this long (lost "closed")
ORPHAN_AFTER_S = 300          # close a restored session nothing mentioned for this long
NS_PER_S = 1_000_000_000
INT64_LIMIT = 2**63           # session ids are CEL ints (int64)

log = logging.getLogger("casa.analyzer")

Out = list[tuple[str, dict[str, Any]]]


@dataclass(slots=True)
class Counters:
    events_in: int = 0
    events_owned: int = 0
    events_malformed: int = 0
    events_late: int = 0          # for a session this instance already saw closed
    evaluations_skipped: int = 0  # context unchanged since the last evaluation
    decisions: int = 0
    lifecycle_in: int = 0
    reloads_applied: int = 0
    reloads_rejected: int = 0
    last_reload_id: int = 0
    control_unknown: int = 0      # control maps with a command this build does not know (forwarded)
    loss_marks: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class ClosedIds:
    """The last ``limit`` closed session ids, oldest first, with O(1) membership.

    Every event asks "is its session already closed?"; a plain deque answered that by scanning
    up to 4,096 ids per event.
    """

    __slots__ = ("_order", "_members")

    def __init__(self, limit: int) -> None:
        self._order: deque[int] = deque(maxlen=limit)
        self._members: dict[int, int] = {}        # id -> how many times it is in _order

    def __contains__(self, sid: object) -> bool:
        return sid in self._members

    def __iter__(self) -> Iterator[int]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def append(self, sid: int) -> None:
        order, members = self._order, self._members
        if order.maxlen is not None and len(order) == order.maxlen:
            old = order[0]
            if members[old] == 1:
                del members[old]
            else:
                members[old] -= 1
        order.append(sid)
        members[sid] = members.get(sid, 0) + 1

    def extend(self, sids: Iterable[int]) -> None:
        for sid in sids:
            self.append(sid)


@dataclass(slots=True)
class Tracked:
    """One owned session: folded state, derived context, decision state."""

    state: SessionState
    ctx: Context = field(default_factory=Context)
    decision: DecisionState = field(default_factory=DecisionState)
    last_key: tuple[Any, ...] | None = None     # (context rule key, rules version) last evaluated
    last_message_ns: int = 0
    restored: bool = False        # from a checkpoint and not yet mentioned by the sessionizer
    # Running history-flag state; None means "rebuild from the window" (new, reloaded, restored).
    history: HistoryWindow | None = None
    last_ctx: Context | None = None               # the context last_key was computed from


class Analyzer:
    """Sessions of one instance, the active policy, and the counters of what happened."""

    def __init__(self, policy: Policy, instance: int = 0, instances: int = 1,
                 reload_policy: Callable[[], Policy] | None = None) -> None:
        if instances < 1 or not 0 <= instance < instances:
            raise ValueError(f"instance {instance} of {instances}: need 0 <= instance < instances")
        self.policy = policy
        self.rules = CompiledRules(policy)
        self.instance, self.instances = instance, instances
        self.reload_policy = reload_policy
        self.sessions: dict[int, Tracked] = {}
        self.closed = ClosedIds(CLOSED_MEMORY)
        self.counters = Counters()
        self._classify = Classifier(policy.analysis)

    # ------------------------------------------------------------------ dispatch

    def owns(self, session_id: int) -> bool:
        return session_id % self.instances == self.instance

    def handle(self, msg: Envelope | tuple[str, dict[str, Any]], now_ns: int) -> Out:
        """Process one envelope (or one ``(topic, map)``); return what to publish."""
        if isinstance(msg, Envelope):
            topic, maps = msg.topic, msg.events
        else:
            topic, maps = msg[0], [msg[1]]
        out: Out = []
        if topic == T.SESSIONIZER_EVENT:         # the hot path: a batch of events, one list out
            for m in maps:
                self._event(m, now_ns, out)
            return out
        handler = {T.SESSIONIZER_SESSION: self.handle_lifecycle,
                   T.SESSIONIZER_CONTROL: self.handle_control}.get(topic)
        if handler is None:
            return out
        for m in maps:
            out.extend(handler(m, now_ns))
        return out

    # ------------------------------------------------------------------ events

    def handle_event(self, ev: Any, now_ns: int) -> Out:
        out: Out = []
        self._event(ev, now_ns, out)
        return out

    def _event(self, ev: Any, now_ns: int, out: Out) -> None:
        """One sessionizer event: append the pass-through and any decision to ``out``."""
        counters = self.counters
        counters.events_in += 1
        problem = _event_problem(ev)
        if problem:
            counters.events_malformed += 1
            log.warning("dropped a malformed sessionizer event | reason=%s", problem)
            return
        sid = ev["session_id"]
        if sid % self.instances != self.instance:
            return
        counters.events_owned += 1
        out.append((T.ANALYZER_EVENT, ev))
        kind = ev["kind"]
        if kind not in TRACKED_KINDS:
            return
        if sid in self.closed:
            counters.events_late += 1
            return
        tracked = self.sessions.get(sid)
        if tracked is None:
            tracked = self._session(sid, now_ns, opened=False)
        else:
            tracked.last_message_ns, tracked.restored = now_ns, False
        try:
            state = tracked.state
            proc = state.fold(ev, self._classify.entry(ev))
            history = self._history(tracked).flags(state.deleted_opens)
            ctx = tracked.ctx
            if kind == EXEC or kind == EXIT:
                tracked.ctx = advance(ctx, kind, proc, state, self.policy.analysis, history)
            elif history is not ctx.history:      # opens and connects change history flags only
                tracked.ctx = Context(ctx.execution, ctx.capability, history)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            counters.events_malformed += 1
            log.warning("could not fold a sessionizer event | session_id=%d reason=%s", sid, exc)
            return
        decision = self._evaluate(tracked, ev)
        if decision is not None:
            out.append((T.ANALYZER_DECISION, decision))

    def _history(self, tracked: Tracked) -> HistoryWindow:
        """The session's running history state with the event just observed folded in."""
        state, window = tracked.state, tracked.history
        if window is None:
            window = tracked.history = HistoryWindow.replay(state.recent, self.policy.analysis,
                                                            state.recent_limit)
        elif state.recent:              # a zero-length window keeps nothing
            window.push(state.recent[-1])
        return window

    def _evaluate(self, tracked: Tracked, ev: dict[str, Any]) -> dict[str, Any] | None:
        if tracked.ctx is tracked.last_ctx and tracked.last_key is not None \
                and tracked.last_key[1] == self.policy.version:
            self.counters.evaluations_skipped += 1
            return None
        tracked.last_ctx = tracked.ctx
        key = (tracked.ctx.rule_key(), self.policy.version)
        if key == tracked.last_key:
            self.counters.evaluations_skipped += 1
            return None
        tracked.last_key = key
        matched = self.rules.matched(tracked.ctx, tracked.state.session_id)
        result = decide(tracked.decision, matched, self.policy.thresholds)
        if not result.newly:
            return None
        self.counters.decisions += 1
        return self._decision_map(tracked, ev, result)

    def _decision_map(self, tracked: Tracked, ev: dict[str, Any], r: Result) -> dict[str, Any]:
        return {"kind": "decision", "session_id": tracked.state.session_id, "ts_ns": ev.get("ts_ns", 0),
                "event": ev, "action": r.action.name, "score": r.score, "increment": r.increment,
                "log_threshold": r.log_threshold, "alert_threshold": r.alert_threshold,
                "triggered_rules": [{"name": x.name, "expr": x.expr, "weight": x.weight} for x in r.newly],
                "context": tracked.ctx.as_map(), "rules_version": self.policy.version}

    def _session(self, sid: int, now_ns: int, opened: bool) -> Tracked:
        tracked = self.sessions.get(sid)
        if tracked is None:
            a = self.policy.analysis
            state = SessionState(session_id=sid, recent_limit=a.recent_event_limit,
                                 artifact_limit=a.max_per_process_artifacts)
            # Joining a session after its "opened" message means its first events were missed.
            state.complete = opened
            tracked = self.sessions[sid] = Tracked(state=state)
        tracked.last_message_ns = now_ns
        tracked.restored = False
        return tracked

    # ------------------------------------------------------------------ lifecycle

    def handle_lifecycle(self, m: Any, now_ns: int) -> Out:
        self.counters.lifecycle_in += 1
        if (not isinstance(m, dict) or not _is_int(m.get("session_id"))
                or not 0 <= m["session_id"] < INT64_LIMIT or not isinstance(m.get("state"), str)):
            self.counters.events_malformed += 1
            log.warning("dropped a malformed session lifecycle message | reason=needs session_id and state")
            return []
        sid, state = m["session_id"], m["state"]
        if not self.owns(sid):
            return []
        if sid in self.closed:
            return [(T.ANALYZER_SESSION, self._snapshot(None, m))]
        tracked = self._session(sid, now_ns, opened=state == "opened")
        tracked.state.lifecycle = m
        out = [(T.ANALYZER_SESSION, self._snapshot(tracked, m))]
        if state == "closed":                 # open -> closed: decision state is dropped (§10.7)
            del self.sessions[sid]
            self.closed.append(sid)
        return out

    def _snapshot(self, tracked: Tracked | None, m: dict[str, Any]) -> dict[str, Any]:
        snap = dict(m)
        if tracked is None:
            snap.update(recent_events=[], score=0, action=Action.IGNORE.name, triggered_rules=[],
                        context=Context().as_map(), rules_version=self.policy.version)
            return snap
        d = tracked.decision
        snap.update(complete=bool(m.get("complete", True)) and tracked.state.complete,
                    recent_events=[e.to_map() for e in tracked.state.recent],
                    score=d.score, action=d.worst.name, triggered_rules=list(d.triggered_order),
                    context=tracked.ctx.as_map(), rules_version=self.policy.version)
        return snap

    def mark_loss(self, lost: int) -> None:
        """Loss on the sessionizer stream: every open session may miss events."""
        self.counters.loss_marks += 1
        for tracked in self.sessions.values():
            tracked.state.complete = False
        log.warning("sessionizer messages lost; open sessions marked incomplete | lost=%d sessions=%d",
                    lost, len(self.sessions))

    def tick(self, now_ns: int) -> Out:
        """Close sessions whose "closed" will never come; return their final snapshots.

        A session restored from a checkpoint that nothing mentions for ``ORPHAN_AFTER_S`` (the
        sessionizer re-announces every open session with events in its periodic ``flushed``
        messages) was closed while this analyzer was down. Any session silent for
        ``STALE_SESSION_S`` is given up too (a sessionizer crash without restore). Their closed
        snapshots are incomplete, so sinks still write a final record.
        """
        out: Out = []
        for sid, t in list(self.sessions.items()):
            silent_ns = now_ns - t.last_message_ns
            if silent_ns > STALE_SESSION_S * NS_PER_S or (t.restored and silent_ns > ORPHAN_AFTER_S * NS_PER_S):
                log.warning("closed a session the sessionizer no longer mentions | session_id=%d "
                            "restored=%s silent_s=%d", sid, t.restored, silent_ns // NS_PER_S)
                t.state.complete = False
                closed = {**t.state.lifecycle, "kind": "session", "state": "closed", "session_id": sid,
                          "closed_ns": t.state.updated_ns, "complete": False}
                out.append((T.ANALYZER_SESSION, self._snapshot(t, closed)))
                del self.sessions[sid]
        return out

    # ------------------------------------------------------------------ control

    def handle_control(self, m: Any, now_ns: int) -> Out:
        if not isinstance(m, dict) or m.get("kind") != "control":
            self.counters.events_malformed += 1
            return []
        if m.get("command") == "reload":
            self.reload()
            self.counters.last_reload_id = m["id"] if _is_int(m.get("id")) else 0
        else:
            self.counters.control_unknown += 1
        return [(T.ANALYZER_CONTROL, m)]

    def reload(self) -> bool:
        """Validate, then swap; on any error keep the current policy and say why."""
        if self.reload_policy is None:
            return False
        try:
            policy = self.reload_policy()
            rules = CompiledRules(policy)
        except PolicyError as exc:
            self.counters.reloads_rejected += 1
            log.error("%s; keeping the %d rules of version %s | reload=failed",
                      exc, len(self.policy.enabled_rules), self.policy.version)
            return False
        self.policy, self.rules = policy, rules
        self._classify = Classifier(policy.analysis)
        for tracked in self.sessions.values():
            tracked.state.reclassify(self._classify)
            tracked.history = None
        self.counters.reloads_applied += 1
        log.info("rules reloaded | version=%s rules=%d", policy.version, len(policy.enabled_rules))
        return True

    def stats(self) -> dict[str, int | str]:
        """Counters for heartbeats and shutdown (docs/bus.md §8.3)."""
        return {**self.counters.as_dict(), "rules_version": self.policy.version,
                "sessions_open": len(self.sessions),
                "rule_evaluations": self.rules.evaluations, "rule_cache_hits": self.rules.cache_hits,
                "rule_eval_errors": self.rules.eval_errors}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TEXT_FIELDS = ("path", "exe", "comm", "addr")
_MISSING = object()


def _event_problem(ev: Any) -> str | None:
    """Why an event cannot be analysed (None: fine).

    The first test is the one every well-formed event passes in a few type checks; anything it
    does not accept gets the field-by-field check below, which says what is wrong.
    """
    if type(ev) is dict:
        get = ev.get
        sid = get("session_id")
        if (type(get("kind")) is str and type(sid) is int and type(get("ts_ns")) is int
                and type(get("tgid")) is int and 0 <= sid < INT64_LIMIT):
            for name in _TEXT_FIELDS:
                if type(get(name, "")) is not str:      # bytes too: the slow path accepts it
                    break
            else:
                argv = get("argv", _MISSING)
                if argv is _MISSING or type(argv) is list:
                    return None
    return _slow_event_problem(ev)


def _slow_event_problem(ev: Any) -> str | None:
    if not isinstance(ev, dict):
        return f"event is {type(ev).__name__}, not a map"
    if not isinstance(ev.get("kind"), str):
        return "missing kind"
    for name in ("session_id", "ts_ns", "tgid"):
        if not _is_int(ev.get(name)):
            return f"{ev['kind']}: field {name!r} must be an integer"
    if not 0 <= ev["session_id"] < INT64_LIMIT:
        return f"{ev['kind']}: session_id {ev['session_id']} is out of range"
    for name in ("path", "exe", "comm", "addr"):
        if name in ev and not isinstance(ev[name], (str, bytes)):
            return f"{ev['kind']}: field {name!r} must be text"
    if "argv" in ev and not isinstance(ev["argv"], list):
        return f"{ev['kind']}: field 'argv' must be a list"
    return None
