"""The trace builder (sinks/otel.py, sinks/trace_model.py) on an in-memory exporter: names,
nesting, times, attributes, evidence, derived ids and links."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bus.envelope import Envelope
from sinks.otel import OtelSettings, TraceSink, otel_text, resolve_endpoint
from sinks.trace_model import session_ids
from tests.sinks.sink_maps import (MS, README_ALERT_TS_NS, T0, exec_event, readme_decision,
                                   readme_session, session_map, signal_session)


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


# ---------------------------------------------------------------------- schema 2


def play(sink: TraceSink, maps: list[tuple[str, dict[str, Any]]]) -> None:
    for topic, m in maps:
        sink.handle(envelope(topic, [m]))


def test_schema_2_kinds_become_span_events_with_their_fields(
        built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    play(sink, signal_session())
    spans = exporter.get_finished_spans()
    root, node = by_name(spans)["session 25"], by_name(spans)["process node"]
    events = {e.name: e.attributes for e in root.events}
    assert [e.name for e in root.events] == ["process", "chmod", "send", "socket", "capset", "ptrace",
                                             "rule matched: setuid_made", "rule matched: dropper",
                                             "audit emitted", "alert emitted"]
    assert sink.hidden_events == 1                                 # the hidden write: not in the trace
    p = events["process"]
    assert (p["casa.process.role"], p["casa.process.executable.abspath"], p["process.executable.path"]) == (
        "agent", "/usr/bin/node", "node")
    assert p["casa.process.stdio"] == ("inet", "pipe", "tty") and p["casa.process.parent_stdio"] == ("tty",) * 3
    assert p["casa.process.ld_env.LD_PRELOAD"] == "/tmp/\\udcffx.so"
    assert (p["casa.process.euid"], p["casa.process.prev_euid"]) == (0, 1000)
    assert node.attributes["casa.process.ld_env.LD_PRELOAD"] == "/tmp/\\udcffx.so"   # on the process span too
    c = events["chmod"]
    assert (c["file.path"], c["casa.file.abspath"], c["file.mode"], c["casa.event.syscall"], c["casa.event.ret"]) == (
        "x.sh", "/tmp/x.sh", 0o4755, "fchmodat", 0)
    s = events["send"]
    assert (s["server.address"], s["server.port"], s["casa.send.bytes"], s["casa.dns.qname_len"]) == (
        "127.0.0.1", 53, 40, 22)
    assert s["casa.dns.qname_hash"] == "0x7ffffffffffffffb" and not any("qname\"" in k for k in s)
    assert (events["socket"]["casa.socket.family"], events["socket"]["casa.socket.type"]) == (17, 3)
    assert events["capset"]["casa.capset.effective"] == "0xffffffffffffffff"
    assert events["ptrace"]["casa.target.pid"] == str(2**64 - 1)      # beyond int64: text
    assert events["ptrace"]["casa.target.in_tree"] is False
    assert [e.attributes["casa.event.seq"] for e in root.events[:6]] == [1, 2, 3, 4, 5, 6]
    counts = {k.rsplit(".", 1)[1]: v for k, v in root.attributes.items() if ".event_count." in k}
    assert counts == {"accepted": 6, "execve": 1, "openat": 0, "connect": 0, "exit": 0, "chmod": 1,
                      "send": 1, "socket": 1, "capset": 1, "ptrace": 1}
    assert encode_spans(spans).SerializeToString()                 # OTLP can carry all of it


def test_rule_matched_events_carry_their_evidence_and_link_it(
        built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    play(sink, signal_session())
    spans = by_name(exporter.get_finished_spans())
    root, node = spans["session 25"], spans["process node"]
    events = {e.name: e.attributes for e in root.events}
    first, second = events["rule matched: setuid_made"], events["rule matched: dropper"]
    assert first["casa.evidence.fields"] == ("history.setuid_created",)
    ref = first["casa.evidence.history.setuid_created"][0]
    assert ref.endswith(" CHMOD pid=4100 /tmp/x.sh") and first["casa.evidence.history.setuid_created.event_seq"] == (2,)
    assert second["casa.evidence.fields"] == ("history.setuid_created", "history.written_then_interpreted")
    refs = second["casa.evidence.history.written_then_interpreted"]
    assert len(refs) == 2 and refs[0].endswith(" OPENAT pid=3999 /tmp/\\udcffw.sh")    # junk left out
    assert second["casa.evidence.history.written_then_interpreted.event_seq"] == (0, 1)  # earlier session: 0
    assert events["alert emitted"]["casa.decision.evidence_fields"] == (
        "history.setuid_created", "history.written_then_interpreted")
    evidence_links = [ln for ln in root.links if ln.attributes["casa.link.kind"] == "evidence"]
    assert {(ln.attributes["casa.rule.name"], ln.attributes["casa.evidence.field"], ln.attributes["casa.event.seq"])
            for ln in evidence_links} == {("setuid_made", "history.setuid_created", 2),
                                          ("dropper", "history.setuid_created", 2),
                                          ("dropper", "history.written_then_interpreted", 1)}
    assert all(ln.context.span_id == node.context.span_id for ln in evidence_links)


def test_trace_ids_are_derived_from_the_session_id_and_parents_are_linked(
        built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    play(sink, signal_session())
    root = by_name(exporter.get_finished_spans())["session 25"]
    assert (root.context.trace_id, root.context.span_id) == session_ids("casa", 25)
    parent = [ln for ln in root.links if ln.attributes["casa.link.kind"] == "parent_session"]
    assert len(parent) == 1 and (parent[0].context.trace_id, parent[0].context.span_id) == session_ids("casa", 24)
    a = root.attributes
    assert (a["casa.session.parent_id"], a["casa.session.tree_id"], a["casa.session.incomplete_reason"]) == (
        24, 77, "bootstrap")
    assert a["casa.session.complete"] is False
    # another sink process (here: another core) derives the same ids; a namespace changes them
    other = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(other))
    play(TraceSink(provider=provider), [("analyzer.session", session_map("opened", session_id=24, created_ns=T0)),
                                        ("analyzer.session", session_map("closed", session_id=24, created_ns=T0,
                                                                         closed_ns=T0 + MS))])
    parent_root = other.get_finished_spans()[0]
    assert (parent_root.context.trace_id, parent_root.context.span_id) == session_ids("casa", 24)
    assert session_ids("casa@host-a", 24) != session_ids("casa@host-b", 24)


def test_a_parent_named_only_by_a_later_map_is_linked_once(
        built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    play(sink, [("analyzer.event", exec_event(session_id=30, ts_ns=T0)),           # joined midway
                ("analyzer.session", session_map("flushed", session_id=30, created_ns=T0, parent_session_id=29)),
                ("analyzer.session", session_map("closed", session_id=30, created_ns=T0, closed_ns=T0 + MS,
                                                 parent_session_id=29))])
    root = by_name(exporter.get_finished_spans())["session 30"]
    kinds = [ln.attributes["casa.link.kind"] for ln in root.links]
    assert kinds == ["earlier_part", "parent_session"]
    trace_id, first_root = session_ids("casa", 30)
    assert root.context.trace_id == trace_id and root.context.span_id != first_root   # a later part
    assert root.links[0].context.span_id == first_root


def test_a_resumed_session_stays_in_its_trace_with_a_new_root_span(
        built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    play(sink, [("analyzer.session", session_map("opened", created_ns=T0)),
                ("analyzer.session", session_map("shutdown", created_ns=T0)),
                ("analyzer.event", exec_event(ts_ns=T0 + 5 * MS)),
                ("analyzer.session", session_map("closed", created_ns=T0, closed_ns=T0 + 9 * MS))])
    first, second = [s for s in exporter.get_finished_spans() if s.name == "session 25"]
    assert first.context.trace_id == second.context.trace_id == session_ids("casa", 25)[0]
    assert first.context.span_id == session_ids("casa", 25)[1] != second.context.span_id


def test_hidden_events_never_open_a_trace(built: tuple[TraceSink, InMemorySpanExporter]) -> None:
    sink, exporter = built
    sink.handle(envelope("analyzer.event", [exec_event(session_id=50, hidden="runtime_background")]))
    assert sink.sessions == {} and sink.counters()["hidden_events"] == 1


def test_evidence_reference_text_names_what_the_reference_names(chicago: None) -> None:
    from sinks.trace_model import evidence_refs
    refs = evidence_refs({"history.foreign_process_read": [
        {"ts_ns": README_ALERT_TS_NS, "tgid": 3, "kind": "ptrace", "target": 777},
        {"ts_ns": README_ALERT_TS_NS, "tgid": 3, "kind": "exit"}, 5],
        "history.raw_socket": [{"ts_ns": README_ALERT_TS_NS, "tgid": 3, "kind": "socket", "detail": "17/3"}],
        "history.empty": ["junk"], 7: []})
    assert [r.text for r in refs["history.foreign_process_read"]] == [
        "2026-05-02T17:44:19.027509477-05:00 PTRACE pid=3 777", "2026-05-02T17:44:19.027509477-05:00 EXIT pid=3"]
    assert refs["history.raw_socket"][0].text.endswith("SOCKET pid=3 17/3") and set(refs) == {
        "history.foreign_process_read", "history.raw_socket"}
