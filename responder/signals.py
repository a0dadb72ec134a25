"""Signals through pidfds, so a pid that was recycled between the check and the signal is never hit.

``PidfdSender.send(target, sig)`` opens a pidfd for ``target.pid``, then reads /proc again: if
the process behind the pid is not the one the selection checked (another start time, or gone),
the pidfd refers to a stranger and nothing is sent. Once that check passes the pidfd names that
exact process for good: if it exits later, ``pidfd_send_signal`` fails with ESRCH instead of
reaching whoever gets the pid next. The pidfd is kept, so the SIGKILL that follows a SIGSTOP goes
to the same process without a second check window.

The :class:`Sender` protocol lets the unit tests count signals without sending any.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Protocol

from responder.procfs import ProcInfo, read_proc

__all__ = ["Sender", "PidfdSender"]


class Sender(Protocol):
    def send(self, target: ProcInfo, sig: int) -> str | None:
        """Send ``sig`` to exactly ``target``; None on success, else why not (one line)."""
        ...

    def close(self) -> None: ...


class PidfdSender:
    """The real sender (needs CAP_KILL, or the target's uid)."""

    def __init__(self, reread: Callable[[int], ProcInfo | None] = read_proc) -> None:
        self._reread = reread
        self._fds: dict[tuple[int, int], int] = {}

    def _pidfd(self, target: ProcInfo) -> int | str:
        key = (target.pid, target.start_ticks)
        fd = self._fds.get(key)
        if fd is not None:
            return fd
        try:
            fd = os.pidfd_open(target.pid)
        except OSError as exc:
            return "gone" if exc.errno == 3 else f"pidfd_open: {exc.strerror}"
        now = self._reread(target.pid)
        if now is None or now.start_ticks != target.start_ticks:
            os.close(fd)
            return "recycled pid (changed before the signal)"
        self._fds[key] = fd
        return fd

    def send(self, target: ProcInfo, sig: int) -> str | None:
        fd = self._pidfd(target)
        if isinstance(fd, str):
            return fd
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return "gone"
        except OSError as exc:
            return f"pidfd_send_signal: {exc.strerror}"
        return None

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
