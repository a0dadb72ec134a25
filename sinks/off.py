"""Sink cores that do nothing, in whole or in part (the ``SinkCore`` protocol, sinks/__main__.py).

A sink that is switched off (no endpoint, no webhook, no program configured) still runs: it reads
only the analyzers' heartbeats and publishes its own with ``<name>_enabled=0``, so it shows as
running in ``casa status`` and a supervisor neither restarts it in a loop nor reports it as
failed (docs/sinks.md). A sink that holds no events back and keeps no files open (the
notification sinks) shares the no-op part of that.
"""

from __future__ import annotations

from bus.envelope import Envelope

__all__ = ["HoldsNothing", "SinkOff"]


class HoldsNothing:
    """Nothing held back for a later flush, so nothing to drain and no file to reopen."""

    __slots__ = ()

    def held(self) -> int:
        return 0

    def drain(self) -> None:
        return None

    def reopen_all(self, why: str) -> None:
        return None


class SinkOff(HoldsNothing):
    """A sink that is not configured; ``ENABLED`` names its ``<name>_enabled`` counter."""

    __slots__ = ()
    ENABLED = ""

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
        return {self.ENABLED: 0}
