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

Caveat: a pipe cannot say whether the reader consumed a line. A command that exits without
reading what was already written to it loses those lines unseen; a command meant to handle one
decision and exit is still fed correctly, one line per start, as long as it reads its line.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sinks.notify import DeliveryCounters, NotifySink
from sinks.notify_config import ProgramSettings

__all__ = ["ProgramPipe", "build_program_sink", "child_environment"]

POLL_S = 0.2
STOP_WAIT_S = 2.0

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
            return None
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

    def _reap(self) -> None:
        """Forget a command that died (or is being replaced): close its pipe, collect its status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
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

    def close(self) -> None:
        """Close its stdin (end of input: the command may finish its last line), then reap."""
        self._reap()


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
