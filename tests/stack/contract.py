"""The stage contract test: does a (replacement) stage implementation speak the bus as docs/bus.md says?

usage: sudo .venv/bin/python -m tests.stack.contract --stage analyzer [--cmd 'COMMAND ...']
       sudo .venv/bin/python -m tests.stack.contract --stage sessionizer --cmd './my-sessionizer'

The stage runs as the casa user with CASA_BUS_DIR, CASA_STATE_DIR, CASA_CONFIG_PATH,
CASA_RULES_PATH and CASA_ANALYZER_INSTANCES=1 set (a replacement reads these; see
docs/operating.md §Swapping a stage). The test plays its upstream itself (it binds the upstream
stream's socket) and checks, printing one ``check: ok`` or ``check: ERROR (reason)`` line each:

  subscribes     subscribes to its upstream topics and to the upstream heartbeat
  binds          binds ipc://$CASA_BUS_DIR/<stream>.sock, mode 0660
  heartbeats     <stage>.heartbeat about every second, counters with pid and reload counters
  malformed      garbage, wrong frame counts and an unknown version are counted and dropped
  control        a reload on <upstream>.control is applied, counted, forwarded on <stage>.control
  sigterm        SIGTERM: a last heartbeat, then exit status 0 within 15 s
  decisions      (sessionizer, analyzer) replaying tests/fixtures/recordings/write-then-exec through
                 it and the stock other stage gives the recorded decisions, and every
                 analyzer.event / .session / .decision map has the fields of docs/bus.md §5, §7

exit status: 0 every check passed, 1 a check failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq

from bus import Envelope, Publisher, Subscriber, bind_publisher, connect_subscriber, validate_event
from tests.harness.heartbeats import HeartbeatWatch
from tests.stack.pipeline import CHECKOUT, Pipeline

__all__ = ["STAGES", "StageSpec", "check_stage", "main"]

FIXTURES = CHECKOUT / "tests" / "fixtures" / "recordings"


@dataclass(frozen=True, slots=True)
class StageSpec:
    stage: str                 # topic prefix of what it publishes
    stream: str                # its socket name
    upstream: str              # the stream it reads
    upstream_topics: tuple[str, ...]
    default_cmd: tuple[str, ...]
    reloads: bool              # handles in-band control
    pipeline_role: str | None  # which Pipeline command it replaces for the decisions check


STAGES: dict[str, StageSpec] = {
    "sessionizer": StageSpec("sessionizer", "sessionizer", "collector", ("collector.event", "collector.control"),
                             (sys.executable, "-m", "sessionizer"), True, "sessionizer"),
    "analyzer": StageSpec("analyzer", "analyzer-0", "sessionizer",
                          ("sessionizer.event", "sessionizer.session", "sessionizer.control"),
                          (sys.executable, "-m", "analyzer", "--instance", "0", "--instances", "1"), True, "analyzer-0"),
    "sinks": StageSpec("sinks", "sinks-jsonl", "analyzer-0", ("analyzer.",),
                       (sys.executable, "-m", "sinks", "jsonl"), False, None),
}


@dataclass(slots=True)
class Check:
    name: str
    error: str = ""

    def line(self) -> str:
        return f"{self.name}: ok" if not self.error else f"{self.name}: ERROR ({self.error})"


class Harness:
    """A fake upstream publisher, the stage under test, and a SUB on its stream."""

    def __init__(self, spec: StageSpec, cmd: list[str], pipe: Pipeline) -> None:
        self.spec, self.cmd, self.pipe = spec, cmd, pipe
        self.ctx = zmq.Context()
        self.xpub = bind_publisher(self.ctx, spec.upstream, pipe.bus_dir)
        self.up = Publisher(self.xpub, spec.upstream.split("-")[0], spec.upstream)
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: zmq.Socket | None = None
        self.sub: Subscriber | None = None
        self.got: list[Envelope] = []
        self.subscriptions: set[bytes] = set()

    def start(self) -> None:
        log = open(self.pipe.root / "stage.log", "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=CHECKOUT, env={**self.pipe.env(), "CASA_ANALYZER_INSTANCES": "1"},
                                     user="casa", group="casa", extra_groups=[], stdout=log, stderr=log)
        log.close()

    def read_subscriptions(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.xpub.poll(int(min(left, 0.1) * 1000) or 1):
                frame = self.xpub.recv()
                if frame[:1] == b"\x01":
                    self.subscriptions.add(frame[1:])
            self.up.heartbeat() if self.up.heartbeat_due() else None

    def connect(self) -> None:
        topics = [f"{self.spec.stage}."]
        self.sock = connect_subscriber(self.ctx, [self.spec.stream], topics, self.pipe.bus_dir)
        self.sub = Subscriber(self.sock, topics)

    def pump(self, seconds: float, until: Callable[[], bool] | None = None) -> None:
        assert self.sock is not None and self.sub is not None
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.up.heartbeat_due():
                self.up.heartbeat({"reloads_applied": 0, "reloads_rejected": 0})
            if self.sock.poll(int(min(left, 0.1) * 1000) or 1):
                self.got += self.sub.receive()
            if until is not None and until():
                return

    def heartbeats(self) -> list[Envelope]:
        return [e for e in self.got if e.topic == f"{self.spec.stage}.heartbeat"]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.sock is not None:
            self.sock.close(0)
        self.xpub.close(0)
        self.ctx.term()


def _malformed_total(counters: dict[str, Any]) -> int:
    return sum(v for k, v in counters.items() if isinstance(v, int) and ("malformed" in k or "unknown_version" in k))


def _reloads(counters: dict[str, Any]) -> int:
    return sum(v for k, v in counters.items() if k in ("reloads_applied", "reloads_ok") and isinstance(v, int))


def _check_subscribes(h: Harness) -> Check:
    h.read_subscriptions(8.0)
    want = [t.encode() for t in h.spec.upstream_topics] + [f"{h.spec.upstream.split('-')[0]}.heartbeat".encode()]
    missing = [w.decode() for w in want if not any(w.startswith(s) for s in h.subscriptions)]
    return Check("subscribes", f"does not subscribe to {', '.join(missing)}" if missing else "")


def _check_binds(h: Harness) -> Check:
    path = h.pipe.bus_dir / f"{h.spec.stream}.sock"
    deadline = time.monotonic() + 20
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not path.exists():
        return Check("binds", f"no {path} after 20 s")
    mode = stat.S_IMODE(path.stat().st_mode)
    return Check("binds", f"{path} has mode {mode:o}, not 660" if mode != 0o660 else "")


def _check_heartbeats(h: Harness) -> Check:
    h.connect()                 # the stage's control and data, for the checks after this one
    with HeartbeatWatch(h.pipe.bus_dir, h.spec.stream) as watch:
        watch.wait(lambda w: len(w.beats.get(h.spec.stream, [])) >= 2, 3.5, tick=lambda: h.pump(0.05), fail=False)
    beats = watch.beats.get(h.spec.stream, [])
    if len(beats) < 2:
        return Check("heartbeats", f"{len(beats)} heartbeats in 3.5 s")
    c = beats[-1].counters or {}
    assert h.proc is not None
    problems = []
    if c.get("pid") != h.proc.pid:
        problems.append(f"counters.pid is {c.get('pid')!r}, the process is {h.proc.pid}")
    if h.spec.reloads and not any(k in c for k in ("reloads_applied", "reloads_ok")):
        problems.append("no reloads_applied counter")
    if h.spec.reloads and not any(k in c for k in ("reloads_rejected", "reloads_failed")):
        problems.append("no reloads_rejected counter")
    return Check("heartbeats", "; ".join(problems))


def _check_malformed(h: Harness) -> Check:
    before = _malformed_total((h.heartbeats()[-1].counters or {}) if h.heartbeats() else {})
    topic = h.spec.upstream_topics[0].rstrip(".").encode()
    if not topic.count(b"."):
        topic += b".event"
    body = msgpack.packb({"v": 99, "stream": h.spec.upstream, "epoch": 1, "seq": 1, "sent_ns": 1, "events": []})
    for frames in ([topic, b"\xc1\xc1"], [topic], [topic, b"\x93\x01\x02\x03"], [topic, body]):
        h.xpub.send_multipart(frames)
    n = len(h.heartbeats())
    h.pump(3.0, until=lambda: len(h.heartbeats()) >= n + 2)
    assert h.proc is not None
    if h.proc.poll() is not None:
        return Check("malformed", f"the stage exited ({h.proc.returncode}) on malformed input")
    after = _malformed_total(h.heartbeats()[-1].counters or {})
    return Check("malformed", f"4 bad messages sent, malformed counters went {before} -> {after}"
                 if after - before < 4 else "")


def _check_control(h: Harness) -> Check:
    if not h.spec.reloads:
        return Check("control")
    before = _reloads(h.heartbeats()[-1].counters or {})
    ctl = {"kind": "control", "command": "reload", "id": 77, "requested_ns": time.time_ns()}
    h.up.publish_now(f"{h.spec.upstream.split('-')[0]}.control", [ctl])

    def forwarded() -> bool:
        return any(e.topic == f"{h.spec.stage}.control" and any(m.get("id") == 77 for m in e.events) for e in h.got)

    h.pump(6.0, until=lambda: forwarded() and _reloads(h.heartbeats()[-1].counters or {}) > before)
    if not forwarded():
        return Check("control", f"no {h.spec.stage}.control with id 77 within 6 s")
    after = _reloads(h.heartbeats()[-1].counters or {})
    return Check("control", f"reloads_applied did not move ({before} -> {after})" if after <= before else "")


def _check_sigterm(h: Harness) -> Check:
    assert h.proc is not None
    n = len(h.heartbeats())
    h.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while h.proc.poll() is None and time.monotonic() < deadline:
        h.pump(0.2)
    h.pump(0.5)
    if h.proc.poll() is None:
        return Check("sigterm", "still running 15 s after SIGTERM")
    if h.proc.returncode != 0:
        return Check("sigterm", f"exit status {h.proc.returncode}")
    return Check("sigterm", "no final heartbeat" if len(h.heartbeats()) <= n else "")


# docs/bus.md §7: the stage-added maps. field -> accepted types
SESSION_FIELDS: dict[str, tuple[type, ...]] = {
    "kind": (str,), "state": (str,), "session_id": (int,), "profile": (str,), "leader_tgid": (int,),
    "created_ns": (int,), "updated_ns": (int,), "closed_ns": (int, type(None)), "complete": (bool,),
    "lost_events": (int,), "recent_events": (list,), "score": (int, float), "action": (str,),
    "triggered_rules": (list,), "context": (dict,), "rules_version": (str,)}
DECISION_FIELDS: dict[str, tuple[type, ...]] = {
    "kind": (str,), "session_id": (int,), "ts_ns": (int,), "event": (dict,), "action": (str,),
    "score": (int, float), "increment": (int, float), "log_threshold": (int, float),
    "alert_threshold": (int, float), "triggered_rules": (list,), "context": (dict,), "rules_version": (str,)}
ACCEPTED_EVENT_FIELDS: dict[str, tuple[type, ...]] = {"session_id": (int,), "profile": (str,), "depth": (int,)}


def _shape(where: str, m: dict[str, Any], fields: dict[str, tuple[type, ...]]) -> list[str]:
    return [f"{where}: {k} missing" if k not in m else f"{where}: {k} is {type(m[k]).__name__}"
            for k, t in fields.items() if k not in m or not isinstance(m[k], t)]


def schema_problems(messages: list[Envelope]) -> list[str]:
    """What in the analyzer's output does not follow docs/bus.md §5 and §7."""
    problems: list[str] = []
    for env in messages:
        for m in env.events:
            if env.topic == "analyzer.event":
                problems += validate_event(m) + _shape(f"event {m.get('kind')}", m, ACCEPTED_EVENT_FIELDS)
                if m.get("kind") == "exec" and not isinstance(m.get("lineage"), list):
                    problems.append("exec event: lineage missing")
            elif env.topic == "analyzer.session":
                problems += _shape("analyzer.session", m, SESSION_FIELDS)
                if m.get("state") not in ("opened", "flushed", "closed", "shutdown"):
                    problems.append(f"analyzer.session: state {m.get('state')!r}")
            elif env.topic == "analyzer.decision":
                problems += _shape("analyzer.decision", m, DECISION_FIELDS)
                if m.get("action") not in ("IGNORE", "LOG", "ALERT"):
                    problems.append(f"analyzer.decision: action {m.get('action')!r}")
    return sorted(set(problems))


