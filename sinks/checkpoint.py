"""Where each analyzer stream was read up to *durably*, kept across sink restarts.

A sink holds what it received in memory until it is written (jsonl: a per-file backlog while the
disk is full or the directory unwritable) or exported (otel: the span queue and the retry buffer
while the receiver is down). A position saved on receipt would make a kill -9 lose that backlog
silently: the restarted sink would resume *after* it. So the saved position only covers what is
durably out:

* :class:`DurablePositions` takes a snapshot ``(accepted, positions)`` after each read -- the
  core's running count of records queued (``accepted``) and the subscriber's positions -- and
  the snapshot becomes durable once the core's count of records written or exported, or dropped
  and counted (``resolved``), reaches it. Both sinks resolve in queue order (a backlog is written
  head first; spans are exported in order and a failed batch is retried before newer ones), so
  "resolved >= accepted" means every record of every message up to those positions is out.
* :class:`PositionStore` writes the durable positions (and the received ones) to
  ``$CASA_STATE_DIR/sinks-<kind>.json`` (a stage.state_file.StateFile: atomic, fsync'd), at most every ``SAVE_INTERVAL_S``, and
  cleanly at SIGTERM. At start they go into the subscriber's sequence tracker: the first message
  after a restart shows exactly how many messages were published after the last durable one --
  received but lost in memory, or published while the sink was down (``lost_messages``).
  :class:`RestartGaps` covers the case the tracker cannot: the analyzer restarted too (a new
  epoch is a restart, not a gap), so the messages received but not durable are counted then.
* ``held`` in the file: what the core keeps outside the queue (otel: events of sessions whose
  trace is still open). After an unclean stop it is counted as ``unsaved_at_restart``; those
  sessions come back "joined mid-way", incomplete.

A kill -9 can lose up to ``SAVE_INTERVAL_S`` of durable positions; those messages are then
counted as lost although they were written: the count errs on the side of loss, never silence.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bus.sequence import SequenceTracker, StreamState
from bus.subscriber import Subscriber
from stage.state_file import StateFile, read_positions

__all__ = ["PositionStore", "DurablePositions", "RestartGaps", "Restored", "SinkPositions", "lag",
           "SAVE_INTERVAL_S", "FORMAT_VERSION"]

FORMAT_VERSION = 2                 # 1: positions saved on receipt ("bus" only)
SAVE_INTERVAL_S = 0.25
SNAPSHOT_MIN_INTERVAL_S = 0.05     # closer snapshots are merged (a later durable point, never an earlier)
SNAPSHOTS_MAX = 256

log = logging.getLogger("casa.sinks")

Positions = list[dict[str, Any]]


@dataclass(slots=True)
class DurablePositions:
    """Snapshots of the input position, each durable once the core resolved what it accepted."""

    clock: Callable[[], float] = time.monotonic
    durable: Positions = field(default_factory=list)
    _pending: deque[tuple[tuple[int, ...], Positions, float]] = field(default_factory=deque)

    def note(self, accepted: tuple[int, ...], positions: Positions) -> None:
        """After a read: ``positions`` are durable once ``resolved`` reaches ``accepted``."""
        now = self.clock()
        if self._pending and (now - self._pending[-1][2] < SNAPSHOT_MIN_INTERVAL_S
                              or len(self._pending) >= SNAPSHOTS_MAX):
            self._pending[-1] = (accepted, positions, self._pending[-1][2])
        else:
            self._pending.append((accepted, positions, now))

    def advance(self, resolved: tuple[int, ...]) -> bool:
        """Make every snapshot ``resolved`` covers durable; True when the durable position moved."""
        moved = False
        while self._pending and all(r >= a for r, a in zip(resolved, self._pending[0][0])):
            self.durable = self._pending.popleft()[1]
            moved = True
        return moved

    @property
    def settled(self) -> bool:
        """Everything received is durable."""
        return not self._pending


@dataclass(slots=True)
class Restored:
    """What a checkpoint said: how many positions were restored, and the loss it implies."""

    positions: int = 0
    clean: bool = True
    held: int = 0                  # records the core held outside its queue (unclean stop: lost)
    gaps: "RestartGaps | None" = None


@dataclass(slots=True)
class RestartGaps:
    """Messages received but not durable before an unclean stop, per (stream, topic): counted
    when the next message of that stream comes with a new epoch (the tracker then sees a restart,
    not a gap). With the same epoch the tracker's gap already counts them."""

    # (stream, topic) -> (epoch, last durable seq, messages received after it)
    pending: dict[tuple[str, str], tuple[int, int, int]] = field(default_factory=dict)

    def check(self, tracker: SequenceTracker, on_loss: Callable[[str, str, int], None]) -> int:
        """Call after reading; returns how many messages were newly counted as lost."""
        lost = 0
        for key, (epoch, seq, n) in list(self.pending.items()):
            st = tracker.streams.get(key)
            if st is None or (st.epoch == epoch and st.last_seq == seq):
                continue                  # nothing of this stream read yet
            del self.pending[key]
            if st.epoch != epoch:         # a restart: the tracker counted no gap
                lost += n
                on_loss(key[0], key[1], n)
        return lost


