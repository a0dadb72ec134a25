"""The OpenTelemetry sink: one trace per session, exported over OTLP/HTTP (docs/sinks.md).

    TraceSink.from_settings(OtelSettings.from_env())     # python -m sinks otel

The trace of session N (sinks/trace_model.py says what each span and attribute holds):

    session N                      root span: session start (created_ns) -> close (closed_ns)
      span events                  process / file / network / exit and the schema-2 kinds, each
                                   numbered (casa.event.seq); rule matched: <name> with its
                                   evidence, audit emitted, alert emitted
      links                        the parent session's root span (parent_session_id); the
                                   process spans where a rule's evidence happened
      process <name> (tgid)        one child span per exec'd process, exec -> exit, nested by the
        process <name> (tgid)      exec lineage (a process under the nearest ancestor with a span)

Every span and span event carries the real event time (ns), never the export time. The root span
ends with the final score and action, event counts, complete/lost_events and every context flag.
Events with ``hidden`` (runtime noise a sessionizer filter kept for the analyzer) are not in the
trace; they are counted (``hidden_events``).

Export (sinks/otel_export.py) never blocks the pipeline: spans go to a bounded batch processor,
failed exports to a bounded retry buffer; whatever is dropped is counted (``spans_dropped``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, TracerProvider

from bus.envelope import Envelope
from bus.topics import (ANALYZER_CONTROL, ANALYZER_DECISION, ANALYZER_EVENT, ANALYZER_SESSION,
                        RESPONDER_RESULT, is_heartbeat)
from sinks import decision_records, response_records, records
from sinks.otel_export import (DEFAULT_SERVICE, SHUTDOWN_TIMEOUT_MS, BoundedProcessor, OtelSettings,
                               RetryingExporter, build_provider, resolve_endpoint)
from sinks.trace_model import (COUNT_NAMES, EVENT_NAMES, PinnedIds, SessionTrace, event_attributes,
                               evidence_refs, flag_attributes, otel_text, remote_context, rule_fields,
                               session_ids)

__all__ = ["TraceSink", "OtelSettings", "resolve_endpoint", "RetryingExporter", "BoundedProcessor",
           "SessionTrace", "otel_text", "event_attributes", "flag_attributes", "session_ids", "TRACER_NAME"]

TRACER_NAME = "casa.sinks"
MAX_OPEN_SESSIONS = 10_000
TIME_FIELDS = ("ts_ns", "created_ns", "updated_ns", "closed_ns")
TIME_LIMIT_NS = 1 << 64             # OTLP times are fixed64: one negative time fails a whole batch
MAX_PROCESS_SPANS = 2_000           # process spans per session; further execs are span events only
MAX_EVIDENCE_LINKS = 64             # evidence links per root span (the attributes name all refs)
RECENTLY_CLOSED = 10_000            # closed ids remembered so late messages do not open a 2nd trace
ACTION_RANK = {"IGNORE": 0, "LOG": 1, "ALERT": 2}

log = logging.getLogger("casa.sinks")


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path


def _check_times(item: Mapping[str, Any]) -> None:
    """Times become span times: each must be a whole number of ns that OTLP can carry, or the
    exporter fails the whole batch (other sessions' spans too). None or 0 means "not known"."""
    for name in TIME_FIELDS:
        value = item.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < TIME_LIMIT_NS:
            raise records.RecordError(f"field {name!r} is not a time in ns: {value!r}")


def _opt_int(m: Mapping[str, Any], name: str) -> int | None:
    value = m.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(slots=True)
class TraceSink:
    """Pure-ish core: analyzer envelopes -> spans on an injected tracer provider.

    ``id_namespace`` is what session trace ids are derived from, with the session id
    (trace_model.session_ids): the same in every process of this sink on this host.
    """

    provider: TracerProvider
    processor: BoundedProcessor | None = None       # None in tests with their own processor
    wall_clock_ns: Callable[[], int] = time.time_ns
    id_namespace: str = DEFAULT_SERVICE
    sessions: OrderedDict[int, SessionTrace] = field(default_factory=OrderedDict)
    closed: set[int] = field(default_factory=set)                # recently closed session ids
    closed_order: deque[int] = field(default_factory=deque)      # ... oldest first, for eviction
    suspended: dict[int, Any] = field(default_factory=dict)   # sid -> root SpanContext at shutdown
    malformed: int = 0
    late_messages: int = 0
    process_spans_skipped: int = 0
    joined_midway: int = 0             # sessions first seen after their start (marked incomplete)
    hidden_events: int = 0             # events a noise filter hid from the logs: not in traces
    reloads_seen: int = 0
    tracer: Any = None
    ids: PinnedIds = field(default_factory=PinnedIds)
    logs: Any = None                   # DecisionLogs (sinks/otel_logs.py): decisions as OTLP log records

    def __post_init__(self) -> None:
        self.tracer = self.provider.get_tracer(TRACER_NAME)
        self.tracer.id_generator = self.ids           # root spans get derived ids (trace_model)

    @classmethod
    def from_settings(cls, settings: OtelSettings, logs: Any = None) -> "TraceSink":
        provider, processor = build_provider(settings)
        return cls(provider=provider, processor=processor, id_namespace=settings.id_namespace, logs=logs)

    # -- input -------------------------------------------------------------------------------

    def handle(self, env: Envelope) -> None:
        if is_heartbeat(env.topic):
            return
        if env.topic == ANALYZER_CONTROL:
            self.reloads_seen += 1
            return
        for item in env.events:
            try:
                self._handle_one(env.topic, env.stream, item)
            except (records.RecordError, TypeError, ValueError) as exc:
                self.malformed += 1
                log.warning("dropped a malformed analyzer map | topic=%s stream=%s reason=%s",
                            env.topic, env.stream, exc)

    def _handle_one(self, topic: str, stream: str, item: Any) -> None:
        if not isinstance(item, Mapping):
            raise records.RecordError(f"map is {type(item).__name__}")
        sid = item.get("session_id")
        if isinstance(sid, bool) or not isinstance(sid, int):
            raise records.RecordError("no integer session_id")
        if sid in self.closed:
            self.late_messages += 1
            return
        _check_times(item)
        if isinstance(item.get("event"), Mapping):
            _check_times(item["event"])
        if topic == ANALYZER_EVENT:
            if item.get("hidden"):
                self.hidden_events += 1           # runtime noise: for the analyzer only
                return
            self._on_event(self._session(sid, stream, item, int(item.get("ts_ns") or 0)), item)
        elif topic == ANALYZER_DECISION:
            event = item.get("event") if isinstance(item.get("event"), Mapping) else {}
            ts = int(event.get("ts_ns") or item.get("ts_ns") or 0)
            self._on_decision(self._session(sid, stream, item, ts), item, event, ts)
        elif topic == ANALYZER_SESSION:
            self._on_lifecycle(sid, stream, item)
        elif topic == RESPONDER_RESULT:
            self._on_response(sid, item)

    def _on_response(self, sid: int, item: Mapping[str, Any]) -> None:
        """``response: <action>`` on the session's root span, at the time of the first signal
        (the triggering event's time in a dry run); a session not open here is late."""
        st = self.sessions.get(sid)
        if st is None:
            self.late_messages += 1
            return
        r = response_records.response_record(item)["response"]
        ts = int(item.get("ts_ns") or 0)
        if r["latency_ms"] is not None:
            ts += int(r["latency_ms"] * 1e6)
        attrs = {"casa.session.id": sid, "casa.response.action": r["action"],
                 "casa.response.dry_run": r["dry_run"], "casa.response.rules": r["rules"],
                 "casa.response.pids": r.get("pids") or r.get("would_signal") or [],
                 "casa.response.refused": [f"{x['pid']}: {x['reason']}" for x in r["refused"]],
                 "casa.response.errors": r["errors"]}
        for key in ("latency_ms", "done_ms"):
            if r[key] is not None:
                attrs[f"casa.response.{key}"] = r[key]
        st.root.add_event(f"response: {r['action']}" + (" (dry run)" if r["dry_run"] else ""),
                          attrs, timestamp=ts)

    def _session(self, sid: int, stream: str, item: Mapping[str, Any], start_ns: int,
                 leader: int = 0, opened: bool = False) -> SessionTrace:
        st = self.sessions.get(sid)
        if st is not None:
            return st
        attrs: dict[str, Any] = {"casa.session.id": sid, "casa.session.pid": leader,
                                 "casa.session.created_at": records.rfc3339nano(start_ns)}
        if item.get("profile"):
            attrs["casa.session.profile"] = otel_text(item.get("profile"))
        trace_id, first_root = session_ids(self.id_namespace, sid)
        links = []
        previous = self.suspended.pop(sid, None)
        if previous is not None:                  # continued after a pipeline restart
            attrs["casa.session.resumed"] = True
            links.append(trace_api.Link(previous, {"casa.link.kind": "resumed_from"}))
        elif not opened:                          # its first root span, if any, is not ours
            links.append(trace_api.Link(remote_context(trace_id, first_root),
                                        {"casa.link.kind": "earlier_part"}))
        # The session's own trace; its first root span gets the derived id, a later part (resumed,
        # joined midway) a random one in the same trace, so no two spans share an id.
        self.ids.pin(trace_id, first_root if opened and previous is None else None)
        root = self.tracer.start_span(f"session {sid}", context=Context(), attributes=attrs,
                                      start_time=start_ns, kind=trace_api.SpanKind.INTERNAL,
                                      links=links)
        # A session first seen without its "opened" map (sink restart, lost lifecycle message)
        # began before this sink saw it: part of its data is missing here, so it is incomplete.
        st = SessionTrace(session_id=sid, stream=stream, root=root, complete=opened or previous is not None)
        self.joined_midway += not st.complete
        self.sessions[sid] = st
        self._link_parent(st, item)
        while len(self.sessions) > MAX_OPEN_SESSIONS:
            old = next(iter(self.sessions.values()))
            self._finish(old, max(old.last_ts_ns, 1), "evicted")
        return st

    def _link_parent(self, st: SessionTrace, m: Mapping[str, Any]) -> None:
        """A link to the parent session's first root span, computed from its id (it may have been
        exported by an earlier process of this sink); once, from the first map that names it."""
        parent = _opt_int(m, "parent_session_id")
        if parent is None or st.parent_linked:
            return
        st.parent_linked = True
        st.root.set_attribute("casa.session.parent_id", parent)
        st.root.add_link(remote_context(*session_ids(self.id_namespace, parent)),
                         {"casa.link.kind": "parent_session", "casa.session.parent_id": parent})

    def _on_event(self, st: SessionTrace, event: Mapping[str, Any]) -> None:
        type_name = records.event_type(event)
        if type_name == "OTHER":
            return
        ts = int(event.get("ts_ns") or 0)
        attrs = event_attributes(event, st.session_id)
        st.last_ts_ns = max(st.last_ts_ns, ts)
        st.counts["accepted"] += 1
        st.counts[COUNT_NAMES[type_name]] = st.counts.get(COUNT_NAMES[type_name], 0) + 1
        tgid = int(event.get("tgid") or 0)
        if type_name == "EXECVE":
            self._start_process(st, event, tgid, ts, attrs)
        attrs["casa.event.seq"] = st.remember(ts, tgid, str(event["kind"]), st.processes.get(tgid))
        st.root.add_event(EVENT_NAMES[type_name], attrs, timestamp=ts)
        if type_name == "EXIT" and tgid in st.processes:
            span = st.processes.pop(tgid)
            span.set_attribute("process.exit_code", int(event.get("exit_code") or 0))
            span.end(end_time=ts)

    def _start_process(self, st: SessionTrace, event: Mapping[str, Any], tgid: int, ts: int,
                       event_attrs: dict[str, Any]) -> None:
        old = st.processes.pop(tgid, None)
        if old is not None:                       # the same process exec'd again: a new image
            old.set_attribute("casa.process.replaced_by_exec", True)
            old.end(end_time=ts)
            parent = st.parents.get(tgid, st.root)
        else:
            parent = self._parent_span(st, event)
        if len(st.parents) >= MAX_PROCESS_SPANS and tgid not in st.parents:
            self.process_spans_skipped += 1
            return
        path = otel_text(event.get("path"))
        attrs = {k: v for k, v in event_attrs.items() if not k.startswith("casa.event.")}
        if isinstance(event.get("depth"), int):
            attrs["casa.process.depth"] = event["depth"]
        span = self.tracer.start_span(f"process {_basename(path)}", attributes=attrs, start_time=ts,
                                      context=trace_api.set_span_in_context(parent))
        st.processes[tgid] = span
        st.parents[tgid] = parent

    def _parent_span(self, st: SessionTrace, event: Mapping[str, Any]) -> Span:
        """The nearest ancestor in the exec lineage (or ppid) that has a span; else the root."""
        lineage = event.get("lineage")
        chain: list[int] = []
        if isinstance(lineage, list):
            chain = [n.get("tgid") for n in lineage[1:] if isinstance(n, Mapping)]
        chain.append(event.get("ppid"))           # no lineage, or an ancestor outside it
        for tgid in chain:
            if isinstance(tgid, int) and tgid in st.processes:
                return st.processes[tgid]
        return st.root

    def _on_decision(self, st: SessionTrace, d: Mapping[str, Any], event: Mapping[str, Any],
                     ts: int) -> None:
        """``rule matched: <name>`` per newly triggered rule (with its evidence), then
        ``audit/alert emitted`` under the same conditions as audit.log/alert.log."""
        rules = d.get("triggered_rules") or []
        if not isinstance(rules, list):
            raise records.RecordError("triggered_rules is not a list")
        rules = [r for r in rules if isinstance(r, Mapping)]
        base = event_attributes(event, st.session_id) if event else {"casa.session.id": st.session_id}
        names = [otel_text(r.get("name")) for r in rules]
        decision = {"casa.decision.score": d.get("score", 0),
                    "casa.decision.action": otel_text(d.get("action")),
                    "casa.decision.log_threshold": d.get("log_threshold", 0),
                    "casa.decision.alert_threshold": d.get("alert_threshold", 0)}
        flags = flag_attributes(d.get("context"))
        evidence = evidence_refs(d.get("evidence"))
        for r, name in zip(rules, names):
            attrs = {**base, "casa.rule.name": name, "casa.rule.expr": otel_text(r.get("expr")),
                     "casa.rule.weight": int(r.get("weight") or 0),
                     "casa.rule.triggered_rule_count": len(names),
                     "casa.decision.triggered_rule_names": names, **decision, **flags,
                     **self._evidence(st, name, rule_fields(otel_text(r.get("expr")), evidence), evidence)}
            st.root.add_event(f"rule matched: {name}", attrs, timestamp=ts)
        if evidence:
            decision["casa.decision.evidence_fields"] = list(evidence)
        self._emission_events(st, d, {**base, **decision}, names, ts)
        self._update_totals(st, d)
        if self.logs is not None:
            self.logs.emit(d, st.session_id, ts)       # the alert now, not when the trace closes

    def _evidence(self, st: SessionTrace, rule: str, fields: list[str],
                  evidence: Mapping[str, list[Any]]) -> dict[str, Any]:
        """A rule's evidence as attributes: per field its references and the seq of each one's
        span event in this trace (0: not here -- an earlier session, hidden, or beyond the index);
        and a link from the root to the process span where each such event happened."""
        attrs: dict[str, Any] = {"casa.evidence.fields": fields} if fields else {}
        for name in fields:
            seqs = []
            for ref in evidence[name]:
                seq, ctx = st.events.get((ref.ts_ns, ref.tgid, ref.kind), (0, None))
                seqs.append(seq)
                if ctx is not None and st.evidence_links < MAX_EVIDENCE_LINKS:
                    st.evidence_links += 1
                    st.root.add_link(ctx, {"casa.link.kind": "evidence", "casa.rule.name": rule,
                                           "casa.evidence.field": name, "casa.evidence.ref": ref.text,
                                           "casa.event.seq": seq})
            attrs[f"casa.evidence.{name}"] = [ref.text for ref in evidence[name]]
            attrs[f"casa.evidence.{name}.event_seq"] = seqs
        return attrs

    def _emission_events(self, st: SessionTrace, d: Mapping[str, Any], base: dict[str, Any],
                         names: list[str], ts: int) -> None:
        """``audit emitted`` / ``alert emitted`` under the same conditions as audit.log/alert.log."""
        for kind, due in (("audit", decision_records.audit_due(d)), ("alert", decision_records.alert_due(d))):
            if due:
                st.root.add_event(f"{kind} emitted", {
                    **base, f"casa.{kind}.kind": kind, f"casa.{kind}.triggered_rule_count": len(names),
                    f"casa.{kind}.triggered_rule_names": names}, timestamp=ts)
                setattr(st, f"{kind}_emitted", True)

    def _update_totals(self, st: SessionTrace, m: Mapping[str, Any]) -> None:
        score = m.get("score")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            st.score = score
        action = otel_text(m.get("action")) if m.get("action") is not None else ""
        if ACTION_RANK.get(action, -1) > ACTION_RANK.get(st.action, 0):
            st.action = action
        if isinstance(m.get("context"), Mapping) and m.get("context"):
            st.context = m.get("context")
        self._set_summary(st)

    def _on_lifecycle(self, sid: int, stream: str, m: Mapping[str, Any]) -> None:
        state = m.get("state")
        created = int(m.get("created_ns") or 0) or self.wall_clock_ns()
        leader = int(m.get("leader_tgid") or 0)
        st = self._session(sid, stream, m, created, leader=leader, opened=state == "opened")
        self._link_parent(st, m)
        if _opt_int(m, "tree_id") is not None:
            st.root.set_attribute("casa.session.tree_id", m["tree_id"])
        if state == "opened":
            return
        if leader:
            st.root.set_attribute("casa.session.pid", leader)   # known even if joined late
        self._update_totals(st, m)
        if m.get("complete") is False:
            st.complete = False
        if m.get("incomplete_reason"):
            st.root.set_attribute("casa.session.incomplete_reason", otel_text(m.get("incomplete_reason")))
        st.root.set_attribute("casa.session.lost_events", int(m.get("lost_events") or 0))
        if isinstance(m.get("triggered_rules"), list):
            st.root.set_attribute("casa.session.triggered_rules",
                                  [otel_text(r) for r in m["triggered_rules"] if isinstance(r, (str, bytes))])
        if m.get("rules_version"):
            st.root.set_attribute("casa.rules_version", otel_text(m.get("rules_version")))
        if state == "closed":
            self._finish(st, int(m.get("closed_ns") or 0) or max(st.last_ts_ns, created), "closed")
        elif state == "shutdown":
            self._finish(st, self.wall_clock_ns(), "shutdown")
        elif state != "flushed":
            raise records.RecordError(f"unknown session state {state!r}")

    def _set_summary(self, st: SessionTrace) -> None:
        root = st.root
        root.set_attribute("casa.session.final_score", st.score)
        root.set_attribute("casa.session.final_action", st.action)
        root.set_attribute("casa.session.audit_emitted", st.audit_emitted)
        root.set_attribute("casa.session.alert_emitted", st.alert_emitted)
        for name, n in st.counts.items():
            root.set_attribute(f"casa.session.event_count.{name}", n)
        for key, value in flag_attributes(st.context).items():
            root.set_attribute(key, value)

    def _finish(self, st: SessionTrace, end_ns: int, reason: str) -> None:
        """End the open process spans, then the root, at ``end_ns``; forget the session."""
        for span in st.processes.values():
            span.set_attribute("casa.process.exited", False)
            span.end(end_time=max(end_ns, span.start_time or 0))
        st.processes.clear()
        self._set_summary(st)
        st.root.set_attribute("casa.session.closed_at", records.rfc3339nano(end_ns))
        st.root.set_attribute("casa.session.end_reason", reason)
        st.root.set_attribute("casa.session.complete", st.complete)
        st.root.end(end_time=max(end_ns, st.root.start_time or 0))
        self.sessions.pop(st.session_id, None)
        if reason == "shutdown":
            # The sessionizer stopped, not the session: if it continues after a restart, its new
            # root span links to this one instead of being dropped as late.
            self.suspended[st.session_id] = st.root.get_span_context()
            while len(self.suspended) > RECENTLY_CLOSED:
                del self.suspended[next(iter(self.suspended))]
        else:
            self.closed.add(st.session_id)
            self.closed_order.append(st.session_id)
            if len(self.closed_order) > RECENTLY_CLOSED:
                self.closed.discard(self.closed_order.popleft())

    def on_loss(self, stream: str, topic: str, lost: int) -> None:
        """Messages lost on ``stream``: its open sessions' traces are incomplete."""
        marked = [st.session_id for st in self.sessions.values() if st.stream == stream]
        for sid in marked:
            self.sessions[sid].complete = False
        log.warning("analyzer messages lost; open session traces marked incomplete | stream=%s "
                    "topic=%s lost=%d sessions=%s", stream, topic, lost, ",".join(map(str, marked)) or "-")

    # -- loop hooks --------------------------------------------------------------------------

    def accepted(self) -> tuple[int, ...]:
        """Ended spans handed to the export queue so far (sinks/checkpoint.py: durable positions),
        and decision log records likewise."""
        spans = self.processor.submitted if self.processor is not None else 0
        return (spans, self.logs.accepted()) if self.logs is not None else (spans,)

    def resolved(self) -> tuple[int, ...]:
        """Spans exported, or dropped and counted. Resolution is in queue order: the batch
        processor exports oldest first, and a failed batch is re-sent before any newer one.
        Log records likewise (a failed batch is dropped and counted)."""
        spans = 0
        if self.processor is not None:
            spans = self.processor.exporter.exported + self.processor.exporter.dropped
        return (spans, self.logs.resolved()) if self.logs is not None else (spans,)

    def held(self) -> int:
        """Events in traces still open: they leave the process only when their session closes."""
        return sum(st.counts["accepted"] for st in self.sessions.values())

    def drain(self) -> None:
        return None

    def reopen_all(self, why: str) -> None:
        return None

    def close(self) -> None:
        """Sink stopping: end open traces now (reason sink_shutdown), flush with a bounded wait."""
        now = self.wall_clock_ns()
        for st in list(self.sessions.values()):
            self._finish(st, now, "sink_shutdown")
        if self.processor is not None:
            self.processor.shutdown(SHUTDOWN_TIMEOUT_MS)
        self.provider.shutdown()
        if self.logs is not None:
            self.logs.shutdown()

    def counters(self) -> dict[str, int]:
        out = {"tracing_enabled": 1, "open_sessions": len(self.sessions), "malformed_maps": self.malformed,
               "late_messages": self.late_messages, "process_spans_skipped": self.process_spans_skipped,
               "reloads_seen": self.reloads_seen, "sessions_joined_midway": self.joined_midway,
               "hidden_events": self.hidden_events}
        if self.processor is not None:
            ex = self.processor.exporter
            out.update({"spans_exported": ex.exported, "spans_dropped": ex.dropped + self.processor.dropped,
                        "spans_retry_backlog": ex.retry_backlog, "export_failures": ex.failed_exports,
                        "spans_queued": self.processor.submitted - ex.received})
        if self.logs is not None:
            out.update(self.logs.counters())
        return out