def _check_decisions(spec: StageSpec, cmd: list[str]) -> Check:
    if spec.pipeline_role is None:
        return Check("decisions")
    try:
        with Pipeline(config=FIXTURES / "casa.json", rules=FIXTURES / "rules.json", analyzers=1,
                      stage_cmds={spec.pipeline_role: cmd}) as p:
            out = p.replay(FIXTURES / "write-then-exec.casarec")
            got = sorted(json.dumps({"action": d["action"], "score": d["score"], "increment": d["increment"],
                                     "rules": sorted(t["name"] for t in d["triggered_rules"])}) for d in p.collected)
            problems = schema_problems(p.messages)
            kinds = {e.topic for e in p.messages}
    except AssertionError as exc:          # the pipeline did not come up
        return Check("decisions", str(exc).splitlines()[0])
    want = sorted(json.dumps(d) for d in json.loads((FIXTURES / "write-then-exec.decisions.json").read_text()))
    if out.returncode != 0:
        return Check("decisions", f"replay failed: {out.stderr.strip()[-300:]}")
    if got != want:
        return Check("decisions", f"got {got}, recorded {want}")
    missing = {"analyzer.event", "analyzer.session", "analyzer.decision"} - kinds
    if missing:
        return Check("decisions", f"no {', '.join(sorted(missing))} published during the replay")
    return Check("decisions", "; ".join(problems[:5]) if problems else "")


