"""A real OTLP/HTTP trace receiver for tests: decodes ExportTraceServiceRequest (protobuf or
JSON, gzip or deflate aware) and keeps the spans as plain dicts.

    with OtlpReceiver() as rx:                      # 127.0.0.1, a free port
        os.environ["CASA_OTEL_EXPORTER_OTLP_ENDPOINT"] = rx.url     # http://127.0.0.1:N/v1/traces
        ...
        spans = rx.wait_for(lambda s: any(x["name"] == "session 1" for x in s))

It also accepts OTLP log records on POST /v1/logs (ExportLogsServiceRequest):
``rx.log_records()`` / ``rx.wait_for_logs(pred)``, each record a dict with its trace and span ids.

Reusable by other suites (stack, evaluation): import ``tests.sinks.otlp_receiver``. Restart on the
same port with ``OtlpReceiver(port=old.port)`` to test a receiver that was down.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest, ExportLogsServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.harness.http_servers import LocalHttpServer
from tests.harness.polling import wait_for

__all__ = ["OtlpReceiver", "any_value", "flatten", "flatten_logs", "LOGS_PATH"]

LOGS_PATH = "/v1/logs"


def any_value(v: AnyValue) -> Any:
    """An OTLP AnyValue as a Python value (lists for arrays)."""
    which = v.WhichOneof("value")
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def flatten(req: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """Every span of a request as a dict: name, ids (hex), times (ns), attributes, events, links,
    resource."""
    out = []
    for rs in req.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                out.append({
                    "name": sp.name, "trace_id": sp.trace_id.hex(), "span_id": sp.span_id.hex(),
                    "parent_span_id": sp.parent_span_id.hex(), "start_ns": sp.start_time_unix_nano,
                    "end_ns": sp.end_time_unix_nano, "attributes": _attrs(sp.attributes),
                    "events": [{"name": e.name, "time_ns": e.time_unix_nano,
                                "attributes": _attrs(e.attributes)} for e in sp.events],
                    "links": [{"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex(),
                               "attributes": _attrs(ln.attributes)} for ln in sp.links],
                    "dropped_events": sp.dropped_events_count, "resource": resource,
                    "scope": ss.scope.name})
    return out


def flatten_logs(req: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    """Every log record of a request as a dict: time, severity, body, attributes, ids (hex)."""
    out = []
    for rl in req.resource_logs:
        resource = _attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append({"time_ns": r.time_unix_nano, "severity_number": r.severity_number,
                            "severity_text": r.severity_text, "body": any_value(r.body),
                            "attributes": _attrs(r.attributes), "trace_id": r.trace_id.hex(),
                            "span_id": r.span_id.hex(), "event_name": r.event_name,
                            "resource": resource, "scope": sl.scope.name})
    return out


class OtlpReceiver(LocalHttpServer):
    """A ThreadingHTTPServer accepting POST /v1/traces; thread-safe accessors."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, path: str = "/v1/traces") -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.log_requests: list[ExportLogsServiceRequest] = []
        self.encodings: list[str] = []
        super().__init__(path, host, port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def handle_post(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        encoding = (h.headers.get("Content-Encoding") or "").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            req = ExportLogsServiceRequest() if h.path == LOGS_PATH else ExportTraceServiceRequest()
            if "json" in (h.headers.get("Content-Type") or ""):
                json_format.Parse(body.decode(), req)
            else:
                req.ParseFromString(body)
        except Exception as exc:  # a bad request is the client's bug: answer 400, keep serving
            h.send_response(400)
            h.end_headers()
            h.wfile.write(str(exc).encode())
            return
        if h.path not in (self.path, LOGS_PATH):
            h.send_response(404)
            h.end_headers()
            return
        with self._lock:
            if isinstance(req, ExportLogsServiceRequest):
                self.log_requests.append(req)
                payload = ExportLogsServiceResponse().SerializeToString()
            else:
                self.requests.append(req)
                self.encodings.append(encoding or "identity")
                payload = ExportTraceServiceResponse().SerializeToString()
        h.send_response(200)
        h.send_header("Content-Type", "application/x-protobuf")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            reqs = list(self.requests)
        return [s for r in reqs for s in flatten(r)]

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], Any], timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Spans once ``pred(spans)`` is true; AssertionError with what arrived on timeout."""
        (spans,) = wait_for(lambda: (got,) if pred(got := self.spans()) else None, timeout_s,
                            lambda: f"OTLP receiver: condition on spans; got {[s['name'] for s in self.spans()]}")
        return spans

    def log_records(self) -> list[dict[str, Any]]:
        with self._lock:
            reqs = list(self.log_requests)
        return [r for req in reqs for r in flatten_logs(req)]

    def wait_for_logs(self, pred: Callable[[list[dict[str, Any]]], Any],
                      timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Log records once ``pred(records)`` is true; AssertionError on timeout."""
        (records,) = wait_for(lambda: (got,) if pred(got := self.log_records()) else None, timeout_s,
                              lambda: f"OTLP receiver: condition on logs; got {len(self.log_records())} records")
        return records
