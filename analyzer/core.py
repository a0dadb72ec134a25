"""The analyzer's pure core: sessionizer messages in, analyzer messages out; no sockets, no clock.

``Analyzer.handle(envelope_or_map, now_ns)`` returns ``[(topic, map), ...]`` to publish, in order:

* ``sessionizer.event`` -> ``analyzer.event`` (the map unchanged) for owned sessions, then, when
  the session's derived context changed and rules newly matched, one ``analyzer.decision``
  (with the evidence of the fields its rules name);
* ``sessionizer.session`` -> ``analyzer.session`` (lifecycle + recent events, score, context);
* ``sessionizer.control`` reload -> re-read rules.json (keep the old policy if invalid), then
  forward on ``analyzer.control``.

Instance ``i`` of ``N`` owns the messages with ``shard % N == i`` (``session_id % N`` for
messages without ``shard``, recordings from before it) and ignores the rest: the sessionizer
gives every session of a tree the same shard, so the instance holding a session also holds the
tree history it can need, and N instances give the same decisions as one. Malformed events are
counted and dropped.

History: ``analysis.history_mode`` ``"indexed"`` (default) derives ``history.*`` from the
per-tree indices (analyzer/tree_history.py); ``"original"`` keeps the original's last-N window
for its eight fields (analyzer/history_window.py) and behaves as if the sessionizer had dropped
role execs/exits and hidden events, as the original's did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from analyzer.capability_flags import privilege_call
from analyzer.context import Context, FlagMemo, Step, advance, with_tree_fields
from analyzer.decisions import Action, Result, decide
from analyzer.event_check import INT64_LIMIT, event_problem, is_int
from analyzer.evidence import RuleFields
from analyzer.history_flags import HISTORY_BIT, ORIGINAL_MASK, Classifier, HistoryFlags
from analyzer.history_window import HistoryWindow
from analyzer.response import response_request
from analyzer.rules import CompiledRules
from analyzer.session_state import (CAPSET, EXEC, EXIT, OPEN, ORIGINAL_KINDS, SETID, TRACKED_KINDS,
                                    ProcessState, RecentEvent, SessionState, text)
from analyzer.tracked import ClosedIds, Counters, Tracked
from analyzer.tree_history import TreeHistory, TreeStore, tree_key
from bus.envelope import Envelope
from bus import topics as T
from policy import Policy, PolicyError
from policy.response import choose

__all__ = ["Analyzer", "ClosedIds", "Counters", "Tracked", "CLOSED_MEMORY", "STALE_SESSION_S", "ORPHAN_AFTER_S"]

CLOSED_MEMORY = 4096          # closed session ids remembered, so late events do not revive them
STALE_SESSION_S = 6 * 3600    # close a session with no message for this long (lost "closed")
ORPHAN_AFTER_S = 300          # close a restored session nothing mentioned for this long
NS_PER_S = 1_000_000_000

log = logging.getLogger("casa.analyzer")

Out = list[tuple[str, dict[str, Any]]]


class Analyzer:
    """Sessions of one instance, the active policy, and the counters of what happened."""

    def __init__(self, policy: Policy, instance: int = 0, instances: int = 1,
                 reload_policy: Callable[[], Policy] | None = None) -> None:
        if instances < 1 or not 0 <= instance < instances:
            raise ValueError(f"instance {instance} of {instances}: need 0 <= instance < instances")
        self.instance, self.instances = instance, instances
        self.reload_policy = reload_policy
        self.sessions: dict[int, Tracked] = {}
        self.closed = ClosedIds(CLOSED_MEMORY)
        self.counters = Counters()
        self._use(policy, CompiledRules(policy))
        self.trees = TreeStore(policy.analysis, self._classify.classes)

    def _use(self, policy: Policy, rules: CompiledRules) -> None:
        """Make ``policy`` the active one (start and reload)."""
        self.policy, self.rules = policy, rules
        self.rule_fields = RuleFields(policy.enabled_rules)
        self._classify = Classifier(policy.analysis)
        self._flag_memo = FlagMemo()          # per policy: a reload may change every value
        self._original = policy.analysis.history_mode == "original"
        self._kinds = ORIGINAL_KINDS if self._original else TRACKED_KINDS
        self._responses = {r.name: r.response for r in policy.rules}

    # ------------------------------------------------------------------ dispatch

    def owns(self, session_id: int, shard: Any = None) -> bool:
        """Routing: ``shard % N`` when the message has a shard, else ``session_id % N``."""
        key = shard if type(shard) is int and shard >= 0 else session_id
        return key % self.instances == self.instance

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
        problem = event_problem(ev)
        if problem:
            counters.events_malformed += 1
            log.warning("dropped a malformed sessionizer event | reason=%s", problem)
            return
        sid = ev["session_id"]
        if self.instances > 1 and not self.owns(sid, ev.get("shard")):
            return
        counters.events_owned += 1
        out.append((T.ANALYZER_EVENT, ev))
        kind = ev["kind"]
        if kind not in self._kinds:
            return
        if self._original and (ev.get("hidden") or (ev.get("role") and (kind == EXEC or kind == EXIT))
                               or (kind == OPEN and ev.get("target_tgid") is not None)):
            # the original's sessionizer dropped these (every /proc open among them: `openclaw
            # agent --local` reads /proc/<pid>/stat of each process, 100 opens that would push
            # the first tool call out of the 64-event window)
            counters.events_ignored += 1
            return
        tracked = self.sessions.get(sid)
        if tracked is None:               # a closed session is never in self.sessions
            if sid in self.closed:
                counters.events_late += 1
                return
            tracked = self._session(sid, now_ns, opened=False)
        else:
            tracked.last_message_ns, tracked.restored = now_ns, False
        try:
            self._fold(tracked, ev, kind, now_ns)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            counters.events_malformed += 1
            log.warning("could not fold a sessionizer event | session_id=%d reason=%s", sid, exc)
            return
        if tracked.ctx is tracked.last_ctx and tracked.last_key is not None \
                and tracked.last_key[1] == self.policy.version:
            counters.evaluations_skipped += 1     # nothing a rule reads changed (_evaluate)
            return
        decision = self._evaluate(tracked, ev)
        if decision is not None:
            out.append((T.ANALYZER_DECISION, decision))

    def _fold(self, tracked: Tracked, ev: dict[str, Any], kind: str, now_ns: int) -> None:
        """Fold one event into the session and its tree; advance the context."""
        state = tracked.state
        entry = self._classify.open_entry(ev) if kind == OPEN else self._classify.entry(ev)
        if not entry.resolved:
            self.counters.unresolved_paths += 1
        hidden = ev.get("hidden")
        if hidden:                              # remembered by the tree only, never shown
            proc = state.processes.get(entry.tgid) or ProcessState(tgid=entry.tgid)
        else:
            proc = state.fold(ev, entry)
        tid = ev.get("tree_id")
        tree = tracked.trees.get(tid if type(tid) is int and tid >= 0 else -1 - state.session_id)
        if tree is None:
            tree = self._tree(tracked, ev)
        tree.last_ns = now_ns
        marks = tracked.marks
        tree.fold(entry, ev, proc, marks, hidden)
        if kind == SETID or kind == CAPSET:
            privilege_call(kind, ev, proc, state.lifecycle, marks)
        bits = marks.bits
        if self._original:
            bits = (bits & ~ORIGINAL_MASK) | self._window_bits(tracked, entry, hidden)
        ctx = tracked.ctx
        if marks.xbits != tracked.xbits:        # fields the tree set outside history
            tracked.xbits = marks.xbits
            ctx = tracked.ctx = with_tree_fields(ctx, marks.xbits)
        history = ctx.history
        if bits != tracked.hbits:
            history = HistoryFlags.from_bits(bits)
            tracked.hbits = bits
        if (kind == EXEC or kind == EXIT) and not hidden:
            lifecycle_cap = state.lifecycle.get("root_cap_eff")
            step = Step(self._classify.classes, marks.evidence,
                        (entry.ts_ns, entry.tgid, kind, entry.path or entry.exe or proc.exec_path),
                        text(ev.get("comm")), lifecycle_cap if type(lifecycle_cap) is int else None,
                        self._flag_memo)
            tracked.ctx = advance(ctx, kind, proc, state, self.policy.analysis, history, step)
        elif history is not ctx.history:        # other kinds change history flags only
            tracked.ctx = Context(ctx.execution, ctx.capability, history)

    def _tree(self, tracked: Tracked, ev: dict[str, Any]) -> TreeHistory:
        sid = tracked.state.session_id
        key = tree_key(ev, sid)
        tree = tracked.trees.get(key)
        if tree is None:                        # a tree with an open session is never dropped
            shard = ev.get("shard")
            tree = tracked.trees[key] = self.trees.get(key, shard if is_int(shard) else sid)
            tree.sessions += 1
        return tree

    def _window_bits(self, tracked: Tracked, entry: RecentEvent, hidden: Any) -> int:
        """Original mode: the eight window flags; a window flag that turns true without evidence
        from the tree gets the event that completed it."""
        state, window = tracked.state, tracked.history
        if window is None:
            window = tracked.history = HistoryWindow.replay(state.recent, self.policy.analysis,
                                                            state.recent_limit)
        elif state.recent and not hidden:       # a zero-length window keeps nothing
            window.push(state.recent[-1])
        bits = window.bits(state.deleted_opens)
        new = bits & ~tracked.hbits
        if new:
            for name, bit in HISTORY_BIT.items():
                if new & bit:
                    tracked.marks.evidence.add("history." + name, ((entry.ts_ns, entry.tgid, entry.kind,
                                                                    entry.path or entry.addr),))
        return bits

    def _evaluate(self, tracked: Tracked, ev: dict[str, Any]) -> dict[str, Any] | None:
        """The rules over a context that may have changed (``_event`` skips an unchanged one
        inline: most events change nothing a rule reads)."""
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
        context = tracked.ctx.as_map()
        return {"kind": "decision", "session_id": tracked.state.session_id, "ts_ns": ev.get("ts_ns", 0),
                "event": ev, "action": r.action.name, "score": r.score, "increment": r.increment,
                "log_threshold": r.log_threshold, "alert_threshold": r.alert_threshold,
                "triggered_rules": [{"name": x.name, "expr": x.expr, "weight": x.weight} for x in r.newly],
                "context": context, "rules_version": self.policy.version,
                "evidence": tracked.marks.evidence.for_fields(self.rule_fields.of(r.newly), context),
                **self._response(tracked, ev, r)}

    def _response(self, tracked: Tracked, ev: dict[str, Any], r: Result) -> dict[str, Any]:
        """``{"response": ...}`` for an ALERT whose policy asks for one (analyzer/response.py)."""
        if r.action is not Action.ALERT:
            return {}
        chosen = choose(self.policy.response, ((name, self._responses.get(name))
                                               for name in tracked.decision.triggered_order))
        if chosen.action == "none":
            return {}
        return {"response": response_request(chosen, tracked.state, ev)}

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

    def _forget(self, sid: int) -> None:
        """A session closed (or was given up): drop it and release its trees."""
        tracked = self.sessions.pop(sid)
        for key in tracked.trees:
            self.trees.release(key)

    # ------------------------------------------------------------------ lifecycle

    def handle_lifecycle(self, m: Any, now_ns: int) -> Out:
        self.counters.lifecycle_in += 1
        if (not isinstance(m, dict) or not is_int(m.get("session_id"))
                or not 0 <= m["session_id"] < INT64_LIMIT or not isinstance(m.get("state"), str)):
            self.counters.events_malformed += 1
            log.warning("dropped a malformed session lifecycle message | reason=needs session_id and state")
            return []
        sid, state = m["session_id"], m["state"]
        if not self.owns(sid, m.get("shard")):
            return []
        if sid in self.closed:
            return [(T.ANALYZER_SESSION, self._snapshot(None, m))]
        tracked = self._session(sid, now_ns, opened=state == "opened")
        tracked.state.lifecycle = m
        if is_int(m.get("shard")):
            tracked.shard = m["shard"]
        out = [(T.ANALYZER_SESSION, self._snapshot(tracked, m))]
        if state == "closed":                 # open -> closed: decision state is dropped (docs/original.md §10, step 7)
            self._forget(sid)
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
                self._forget(sid)
        self.counters.trees_expired += self.trees.expire(now_ns)
        return out

    # ------------------------------------------------------------------ control

    def handle_control(self, m: Any, now_ns: int) -> Out:
        if not isinstance(m, dict) or m.get("kind") != "control":
            self.counters.events_malformed += 1
            return []
        if m.get("command") == "reload":
            self.reload()
            self.counters.last_reload_id = m["id"] if is_int(m.get("id")) else 0
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
        self._use(policy, rules)
        self.trees.reconfigure(policy.analysis, self._classify.classes)
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
                "rule_eval_errors": self.rules.eval_errors, "trees_open": len(self.trees.trees),
                "history_overflows": self.trees.stats.overflows}
