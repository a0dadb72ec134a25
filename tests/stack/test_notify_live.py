"""A real ALERT from the real pipeline (eBPF collector -> sessionizer -> analyzer) reaches a local
webhook server through the real sinks-webhook under supervisord, signed, as user casa, and the
real sinks-program pipes it to a command; casa status shows both RUNNING."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys

import pytest

from tests.sinks.webhook_receiver import WebhookReceiver, refused_url
from tests.stack.stack import Stack, read_jsonl
from tests.stack.test_stack_supervisord import WRITE_THEN_EXEC

pytestmark = [pytest.mark.root, pytest.mark.stack, pytest.mark.timeout(240)]

SECRET = "fake-stack-webhook-secret"
APPEND = "import sys\nfor line in sys.stdin.buffer:\n    open(sys.argv[1], 'ab').write(line)\n"


def test_a_real_alert_is_posted_to_the_webhook_and_piped_to_the_program() -> None:
    with WebhookReceiver() as rx:
        notify: dict = {"webhook": {"url": rx.url}}
        st = Stack(env={"CASA_WEBHOOK_SECRET": SECRET}, config_extra={"notify": notify})
        out = st.log_dir / "program-out.jsonl"             # casa's records directory of this stack
        notify["program"] = {"argv": [sys.executable, "-c", APPEND, str(out)]}   # before casa.json is written
        with st:
            done = st.run_agent(WRITE_THEN_EXEC)
            assert done.returncode == 0, done.stderr
            alert = st.wait_for_log("alert.log", lambda r: any(
                t.get("name") == "write_then_exec_same_path" for t in r["decision"]["triggered_rules"]))
            (got,) = rx.wait_for(1, timeout_s=30)
            piped = st.wait_until(lambda: read_jsonl(out), 30, "the program's line")
            status = st.casa("status", "--url", st.url)
            counters = st.counters(["sinks-webhook", "sinks-program"],
                                   lambda c: all(c.get(s, {}).get("notify_delivered") for s in
                                                 ("sinks-webhook", "sinks-program")))
    payload = json.loads(got.body)
    assert payload["session_id"] == alert["session_id"] and payload["action"] == "ALERT"
    assert payload["record"] == alert                       # exactly what alert.log holds
    assert got.headers["x-casa-signature"] == "sha256=" + hmac.new(SECRET.encode(), got.body,
                                                                  hashlib.sha256).hexdigest()
    assert [p["session_id"] for p in piped] == [alert["session_id"]] and piped[0]["record"] == alert
    assert status.returncode == 0, status.stdout + status.stderr
    text = " ".join(status.stdout.split())
    assert "sinks-webhook RUNNING" in text and "sinks-program RUNNING" in text
    assert counters["sinks-webhook"]["notify_gave_up"] == 0


def test_casa_status_shows_a_webhook_that_gave_up_and_a_sink_that_is_off() -> None:
    """A receiver that is down: the real alert is retried, given up at the deadline, and the
    loss is in `casa status`; sinks-program, not configured, is RUNNING and says it is off."""
    notify = {"webhook": {"url": refused_url(), "retries": 2, "backoff_initial_s": 0.1, "deadline_s": 3}}
    with Stack(config_extra={"notify": notify}) as st:
        done = st.run_agent(WRITE_THEN_EXEC)
        assert done.returncode == 0, done.stderr
        st.wait_for_log("alert.log", lambda r: r["decision"]["action"] == "ALERT")
        st.counters(["sinks-webhook"], lambda c: c.get("sinks-webhook", {}).get("notify_gave_up"))
        status = st.casa("status", "--url", st.url)
        log = st.stage_log("sinks-webhook")
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    assert "notify_gave_up=1" in lines["sinks-webhook"] and "notify_attempt_failures=3" in lines["sinks-webhook"]
    assert "RUNNING" in lines["sinks-program"] and "off (not configured" in lines["sinks-program"]
    assert "webhook request failed" in log and "ConnectionRefusedError" in log
