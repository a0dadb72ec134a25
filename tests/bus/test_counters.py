"""Heartbeat counter names are part of the bus contract (bus/counters.py): every counter the
stages publish is declared, and every declared loss counter is shown by `casa status`."""

from __future__ import annotations

import logging
import re

import pytest

from bus import Publisher
from bus.counters import STAGES, Kind, StageCounters, for_stream
from cli.heartbeats import Beat
from cli.status import collect, render
from cli.supervisor import ProcessInfo

STREAM_OF = {"collector": "collector", "sessionizer": "sessionizer", "analyzer": "analyzer-1",
             "sinks": "sinks-jsonl", "responder": "responder"}


def _example(name: str) -> str:
    """A concrete counter name for a declared name or pattern (``lost_*`` -> ``lost_x``)."""
    return name.replace("*", "x")


class Listener:
    """What collect() reads of a HeartbeatListener: the beats per stream."""

    def __init__(self, stream: str, counters: dict) -> None:
        self.beats = {stream: [Beat(stream, 1, 0.0, counters)]}


def _rows(stage: str, counters: dict) -> list:
    stream = STREAM_OF[stage]
    return collect([ProcessInfo(stream, stage, "RUNNING", 10, 5, "")],
                   Listener(stream, counters))    # type: ignore[arg-type]


def _status_text(stage: str, counters: dict) -> str:
    return "\n".join(render(_rows(stage, counters)))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_loss_counter_of_every_stage_is_shown_by_casa_status(stage: str) -> None:
    spec = STAGES[stage]
    names = [_example(n) for n in spec.loss_names()]
    assert names, f"{stage} declares no loss counter"
    counters = {"sent_events": 5, **{n: i + 1 for i, n in enumerate(names)}}
    text = _status_text(stage, counters)
    for i, name in enumerate(names):
        assert f"{name}={i + 1}" in text, (name, text)
    assert set(_rows(stage, counters)[0].loss) == set(names)           # casa status --json: the same loss counters


def test_the_names_the_issue_found_missing_are_shown() -> None:
    """status looked for kernel_lost; the collector publishes kernel_drops, the sessionizer
    lost_kernel and bus_lost_messages."""
    assert "kernel_drops=3" in _status_text("collector", {"kernel_drops": 3, "sent_events": 1})
    text = _status_text("sessionizer", {"lost_kernel": 4, "lost_collector": 5, "bus_lost_messages": 6,
                                        "dropped_noise": 99, "accepted": 7})
    assert "lost_kernel=4" in text and "lost_collector=5" in text and "bus_lost_messages=6" in text
    assert "dropped_noise" not in text and "accepted" not in text   # filtering is not loss


def test_loss_comes_before_problems_and_zero_is_not_shown() -> None:
    spec = STAGES["sinks"]
    shown = spec.shown({"write_errors": 2, "lost_records": 1, "backlog": 0, "events_written": 9})
    assert list(shown) == ["lost_records", "write_errors"]


def test_exact_names_win_over_patterns() -> None:
    spec = StageCounters("t", tuple(STAGES["sinks"].specs))
    assert spec.kind("lost_records") is Kind.LOSS          # not "*_lost"... nor "*_records"
    assert spec.kind("events_lost") is Kind.INFO           # per-file detail of lost_records
    assert for_stream("analyzer-7") is STAGES["analyzer"]
    assert for_stream("nonsense") is None


def test_the_collector_publishes_only_declared_counters() -> None:
    from collector.__main__ import Counters
    from collector.scope import DictTrackedMap, Scope
    from bus.publisher import Publisher as Pub

    class Sock:
        def send_multipart(self, frames, flags=0):
            return None
    pub = Pub(Sock(), "collector")
    keys = {**Counters().as_dict(Scope((), DictTrackedMap(), 1), pub),
            "sent_events": 0, "undelivered_messages": 0, "pid": 1}
    assert STAGES["collector"].undeclared(keys) == []


def test_the_analyzer_publishes_only_declared_counters() -> None:
    from analyzer.core import Analyzer
    from bus.subscriber import SubscriberCounters
    from policy import load_policy, rules_path
    keys = {**Analyzer(load_policy(rules_path(), log_warnings=False)).stats(),
            **SubscriberCounters().as_dict(), "unpublishable": 0}      # added by bus.Publisher
    assert STAGES["analyzer"].undeclared(keys) == []


def test_the_sinks_publish_only_declared_counters(tmp_path) -> None:
    from sinks.__main__ import TracingOff
    from sinks.jsonl import JsonlSink, LogPaths
    from sinks.otel import BoundedProcessor, RetryingExporter, TraceSink
    from bus.subscriber import SubscriberCounters
    from opentelemetry.sdk.trace import TracerProvider
    from tests.sinks.test_otel_export import Switchable
    jsonl = JsonlSink.from_paths(LogPaths.from_env({"CASA_LOG_DIR": str(tmp_path)}))
    processor = BoundedProcessor(RetryingExporter(Switchable(), retry_interval_s=3600))
    otel = TraceSink(provider=TracerProvider(), processor=processor)
    try:
        for core in (jsonl, otel, TracingOff()):
            keys = {**core.counters(), **SubscriberCounters().as_dict()}
            assert STAGES["sinks"].undeclared(keys) == [], type(core).__name__
    finally:
        otel.close()


def test_the_sessionizer_publishes_only_declared_counters() -> None:
    """Its core counts in a Counter (names appear when first counted): the names in its source."""
    from pathlib import Path
    package = Path(__file__).resolve().parents[2] / "sessionizer"
    source = "".join(p.read_text() for p in package.glob("*.py"))
    names = set(re.findall(r'counters\["([a-z_]+)"\]', source))
    names |= {f"lost_{w}" for w in ("kernel", "collector", "bus", "collector_restart")}
    names |= {f"dropped_{r}" for r in re.findall(r'dropped\["([a-z_]+)"\]', source)}
    assert names and STAGES["sessionizer"].undeclared(names) == []


def test_the_publisher_warns_once_about_an_undeclared_counter(caplog: pytest.LogCaptureFixture) -> None:
    class Sock:
        def send_multipart(self, frames, flags=0):
            return None
    pub = Publisher(Sock(), "analyzer", "analyzer-0")
    with caplog.at_level(logging.WARNING, logger="casa.bus"):
        pub.heartbeat({"events_in": 1, "lost_widgets": 1})
        pub.heartbeat({"events_in": 2, "lost_widgets": 2})
    warnings = [r.getMessage() for r in caplog.records if "not declared" in r.getMessage()]
    assert len(warnings) == 1 and "counters=lost_widgets" in warnings[0], warnings


def test_the_responder_publishes_only_declared_counters() -> None:
    from bus.subscriber import SubscriberCounters
    from responder.__main__ import Responder
    from responder.targets import Guard
    keys = {**Responder(Guard(frozenset(), frozenset()), None).counters, **SubscriberCounters().as_dict(),
            "sent_events": 0, "undelivered_events": 0, "undelivered_messages": 0, "pid": 1}
    assert STAGES["responder"].undeclared(keys) == []
