"""The responder's core: ALERT decision maps with a ``response`` in, result maps out.

For each ALERT that carries a ``response`` (the rules file chose one, policy/response.py) it
selects the targets (responder/targets.py), signals them through pidfds (responder/signals.py,
responder/act.py) and returns what it did as a ``response`` map, which the stage publishes on
``responder.result``. The wiring (sockets, loop, signals) is responder/__main__.py on the stage
runtime.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from bus import topics as T
from bus.envelope import Envelope
from responder.act import Outcome, carry_out
from responder.frozen import FrozenSession, save
from responder.procfs import lazy_snapshot, snapshot
from responder.signals import PidfdSender
from responder.targets import Guard, Request, RequestError

__all__ = ["Responder"]

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
