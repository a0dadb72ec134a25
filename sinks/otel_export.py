"""OTLP export plumbing of the trace sink: where to send, and how sending never slows the pipeline.

Settings (:class:`OtelSettings`): enabled when ``CASA_OTEL_EXPORTER_OTLP_ENDPOINT`` (fallbacks
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT``) is set. An endpoint
starting with ``http://`` or ``https://`` is a full URL (``http://127.0.0.1:4318/v1/traces``; a
URL with no path gets ``/v1/traces``); anything else is ``host:port`` and becomes
``http://host:port/v1/traces`` (``https`` when ``CASA_OTEL_EXPORTER_OTLP_INSECURE``/
``OTEL_EXPORTER_OTLP_INSECURE`` is false). Service name: ``CASA_OTEL_SERVICE_NAME``, then
``OTEL_SERVICE_NAME``, default ``casa``. Works unchanged against Jaeger all-in-one on :4318.

Export: ended spans go to a BatchSpanProcessor (its own thread) behind a bounded admission count
(:class:`BoundedProcessor`); failed exports are kept in a bounded retry buffer and re-sent when
the receiver is back (:class:`RetryingExporter`). Whatever is dropped is counted. What the spans
hold is the trace model's business (sinks/trace_model.py, sinks/otel.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

__all__ = ["OtelSettings", "resolve_endpoint", "RetryingExporter", "BoundedProcessor", "build_provider",
           "BoundedAdmission", "export_once", "DEFAULT_SERVICE", "SHUTDOWN_TIMEOUT_MS", "MAX_SPAN_EVENTS"]

DEFAULT_SERVICE = "casa"
TRACES_PATH = "/v1/traces"
EXPORT_TIMEOUT_S = 5.0              # one OTLP request, including the exporter's own retries
QUEUE_MAX_SPANS = 2048              # ended spans waiting for the export thread
RETRY_MAX_SPANS = 8192              # spans of failed exports kept for re-sending
RETRY_INTERVAL_S = 2.0
EXPORT_BATCH_SPANS = 256
SCHEDULE_DELAY_MS = 500
MAX_SPAN_EVENTS = 10_000            # span events kept on one root span (the rest counted by the SDK)
SHUTDOWN_TIMEOUT_MS = 5_000

log = logging.getLogger("casa.sinks")


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def resolve_endpoint(value: str, insecure: bool = True) -> str:
    """A full http(s) URL is used as given (``/v1/traces`` added if it has no path);
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
    """Where and as what to export.

    ``host`` names this machine in the resource (``host.name``) and, with the service name, in
    the namespace session trace ids are derived from (sinks/trace_model.py): two hosts exporting
    to one backend never share a trace id, and a restarted sink on this host derives the same.
    """

    endpoint: str
    service_name: str = DEFAULT_SERVICE
    timeout_s: float = EXPORT_TIMEOUT_S
    host: str = field(default_factory=socket.gethostname)

    @property
    def id_namespace(self) -> str:
        return f"{self.service_name}@{self.host}"

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


def export_once(inner: Any, batch: Sequence[Any], success: Any, what: str) -> bool:
    """One export request through ``inner``; True when it returned ``success``. An exception is
    logged and counts as a failure: an exporter bug must not kill the export thread."""
    try:
        return inner.export(batch) is success
    except Exception as exc:
        log.error("%s export raised | error=%s", what, exc)
        return False


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
        ok = export_once(self.inner, spans, SpanExportResult.SUCCESS, "span")
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


class BoundedAdmission:
    """The SDK's batch processor (``batch``, set by the subclass) behind an admission count we can
    read: at most ``max_queue`` items handed on and not yet received by the exporter wait; beyond
    that one is dropped here and counted (the SDK's own queue would drop it silently), and the
    pipeline's thread never blocks."""

    batch: Any

    def __init__(self, exporter: Any, max_queue: int) -> None:
        self.exporter = exporter
        self.max_queue = max_queue
        self.submitted = 0
        self.dropped = 0

    def admit(self) -> bool:
        if self.submitted - self.exporter.received >= self.max_queue:
            self.dropped += 1
            return False
        self.submitted += 1
        return True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.batch.force_flush(timeout_millis)


class BoundedProcessor(BoundedAdmission, SpanProcessor):
    """Ended spans to a BatchSpanProcessor, at most ``max_queue`` waiting (BoundedAdmission)."""

    def __init__(self, exporter: RetryingExporter, max_queue: int = QUEUE_MAX_SPANS) -> None:
        super().__init__(exporter, max_queue)
        self.batch = BatchSpanProcessor(exporter, max_queue_size=max_queue,
                                        schedule_delay_millis=SCHEDULE_DELAY_MS,
                                        max_export_batch_size=min(EXPORT_BATCH_SPANS, max_queue))

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.admit():
            self.batch.on_end(span)

    def shutdown(self, timeout_millis: int = SHUTDOWN_TIMEOUT_MS) -> None:
        """Export what is queued; if the receiver is down, stop trying after the first failure."""
        self.exporter.closing = True
        self.batch.shutdown()


def build_provider(settings: OtelSettings) -> tuple[TracerProvider, BoundedProcessor]:
    """A tracer provider exporting to ``settings.endpoint`` through the bounded processor."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    exporter = RetryingExporter(OTLPSpanExporter(endpoint=settings.endpoint, timeout=settings.timeout_s))
    processor = BoundedProcessor(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name,
                                                        "host.name": settings.host}),
                              span_limits=SpanLimits(max_events=MAX_SPAN_EVENTS))
    provider.add_span_processor(processor)
    return provider, processor
