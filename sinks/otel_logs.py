"""OTLP log records of decisions: the trace sink's alerts, for a fleet's OpenTelemetry Collector.

A trace reaches the backend when its session closes; an alert must not wait for that. So each
decision at or above ``notify.otel_logs.min_action`` (config/casa.json; the alert.log / audit.log
rule, sinks/notify.py ``due_action``) is also exported at once as one OTLP log record to the
same receiver, ``/v1/logs`` next to the traces' ``/v1/traces``
(``CASA_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` override it):

* time: the triggering event's; severity ``ERROR`` for ALERT, ``INFO`` for LOG, with the
  action as severity text; event name ``casa.decision``;
* body: the notification's one-line summary (session, score, rules, the event);
* attributes: ``casa.session.id``, ``casa.decision.{action,score,log_threshold,alert_threshold,
  triggered_rule_names}``, ``casa.rules_version``, the event's attributes as in the trace, and
  the evidence (``casa.evidence.fields``, ``casa.evidence.<group>.<field>`` as text);
* trace id and span id: the session's trace and its first root span, derived from the session
  id (sinks/trace_model.py ``session_ids``), so a backend links the alert to its trace before
  that trace has even arrived.

Records go through the SDK's BatchLogRecordProcessor behind an admission bound (as spans do,
sinks/otel_export.py); a record refused by the bound or in an export that failed is counted
(``log_records_dropped``; failed requests ``log_export_failures``). There is no retry buffer:
the OTLP exporter retries within its timeout, and a record that still fails is lost and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from sinks.notify import due_action, notification
from sinks.otel_export import BoundedAdmission, export_once
from sinks.trace_model import event_attributes, evidence_refs, otel_text, session_ids

__all__ = ["DecisionLogs", "CountingLogExporter", "BoundedLogProcessor", "logs_endpoint", "build_decision_logs",
           "SEVERITY", "LOGGER_NAME"]

LOGGER_NAME = "casa.sinks.decisions"
SEVERITY = {"ALERT": SeverityNumber.ERROR, "LOG": SeverityNumber.INFO}
QUEUE_MAX_RECORDS = 2048
SCHEDULE_DELAY_MS = 200

log = logging.getLogger("casa.sinks")


def logs_endpoint(traces_endpoint: str, environ: Mapping[str, str]) -> str:
    """The logs URL: an explicit logs endpoint, else the traces URL with ``/v1/logs``."""
    for key in ("CASA_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        if environ.get(key, "").strip():
            return environ[key].strip()
    if traces_endpoint.endswith("/v1/traces"):
        return traces_endpoint[: -len("/v1/traces")] + "/v1/logs"
    return traces_endpoint.rstrip("/") + "/v1/logs"


class CountingLogExporter(LogRecordExporter):
    """Wraps the OTLP log exporter and counts; runs on the batch processor's thread."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner
        self.received = 0
        self.exported = 0
        self.dropped = 0
        self.failed_exports = 0
        self._lock = threading.Lock()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = export_once(self.inner, batch, LogRecordExportResult.SUCCESS, "log record")
        with self._lock:
            self.received += len(batch)
            if ok:
                self.exported += len(batch)
            else:
                self.failed_exports += 1
                self.dropped += len(batch)
                log.error("OTLP log export failed; decision log records lost | records=%d dropped=%d",
                          len(batch), self.dropped)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class BoundedLogProcessor(BoundedAdmission, LogRecordProcessor):
    """Decision log records to the SDK's batch processor, at most ``max_queue`` waiting
    (sinks/otel_export.py BoundedAdmission)."""

    def __init__(self, exporter: CountingLogExporter, max_queue: int = QUEUE_MAX_RECORDS) -> None:
        super().__init__(exporter, max_queue)
        self.batch = BatchLogRecordProcessor(exporter, schedule_delay_millis=SCHEDULE_DELAY_MS,
                                             max_queue_size=max_queue, max_export_batch_size=min(512, max_queue))

    def on_emit(self, log_record: Any) -> None:
        if self.admit():
            self.batch.on_emit(log_record)

    def shutdown(self) -> None:
        self.batch.shutdown()


