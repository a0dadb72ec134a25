"""The OpenTelemetry sink: one trace per session, exported over OTLP/HTTP (casa-original.md §12).

Enabled when ``CASA_OTEL_EXPORTER_OTLP_ENDPOINT`` (fallbacks ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_EXPORTER_OTLP_ENDPOINT``) is set. An endpoint starting with ``http://`` or ``https://`` is
a full URL (``http://127.0.0.1:4318/v1/traces``; a URL with no path gets ``/v1/traces``);
anything else is ``host:port`` and becomes ``http://host:port/v1/traces`` (``https`` when
``CASA_OTEL_EXPORTER_OTLP_INSECURE``/``OTEL_EXPORTER_OTLP_INSECURE`` is false). Service name:
``CASA_OTEL_SERVICE_NAME``, then ``OTEL_SERVICE_NAME``, default ``casa``. Works unchanged
against Jaeger all-in-one on :4318.

The trace of session N:

    session N                      root span: session start (created_ns) -> close (closed_ns)
      span events                  process / file / network / exit, rule matched: <name>,
                                   audit emitted, alert emitted (the original's names/attributes)
      process <name> (tgid)        one child span per exec'd process, exec -> exit, nested by the
        process <name> (tgid)      exec lineage (a process under the nearest ancestor that has a span)

Every span and span event carries the real event time (ns), never the export time. The root span
ends with the final score and action, event counts, complete/lost_events and every context flag.

Export never blocks the pipeline: spans go to a BatchSpanProcessor (its own thread) behind a
bounded admission count; failed exports are kept in a bounded retry buffer and re-sent when the
receiver is back. Whatever is dropped is counted (``spans_dropped``) and reported in heartbeats.
Non-UTF-8 text is sent with ``\\udcXX`` escapes (protobuf strings must be UTF-8).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bus.envelope import Envelope
from bus.topics import ANALYZER_CONTROL, ANALYZER_DECISION, ANALYZER_EVENT, ANALYZER_SESSION, is_heartbeat
from sinks import records

__all__ = ["OtelSettings", "resolve_endpoint", "RetryingExporter", "BoundedProcessor", "TraceSink",
           "SessionTrace", "otel_text", "event_attributes", "flag_attributes", "TRACER_NAME"]

TRACER_NAME = "casa.sinks"
DEFAULT_SERVICE = "casa"
TRACES_PATH = "/v1/traces"
EXPORT_TIMEOUT_S = 5.0              # one OTLP request, including the exporter's own retries
QUEUE_MAX_SPANS = 2048              # ended spans waiting for the export thread
RETRY_MAX_SPANS = 8192              # spans of failed exports kept for re-sending
RETRY_INTERVAL_S = 2.0
EXPORT_BATCH_SPANS = 256
SCHEDULE_DELAY_MS = 500
MAX_SPAN_EVENTS = 10_000            # span events kept on one root span (the rest counted by the SDK)
MAX_OPEN_SESSIONS = 10_000
TIME_FIELDS = ("ts_ns", "created_ns", "updated_ns", "closed_ns")
TIME_LIMIT_NS = 1 << 64             # OTLP times are fixed64: one negative time fails a whole batch
MAX_PROCESS_SPANS = 2_000           # process spans per session; further execs are span events only
RECENTLY_CLOSED = 10_000            # closed ids remembered so late messages do not open a 2nd trace
SHUTDOWN_TIMEOUT_MS = 5_000

ACTION_RANK = {"IGNORE": 0, "LOG": 1, "ALERT": 2}
EVENT_NAMES = {"EXECVE": "process", "OPENAT": "file", "CONNECT": "network", "EXIT": "exit"}
COUNT_NAMES = {"EXECVE": "execve", "OPENAT": "openat", "CONNECT": "connect", "EXIT": "exit"}

log = logging.getLogger("casa.sinks")


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def resolve_endpoint(value: str, insecure: bool = True) -> str:
    """§12: a full http(s) URL is used as given (``/v1/traces`` added if it has no path);
    anything else is ``host:port`` (optionally with a path)."""
    value = value.strip()
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        if not parts.netloc:
            raise ValueError(f"OTLP endpoint {value!r} has no host")
        return value if parts.path not in ("", "/") else value.rstrip("/") + TRACES_PATH
    if not value or value.startswith("/"):
        raise ValueError(f"OTLP endpoint {value!r} is neither a URL nor host:port")
    scheme = "http" if insecure else "https"
    return f"{scheme}://{value}" if "/" in value else f"{scheme}://{value}{TRACES_PATH}"


@dataclass(frozen=True, slots=True)
class OtelSettings:
    """Where and as what to export."""

    endpoint: str
    service_name: str = DEFAULT_SERVICE
    timeout_s: float = EXPORT_TIMEOUT_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "OtelSettings | None":
        """None when no endpoint is set (tracing off). Raises ValueError for a bad endpoint."""
        env = os.environ if environ is None else environ
        raw = next((env[k] for k in ("CASA_OTEL_EXPORTER_OTLP_ENDPOINT",
                                     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
                    if env.get(k, "").strip()), None)
        if raw is None:
            return None
        insecure = _truthy(env.get("CASA_OTEL_EXPORTER_OTLP_INSECURE",
                                   env.get("OTEL_EXPORTER_OTLP_INSECURE")), True)
        service = (env.get("CASA_OTEL_SERVICE_NAME") or env.get("OTEL_SERVICE_NAME")
                   or DEFAULT_SERVICE)
        return cls(endpoint=resolve_endpoint(raw, insecure), service_name=service)


class RetryingExporter(SpanExporter):
    """Wraps the OTLP exporter: counts, and keeps failed batches (bounded) to re-send later.

    Runs on the export thread and its own retry thread, never on the pipeline's thread.
    """

    def __init__(self, inner: SpanExporter, max_retry_spans: int = RETRY_MAX_SPANS,
                 retry_interval_s: float = RETRY_INTERVAL_S) -> None:
        self.inner = inner
        self.max_retry_spans = max_retry_spans
        self.received = 0          # spans handed to us by the batch processor
        self.exported = 0          # spans the receiver accepted
        self.failed_exports = 0    # export requests that failed (each is retried)
        self.dropped = 0           # spans given up because the retry buffer was full
        self.closing = False       # set at shutdown: after one failure, keep instead of retrying
        self._last_failed = False
        self._retry: deque[ReadableSpan] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._retry_loop, args=(retry_interval_s,),
                                        name="casa-otel-retry", daemon=True)
        self._thread.start()

    @property
    def retry_backlog(self) -> int:
        return len(self._retry)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.received += len(spans)
            if self.closing and self._last_failed:     # shutting down and unreachable: no waiting
                self._keep(list(spans))
                return SpanExportResult.FAILURE
            if self._retry and not self._send_backlog():
                self._keep(list(spans))
                return SpanExportResult.FAILURE
            if self._send(list(spans)):
                return SpanExportResult.SUCCESS
            self._keep(list(spans))
            return SpanExportResult.FAILURE

    def _send(self, spans: list[ReadableSpan]) -> bool:
        try:
            ok = self.inner.export(spans) is SpanExportResult.SUCCESS
        except Exception as exc:       # an exporter bug must not kill the export thread
            log.error("span export raised | error=%s", exc)
            ok = False
        if ok:
            self.exported += len(spans)
        else:
            self.failed_exports += 1
        self._last_failed = not ok
        return ok

    def _send_backlog(self) -> bool:
        """Re-send kept spans oldest first; stop at the first failure. True when all are sent."""
        while self._retry:
            chunk = [self._retry[i] for i in range(min(EXPORT_BATCH_SPANS, len(self._retry)))]
            if not self._send(chunk):
                return False
            for _ in chunk:
                self._retry.popleft()
        log.info("trace receiver reachable again; kept spans sent | exported=%d dropped=%d",
                 self.exported, self.dropped)
        return True

    def _keep(self, spans: list[ReadableSpan]) -> None:
        self._retry.extend(spans)
        over = len(self._retry) - self.max_retry_spans
        for _ in range(max(over, 0)):
            self._retry.popleft()       # the oldest go first; counted
            self.dropped += 1
        log.warning("span export failed; spans kept for retry | kept=%d dropped=%d",
                    len(self._retry), self.dropped)

    def _retry_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            if self._retry:
                with self._lock:
                    if self._retry:
                        self._send_backlog()

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            if self._retry and not self._last_failed:
                self._send_backlog()
            if self._retry:
                log.error("trace receiver unreachable at shutdown; kept spans dropped | dropped=%d",
                          len(self._retry))
            self.dropped += len(self._retry)
            self._retry.clear()
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class BoundedProcessor(SpanProcessor):
    """A BatchSpanProcessor behind an admission count we can read: at most ``max_queue`` ended
    spans wait for export; beyond that a span is dropped here and counted, never blocking."""

    def __init__(self, exporter: RetryingExporter, max_queue: int = QUEUE_MAX_SPANS) -> None:
        self.exporter = exporter
        self.max_queue = max_queue
        self.submitted = 0
        self.dropped = 0
        self.batch = BatchSpanProcessor(exporter, max_queue_size=max_queue,
                                        schedule_delay_millis=SCHEDULE_DELAY_MS,
                                        max_export_batch_size=min(EXPORT_BATCH_SPANS, max_queue))

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.submitted - self.exporter.received >= self.max_queue:
            self.dropped += 1
            return
        self.submitted += 1
        self.batch.on_end(span)

    def shutdown(self, timeout_millis: int = SHUTDOWN_TIMEOUT_MS) -> None:
        """Export what is queued; if the receiver is down, stop trying after the first failure."""
        self.exporter.closing = True
        self.batch.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.batch.force_flush(timeout_millis)


def otel_text(value: Any) -> str:
    """Wire text -> a valid UTF-8 str for protobuf: non-UTF-8 bytes become ``\\udcXX`` escapes."""
    s = records.text(value)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def event_attributes(event: Mapping[str, Any], session_id: int) -> dict[str, Any]:
    """§12 span-event attributes of one accepted event."""
    type_name = records.event_type(event)
    ts_ns = int(event.get("ts_ns") or 0)
    attrs: dict[str, Any] = {
        "casa.session.id": session_id, "casa.event.type": type_name,
        "casa.event.timestamp": records.rfc3339nano(ts_ns),
        "process.pid": int(event.get("tgid") or 0), "process.parent_pid": int(event.get("ppid") or 0),
        "thread.id": int(event.get("tid") or 0), "user.id": int(event.get("uid") or 0),
    }
    comm = otel_text(event.get("comm"))
    if comm:
        attrs["process.command"] = comm
    if type_name == "EXECVE":
        attrs["process.executable.path"] = otel_text(event.get("path"))
        attrs["process.args"] = [otel_text(a) for a in event.get("argv") or []]
        exe = otel_text(event.get("exe"))
        if exe and exe != attrs["process.executable.path"]:
            attrs["casa.process.exe"] = exe
    elif type_name == "OPENAT":
        attrs.update({"file.path": otel_text(event.get("path")),
                      "file.flags": int(event.get("flags") or 0), "file.mode": int(event.get("mode") or 0)})
    elif type_name == "CONNECT":
        attrs.update({"server.address": otel_text(event.get("addr")),
                      "server.port": int(event.get("port") or 0)})
    return attrs


def flag_attributes(context: Any) -> dict[str, Any]:
    """``{"execution": {...}, ...}`` -> ``casa.execution.<flag>`` etc. (bool/int/float/str only)."""
    out: dict[str, Any] = {}
    if not isinstance(context, Mapping):
        return out
    for group in ("execution", "capability", "history"):
        flags = context.get(group)
        if isinstance(flags, Mapping):
            for name, value in flags.items():
                if isinstance(value, (bool, int, float, str)):
                    out[f"casa.{group}.{name}"] = value
    return out


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path


@dataclass(slots=True)
class SessionTrace:
    """The live trace of one session: its root span, process spans and running totals."""

    session_id: int
    stream: str
    root: Span
    processes: dict[int, Span] = field(default_factory=dict)
    parents: dict[int, Span] = field(default_factory=dict)   # tgid -> parent span of its span
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("accepted", "connect", "openat", "execve", "exit"), 0))
    score: int | float = 0
    action: str = "IGNORE"
    audit_emitted: bool = False
    alert_emitted: bool = False
    context: Any = None
    last_ts_ns: int = 0
    complete: bool = True


def _check_times(item: Mapping[str, Any]) -> None:
    """Times become span times: each must be a whole number of ns that OTLP can carry, or the
    exporter fails the whole batch (other sessions' spans too). None or 0 means "not known"."""
    for name in TIME_FIELDS:
        value = item.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < TIME_LIMIT_NS:
            raise records.RecordError(f"field {name!r} is not a time in ns: {value!r}")


@dataclass(slots=True)
class TraceSink:
    """Pure-ish core: analyzer envelopes -> spans on an injected tracer provider."""

    provider: TracerProvider
    processor: BoundedProcessor | None = None       # None in tests with their own processor
    wall_clock_ns: Callable[[], int] = time.time_ns
    sessions: OrderedDict[int, SessionTrace] = field(default_factory=OrderedDict)
    closed: set[int] = field(default_factory=set)                # recently closed session ids
    closed_order: deque[int] = field(default_factory=deque)      # ... oldest first, for eviction
    suspended: dict[int, Any] = field(default_factory=dict)   # sid -> root SpanContext at shutdown
    malformed: int = 0
    late_messages: int = 0
    process_spans_skipped: int = 0
    joined_midway: int = 0             # sessions first seen after their start (marked incomplete)
    reloads_seen: int = 0
    tracer: Any = None

    def __post_init__(self) -> None:
        self.tracer = self.provider.get_tracer(TRACER_NAME)

    @classmethod
    def from_settings(cls, settings: OtelSettings) -> "TraceSink":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = RetryingExporter(OTLPSpanExporter(endpoint=settings.endpoint,
                                                     timeout=settings.timeout_s))
        processor = BoundedProcessor(exporter)
        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}),
                                  span_limits=SpanLimits(max_events=MAX_SPAN_EVENTS))
        provider.add_span_processor(processor)
        return cls(provider=provider, processor=processor)

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
            self._on_event(self._session(sid, stream, item, int(item.get("ts_ns") or 0)), item)
        elif topic == ANALYZER_DECISION:
            event = item.get("event") if isinstance(item.get("event"), Mapping) else {}
            ts = int(event.get("ts_ns") or item.get("ts_ns") or 0)
            self._on_decision(self._session(sid, stream, item, ts), item, event, ts)
        elif topic == ANALYZER_SESSION:
            self._on_lifecycle(sid, stream, item)

    def _session(self, sid: int, stream: str, item: Mapping[str, Any], start_ns: int,
                 leader: int = 0, opened: bool = False) -> SessionTrace:
        st = self.sessions.get(sid)
        if st is not None:
            return st
        attrs: dict[str, Any] = {"casa.session.id": sid, "casa.session.pid": leader,
                                 "casa.session.created_at": records.rfc3339nano(start_ns)}
        if item.get("profile"):
            attrs["casa.session.profile"] = otel_text(item.get("profile"))
        links = []
        previous = self.suspended.pop(sid, None)
        if previous is not None:                  # continued after a pipeline restart
            attrs["casa.session.resumed"] = True
            links.append(trace_api.Link(previous))
        root = self.tracer.start_span(f"session {sid}", context=Context(), attributes=attrs,
                                      start_time=start_ns, kind=trace_api.SpanKind.INTERNAL,
                                      links=links)
        # A session first seen without its "opened" map (sink restart, lost lifecycle message)
        # began before this sink saw it: part of its data is missing here, so it is incomplete.
        st = SessionTrace(session_id=sid, stream=stream, root=root, complete=opened or bool(links))
        self.joined_midway += not st.complete
        self.sessions[sid] = st
        while len(self.sessions) > MAX_OPEN_SESSIONS:
            old = next(iter(self.sessions.values()))
            self._finish(old, max(old.last_ts_ns, 1), "evicted")
        return st

    def _on_event(self, st: SessionTrace, event: Mapping[str, Any]) -> None:
        type_name = records.event_type(event)
        if type_name == "OTHER":
            return
        ts = int(event.get("ts_ns") or 0)
        st.last_ts_ns = max(st.last_ts_ns, ts)
        st.counts["accepted"] += 1
        st.counts[COUNT_NAMES[type_name]] += 1
        st.root.add_event(EVENT_NAMES[type_name], event_attributes(event, st.session_id), timestamp=ts)
        tgid = int(event.get("tgid") or 0)
        if type_name == "EXECVE":
            self._start_process(st, event, tgid, ts)
        elif type_name == "EXIT" and tgid in st.processes:
            span = st.processes.pop(tgid)
            span.set_attribute("process.exit_code", int(event.get("exit_code") or 0))
            span.end(end_time=ts)

    def _start_process(self, st: SessionTrace, event: Mapping[str, Any], tgid: int, ts: int) -> None:
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
        attrs = {k: v for k, v in event_attributes(event, st.session_id).items()
                 if not k.startswith("casa.event.")}
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
        """``rule matched: <name>`` per newly triggered rule, then ``audit/alert emitted`` (§12)."""
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
        for r in rules:
            attrs = {**base, "casa.rule.name": otel_text(r.get("name")),
                     "casa.rule.expr": otel_text(r.get("expr")),
                     "casa.rule.weight": int(r.get("weight") or 0),
                     "casa.rule.triggered_rule_count": len(names),
                     "casa.decision.triggered_rule_names": names, **decision, **flags}
            st.root.add_event(f"rule matched: {otel_text(r.get('name'))}", attrs, timestamp=ts)
        self._emission_events(st, d, {**base, **decision}, names, ts)
        self._update_totals(st, d)

    def _emission_events(self, st: SessionTrace, d: Mapping[str, Any], base: dict[str, Any],
                         names: list[str], ts: int) -> None:
        """``audit emitted`` / ``alert emitted`` under the same conditions as audit.log/alert.log."""
        for kind, due in (("audit", records.audit_due(d)), ("alert", records.alert_due(d))):
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
        if state == "opened":
            return
        if leader:
            st.root.set_attribute("casa.session.pid", leader)   # known even if joined late
        self._update_totals(st, m)
        if m.get("complete") is False:
            st.complete = False
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
        """Ended spans handed to the export queue so far (sinks/checkpoint.py: durable positions)."""
        return (self.processor.submitted if self.processor is not None else 0,)

    def resolved(self) -> tuple[int, ...]:
        """Spans exported, or dropped and counted. Resolution is in queue order: the batch
        processor exports oldest first, and a failed batch is re-sent before any newer one."""
        if self.processor is None:
            return (0,)
        ex = self.processor.exporter
        return (ex.exported + ex.dropped,)

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

    def counters(self) -> dict[str, int]:
        out = {"tracing_enabled": 1, "open_sessions": len(self.sessions), "malformed_maps": self.malformed,
               "late_messages": self.late_messages, "process_spans_skipped": self.process_spans_skipped,
               "reloads_seen": self.reloads_seen, "sessions_joined_midway": self.joined_midway}
        if self.processor is not None:
            ex = self.processor.exporter
            out.update({"spans_exported": ex.exported, "spans_dropped": ex.dropped + self.processor.dropped,
                        "spans_retry_backlog": ex.retry_backlog, "export_failures": ex.failed_exports,
                        "spans_queued": self.processor.submitted - ex.received})
        return out