class PositionStore:
    """Saves and restores a sink's input positions at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = StateFile(path, FORMAT_VERSION, "sink checkpoint",
                              "loss during a restart will not be counted", older=(1,))

    @property
    def failed(self) -> bool:
        """The last save failed (warned once, then quiet until a save works again)."""
        return self.file.failed

    def save(self, durable: Positions, received: Positions, held: int = 0, clean: bool = False) -> bool:
        return self.file.write({"clean": clean, "bus": durable, "received": received, "held": held})

    def restore(self, tracker: SequenceTracker) -> Restored:
        """Put the durable positions into ``tracker``; say what the checkpoint implies."""
        doc = self.file.load()
        if doc is None:
            return Restored()
        try:
            durable, received, held, clean = _parse(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignored a damaged sink checkpoint | path=%s reason=%s", self.path, exc)
            return Restored()
        gaps = RestartGaps()
        for key, got in received.items():
            have = durable.get(key)
            if have is None or got.epoch != have.epoch:
                # nothing of this epoch was durable: count from its first message
                durable[key] = StreamState(epoch=got.epoch, last_seq=0)
                gaps.pending[key] = (got.epoch, 0, got.last_seq)
            elif got.last_seq > have.last_seq:
                gaps.pending[key] = (got.epoch, have.last_seq, got.last_seq - have.last_seq)
        tracker.streams.update(durable)
        log.info("restored input positions from checkpoint | path=%s positions=%d clean=%s "
                 "received_not_durable=%d held=%d", self.path, len(durable), clean,
                 sum(n for _, _, n in gaps.pending.values()), held)
        return Restored(len(durable), clean, 0 if clean else held, gaps)


def _parse(doc: Any) -> tuple[dict[tuple[str, str], StreamState], dict[tuple[str, str], StreamState],
                              int, bool]:
    """Parse every entry before any is used: a damaged file changes nothing."""
    durable = read_positions(doc["bus"])
    received = read_positions(doc.get("received", doc["bus"]))
    held = doc.get("held", 0)
    if isinstance(held, bool) or not isinstance(held, int) or held < 0:
        raise ValueError(f"bad held count {held!r}")
    return durable, received, held, doc.get("clean") is True


class Core(Protocol):
    """What the positions need of a sink core (JsonlSink, TraceSink)."""

    def accepted(self) -> tuple[int, ...]: ...
    def resolved(self) -> tuple[int, ...]: ...
    def held(self) -> int: ...
    def on_loss(self, stream: str, topic: str, lost: int) -> None: ...


@dataclass(slots=True)
class SinkPositions:
    """The sink loop's side of all this: restore at start, snapshot after reads, save durable
    positions every ``SAVE_INTERVAL_S``, and the counters that say what a restart cost."""

    store: PositionStore | None
    clock: Callable[[], float] = time.monotonic
    marks: DurablePositions = field(default_factory=DurablePositions)
    restored: Restored = field(default_factory=Restored)
    restart_gap_messages: int = 0
    _dirty: bool = False
    _next_save: float = 0.0

    def restore(self, tracker: SequenceTracker) -> None:
        if self.store is not None:
            self.restored = self.store.restore(tracker)
            if self.restored.held:
                log.error("the sink stopped uncleanly with events of open traces in memory; counted "
                          "lost | unsaved_at_restart=%d", self.restored.held)

    def after_read(self, core: Core, sub: Subscriber, n: int) -> None:
        """Call after every loop pass (``n`` messages read, maybe 0)."""
        if n:
            self.marks.note(core.accepted(), sub.tracker.positions())
            gaps = self.restored.gaps
            if gaps is not None and gaps.pending:
                self.restart_gap_messages += gaps.check(sub.tracker, lambda s, t, k: self._gap(core, sub, s, t, k))
        moved = self.marks.advance(core.resolved())
        self._dirty = self._dirty or bool(n) or moved
        if self.store is not None and self._dirty and self.clock() >= self._next_save:
            self.store.save(self.marks.durable, sub.tracker.positions(), core.held())
            self._dirty, self._next_save = False, self.clock() + SAVE_INTERVAL_S

    @staticmethod
    def _gap(core: Core, sub: Subscriber, stream: str, topic: str, n: int) -> None:
        sub.counters.lost_messages += n
        log.warning("messages received before an unclean stop were never written, and the analyzer "
                    "restarted since; counted lost | stream=%s topic=%s lost=%d", stream, topic, n)
        core.on_loss(stream, topic, n)

    def final_save(self, core: Core, sub: Subscriber) -> None:
        """At shutdown, after the core flushed: clean only when nothing is left in memory."""
        self.marks.note(core.accepted(), sub.tracker.positions())
        self.marks.advance(core.resolved())
        if self.store is not None:
            clean = self.marks.settled and core.held() == 0
            self.store.save(self.marks.durable, sub.tracker.positions(), core.held(), clean=clean)

    def counters(self, tracker: SequenceTracker) -> dict[str, int]:
        return {"unsaved_at_restart": self.restored.held,
                "durable_lag_messages": lag(self.marks.durable, tracker)}


def lag(durable: Positions, tracker: SequenceTracker) -> int:
    """Messages read but not yet durable (same epoch; a stream not durable at all counts from 0)."""
    at = {(p["stream"], p["topic"]): p for p in durable}
    out = 0
    for key, st in tracker.streams.items():
        p = at.get(key)
        base = p["seq"] if p is not None and p["epoch"] == st.epoch else 0
        out += max(st.last_seq - base, 0)
    return out
