"""CASA responder: carry out the response an ALERT decision asks for (opt-in, docs/operating.md).

usage: python -m responder [--instances N] [--bus-dir DIR] [--state-dir DIR] [--protect-pid PID]

Subscribes to ``analyzer.decision`` on every analyzer stream; for each ALERT that carries a
``response`` (the rules file chose one, policy/response.py) it selects the targets
(responder/targets.py), signals them through pidfds (responder/signals.py, responder/act.py)
and publishes what it did on ``responder.result`` (stream ``responder``), which sinks-jsonl writes
to alert.log and sinks-otel adds to the session's trace. Heartbeats every second.

Privilege: supervisord starts it through ``setpriv`` as the ``casa`` user with one capability,
CAP_KILL (supervisord.conf): it can signal any process, and nothing else root could do. Running
it as root works but is refused unless ``--allow-root`` is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import zmq

import bus
from bus.envelope import Envelope
from bus import topics as T
from responder.act import Outcome, carry_out
from responder.frozen import FrozenSession, save
from responder.guard import SUPERVISORD_PID_FILE, casa_guard
from responder.procfs import lazy_snapshot, snapshot
from responder.signals import PidfdSender
from responder.targets import Guard, Request, RequestError
from trust import strict_modes

STAGE = "responder"
# How root starts the responder (supervisord.conf spells the same): as casa, with CAP_KILL alone.
SETPRIV = ("/usr/bin/setpriv", "--reuid", "casa", "--regid", "casa", "--init-groups", "--no-new-privs",
           "--inh-caps=-all,+kill", "--ambient-caps=-all,+kill", "--bounding-set=-all,+kill")
RESULT_TOPIC = T.RESPONDER_RESULT
POLL_TIMEOUT_MS = 200

log = logging.getLogger("casa.responder")


class Responder:
    """Decision maps in, result maps out; the signals go through ``PidfdSender``."""

    def __init__(self, guard: Guard, state_dir: Path | None) -> None:
        self.guard, self.state_dir = guard, state_dir
        self.counters: dict[str, int] = {
            "responses": 0, "responses_dry_run": 0, "signalled_processes": 0,
            "refused_targets": 0, "response_errors": 0, "requests_malformed": 0}

    def handle(self, env: Envelope) -> list[dict[str, Any]]:
        out = []
        if env.topic != T.ANALYZER_DECISION:
            return out
        for d in env.events:
            if d.get("action") != "ALERT" or "response" not in d:
                continue
            result = self.respond_map(d)
            if result is not None:
                out.append(result)
        return out

    def respond_map(self, d: dict[str, Any]) -> dict[str, Any] | None:
        """Carry out the ``response`` of one decision map; None when it cannot be read."""
        try:
            req = Request.from_decision(d)
        except RequestError as exc:
            self.counters["requests_malformed"] += 1
            log.warning("ignored a malformed response request | reason=%s", exc)
            return None
        return self.respond(req, d)

    def respond(self, req: Request, d: dict[str, Any]) -> dict[str, Any]:
        received_ns = time.time_ns()
        sender = PidfdSender()
        try:
            outcome = carry_out(req, self.guard, sender, snapshot, time.time_ns, lazy_snapshot)
        finally:
            sender.close()
        self._count(outcome)
        if outcome.frozen and self.state_dir is not None:
            save(self.state_dir, FrozenSession(req.session_id, req.anchor, req.root,
                                               [(p.pid, p.start_ticks) for p in outcome.frozen],
                                               time.time_ns()))
        result = outcome.as_map()
        # the pipeline's share of latency_ms (event -> decision here); the rest is the responder's
        result["received_ms"] = round((received_ns - req.event_ts_ns) / 1e6, 3) if req.event_ts_ns else None
        log.info("responded to an alert | session_id=%d action=%s dry_run=%s pids=%s refused=%d "
                 "errors=%d latency_ms=%s", req.session_id, req.action, req.dry_run, result["pids"],
                 len(outcome.refused), len(outcome.errors), result["latency_ms"])
        return {"kind": "response", "session_id": req.session_id, "ts_ns": req.event_ts_ns,
                "event": d.get("event", {}), "rules_version": d.get("rules_version", ""),
                "response": result}

    def _count(self, o: Outcome) -> None:
        c = self.counters
        c["responses"] += 1
        c["responses_dry_run"] += o.request.dry_run
        c["signalled_processes"] += 0 if o.request.dry_run else len(o.pids)
        c["refused_targets"] += len(o.refused)
        c["response_errors"] += len(o.errors)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m responder", description=__doc__.split("\n")[0])
    p.add_argument("--instances", type=int, default=None, help="analyzer instances (default $CASA_ANALYZER_INSTANCES)")
    p.add_argument("--bus-dir", type=Path, default=None, help="bus directory (default $CASA_BUS_DIR)")
    p.add_argument("--state-dir", type=Path, default=None, help="frozen sessions (default $CASA_STATE_DIR)")
    p.add_argument("--supervisord-pid-file", type=Path, default=SUPERVISORD_PID_FILE)
    p.add_argument("--protect-pid", type=int, action="append", default=[],
                   help="a pid that, with everything below it, is never signalled (repeatable)")
    p.add_argument("--allow-root", action="store_true", help="run even as root (tests, benches)")
    return p.parse_args(argv)


def serve(args: argparse.Namespace) -> int:
    guard = casa_guard(args.supervisord_pid_file, tuple(args.protect_pid))
    state_dir = args.state_dir or Path(os.environ.get("CASA_STATE_DIR", "/var/lib/casa"))
    core = Responder(guard, state_dir)
    ctx = zmq.Context()
    topics = bus.Subscriber.subscriptions([T.ANALYZER_DECISION])
    sub_sock = bus.connect_subscriber(ctx, bus.analyzer_streams(args.instances), topics, args.bus_dir)
    sub = bus.Subscriber(sub_sock, topics)
    pub = bus.Publisher(bus.bind_publisher(ctx, STAGE, args.bus_dir), STAGE)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    log.info("responder running | uid=%d protected_pids=%s", os.getuid(), sorted(guard.protected_pids))
    try:
        while not stop:
            if sub_sock.poll(POLL_TIMEOUT_MS):
                for env in sub.receive():
                    results = core.handle(env)
                    if results:
                        pub.publish_now(RESULT_TOPIC, results)
            if pub.heartbeat_due(time.monotonic()):
                sub.check_liveness()
                pub.heartbeat({**core.counters, **sub.counters.as_dict()}, time.monotonic())
    finally:
        final = {**core.counters, **sub.counters.as_dict()}
        pub.heartbeat(final, time.monotonic())
        log.info("responder stopped | %s", " ".join(f"{k}={v}" for k, v in final.items()))
        sub_sock.close(0)
        pub.sock.close(linger=500)
        ctx.term()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if os.geteuid() == 0 and not args.allow_root:
        log.error("refusing to run as root | why=least privilege: run as casa with CAP_KILL "
                  "(supervisord.conf uses setpriv); --allow-root overrides")
        return 2
    refused = strict_modes_refusal()
    if refused:
        log.error("refusing to run with CAP_KILL | %s", refused)
        return 1
    return serve(args)


def strict_modes_refusal() -> str | None:
    """With any capability (CAP_KILL under supervisord), the code that holds it must be root's
    alone, as the collector's is (trust/strict_modes.py): otherwise the casa user could edit the
    responder and signal anything. None when there is no capability or nothing is wrong."""
    status = Path("/proc/self/status").read_text()
    cap_eff = next((int(line.split()[1], 16) for line in status.splitlines()
                    if line.startswith("CapEff:")), 0)
    if not cap_eff:
        return None
    findings = strict_modes.check(strict_modes.code_paths(), [])
    if not findings:
        return None
    f = findings[0]
    return (f"{f.unsafe.sentence(f.what)}; fix: chown root {f.unsafe.path} and chmod go-w "
            f"{f.unsafe.path}" + (f" ({len(findings) - 1} more)" if len(findings) > 1 else ""))


if __name__ == "__main__":
    sys.exit(main())
