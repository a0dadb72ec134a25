"""Signal flags: the handlers only set them, the loop acts on them between passes.

A handler runs wherever the main thread happens to be: in the middle of a publish, a checkpoint
write, a log line. Doing the work there (stopping, reloading) would interleave it with that, so a
handler here only sets a flag, as supervisord's own handlers do, and the loop looks at the flags
once per pass (at most one poll timeout later).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from types import FrameType

__all__ = ["Flags"]


@dataclass(slots=True)
class Flags:
    """``stop`` (SIGTERM, SIGINT) and ``reload`` (SIGHUP), set by handlers, cleared by the loop."""

    stop: bool = False
    reload: bool = False

    def on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True

    def on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload = True

    def install(self, reload: bool = True) -> "Flags":
        """Route SIGTERM and SIGINT (and SIGHUP, with ``reload``) to these flags; idempotent.

        Without ``reload`` SIGHUP keeps its default action (a command-line tool ends on it)."""
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGINT, self.on_stop)
        if reload:
            signal.signal(signal.SIGHUP, self.on_reload)
        return self
