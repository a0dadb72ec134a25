"""The webhook sink's core against real local HTTP servers: delivered, signed, retried after a
500, given up on a server that is down or hangs, the queue bound, and the input positions."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bus.envelope import Envelope
from bus.topics import ANALYZER_DECISION, ANALYZER_EVENT
from sinks.notify import NotifySink, due_action, encode, notification
from sinks.notify_config import NotifyConfigError, WebhookSettings, load_notify, parse_notify
from sinks.webhook import SIGNATURE_HEADER, WebhookSender, build_webhook_sink, signature
from tests.harness.http_servers import HangingServer
from tests.harness.polling import wait_for
from tests.sinks.sink_maps import exec_event, readme_decision
from tests.sinks.webhook_receiver import TricklingServer, WebhookReceiver, refused_url

SECRET = b"fake-webhook-secret-for-tests"


def env(*decisions: dict[str, Any], topic: str = ANALYZER_DECISION) -> Envelope:
    return Envelope(topic, "analyzer-0", 1, 1, 0, list(decisions))


def sink(url: str, secret: bytes | None = SECRET, **kw: Any) -> NotifySink:
    settings = WebhookSettings(url=url, **{"timeout_s": 2.0, "retries": 3, "backoff_initial_s": 0.05,
                                           "backoff_max_s": 0.2, "deadline_s": 10.0, **kw})
    sender = WebhookSender(settings, secret)
    return NotifySink(name="webhook", min_action=settings.min_action, deliverer=sender,
                      queue_size=settings.queue_size, deadline_s=settings.deadline_s,
                      dcounters=sender.counters, shutdown_wait_s=2.0).start()


def seconds_until_given_up(s: NotifySink, decision: dict[str, Any]) -> float:
    """Hand the sink one decision; the seconds until it gives it up (the sink is closed after)."""
    t0 = time.monotonic()
    try:
        s.handle(env(decision))
        wait_for(lambda: s.counters()["notify_gave_up"] == 1, timeout_s=10)
        return time.monotonic() - t0
    finally:
        s.close()


def test_an_alert_is_posted_with_its_record_evidence_and_a_valid_signature() -> None:
    evidence = {"history.write_then_exec_same_path": [
        {"ts_ns": 1777761856_515509477, "tgid": 4200, "kind": "open", "path": "/tmp/openclaw-eval/helper.sh"}]}
    with WebhookReceiver() as rx:
        s = sink(rx.url)
        try:
            s.handle(env(readme_decision(evidence=evidence)))
            (got,) = rx.wait_for(1)
            wait_for(lambda: s.counters()["notify_delivered"] == 1)
        finally:
            s.close()
    assert got.path == "/hook?token=s3cr3t-in-url" and got.headers["content-type"] == "application/json"
    expected = "sha256=" + hmac.new(SECRET, got.body, hashlib.sha256).hexdigest()
    assert got.headers[SIGNATURE_HEADER.lower()] == expected == signature(SECRET, got.body)
    p = json.loads(got.body)
    assert p["session_id"] == 25 and p["action"] == "ALERT" and p["priority"] == "Critical"
    assert p["rule_names"] == ["write_then_exec_same_path", "write_then_exec_from_suspicious_path"]
    assert p["rule"] == "write_then_exec_same_path" and p["source"] == "casa"
    assert "session 25" in p["output"] and "/tmp/openclaw-eval/helper.sh" in p["output"]
    assert p["record"]["decision"]["evidence"]["history.write_then_exec_same_path"][0]["type"] == "OPENAT"
    assert p["record"]["event"]["path"] == "/tmp/openclaw-eval/helper.sh"
    assert p["output_fields"]["proc.pid"] == 4242 and p["output_fields"]["casa.score"] == 9
    assert s.resolved() == s.accepted() == (1,)


def test_without_a_secret_there_is_no_signature_and_a_tampered_body_fails_it() -> None:
    with WebhookReceiver() as rx:
        s = sink(rx.url, secret=None)
        try:
            s.handle(env(readme_decision()))
            (got,) = rx.wait_for(1)
        finally:
            s.close()
    assert SIGNATURE_HEADER.lower() not in got.headers
    assert signature(SECRET, got.body) != signature(SECRET, got.body.replace(b"25", b"26"))


def test_a_500_is_retried_and_then_delivered_once() -> None:
    with WebhookReceiver(statuses=[500, 503]) as rx:
        s = sink(rx.url)
        try:
            s.handle(env(readme_decision()))
            rx.wait_for(1)
            wait_for(lambda: s.counters()["notify_delivered"] == 1)
        finally:
            s.close()
    assert [r.status for r in rx.received] == [500, 503, 200]
    assert len({r.body for r in rx.received}) == 1           # the same request, resent
    c = s.counters()
    assert c["notify_attempt_failures"] == 2 and c["notify_gave_up"] == 0


def test_a_400_is_given_up_at_once() -> None:
    with WebhookReceiver(statuses=[400]) as rx:
        s = sink(rx.url)
        try:
            s.handle(env(readme_decision()))
            wait_for(lambda: s.counters()["notify_gave_up"] == 1)
        finally:
            s.close()
    assert len(rx.received) == 1


def test_a_server_that_is_down_is_retried_with_backoff_then_given_up_and_counted() -> None:
    s = sink(refused_url(), retries=3, backoff_initial_s=0.1, backoff_max_s=1.0)
    t0 = time.monotonic()
    try:
        s.handle(env(readme_decision()))
        wait_for(lambda: s.counters()["notify_gave_up"] == 1)
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    c = s.counters()
    assert c["notify_attempt_failures"] == 4 and c["notify_delivered"] == 0
    assert elapsed >= 0.1 + 0.2 + 0.4                         # the backoff doubled between attempts
    assert s.resolved() == (1,)                               # counted lost = done


def test_a_server_that_never_answers_times_out_and_the_deadline_bounds_the_retries() -> None:
    with HangingServer() as hang:
        s = sink(hang.url, timeout_s=0.3, retries=50, backoff_initial_s=0.05, deadline_s=1.5)
        elapsed = seconds_until_given_up(s, readme_decision())
        assert len(hang.conns) >= 2                           # connected, sent, waited, again
    assert 1.2 <= elapsed <= 4.0
    assert 2 <= s.counters()["notify_attempt_failures"] < 50


def test_the_timeout_bounds_the_whole_request_even_when_every_read_succeeds() -> None:
    with TricklingServer() as slow:
        s = sink(slow.url, timeout_s=0.6, retries=0, deadline_s=30.0)
        elapsed = seconds_until_given_up(s, readme_decision())
    assert 0.5 <= elapsed <= 2.5 and s.counters()["notify_delivered"] == 0


def test_decisions_below_min_action_do_not_notify_and_log_lowers_it() -> None:
    log_only = readme_decision(score=5, action="LOG")
    assert due_action(log_only, "ALERT") is None and due_action(log_only, "LOG") == "LOG"
    assert due_action(readme_decision(triggered_rules=[]), "LOG") is None
    with WebhookReceiver() as rx:
        alert_only, at_log = sink(rx.url), sink(rx.url, min_action="LOG")
        try:
            for s in (alert_only, at_log):
                s.handle(env(log_only, readme_decision(score=2, action="IGNORE")))
                s.handle(env(exec_event(), topic=ANALYZER_EVENT))
            rx.wait_for(1)
        finally:
            alert_only.close()
            at_log.close()
    assert alert_only.counters()["notify_skipped"] == 2 and alert_only.counters()["notify_accepted"] == 0
    assert at_log.counters()["notify_delivered"] == 1
    assert json.loads(rx.received[0].body)["priority"] == "Warning"


def test_a_malformed_decision_is_counted_and_the_next_one_still_goes_out() -> None:
    with WebhookReceiver() as rx:
        s = sink(rx.url)
        try:
            s.handle(env(readme_decision(event="not a map"), readme_decision(score="x"), readme_decision()))
            rx.wait_for(1)
        finally:
            s.close()
    assert s.counters()["malformed_maps"] == 2


def test_a_full_queue_refuses_the_newest_and_positions_wait_for_the_oldest() -> None:
    with HangingServer() as hang:
        s = sink(hang.url, timeout_s=30.0, retries=0, deadline_s=30.0, queue_size=2)
        try:
            s.handle(env(readme_decision(session_id=1)))
            wait_for(lambda: len(hang.conns) == 1)                # #1 in flight ...
            s.handle(env(*[readme_decision(session_id=i) for i in range(2, 6)]))   # #2, #3 queued
            c = s.counters()
            assert c["notify_accepted"] == 5 and c["notify_dropped_full"] == 2 and c["notify_backlog"] == 3
            assert s.accepted() == (5,) and s.resolved() == (0,)    # #1 not done: nothing durable
        finally:
            s.close()                                         # bounded: 2 s, then counted
    c = s.counters()
    assert c["notify_dropped_shutdown"] == 3 and c["notify_backlog"] == 0
    assert s.resolved() == (5,)


def test_the_config_section_is_validated_and_off_by_default(tmp_path: Path) -> None:
    shipped = load_notify(Path(__file__).resolve().parents[2] / "config" / "casa.json")
    assert not shipped.webhook.enabled and not shipped.program.enabled
    assert parse_notify({}).webhook == WebhookSettings()
    bad = [{"webhook": {"url": "ftp://x"}}, {"webhook": {"min_action": "IGNORE"}},
           {"webhook": {"timeout_s": 0}}, {"webhook": {"urll": "http://x"}},
           {"program": {"argv": "notify-send x"}}, {"program": {"argv": ["notify-send"]}},
           {"webhook": {"secret_env": "A B"}}, {"other": {}}]
    for notify in bad:
        with pytest.raises(NotifyConfigError, match="notify"):
            parse_notify({"notify": notify})
    ok = parse_notify({"notify": {"webhook": {"url": "https://user:pw@hooks.example:8443/T/abc?x=1"}}})
    assert ok.webhook.safe_url == "https://hooks.example:8443"     # no token, no credentials


def test_the_secret_is_read_from_the_environment_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    settings = WebhookSettings(url=refused_url() + "?token=url-token", retries=0, deadline_s=2.0)
    s = build_webhook_sink(settings, {"CASA_WEBHOOK_SECRET": "env-secret-value"})
    try:
        s.handle(env(readme_decision()))
        wait_for(lambda: s.counters()["notify_gave_up"] == 1)
    finally:
        s.close()
    assert isinstance(s.deliverer, WebhookSender) and s.deliverer.secret == b"env-secret-value"
    text = caplog.text
    assert "signed=yes" in text and "env-secret-value" not in text and "url-token" not in text


def test_the_payload_carries_non_utf8_and_newline_paths_intact_as_escapes() -> None:
    d = readme_decision(event=exec_event(path=b"/tmp/a\xffb\nc"))        # bytes: not UTF-8 on the bus
    body = encode(notification(d, "ALERT", "h"))
    assert b"\n" not in body and b"\\udcff" in body
    body.decode("utf-8")                                                 # valid UTF-8 JSON
    assert json.loads(body)["record"]["event"]["path"] == "/tmp/a\udcffb\nc"


def test_delivery_runs_off_the_pipeline_thread() -> None:
    """handle() returns at once while the receiver hangs: the bus loop is never blocked."""
    with HangingServer() as hang:
        s = sink(hang.url, timeout_s=5.0)
        try:
            t0 = time.monotonic()
            for i in range(20):
                s.handle(env(readme_decision(session_id=i)))
            assert time.monotonic() - t0 < 0.5
            assert threading.current_thread() is threading.main_thread()
        finally:
            s.close()
