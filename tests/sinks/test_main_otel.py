"""``python -m sinks otel`` as a real process: real bus in, real OTLP/HTTP out to a test receiver."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sinks.bus_harness import HeartbeatListener, StandInAnalyzer, shared_dir, start_sink, stop, wait_for
from tests.sinks.otlp_receiver import OtlpReceiver
from tests.sinks.sink_maps import MS, README_ALERT_TS_NS, T0, exec_event, readme_session, session_map
from tests.sinks.sink_rig import SinkRig


class OtelRig(SinkRig):
    def __init__(self, tmp: Path, endpoint: str, extra_env: dict[str, str] | None = None) -> None:
        self.bus_dir = shared_dir("casa-bus-")
        self.cwd = tmp / "cwd"
        self.cwd.mkdir()
        self.analyzer = StandInAnalyzer(self.bus_dir)
        env = {"CASA_OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "CASA_OTEL_SERVICE_NAME": "casa-test",
               **(extra_env or {})}
        self.proc = start_sink("otel", self.bus_dir, env, self.cwd)
        self.analyzer.wait_subscribed()
        self.hb = HeartbeatListener(self.bus_dir, "sinks-otel")

    def play(self, maps: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, m in maps:
            self.analyzer.send(topic, [m])


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    rx = OtlpReceiver()
    yield rx
    rx.close()


def short_sessions(*session_ids: int) -> list[tuple[str, dict[str, Any]]]:
    """Each session opened, one exec, closed: two spans each (the session and its process)."""
    return [m for sid in session_ids for m in (
        ("analyzer.session", session_map("opened", session_id=sid, created_ns=T0)),
        ("analyzer.event", exec_event(session_id=sid, ts_ns=T0 + MS)),
        ("analyzer.session", session_map("closed", session_id=sid, created_ns=T0, closed_ns=T0 + 2 * MS)))]


def vacated_port() -> int:
    """A port an OTLP receiver has just left: nothing listens there until a test starts one."""
    placeholder = OtlpReceiver()
    placeholder.close()
    return placeholder.port


def names(spans: list[dict[str, Any]]) -> set[str]:
    return {s["name"] for s in spans}


def test_a_session_becomes_one_trace(tmp_path: Path, receiver: OtlpReceiver) -> None:
    rig = OtelRig(tmp_path, receiver.url)
    try:
        rig.play(readme_session())
        spans = receiver.wait_for(lambda s: {"session 25", "process node"} <= names(s))
        assert wait_for(lambda: rig.hb.poll().get("spans_exported") == 4, what="exported count")
        assert rig.hb.latest["tracing_enabled"] == 1
    finally:
        code, err = rig.close()
    assert code == 0, err
    by = {s["name"]: s for s in spans}
    root, node, bash, helper = (by[n] for n in ("session 25", "process node", "process bash",
                                                "process helper.sh"))
    assert len(spans) == 4 and len({s["trace_id"] for s in spans}) == 1
    assert root["parent_span_id"] == "" and root["resource"]["service.name"] == "casa-test"
    assert node["parent_span_id"] == root["span_id"]
    assert bash["parent_span_id"] == node["span_id"]
    assert helper["parent_span_id"] == bash["span_id"]
    assert (root["start_ns"], root["end_ns"]) == (T0, README_ALERT_TS_NS + 5 * MS)
    assert (helper["start_ns"], helper["end_ns"]) == (README_ALERT_TS_NS, README_ALERT_TS_NS + MS)
    assert [e["name"] for e in root["events"]] == [
        "process", "process", "file", "process", "rule matched: write_then_exec_same_path",
        "rule matched: write_then_exec_from_suspicious_path", "audit emitted", "alert emitted",
        "exit", "exit", "network"]
    assert root["events"][3]["time_ns"] == README_ALERT_TS_NS
    assert root["events"][2]["attributes"]["file.path"] == "/tmp/openclaw-eval/\\udcffodd\nname"
    a = root["attributes"]
    assert (a["casa.session.final_score"], a["casa.session.final_action"]) == (9, "ALERT")
    assert a["casa.session.alert_emitted"] is True and a["casa.session.event_count.accepted"] == 7
    assert a["casa.history.write_then_exec_same_path"] is True and a["casa.session.complete"] is True
    assert a["casa.session.triggered_rules"] == ["write_then_exec_same_path",
                                                 "write_then_exec_from_suspicious_path"]


def test_receiver_down_then_up_delivers_kept_spans(tmp_path: Path) -> None:
    port = vacated_port()                                    # nothing listens on this port now
    rig = OtelRig(tmp_path, f"127.0.0.1:{port}")             # host:port form
    try:
        rig.play(short_sessions(1, 2, 3))
        wait_for(lambda: rig.hb.poll().get("export_failures", 0) >= 1
                 and rig.hb.latest.get("spans_retry_backlog", 0) == 6, timeout_s=30,
                 what="failed export kept for retry")
        with OtlpReceiver(port=port) as rx:
            spans = rx.wait_for(lambda s: len(s) >= 6, timeout_s=30)
            counters = wait_for(lambda: (c := rig.hb.poll()).get("spans_exported") == 6 and c,
                                what="exported counter")
            code, err = rig.close()
    finally:
        if rig.proc.poll() is None:
            rig.close()
    assert names(spans) == {"session 1", "session 2", "session 3", "process helper.sh"}
    assert len(spans) == 6 and counters["spans_dropped"] == 0 and counters["spans_retry_backlog"] == 0
    assert code == 0 and "span export failed; spans kept for retry" in err


def test_otel_without_endpoint_only_heartbeats(tmp_path: Path) -> None:
    rig_dir = shared_dir("casa-bus-")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = start_sink("otel", rig_dir, {}, cwd)
    hb = HeartbeatListener(rig_dir, "sinks-otel")
    try:
        counters = wait_for(lambda: hb.poll(), what="a heartbeat")
        assert counters["tracing_enabled"] == 0 and proc.poll() is None
    finally:
        hb.close()
        code, err = stop(proc)
        shutil.rmtree(rig_dir, ignore_errors=True)
    assert code == 0 and "tracing is off: no OTLP endpoint set" in err


def test_gzip_compressed_export_is_decoded(tmp_path: Path, receiver: OtlpReceiver) -> None:
    rig = OtelRig(tmp_path, receiver.url.removesuffix("/v1/traces"),        # URL without a path
                  {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip"})
    try:
        rig.play([("analyzer.session", session_map("opened", created_ns=T0)),
                  ("analyzer.session", session_map("closed", created_ns=T0, closed_ns=T0 + MS))])
        spans = receiver.wait_for(lambda s: "session 25" in names(s))
    finally:
        code, err = rig.close()
    assert code == 0, err
    assert receiver.encodings and set(receiver.encodings) == {"gzip"}
    assert spans[0]["attributes"]["casa.session.complete"] is True


def test_a_sink_killed_with_unexported_spans_counts_them_after_the_restart(tmp_path: Path) -> None:
    """Receiver down: closed sessions' spans wait in the retry buffer, an open session's events
    in its trace. Killed, then restarted with the receiver up: the messages whose spans never left
    are a gap (lost_messages), the open session's events are unsaved_at_restart, and its trace
    says incomplete."""
    import json
    port = vacated_port()
    rig = OtelRig(tmp_path, f"127.0.0.1:{port}")
    state = rig.cwd / "state" / "sinks-otel.json"
    try:
        rig.play(short_sessions(1, 2, 3))
        rig.play([("analyzer.session", session_map("opened", session_id=9, created_ns=T0)),
                  ("analyzer.event", exec_event(session_id=9, ts_ns=T0 + MS))])
        wait_for(lambda: rig.hb.poll().get("spans_retry_backlog", 0) == 6, timeout_s=30,
                 what="six spans kept for retry")
        wait_for(lambda: state.exists() and json.loads(state.read_text()).get("held") == 1,
                 what="a checkpoint with the open session's event held")
        rig.proc.kill()
        rig.proc.communicate()
        with OtlpReceiver(port=port) as rx:
            rig.proc = start_sink("otel", rig.bus_dir, {"CASA_OTEL_EXPORTER_OTLP_ENDPOINT": f"127.0.0.1:{port}"},
                                  rig.cwd)
            rig.analyzer.wait_subscribed()
            rig.play([("analyzer.event", exec_event(session_id=9, ts_ns=T0 + 3 * MS, tgid=4343)),
                      ("analyzer.session", session_map("closed", session_id=9, created_ns=T0,
                                                       closed_ns=T0 + 4 * MS))])
            spans = rx.wait_for(lambda s: "session 9" in names(s), timeout_s=30)
            counters = wait_for(lambda: (c := rig.hb.poll()).get("lost_messages") and c, what="loss counted")
    finally:
        code, err = rig.close()
    assert counters["unsaved_at_restart"] == 1
    assert 6 <= counters["lost_messages"] <= 11            # at least the messages of the three closes
    assert "session 1" not in names(spans)                 # lost with the process: counted, not sent
    root = next(s for s in spans if s["name"] == "session 9")
    assert root["attributes"]["casa.session.complete"] is False
    assert code == 0, err


def test_a_child_session_links_to_its_parent_exported_by_an_earlier_sink_process(
        tmp_path: Path, receiver: OtlpReceiver) -> None:
    """The parent's trace is exported by one sink process, which then stops; a second process
    exports the child, whose root links to the parent's root span by ids it derives itself. The
    child's evidence links and its schema-2 span events go through the real bus and exporter."""
    import socket
    from bus.events import KINDS
    from sinks.trace_model import session_ids
    from tests.sinks.sink_maps import signal_session
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    first = OtelRig(tmp_path / "a", receiver.url)
    try:
        first.play([("analyzer.session", session_map("opened", session_id=24, created_ns=T0, tree_id=77)),
                    ("analyzer.session", session_map("closed", session_id=24, created_ns=T0,
                                                     closed_ns=T0 + MS, tree_id=77))])
        receiver.wait_for(lambda s: "session 24" in names(s))
    finally:
        code, err = first.close()
    assert code == 0, err
    second = OtelRig(tmp_path / "b", receiver.url)
    try:
        second.play(signal_session())
        spans = receiver.wait_for(lambda s: "session 25" in names(s))
        counters = wait_for(lambda: (c := second.hb.poll()).get("hidden_events") == 1 and c, what="hidden counted")
    finally:
        code, err = second.close()
    assert code == 0, err
    by = {s["name"]: s for s in spans}
    parent, child, node = by["session 24"], by["session 25"], by["process node"]
    namespace = f"casa-test@{socket.gethostname()}"
    assert (int(parent["trace_id"], 16), int(parent["span_id"], 16)) == session_ids(namespace, 24)
    assert int(child["trace_id"], 16) == session_ids(namespace, 25)[0]
    links = {ln["attributes"]["casa.link.kind"]: ln for ln in child["links"]}
    assert (links["parent_session"]["trace_id"], links["parent_session"]["span_id"]) == (
        parent["trace_id"], parent["span_id"])
    evidence = [ln for ln in child["links"] if ln["attributes"]["casa.link.kind"] == "evidence"]
    assert evidence and all(ln["span_id"] == node["span_id"] for ln in evidence)
    assert child["attributes"]["casa.session.parent_id"] == 24
    assert child["resource"]["host.name"] == socket.gethostname()
    kinds = [e["name"] for e in child["events"]]
    expected = ["process"] + [k for k in ("chmod", "send", "socket", "capset", "ptrace") if k in KINDS]
    assert kinds[:len(expected)] == expected                      # the hidden open is not there
    rules = [e for e in child["events"] if e["name"].startswith("rule matched")]
    assert rules[0]["attributes"]["casa.evidence.history.setuid_created"][0].endswith("CHMOD pid=4100 /tmp/x.sh")
    assert counters.get("unknown_kind", 0) == 5 - (len(expected) - 1)
