"""The program sink: each notifying decision as one JSON line on a command's stdin (the payload
of sinks/notify.py), e.g. a chat CLI or a small script calling ``notify-send``.

    python -m sinks program        # casa.json "notify": {"program": {"argv": ["/usr/local/bin/x", "--y"]}}

The command is an argv list run directly (``argv[0]`` an absolute path, no shell, no PATH
search): nothing in a decision -- paths and arguments the agent chose -- ever reaches a command
line; it arrives only as JSON on stdin. The command runs as the sink's user (casa), in its own
session, with the sink's environment minus the webhook secret, stdout discarded and stderr in
the sink's log. It is started on the first decision and kept running.

Delivery (:class:`ProgramPipe`): a line is delivered once written whole into the pipe of a live
command. If the command is dead (exited, or the write finds the pipe closed), it is started
again and the line written to the new one (``notify_restarts``); failed starts and writes back
off from ``restart_backoff_initial_s``, doubling up to ``restart_backoff_max_s``, until
``deadline_s`` after the decision arrived (then ``notify_gave_up``). Writes never block the
delivery thread past the deadline: a command that stops reading is, at the deadline, killed and
restarted, so a half-written line can never run into the next one.

A command that dies without reading lines already written to it: when the sink finds it dead,
the bytes still in the pipe (``FIONREAD``) tell how many whole lines it never read; those are
counted lost (``notify_unread_at_exit``) -- a command that fails at start (a wrong argument, a
missing interpreter) is not silent. Caveat: lines a command read into its own buffer and then
died without handling cannot be seen from outside; a command meant to handle one decision and
exit is fed correctly, one line per start, as long as it reads only its line.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import struct
import subprocess
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sinks.notify import DeliveryCounters, NotifySink
from sinks.notify_config import ProgramSettings

__all__ = ["ProgramPipe", "build_program_sink", "child_environment"]

POLL_S = 0.2
STOP_WAIT_S = 2.0
SIZES_KEPT = 4096                # lengths of the last lines written to the command (for FIONREAD)

log = logging.getLogger("casa.sinks")


def child_environment(environ: Mapping[str, str], secrets: tuple[str, ...]) -> dict[str, str]:
    """The sink's environment without the secrets the command has no business reading."""
    return {k: v for k, v in environ.items() if k not in secrets}


@dataclass(slots=True)
class ProgramPipe:
    """Deliverer (sinks/notify.py): one long-running command fed JSON lines, restarted if it dies."""

    settings: ProgramSettings
    env: dict[str, str]
    counters: DeliveryCounters = field(default_factory=DeliveryCounters)
    clock: Callable[[], float] = time.monotonic
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _sizes: deque[int] = field(default_factory=lambda: deque(maxlen=SIZES_KEPT))
    _partial: int = 0                # bytes of a line cut at its deadline, last in the pipe

    def deliver(self, body: bytes, deadline: float, stop: threading.Event) -> bool:
        line = body + b"\n"
        delay = self.settings.restart_backoff_initial_s
        while not stop.is_set() and self.clock() < deadline:
            why = self._try(line, deadline, stop)
            if why is None:
                return True
            self.counters.attempt_failures += 1
            log.error("cannot hand a decision to the program; retrying until the deadline | argv0=%s error=%s",
                      self.settings.argv[0], why)
            wait = min(delay, self.settings.restart_backoff_max_s, deadline - self.clock())
            if wait > 0 and stop.wait(wait):
                break
            delay = max(delay * 2, 0.001)
        return False

    def _try(self, line: bytes, deadline: float, stop: threading.Event) -> str | None:
        """Write ``line`` to a live command; None when done, else why not."""
        try:
            proc = self._running()
            assert proc.stdin is not None
            written = _write_all(proc.stdin.fileno(), line, deadline, stop)
        except OSError as exc:
            self._reap()
            return f"{type(exc).__name__}: {exc.strerror or exc}"
        if written == len(line):
            self._sizes.append(written)
            return None
        self._partial = written          # the tail of the pipe: not a line the command skipped
        self._kill("it stopped reading" if written else "it did not read in time")
        return f"wrote {written} of {len(line)} bytes before the deadline"

    def _running(self) -> subprocess.Popen[bytes]:
        """The live command, started (again) if needed."""
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        if self.proc is not None:
            log.warning("the program exited; starting it again | argv0=%s status=%s",
                        self.settings.argv[0], self.proc.returncode)
            self._reap()
        self.proc = subprocess.Popen(list(self.settings.argv), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=self.env, close_fds=True, start_new_session=True)
        assert self.proc.stdin is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        self.starts += 1
        if self.starts > 1:
            self.counters.restarts += 1
        log.info("program started | argv0=%s pid=%d starts=%d", self.settings.argv[0], self.proc.pid, self.starts)
        return self.proc

    def _kill(self, why: str) -> None:
        if self.proc is not None and self.proc.poll() is None:
            log.error("killing the program | argv0=%s pid=%d reason=%s", self.settings.argv[0], self.proc.pid, why)
            self.proc.kill()
        self._reap()

    def _reap(self, measure: bool = True) -> None:
        """Forget a command that died (or is being replaced): count the lines it never read,
        close its pipe, collect its status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if measure and proc.stdin is not None:
            self._count_unread(proc.stdin.fileno())
        self._sizes.clear()
        self._partial = 0
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _count_unread(self, fd: int) -> None:
        """Whole lines still in the pipe were never read: counted lost, loudly."""
        try:
            unread = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return
        unread, self._partial = max(unread - self._partial, 0), 0
        lines, total = 0, 0
        for size in reversed(self._sizes):
            if total + size > unread:
                break
            total += size
            lines += 1
        if lines:
            self.counters.unread_at_exit += lines
            log.error("the program ended without reading decisions written to it; counted lost | "
                      "argv0=%s lines=%d unread_bytes=%d", self.settings.argv[0], lines, unread)

    def close(self) -> None:
        """Close its stdin (end of input: the command may finish its last line), then reap.
        Lines left in the pipe of a command that already died are counted."""
        self._reap(measure=self.proc is not None and self.proc.poll() is not None)


def _write_all(fd: int, data: bytes, deadline: float, stop: threading.Event) -> int:
    """Write ``data`` to a non-blocking pipe until done, the deadline, or ``stop``; bytes written."""
    done = 0
    while done < len(data):
        left = deadline - time.monotonic()
        if left <= 0 or stop.is_set():
            break
        _, writable, _ = select.select([], [fd], [], min(left, POLL_S))
        if writable:
            try:
                done += os.write(fd, data[done:])
            except BlockingIOError:
                continue
    return done


def build_program_sink(settings: ProgramSettings, secrets: tuple[str, ...],
                       environ: Mapping[str, str] | None = None) -> NotifySink:
    """The running sink for ``settings`` (enabled)."""
    env = child_environment(os.environ if environ is None else environ, secrets)
    counters = DeliveryCounters()
    pipe = ProgramPipe(settings, env, counters)
    log.info("piping decisions to a program | argv0=%s args=%d min_action=%s queue_size=%d deadline_s=%g",
             settings.argv[0], len(settings.argv) - 1, settings.min_action, settings.queue_size,
             settings.deadline_s)
    return NotifySink(name="program", min_action=settings.min_action, deliverer=pipe,
                      queue_size=settings.queue_size, deadline_s=settings.deadline_s,
                      dcounters=counters).start()
