"""Decisions as OTLP log records, into the real OTLP receiver the trace tests use: in-process
(severity, body, attributes, evidence, ids) and from the real ``python -m sinks otel`` process,
where the record's trace id is the session's trace."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from bus.envelope import Envelope
from bus.topics import ANALYZER_DECISION, ANALYZER_SESSION
from sinks.otel import TraceSink
from sinks.otel_logs import build_decision_logs, logs_endpoint
from sinks.trace_model import session_ids
from tests.sinks.otlp_receiver import OtlpReceiver
from tests.sinks.sink_maps import readme_decision, readme_session, session_map
from tests.sinks.test_main_otel import OtelRig
from tests.sinks.bus_harness import wait_for

NS = "casa-test@host-a"


@pytest.fixture
def receiver() -> Any:
    rx = OtlpReceiver()
    yield rx
    rx.close()


def trace_sink(rx: OtlpReceiver, min_action: str = "ALERT") -> TraceSink:
    logs = build_decision_logs(logs_endpoint(rx.url, {}), "casa-test", "host-a", NS, min_action, 5.0)
    return TraceSink(provider=TracerProvider(), id_namespace=NS, logs=logs)


def env(topic: str, *maps: dict[str, Any]) -> Envelope:
    return Envelope(topic, "analyzer-0", 1, 1, 0, list(maps))


def test_logs_endpoint_sits_next_to_the_traces() -> None:
    assert logs_endpoint("http://h:4318/v1/traces", {}) == "http://h:4318/v1/logs"
    assert logs_endpoint("http://h:4318/custom", {}) == "http://h:4318/custom/v1/logs"
    assert logs_endpoint("http://h/v1/traces", {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://x/l"}) == "http://x/l"


def test_an_alert_becomes_one_error_log_record_with_the_sessions_trace_id(receiver: OtlpReceiver) -> None:
    evidence = {"history.write_then_exec_same_path": [
        {"ts_ns": 1777761856_515509477, "tgid": 4200, "kind": "open", "path": "/tmp/openclaw-eval/helper.sh"}]}
    sink = trace_sink(receiver)
    try:
        sink.handle(env(ANALYZER_SESSION, session_map("opened")))
        sink.handle(env(ANALYZER_DECISION, readme_decision(evidence=evidence),
                        readme_decision(score=5, action="LOG", triggered_rules=[{"name": "r", "weight": 5}])))
        (rec,) = receiver.wait_for_logs(lambda r: len(r) >= 1)
        assert wait_for(lambda: sink.counters()["log_records_exported"] == 1, what="exported count")
    finally:
        sink.close()
    trace_id, span_id = session_ids(NS, 25)
    assert (rec["trace_id"], rec["span_id"]) == (f"{trace_id:032x}", f"{span_id:016x}")
    assert rec["severity_text"] == "ALERT" and rec["severity_number"] == 17       # ERROR
    assert rec["event_name"] == "casa.decision" and rec["time_ns"] == readme_decision()["ts_ns"]
    assert "session 25" in rec["body"] and "write_then_exec_same_path" in rec["body"]
    a = rec["attributes"]
    assert a["casa.session.id"] == 25 and a["casa.decision.score"] == 9
    assert a["casa.decision.triggered_rule_names"] == ["write_then_exec_same_path",
                                                       "write_then_exec_from_suspicious_path"]
    assert a["process.executable.path"] == "/tmp/openclaw-eval/helper.sh"
    assert a["casa.evidence.fields"] == ["history.write_then_exec_same_path"]
    assert "OPENAT pid=4200 /tmp/openclaw-eval/helper.sh" in a["casa.evidence.history.write_then_exec_same_path"][0]
    assert rec["resource"]["service.name"] == "casa-test"
    assert sink.counters()["log_records_dropped"] == 0 and sink.resolved() == sink.accepted()


def test_at_min_action_log_a_log_decision_is_an_info_record(receiver: OtlpReceiver) -> None:
    sink = trace_sink(receiver, "LOG")
    try:
        sink.handle(env(ANALYZER_DECISION, readme_decision(score=5, action="LOG")))
        (rec,) = receiver.wait_for_logs(lambda r: len(r) >= 1)
    finally:
        sink.close()
    assert rec["severity_text"] == "LOG" and rec["severity_number"] == 9          # INFO


def test_a_receiver_that_is_down_loses_the_record_and_counts_it() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    logs = build_decision_logs(f"http://127.0.0.1:{port}/v1/logs", "casa-test", "h", NS, "ALERT", 1.0)
    sink = TraceSink(provider=TracerProvider(), id_namespace=NS, logs=logs)
    try:
        sink.handle(env(ANALYZER_DECISION, readme_decision()))
        assert wait_for(lambda: sink.counters()["log_records_dropped"] == 1, timeout_s=30, what="dropped")
    finally:
        sink.close()
    c = sink.counters()
    assert c["log_export_failures"] >= 1 and c["log_records_exported"] == 0
    assert sink.resolved() == sink.accepted()                 # lost and counted: done


def test_the_otel_process_exports_the_alert_as_a_log_record_in_the_sessions_trace(
        tmp_path: Path, receiver: OtlpReceiver) -> None:
    rig = OtelRig(tmp_path, receiver.url)
    try:
        rig.play(readme_session())
        (rec,) = receiver.wait_for_logs(lambda r: len(r) >= 1)
        spans = receiver.wait_for(lambda s: any(x["name"] == "session 25" for x in s))
        assert wait_for(lambda: rig.hb.poll().get("log_records_exported") == 1, what="heartbeat")
    finally:
        code, err = rig.close()
    assert code == 0, err
    root = next(s for s in spans if s["name"] == "session 25")
    assert rec["trace_id"] == root["trace_id"] and rec["span_id"] == root["span_id"]
    assert rec["severity_text"] == "ALERT" and rec["attributes"]["casa.session.id"] == 25
    assert "exporting decisions as OTLP log records" in err
