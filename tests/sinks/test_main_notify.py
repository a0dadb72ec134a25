"""``python -m sinks webhook`` / ``program`` as real processes (as casa when root) on a real bus:
disabled without configuration, a signed POST to a real local server with the secret from .env,
a real child program, and a kill -9 with a backlog counted after the restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any


from bus.topics import ANALYZER_DECISION, ANALYZER_EVENT
from tests.sinks.bus_harness import HeartbeatListener, StandInAnalyzer, shared_dir, start_sink, stop, wait_for
from tests.sinks.sink_maps import exec_event, readme_decision
from tests.sinks.sink_rig import SinkRig
from tests.sinks.webhook_receiver import HangingServer, WebhookReceiver

SECRET = "fake-secret-from-dot-env"


class Rig(SinkRig):
    """A stand-in analyzer, a casa.json with ``notify`` in the sink's working directory, the sink."""

    def __init__(self, tmp: Path, kind: str, notify: dict[str, Any] | None, dot_env: str = "") -> None:
        self.kind = kind
        self.bus_dir = shared_dir("casa-bus-")
        self.cwd = tmp / "cwd"
        self.cwd.mkdir(exist_ok=True)
        config = json.loads((Path(__file__).resolve().parents[2] / "config" / "casa.json").read_text())
        config["notify"] = notify or {}
        (self.cwd / "casa.json").write_text(json.dumps(config))
        if dot_env:
            (self.cwd / ".env").write_text(dot_env)
        self.analyzer = StandInAnalyzer(self.bus_dir)
        self.start()
        self.hb = HeartbeatListener(self.bus_dir, f"sinks-{kind}")

    def start(self) -> None:
        self.proc = start_sink(self.kind, self.bus_dir, {"CASA_CONFIG_PATH": "casa.json"}, self.cwd)
        self.analyzer.wait_subscribed()

    def decisions(self, *session_ids: int) -> None:
        for sid in session_ids:
            self.analyzer.send(ANALYZER_DECISION, [readme_decision(session_id=sid)])


def test_without_configuration_the_webhook_sink_only_heartbeats_and_says_why(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "webhook", None)
    try:
        assert wait_for(lambda: rig.hb.poll().get("notify_enabled") == 0, what="a heartbeat")
        rig.decisions(1)
    finally:
        code, err = rig.close()
    assert code == 0, err
    assert "webhook sink disabled | reason=no url" in err and "sink running | stream=sinks-webhook" in err


def test_the_webhook_process_posts_a_signed_alert_with_the_secret_from_dot_env(tmp_path: Path) -> None:
    with WebhookReceiver(statuses=[502]) as rx:
        rig = Rig(tmp_path, "webhook", {"webhook": {"url": rx.url, "backoff_initial_s": 0.1}},
                  dot_env=f"CASA_WEBHOOK_SECRET={SECRET}\n")
        try:
            rig.analyzer.send(ANALYZER_EVENT, [exec_event(), exec_event()])    # not even decoded here
            rig.decisions(25)
            (got,) = rx.wait_for(1)
            c = wait_for(lambda: (c := rig.hb.poll()).get("notify_delivered") == 1 and c, what="delivered")
        finally:
            code, err = rig.close()
    assert code == 0, err
    assert got.headers["x-casa-signature"] == "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert json.loads(got.body)["session_id"] == 25
    assert c["notify_attempt_failures"] == 1 and c["notify_enabled"] == 1
    assert c["received_events"] == 1                                     # the decision only
    assert SECRET not in err and "s3cr3t-in-url" not in err        # neither the secret nor the URL's token
    assert "webhook request failed" in err and "HTTP 502" in err


def test_the_program_process_feeds_a_real_command_as_casa(tmp_path: Path) -> None:
    out = tmp_path / "cwd" / "out.jsonl"
    code = "import sys\nfor line in sys.stdin.buffer:\n    open(sys.argv[1], 'ab').write(line)\n"
    argv = [sys.executable, "-c", code, "out.jsonl"]      # relative: casa cannot reach pytest's tmp by path
    rig = Rig(tmp_path, "program", {"program": {"argv": argv}})
    try:
        rig.decisions(1, 2)
        wait_for(lambda: out.exists() and len(out.read_bytes().splitlines()) == 2, what="two lines")
        assert wait_for(lambda: rig.hb.poll().get("notify_delivered") == 2, what="delivered")
    finally:
        code, err = rig.close()
    assert code == 0, err
    assert [json.loads(x)["session_id"] for x in out.read_bytes().splitlines()] == [1, 2]
    assert "program started" in err


def test_a_webhook_sink_killed_with_a_backlog_counts_it_after_the_restart(tmp_path: Path) -> None:
    """The position is saved only up to what is delivered or counted lost: three decisions
    waiting on a receiver that never answers die with the process and come back as a gap."""
    with HangingServer() as hang:
        rig = Rig(tmp_path, "webhook", {"webhook": {"url": hang.url, "timeout_s": 60, "deadline_s": 600}})
        try:
            rig.decisions(1, 2, 3)
            wait_for(lambda: rig.hb.poll().get("notify_backlog") == 3, what="a backlog of 3")
            wait_for(lambda: (rig.cwd / "state" / "sinks-webhook.json").exists(), what="a checkpoint")
            rig.proc.kill()                                   # kill -9 with three in memory
            rig.proc.communicate()
            rig.start()
            rig.decisions(4)
            c = wait_for(lambda: (c := rig.hb.poll()).get("lost_messages") and c, what="loss counted")
        finally:
            rig.close()
    assert c["lost_messages"] == 3