def check_stage(stage: str, cmd: list[str] | None = None) -> list[Check]:
    """Run every check against ``cmd`` (default: this checkout's implementation of ``stage``)."""
    spec = STAGES[stage]
    command = cmd or list(spec.default_cmd)
    results: list[Check] = []
    pipe = Pipeline(config=FIXTURES / "casa.json", rules=FIXTURES / "rules.json", stage_cmds={})
    pipe.make_dirs()
    h = Harness(spec, command, pipe)
    try:
        h.start()
        for step in (_check_subscribes, _check_binds, _check_heartbeats, _check_malformed, _check_control,
                     _check_sigterm):
            results.append(step(h))
            if step in (_check_binds,) and results[-1].error:
                break
    finally:
        h.close()
        pipe.__exit__()
    results.append(_check_decisions(spec, command))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.stack.contract", description="Check a stage against the bus contract.",
                                epilog="examples:\n  python -m tests.stack.contract --stage analyzer\n"
                                       "  python -m tests.stack.contract --stage sessionizer --cmd './my-sessionizer --fast'\n",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", required=True, choices=sorted(STAGES))
    p.add_argument("--cmd", default=None, help="command line of the implementation (default: this checkout's)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("must run as root (the stage runs as the casa user)")
    results = check_stage(args.stage, shlex.split(args.cmd) if args.cmd else None)
    for r in results:
        print(r.line())
    return 0 if all(not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
