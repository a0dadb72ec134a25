"""Sinks with nothing to do: the trace sink without an OTLP endpoint, a notification sink that
casa.json does not configure.

They read only the analyzers' heartbeats and publish their own, with one counter saying why they
are idle (``tracing_enabled=0``, ``notify_enabled=0``), so they show as running in ``casa status``
and supervisord neither restarts them in a loop nor reports them as failed (docs/sinks.md).
"""

from __future__ import annotations

from bus.envelope import Envelope

__all__ = ["NoFiles", "IdleSink", "TracingOff", "NotifyOff", "IDLE_TOPICS"]

IDLE_TOPICS = ["analyzer.heartbeat"]


class NoFiles:
    """The part of the sink-core protocol (sinks/kinds.py SinkCore) a core without files or
    records held outside its queue has nothing to do for (the notification sinks, idle ones)."""

    __slots__ = ()

    def held(self) -> int:
        return 0

    def drain(self) -> None:
        return None

    def reopen_all(self, why: str) -> None:
        return None


class IdleSink(NoFiles):
    """A sink core that handles nothing and holds nothing."""

    FLAG = ""                    # the counter that says it is off

    def handle(self, env: Envelope) -> None:
        return None

    def on_loss(self, stream: str, topic: str, lost: int) -> None:
        return None

    def accepted(self) -> tuple[int, ...]:
        return ()

    def resolved(self) -> tuple[int, ...]:
        return ()

    def close(self) -> None:
        return None

    def counters(self) -> dict[str, int]:
        return {self.FLAG: 0}


class TracingOff(IdleSink):
    """``otel`` with no endpoint configured."""

    FLAG = "tracing_enabled"


class NotifyOff(IdleSink):
    """``webhook`` / ``program`` that casa.json does not configure."""

    FLAG = "notify_enabled"
