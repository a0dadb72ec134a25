"""The trace builder (sinks/otel.py) on an in-memory exporter: names, nesting, times, attributes."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bus.envelope import Envelope
from sinks.otel import OtelSettings, TraceSink, otel_text, resolve_endpoint
from tests.sinks.sink_maps import (MS, README_ALERT_TS_NS, T0, exec_event, readme_decision,
                                   readme_session, session_map)


def envelope(topic: str, maps: list[dict[str, Any]], stream: str = "analyzer-0") -> Envelope:
    return Envelope(topic=topic, stream=stream, epoch=1, seq=1, sent_ns=1, events=maps)


@pytest.fixture
def built() -> tuple[TraceSink, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return TraceSink(provider=provider, wall_clock_ns=lambda: README_ALERT_TS_NS + 99 * MS), exporter


def by_name(spans: Any) -> dict[str, Any]:
    return {s.name: s for s in spans}


def test_readme_session_trace(built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    for topic, m in readme_session():
        sink.handle(envelope(topic, [m]))
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"session 25", "process node", "process bash", "process helper.sh"}
    root, node, bash, helper = (spans[n] for n in ("session 25", "process node", "process bash",
                                                   "process helper.sh"))
    assert root.parent is None
    assert node.parent.span_id == root.context.span_id
    assert bash.parent.span_id == node.context.span_id
    assert helper.parent.span_id == bash.context.span_id
    assert len({s.context.trace_id for s in spans.values()}) == 1
    assert (root.start_time, root.end_time) == (T0, README_ALERT_TS_NS + 5 * MS)
    assert (node.start_time, node.end_time) == (T0 + MS, README_ALERT_TS_NS + 5 * MS)
    assert (bash.start_time, bash.end_time) == (T0 + 2 * MS, README_ALERT_TS_NS + 2 * MS)
    assert (helper.start_time, helper.end_time) == (README_ALERT_TS_NS, README_ALERT_TS_NS + MS)
    assert node.attributes["casa.process.exited"] is False
    assert helper.attributes["process.exit_code"] == 0
    assert helper.attributes["process.executable.path"] == "/tmp/openclaw-eval/helper.sh"
    assert [e.name for e in root.events] == [
        "process", "process", "file", "process", "rule matched: write_then_exec_same_path",
        "rule matched: write_then_exec_from_suspicious_path", "audit emitted", "alert emitted",
        "exit", "exit", "network"]
    assert [e.timestamp for e in root.events][:4] == [T0 + MS, T0 + 2 * MS, T0 + 3 * MS, README_ALERT_TS_NS]
    a = root.attributes
    assert a["casa.session.id"] == 25 and a["casa.session.pid"] == 4100
    assert a["casa.session.final_score"] == 9 and a["casa.session.final_action"] == "ALERT"
    assert a["casa.session.audit_emitted"] is True and a["casa.session.alert_emitted"] is True
    assert {k.rsplit(".", 1)[1]: a[k] for k in a if k.startswith("casa.session.event_count.")} == {
        "accepted": 7, "execve": 3, "openat": 1, "exit": 2, "connect": 1}
    assert a["casa.history.write_then_exec_same_path"] is True
    assert a["casa.capability.dangerous_count"] == 0 and a["casa.session.complete"] is True
    assert a["casa.session.closed_at"].endswith("Z") or a["casa.session.closed_at"][-6] in "+-"


def test_span_event_attributes_follow_the_original(built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    for topic, m in readme_session():
        sink.handle(envelope(topic, [m]))
    root = by_name(exporter.get_finished_spans())["session 25"]
    events = {e.name: e for e in root.events}
    f = events["file"].attributes
    assert f["file.path"] == "/tmp/openclaw-eval/\\udcffodd\nname"       # escaped, valid UTF-8
    assert (f["file.flags"], f["file.mode"], f["casa.event.type"]) == (0x241, 0o755, "OPENAT")
    n = events["network"].attributes
    assert (n["server.address"], n["server.port"], n["process.pid"]) == ("127.0.0.1", 18000, 4100)
    p = events["process"].attributes
    assert {"casa.session.id", "casa.event.type", "casa.event.timestamp", "process.pid",
            "process.parent_pid", "thread.id", "user.id", "process.command",
            "process.executable.path", "process.args"} <= set(p)
    r = events["rule matched: write_then_exec_same_path"].attributes
    assert (r["casa.rule.name"], r["casa.rule.weight"], r["casa.rule.triggered_rule_count"]) == (
        "write_then_exec_same_path", 5, 2)
    assert r["casa.decision.score"] == 9 and r["casa.decision.action"] == "ALERT"
    assert r["casa.decision.triggered_rule_names"] == ("write_then_exec_same_path",
                                                       "write_then_exec_from_suspicious_path")
    assert r["casa.execution.suspicious_path_exec"] is True
    al = events["alert emitted"].attributes
    assert al["casa.alert.kind"] == "alert" and al["casa.alert.triggered_rule_count"] == 2
    assert al["casa.decision.alert_threshold"] == 9 and al["process.executable.path"].endswith("helper.sh")


def test_loss_and_late_join_mark_the_trace_incomplete(built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    sink.handle(envelope("analyzer.session", [session_map("opened", session_id=1, created_ns=T0)]))
    sink.on_loss("analyzer-0", "analyzer.event", 2)
    sink.handle(envelope("analyzer.event", [exec_event(session_id=2, ts_ns=T0 + MS)]))   # joined late
    sink.handle(envelope("analyzer.session", [session_map("opened", session_id=3, created_ns=T0)]))
    for sid in (1, 2, 3):
        sink.handle(envelope("analyzer.session", [session_map("closed", session_id=sid, created_ns=T0,
                                                              closed_ns=T0 + 9 * MS)]))
    roots = {s.name: s.attributes["casa.session.complete"] for s in exporter.get_finished_spans()
             if s.name.startswith("session")}
    assert roots == {"session 1": False, "session 2": False, "session 3": True}


def test_late_messages_never_open_a_second_trace(built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    sink.handle(envelope("analyzer.session", [session_map("opened", created_ns=T0)]))
    sink.handle(envelope("analyzer.session", [session_map("closed", created_ns=T0, closed_ns=T0 + MS)]))
    sink.handle(envelope("analyzer.event", [exec_event()]))
    assert sink.late_messages == 1 and len(exporter.get_finished_spans()) == 1


def test_shutdown_ends_open_traces(built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    sink.handle(envelope("analyzer.session", [session_map("opened", created_ns=T0)]))
    sink.handle(envelope("analyzer.event", [exec_event(ts_ns=T0 + MS)]))
    sink.close()
    spans = by_name(exporter.get_finished_spans())
    assert spans["session 25"].end_time == README_ALERT_TS_NS + 99 * MS
    assert spans["session 25"].attributes["casa.session.end_reason"] == "sink_shutdown"
    assert spans["process helper.sh"].end_time == README_ALERT_TS_NS + 99 * MS


def test_malformed_maps_are_counted(built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, _ = built
    sink.handle(envelope("analyzer.event", [{"kind": "exec"}, "junk", {"session_id": 1, "kind": "exec",
                                                                       "ts_ns": "x"}]))
    sink.handle(envelope("analyzer.session", [{"session_id": 1, "state": "bogus", "created_ns": 1}]))
    assert sink.malformed == 4


def test_times_otlp_cannot_carry_are_malformed_and_do_not_spoil_the_batch(
        built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    sink, exporter = built
    sink.handle(envelope("analyzer.session", [session_map("opened", session_id=40, created_ns=-1)]))
    sink.handle(envelope("analyzer.event", [exec_event(session_id=41, ts_ns=-5),
                                            exec_event(session_id=42, ts_ns=1 << 64),
                                            exec_event(session_id=43, ts_ns=2.5)]))
    sink.handle(envelope("analyzer.decision", [readme_decision(session_id=44,
                                                               event=exec_event(ts_ns=-1))]))
    sink.handle(envelope("analyzer.session", [session_map("opened", session_id=45, created_ns=T0),
                                              session_map("closed", session_id=45, created_ns=T0,
                                                          closed_ns=README_ALERT_TS_NS)]))
    assert sink.malformed == 5
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["session 45"]
    assert encode_spans(spans).SerializeToString()             # the batch still encodes


@pytest.mark.parametrize("value,insecure,url", [
    ("http://127.0.0.1:4318/v1/traces", True, "http://127.0.0.1:4318/v1/traces"),
    ("https://jaeger.example:4318/custom", True, "https://jaeger.example:4318/custom"),
    ("http://127.0.0.1:4318", True, "http://127.0.0.1:4318/v1/traces"),
    ("localhost:4318", True, "http://localhost:4318/v1/traces"),
    ("localhost:4318", False, "https://localhost:4318/v1/traces"),
])
def test_endpoint_rules(value: str, insecure: bool, url: str) -> None:
    assert resolve_endpoint(value, insecure) == url


def test_settings_from_env_precedence() -> None:
    assert OtelSettings.from_env({}) is None
    s = OtelSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "b:2",
                               "OTEL_SERVICE_NAME": "svc"})
    assert (s.endpoint, s.service_name) == ("http://b:2/v1/traces", "svc")
    s = OtelSettings.from_env({"CASA_OTEL_EXPORTER_OTLP_ENDPOINT": "c:3", "OTEL_EXPORTER_OTLP_ENDPOINT": "a:1",
                               "CASA_OTEL_SERVICE_NAME": "casa-x", "CASA_OTEL_EXPORTER_OTLP_INSECURE": "false"})
    assert (s.endpoint, s.service_name) == ("https://c:3/v1/traces", "casa-x")
    with pytest.raises(ValueError, match="neither a URL nor host:port"):
        OtelSettings.from_env({"CASA_OTEL_EXPORTER_OTLP_ENDPOINT": "/just/a/path"})


def test_otel_text_escapes_non_utf8() -> None:
    assert otel_text(b"a\xffb") == "a\\udcffb" and otel_text("ok") == "ok" and otel_text(None) == ""


def test_session_continued_after_shutdown_links_to_its_first_trace(
        built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    sink.handle(envelope("analyzer.session", [session_map("opened", created_ns=T0)]))
    sink.handle(envelope("analyzer.session", [session_map("shutdown", created_ns=T0)]))
    sink.handle(envelope("analyzer.event", [exec_event(ts_ns=T0 + 5 * MS)]))     # sessionizer restarted
    sink.handle(envelope("analyzer.session", [session_map("closed", created_ns=T0, closed_ns=T0 + 9 * MS)]))
    roots = [s for s in exporter.get_finished_spans() if s.name == "session 25"]
    assert len(roots) == 2 and sink.late_messages == 0
    first, second = roots
    assert first.attributes["casa.session.end_reason"] == "shutdown"
    assert second.attributes["casa.session.resumed"] is True
    assert second.attributes["casa.session.complete"] is True
    assert second.links[0].context.span_id == first.context.span_id
    assert second.start_time == T0 + 5 * MS and second.end_time == T0 + 9 * MS


def test_a_session_joined_midway_is_incomplete_and_counted(
        built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    sink.handle(envelope("analyzer.event", [exec_event(session_id=31)]))          # no "opened"
    sink.handle(envelope("analyzer.session", [session_map("closed", session_id=31,
                                                          closed_ns=README_ALERT_TS_NS + MS)]))
    root = by_name(exporter.get_finished_spans())["session 31"]
    assert root.attributes["casa.session.complete"] is False
    assert sink.counters()["sessions_joined_midway"] == 1