@dataclass(slots=True)
class DecisionLogs:
    """Decision maps -> OTLP log records (module doc). Called from the trace sink's thread."""

    provider: LoggerProvider
    processor: BoundedLogProcessor | None
    min_action: str
    id_namespace: str
    hostname: str = ""
    wall_clock_ns: Callable[[], int] = time.time_ns
    logger: Any = field(init=False)

    def __post_init__(self) -> None:
        self.logger = self.provider.get_logger(LOGGER_NAME)

    def emit(self, d: Mapping[str, Any], session_id: int, ts_ns: int) -> bool:
        """One record for ``d`` if it is due; True when emitted. Raises RecordError if malformed."""
        action = due_action(d, self.min_action)
        if action is None:
            return False
        payload = notification(d, action, self.hostname)
        trace_id, span_id = session_ids(self.id_namespace, session_id)
        ctx = trace_api.set_span_in_context(trace_api.NonRecordingSpan(trace_api.SpanContext(
            trace_id, span_id, is_remote=True, trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED))))
        self.logger.emit(timestamp=ts_ns or None, observed_timestamp=self.wall_clock_ns(), context=ctx,
                         severity_number=SEVERITY[action], severity_text=action, event_name="casa.decision",
                         body=otel_text(payload["output"]), attributes=self._attributes(d, session_id, payload))
        return True

    @staticmethod
    def _attributes(d: Mapping[str, Any], session_id: int, payload: Mapping[str, Any]) -> dict[str, Any]:
        decision = payload["record"]["decision"]
        attrs: dict[str, Any] = {}
        if isinstance(d.get("event"), Mapping):
            attrs.update(event_attributes(d["event"], session_id))
        attrs.update({"casa.session.id": session_id, "casa.decision.action": payload["action"],
                      "casa.decision.score": decision["score"],
                      "casa.decision.log_threshold": decision["log_threshold"],
                      "casa.decision.alert_threshold": decision["alert_threshold"],
                      "casa.decision.triggered_rule_names": [otel_text(n) for n in payload["rule_names"]],
                      "casa.rules_version": otel_text(decision["rules_version"])})
        evidence = evidence_refs(d.get("evidence"))
        if evidence:
            attrs["casa.evidence.fields"] = list(evidence)
            attrs.update({f"casa.evidence.{name}": [r.text for r in refs] for name, refs in evidence.items()})
        return attrs

    def accepted(self) -> int:
        """Records handed to the export queue (one refused by the bound is done at once: counted)."""
        return self.processor.submitted if self.processor else 0

    def resolved(self) -> int:
        """Queued records exported, or dropped and counted (in order: batches leave oldest first)."""
        if self.processor is None:
            return 0
        ex = self.processor.exporter
        return ex.exported + ex.dropped

    def counters(self) -> dict[str, int]:
        if self.processor is None:
            return {}
        ex = self.processor.exporter
        return {"log_records_exported": ex.exported, "log_records_dropped": ex.dropped + self.processor.dropped,
                "log_export_failures": ex.failed_exports,
                "log_records_queued": self.processor.submitted - ex.received}

    def shutdown(self) -> None:
        self.provider.shutdown()


def build_decision_logs(endpoint: str, service_name: str, host: str, id_namespace: str, min_action: str,
                        timeout_s: float) -> DecisionLogs:
    """Decision logs exported over OTLP/HTTP to ``endpoint`` (a full ``.../v1/logs`` URL)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    processor = BoundedLogProcessor(CountingLogExporter(OTLPLogExporter(endpoint=endpoint, timeout=timeout_s)))
    provider = LoggerProvider(resource=Resource.create({"service.name": service_name, "host.name": host}))
    provider.add_log_record_processor(processor)
    return DecisionLogs(provider, processor, min_action, id_namespace, hostname=host)
