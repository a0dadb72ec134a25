"""alert.log: an ALERT carries the policy's response choice; the responder's result follows."""

from __future__ import annotations

import json
from pathlib import Path

from bus.envelope import Envelope
from bus.topics import ANALYZER_DECISION, RESPONDER_RESULT
from tests.sinks.sink_maps import README_ALERT_TS_NS, exec_event, readme_decision
from sinks.jsonl import JsonlSink, LogPaths


def result(dry_run: bool = False, **over) -> dict:
    r = {"action": "kill_session", "dry_run": dry_run, "rules": ["write_then_exec_same_path"],
         "pids": [4242, 4243], "refused": [[1, "pid 1 or invalid"], [77, "outside the session tree"]],
         "errors": [], "rounds": 2, "latency_ms": 3.25, "done_ms": 4.5}
    r.update(over)
    return {"kind": "response", "session_id": 25, "ts_ns": README_ALERT_TS_NS, "event": exec_event(),
            "rules_version": "0123456789ab", "response": r}


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_the_alert_says_the_chosen_response_and_the_result_follows(tmp_path: Path) -> None:
    sink = JsonlSink.from_paths(LogPaths.from_env({"CASA_LOG_DIR": str(tmp_path)}))
    decision = readme_decision(response={"action": "kill_session", "dry_run": False,
                                         "rules": ["write_then_exec_same_path"], "tgids": [[4242, 1]],
                                         "trigger_tgid": 4242, "leader_tgid": 4200, "root": 4200})
    sink.handle(Envelope(ANALYZER_DECISION, "analyzer-0", 1, 1, 0, [decision]))
    sink.handle(Envelope(RESPONDER_RESULT, "responder", 1, 1, 0, [result(), "junk"]))
    sink.close()
    alert, response = lines(tmp_path / "alert.log")
    assert alert["decision"]["response"] == {"action": "kill_session", "dry_run": False,
                                             "rules": ["write_then_exec_same_path"]}
    assert "response" not in response.get("decision", {})
    assert response["session_id"] == 25 and response["timestamp"] == alert["timestamp"]
    assert response["event"] == alert["event"]
    assert response["response"] == {
        "action": "kill_session", "dry_run": False, "rules": ["write_then_exec_same_path"],
        "pids": [4242, 4243], "refused": [{"pid": 1, "reason": "pid 1 or invalid"},
                                          {"pid": 77, "reason": "outside the session tree"}],
        "errors": [], "latency_ms": 3.25, "done_ms": 4.5}
    assert sink.counters()["malformed_maps"] == 1


def test_a_dry_run_record_says_what_would_have_been_signalled(tmp_path: Path) -> None:
    sink = JsonlSink.from_paths(LogPaths.from_env({"CASA_LOG_DIR": str(tmp_path)}))
    sink.handle(Envelope(RESPONDER_RESULT, "responder", 1, 1, 0,
                         [result(dry_run=True, latency_ms=None, done_ms=None)]))
    sink.close()
    (rec,) = lines(tmp_path / "alert.log")
    assert rec["response"]["dry_run"] is True and rec["response"]["would_signal"] == [4242, 4243]
    assert "pids" not in rec["response"] and rec["response"]["latency_ms"] is None


def test_the_trace_gets_a_response_span_event_at_the_first_signal() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.sinks.sink_maps import MS, readme_session
    from sinks.otel import TraceSink

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = TraceSink(provider=provider, wall_clock_ns=lambda: README_ALERT_TS_NS + 99 * MS)
    maps = readme_session()
    at = [t for t, _ in maps].index("analyzer.decision") + 1
    maps.insert(at, (RESPONDER_RESULT, result()))
    for topic, m in maps:
        sink.handle(Envelope(topic, "responder" if topic == RESPONDER_RESULT else "analyzer-0", 1, 1, 0, [m]))
    sink.handle(Envelope(RESPONDER_RESULT, "responder", 1, 2, 0, [result()]))      # closed: late
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "session 25"]
    (ev,) = [e for e in root.events if e.name.startswith("response")]
    assert ev.name == "response: kill_session"
    assert ev.timestamp == README_ALERT_TS_NS + int(3.25 * MS)
    assert list(ev.attributes["casa.response.pids"]) == [4242, 4243]
    assert ev.attributes["casa.response.latency_ms"] == 3.25
    assert list(ev.attributes["casa.response.refused"]) == ["1: pid 1 or invalid", "77: outside the session tree"]
    assert sink.counters()["late_messages"] == 1
