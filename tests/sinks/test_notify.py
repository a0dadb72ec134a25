"""Every counter the notification stages publish is declared in bus/counters.py, and `casa status`
shows each of their loss and problem counters for the sinks-webhook / sinks-program streams."""

from __future__ import annotations

import threading

import pytest

from bus.counters import Kind, STAGES, for_stream
from bus.subscriber import SubscriberCounters
from cli.heartbeats import Beat
from cli.status import collect, render
from cli.supervisor import ProcessInfo
from sinks.idle import NotifyOff
from sinks.notify import NotifySink
from sinks.otel import TraceSink
from sinks.otel_logs import build_decision_logs
from opentelemetry.sdk.trace import TracerProvider


class Never:
    def deliver(self, body: bytes, deadline: float, stop: threading.Event) -> bool:
        return False

    def close(self) -> None:
        return None


class Listener:
    def __init__(self, stream: str, counters: dict) -> None:
        self.beats = {stream: [Beat(stream, 1, 0.0, counters)]}


def published() -> list[dict]:
    notify = NotifySink(name="webhook", min_action="ALERT", deliverer=Never(), queue_size=1, deadline_s=1.0)
    logs = build_decision_logs("http://127.0.0.1:9/v1/logs", "casa", "h", "casa@h", "ALERT", 1.0)
    otel = TraceSink(provider=TracerProvider(), logs=logs)
    try:
        return [notify.counters(), NotifyOff().counters(), otel.counters()]
    finally:
        otel.close()


def test_the_notification_stages_publish_only_declared_counters() -> None:
    for counters in published():
        keys = {**counters, **SubscriberCounters().as_dict(), "unsaved_at_restart": 0, "durable_lag_messages": 0}
        assert STAGES["sinks"].undeclared(keys) == []


@pytest.mark.parametrize("stream", ["sinks-webhook", "sinks-program", "sinks-otel"])
def test_casa_status_shows_every_notify_loss_and_problem_counter(stream: str) -> None:
    spec = for_stream(stream)
    assert spec is STAGES["sinks"]
    names = sorted({k for c in published() for k in c if spec.kind(k) in (Kind.LOSS, Kind.PROBLEM)})
    assert {"notify_dropped_full", "notify_gave_up", "notify_dropped_shutdown", "log_records_dropped",
            "notify_attempt_failures", "notify_restarts", "notify_backlog", "log_export_failures"} <= set(names)
    counters = {"received_events": 1, **{n: i + 1 for i, n in enumerate(names)}}
    rows = collect([ProcessInfo(stream, stream, "RUNNING", 10, 5, "")], Listener(stream, counters))  # type: ignore[arg-type]
    text = "\n".join(render(rows))
    for i, name in enumerate(names):
        assert f"{name}={i + 1}" in text, (name, text)
    assert {n for n in names if spec.kind(n) is Kind.LOSS} == set(rows[0].loss)      # --json: loss


def test_a_disabled_sink_shows_nothing_but_that_it_is_off() -> None:
    text = "\n".join(render(collect([ProcessInfo("sinks-webhook", "sinks-webhook", "RUNNING", 1, 1, "")],
                                    Listener("sinks-webhook", {"notify_enabled": 0, "received_events": 0}))))  # type: ignore[arg-type]
    assert "off (not configured in casa.json notify)" in text and "notify_" not in text
