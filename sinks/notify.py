"""Notification sinks' shared core: which decisions notify, what a notification says, and a
bounded queue delivered on its own thread so a slow receiver never slows the pipeline.

    NotifySink(name="webhook", min_action="ALERT", deliverer=WebhookSender(...))   # sinks/webhook.py
    NotifySink(name="program", min_action="ALERT", deliverer=ProgramPipe(...))     # sinks/program.py

A decision notifies when it would be written to ``alert.log`` (``min_action`` ALERT) or to
``audit.log`` (LOG): the same rule (sinks/decision_records.py), so a notification never says
more or less than the logs. Its payload (:func:`notification`) is Falcosidekick's shape --
``output``, ``priority``, ``rule``, ``time``, ``source``, ``hostname``, ``tags``,
``output_fields`` -- plus ``session_id``, ``action``, ``rule_names`` and ``record``: the decision
record exactly as audit/alert.log hold it, with its evidence.

**Nothing is lost silently.** A decision is *done* when it is delivered or counted lost:
``notify_dropped_full`` (the queue of ``queue_size`` was full: the newest is refused),
``notify_gave_up`` (every attempt failed, or the deadline passed), ``notify_dropped_shutdown``
(still waiting when the stop's bounded wait ran out). The sink's input position is saved only
up to the oldest decision not done (:meth:`NotifySink.resolved`, sinks/checkpoint.py), so a
kill -9 with a backlog counts it as ``lost_messages`` after the restart.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bus.envelope import Envelope
from bus.topics import ANALYZER_DECISION, is_heartbeat
from sinks import decision_records, records
from sinks.idle import NoFiles

__all__ = ["Deliverer", "DeliveryCounters", "NotifySink", "notification", "due_action",
           "encode", "SHUTDOWN_WAIT_S"]

SHUTDOWN_WAIT_S = 5.0            # at a stop: the longest to keep delivering what is queued
JOIN_WAIT_S = 1.0                # then the longest to wait for the delivery thread
PRIORITY = {"ALERT": "Critical", "LOG": "Warning"}     # Falcosidekick's priority names

log = logging.getLogger("casa.sinks")


class Deliverer(Protocol):
    """Sends one notification, with its own retries; runs on the delivery thread only."""

    def deliver(self, body: bytes, deadline: float, stop: threading.Event) -> bool:
        """True once delivered; False when it gave up (deadline, retries, or ``stop`` set)."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class DeliveryCounters:
    """What a deliverer reports (published in the heartbeat as ``notify_*``)."""

    attempt_failures: int = 0     # failed attempts, each retried until the deadline
    restarts: int = 0             # program: the command died and was started again
    unread_at_exit: int = 0       # program: lines written that the command died without reading


def due_action(decision: Mapping[str, Any], min_action: str) -> str | None:
    """``ALERT`` or ``LOG`` when the decision notifies at ``min_action``, else None.

    The same tests as alert.log and audit.log (decision_records.alert_due / audit_due)."""
    if decision_records.alert_due(decision):
        return "ALERT"
    if min_action == "LOG" and decision_records.audit_due(decision):
        return "LOG"
    return None


def _output(action: str, record: Mapping[str, Any], names: list[str]) -> str:
    """One line a person reads in a chat message or a desktop notification."""
    ev = record["event"]
    what = ev.get("path") or (f"{ev['addr']}:{ev['port']}" if "addr" in ev else "")
    d = record["decision"]
    return (f"CASA {action}: session {record['session_id']} scored {d['score']} "
            f"({', '.join(names)}) | {ev['type']} pid={ev['pid']} comm={ev['comm']} {what}").rstrip()


def notification(decision: Mapping[str, Any], action: str, hostname: str) -> dict[str, Any]:
    """The payload of one notification (module doc). Raises RecordError for a malformed map."""
    record = decision_records.decision_record(decision)
    names = [r["name"] for r in record["decision"]["triggered_rules"]]
    ev = record["event"]
    fields = {"casa.session_id": record["session_id"], "casa.action": action,
              "casa.score": record["decision"]["score"], "casa.rules_version": record["decision"]["rules_version"],
              "evt.type": ev["type"], "proc.pid": ev["pid"], "proc.ppid": ev["ppid"], "proc.name": ev["comm"],
              "user.uid": ev["uid"]}
    for key, name in (("path", "fd.name"), ("addr", "fd.sip"), ("port", "fd.sport")):
        if key in ev:
            fields[name] = ev[key]
    return {"output": _output(action, record, names), "priority": PRIORITY[action],
            "rule": names[0] if names else "", "time": record["timestamp"], "source": "casa",
            "hostname": hostname, "tags": ["casa", action.lower(), *names], "output_fields": fields,
            "session_id": record["session_id"], "action": action, "rule_names": names,
            "record": record}


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON, one line (newlines in paths are escaped), non-UTF-8 as ``\\udcXX``."""
    return records.encode_line(payload).rstrip(b"\n")


@dataclass(slots=True)
class _Item:
    index: int                    # 1, 2, ... in arrival order
    body: bytes
    deadline: float               # monotonic


@dataclass(slots=True)
class NotifySink(NoFiles):
    """Decisions in (pipeline thread), deliveries out (one delivery thread). SinkCore protocol
    (nothing held outside its queue, no files: NoFiles)."""

    name: str                                  # "webhook", "program": names the log lines
    min_action: str
    deliverer: Deliverer
    queue_size: int
    deadline_s: float
    dcounters: DeliveryCounters = field(default_factory=DeliveryCounters)
    clock: Callable[[], float] = time.monotonic
    hostname: str = field(default_factory=socket.gethostname)
    shutdown_wait_s: float = SHUTDOWN_WAIT_S
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("accepted", "delivered", "skipped", "dropped_full", "gave_up", "dropped_shutdown"), 0))
    malformed: int = 0
    _queue: deque[_Item] = field(default_factory=deque)
    _pending: dict[int, None] = field(default_factory=dict)   # not done yet, oldest first
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _closing: bool = False
    _thread: threading.Thread | None = None
    _reported_loss_at: float = -1e9

    def start(self) -> "NotifySink":
        self._thread = threading.Thread(target=self._run, name=f"notify-{self.name}", daemon=True)
        self._thread.start()
        return self

    # -- pipeline thread ---------------------------------------------------------------------

    def handle(self, env: Envelope) -> None:
        if is_heartbeat(env.topic) or env.topic != ANALYZER_DECISION:
            return
        for item in env.events:
            try:
                if not isinstance(item, Mapping):
                    raise records.RecordError(f"map is {type(item).__name__}")
                action = due_action(item, self.min_action)
                if action is None:
                    self.counts["skipped"] += 1
                    continue
                body = encode(notification(item, action, self.hostname))
            except (records.RecordError, TypeError, ValueError, OverflowError) as exc:
                self.malformed += 1
                log.warning("dropped a malformed decision | sink=%s stream=%s reason=%s",
                            self.name, env.stream, exc)
                continue
            self.submit(body)

    def submit(self, body: bytes) -> None:
        """Queue one notification; a full queue refuses it (counted lost, done)."""
        with self._lock:
            self.counts["accepted"] += 1
            index = self.counts["accepted"]
            if len(self._queue) >= self.queue_size:
                self.counts["dropped_full"] += 1
                self._report_loss("queue full")
                return
            self._pending[index] = None
            self._queue.append(_Item(index, body, self.clock() + self.deadline_s))
            self._lock.notify()

    def on_loss(self, stream: str, topic: str, lost: int) -> None:
        return None          # the subscriber counts it (lost_messages); nothing open to mark here

    def accepted(self) -> tuple[int, ...]:
        with self._lock:
            return (self.counts["accepted"],)

    def resolved(self) -> tuple[int, ...]:
        """How many of the accepted decisions are done, counting only up to the oldest one that
        is not (deliveries finish in order, but a refused one is done before older ones)."""
        with self._lock:
            if self._pending:
                return (next(iter(self._pending)) - 1,)
            return (self.counts["accepted"],)

    def counters(self) -> dict[str, int]:
        with self._lock:
            out = {f"notify_{k}": v for k, v in self.counts.items()}
            out["notify_backlog"] = len(self._pending)
        out.update(notify_enabled=1, notify_attempt_failures=self.dcounters.attempt_failures,
                   notify_restarts=self.dcounters.restarts,
                   notify_unread_at_exit=self.dcounters.unread_at_exit, malformed_maps=self.malformed)
        return out

    def close(self) -> None:
        """Keep delivering what is queued for at most ``shutdown_wait_s``; count the rest lost."""
        end = self.clock() + self.shutdown_wait_s
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            while self._pending and self.clock() < end:
                self._lock.wait(0.05)
        self._stop.set()
        if self._thread is not None:
            # Retries and program writes see the stop at once; a request in flight may take up to
            # its timeout. It is not waited for beyond this: it is counted lost below (it may yet
            # arrive: the count errs towards loss), and the stop stays within supervisord's
            # stopwaitsecs whatever timeout_s is.
            self._thread.join(timeout=JOIN_WAIT_S)
        with self._lock:
            left = len(self._pending)
            self.counts["dropped_shutdown"] += left
            self._queue.clear()
            self._pending.clear()
        if left:
            log.error("notifications not delivered at the stop; counted lost | sink=%s lost=%d", self.name, left)
        self.deliverer.close()

    # -- delivery thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop.is_set():
                    self._lock.wait(0.2)
                if self._stop.is_set():
                    return
                item = self._queue.popleft()
            try:
                ok = self.deliverer.deliver(item.body, item.deadline, self._stop)
            except Exception:              # a bug in a deliverer must not stop the thread
                log.exception("notification delivery failed | sink=%s", self.name)
                ok = False
            self._done(item, ok)

    def _done(self, item: _Item, ok: bool) -> None:
        with self._lock:
            if item.index not in self._pending:
                return
            del self._pending[item.index]
            if ok:
                self.counts["delivered"] += 1
            elif self._stop.is_set():
                self.counts["dropped_shutdown"] += 1
            else:
                self.counts["gave_up"] += 1
                self._report_loss("gave up")
            self._lock.notify_all()

    def _report_loss(self, why: str) -> None:
        """Loudly, at most every 10 s (the counters carry the exact numbers)."""
        now = self.clock()
        if now - self._reported_loss_at >= 10.0:
            self._reported_loss_at = now
            log.error("notification lost | sink=%s reason=%s dropped_full=%d gave_up=%d", self.name, why,
                      self.counts["dropped_full"], self.counts["gave_up"])

