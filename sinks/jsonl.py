"""The JSONL log sink: events.log, sessions.log, audit.log and alert.log (docs/sinks.md, FIELDS).

Guarantees, and how they are kept:

* **One complete line per record.** Each record is encoded in full; queued lines are written with
  one ``os.write`` of whole lines (one or more, never part of one) on an ``O_APPEND`` descriptor,
  so concurrent writers (another sink, a tool) can interleave whole lines but never tear one.
  A short write (disk full mid-record) is completed before anything else is written to that
  file, and the file is not reopened in between.
* **Permissions.** Files are created 0640 (owner casa: the sink; group casa: the monitoring user).
  The monitored agent runs as another user and can neither write nor truncate them. Missing
  directories are created 0750.
* **Rotation.** Before a write pass the path is ``stat``-ed (at most every ``ROTATION_CHECK_S``);
  a different inode (logrotate's rename + create) or a missing file makes the sink reopen the
  path. SIGHUP and an in-band reload reopen every file too.
* **Errors never crash the stage and never drop silently.** A failed open or write keeps the
  record in a per-file backlog, is logged loudly (once when it starts, then every
  ``ERROR_REPORT_INTERVAL_S``) and retried every ``RETRY_INTERVAL_S``. The backlog is bounded by
  ``BACKLOG_MAX_BYTES``; records beyond it are dropped, counted in ``lost`` and reported.

Where the logs are, and which paths are refused: sinks/logpaths.py. Files are opened with
``O_NOFOLLOW``: a symlink at a log path is an error (records kept and retried), never followed.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.envelope import Envelope
from sinks.logpaths import DEFAULT_LOG_DIR, LOG_GROUP, LogPaths, log_path_problem
from bus.topics import (ANALYZER_CONTROL, ANALYZER_DECISION, ANALYZER_EVENT, ANALYZER_SESSION,
                        RESPONDER_RESULT, is_heartbeat)
from sinks import decision_records, records, response_records, session_records

__all__ = ["LogPaths", "log_path_problem", "LogFile", "LogFileCounters", "JsonlSink", "FILE_MODE", "DIR_MODE",
           "BACKLOG_MAX_BYTES", "RETRY_INTERVAL_S", "DEFAULT_LOG_DIR"]

FILE_MODE = 0o640
DIR_MODE = 0o750
BACKLOG_MAX_BYTES = 64 * 1024 * 1024     # per file; beyond this, records are counted as lost
RETRY_INTERVAL_S = 1.0                   # between attempts to open/write after an error
ERROR_REPORT_INTERVAL_S = 10.0           # repeat the loud error while the problem lasts
MAX_TRACKED_SESSIONS = 100_000          # open sessions remembered for loss attribution
WRITE_CHUNK_BYTES = 64 * 1024            # whole lines joined into one os.write
ROTATION_CHECK_S = 0.2                   # stat the path at most this often (lines written in
                                         # between land in the rotated file: not lost)

log = logging.getLogger("casa.sinks")

def _give_to_log_group(fd: int) -> None:
    try:
        os.fchown(fd, -1, grp.getgrnam(LOG_GROUP).gr_gid)
    except (KeyError, OSError):
        pass                           # no casa group here: root-only access is the safe side


@dataclass(slots=True)
class LogFileCounters:
    queued: int = 0            # records handed to the file (written + lost + backlog, in order)
    written: int = 0           # records fully written
    write_errors: int = 0      # failed open/write attempts
    lost: int = 0              # records dropped because the backlog was full
    reopens: int = 0           # rotation detected or reopen requested


@dataclass(slots=True)
class LogFile:
    """One append-only JSONL file with a bounded backlog. Single-threaded: call from one loop."""

    path: Path
    backlog_max_bytes: int = BACKLOG_MAX_BYTES
    clock: Callable[[], float] = time.monotonic
    counters: LogFileCounters = field(default_factory=LogFileCounters)
    _fd: int | None = None
    _ino: tuple[int, int] | None = None
    _backlog: deque[bytes] = field(default_factory=deque)
    _backlog_bytes: int = 0
    _partial: bool = False            # the head of the backlog is the rest of a short write
    _retry_at: float = 0.0
    _checked_at: float = -1e9         # last rotation check
    _error: str | None = None         # the error currently in force (None: healthy)
    _reported_at: float = -1e9
    _lost_reported: int = 0

    @property
    def backlog(self) -> int:
        """Records waiting to be written."""
        return len(self._backlog)

    def append(self, line: bytes, drain: bool = True) -> None:
        """Queue one complete line; with ``drain`` try to write everything queued now."""
        self.counters.queued += 1
        if self._backlog_bytes + len(line) > self.backlog_max_bytes:
            self.counters.lost += 1
            self._report_loss()
        else:
            self._backlog.append(line)
            self._backlog_bytes += len(line)
        if drain:
            self.drain()

    def extend(self, lines: list[bytes]) -> None:
        """Queue complete lines without writing (a batch: one call instead of one per line)."""
        size = sum(map(len, lines))
        if self._backlog_bytes + size > self.backlog_max_bytes:
            for line in lines:                     # near the bound: count the loss line by line
                self.append(line, drain=False)
            return
        self.counters.queued += len(lines)
        self._backlog.extend(lines)
        self._backlog_bytes += size

    def drain(self) -> None:
        """Write queued lines; on error keep them and retry after RETRY_INTERVAL_S."""
        if not self._backlog or self.clock() < self._retry_at:
            return
        try:
            self._ensure_open()
            while self._backlog:
                self._write_chunk()
        except OSError as exc:
            self._fail(exc)
            return
        if self._error is not None:
            log.warning("log file writable again; backlog written | path=%s lost=%d",
                        self.path, self.counters.lost)
            self._error = None

    def reopen(self) -> None:
        """Close now; the next write opens the path again (SIGHUP, reload, rotation)."""
        if self._partial:
            return                     # finish the torn line in the file it started in first
        self._close()
        self.counters.reopens += 1
        self._retry_at = 0.0

    def close(self) -> None:
        self._retry_at = 0.0               # one last attempt, whatever the retry timer says
        self.drain()
        self._close()

    def _write_chunk(self) -> None:
        """One os.write of whole lines from the head (up to WRITE_CHUNK_BYTES; a longer line alone).

        Every write ends at a line end, so other O_APPEND writers interleave only between lines.
        A short write (full disk) leaves the rest of its line at the head, pinned to this fd.
        """
        lines = self._next_chunk()
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        n = os.write(self._fd, data)       # type: ignore[arg-type]
        if n == len(data) and len(lines) == len(self._backlog):
            self.counters.written += len(lines)    # the usual case: everything queued went out
            self._backlog.clear()
            self._backlog_bytes = 0
            self._partial = False
            return
        left = n
        for line in lines:
            if left < len(line):
                if left:
                    self._backlog[0] = line[left:]
                    self._backlog_bytes -= left
                    self._partial = True
                break
            self._backlog.popleft()
            self._backlog_bytes -= len(line)
            left -= len(line)
            self._partial = False
            self.counters.written += 1
        if n < len(data):
            raise OSError(errno.ENOSPC, f"short write ({n} of {len(data)} bytes)")

    def _next_chunk(self) -> list[bytes]:
        """The lines of the next write: the torn line alone, else whole lines up to the chunk size."""
        if self._partial:
            return [self._backlog[0]]              # finish the torn line before anything else
        if self._backlog_bytes <= WRITE_CHUNK_BYTES:
            return list(self._backlog)
        lines, size = [], 0
        for line in self._backlog:
            if lines and size + len(line) > WRITE_CHUNK_BYTES:
                break
            lines.append(line)
            size += len(line)
        return lines

    def _ensure_open(self) -> None:
        if self._fd is not None and not self._partial and self._rotation_check_due() \
                and self._rotated():
            self._close()
            self.counters.reopens += 1
            log.info("log file rotated; reopening | path=%s", self.path)
        if self._fd is None:
            self._open()

    def _rotation_check_due(self) -> bool:
        now = self.clock()
        if now - self._checked_at < ROTATION_CHECK_S:
            return False
        self._checked_at = now
        return True

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._ino

    def _open(self) -> None:
        self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     FILE_MODE)
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)       # umask or an older file must not widen access
        if st.st_uid == os.geteuid() == 0:
            _give_to_log_group(fd)         # run as root by hand: keep it readable by group casa
        self._fd, self._ino = fd, (st.st_dev, st.st_ino)

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _fail(self, exc: OSError) -> None:
        self.counters.write_errors += 1
        now = self.clock()
        self._retry_at = now + RETRY_INTERVAL_S
        message = f"{exc.strerror or exc}"
        if not self._partial:
            self._close()                  # reopen on retry: the directory may be recreated
        if message != self._error or now - self._reported_at >= ERROR_REPORT_INTERVAL_S:
            log.error("cannot write log file; records kept and retried | path=%s error=%s "
                      "backlog=%d lost=%d", self.path, message, len(self._backlog), self.counters.lost)
            self._error, self._reported_at = message, now

    def _report_loss(self) -> None:
        now = self.clock()
        if self._lost_reported == 0 or now - self._reported_at >= ERROR_REPORT_INTERVAL_S:
            log.error("log backlog full; dropping records | path=%s lost=%d backlog_bytes=%d",
                      self.path, self.counters.lost, self._backlog_bytes)
            self._lost_reported, self._reported_at = self.counters.lost, now


@dataclass(slots=True)
class JsonlSink:
    """Pure-ish core: envelopes in, lines appended to the four LogFiles. Time is injected."""

    events: LogFile
    sessions: LogFile
    audit: LogFile
    alert: LogFile
    wall_clock_ns: Callable[[], int] = time.time_ns
    malformed: int = 0                 # bus maps that could not become records
    skipped_kinds: int = 0             # events of kinds without a record (fork, root, loss, ...)
    hidden_events: int = 0             # events a noise filter hid from the logs (by design)
    reloads_applied: int = 0
    joined_midway: int = 0             # sessions first seen after their start (marked incomplete)
    # session_id -> stream, for sessions that are open; loss on that stream marks them incomplete
    open_sessions: dict[int, str] = field(default_factory=dict)
    incomplete: set[int] = field(default_factory=set)
    closed_recent: set[int] = field(default_factory=set)      # closed ids, so late messages for
    closed_order: deque[int] = field(default_factory=deque)   # them do not re-open tracking
    late_messages: int = 0             # events/decisions for a session already closed (written)

    @classmethod
    def from_paths(cls, paths: LogPaths, backlog_max_bytes: int = BACKLOG_MAX_BYTES, **kw: Any) -> "JsonlSink":
        def open_(path: Path) -> LogFile:
            return LogFile(path, backlog_max_bytes=backlog_max_bytes)
        return cls(events=open_(paths.events), sessions=open_(paths.sessions),
                   audit=open_(paths.audit), alert=open_(paths.alert), **kw)

    def files(self) -> dict[str, LogFile]:
        return {"events": self.events, "sessions": self.sessions, "audit": self.audit,
                "alert": self.alert}

    def handle(self, env: Envelope) -> None:
        """Write what one analyzer envelope means; malformed maps are counted and dropped."""
        if is_heartbeat(env.topic):
            return
        if env.topic == ANALYZER_CONTROL:
            self.reopen_all("reload")
            self.reloads_applied += 1
            return
        if env.topic == ANALYZER_EVENT:
            self._write_events(env.stream, env.events)
        elif env.topic == RESPONDER_RESULT:
            self._write_responses(env.stream, env.events)
        else:
            for item in env.events:
                try:
                    self._handle_one(env.topic, env.stream, item)
                except (records.RecordError, TypeError, ValueError, OverflowError) as exc:
                    self._dropped(env.topic, env.stream, exc)
        self.drain()                   # one write per file per envelope (a batch of up to 64)

    def _write_events(self, stream: str, events: list[Any]) -> None:
        """events.log lines for one analyzer.event batch.

        Nearly every message is one of these, so session tracking is inlined here (a call only
        for a session not seen yet) and the line comes from records.event_line's fast path.
        An event with ``hidden`` (runtime noise a sessionizer filter kept only for the analyzer)
        still shows its session is open, but has no line: it is counted in ``hidden_events``.
        """
        closed, tracked, lines = self.closed_recent, self.open_sessions, []
        for item in events:
            try:
                if type(item) is not dict and not isinstance(item, Mapping):
                    raise records.RecordError(f"map is {type(item).__name__}")
                sid = item.get("session_id")
                if sid in closed:
                    self.late_messages += 1                # still written; not tracked again
                elif sid not in tracked:
                    self._track_open(item, stream)
                if item.get("hidden"):
                    self.hidden_events += 1                # runtime noise: for the analyzer only
                    continue
                line = records.event_line(item)
                if line is None:
                    self.skipped_kinds += 1
                else:
                    lines.append(line)
            except (records.RecordError, TypeError, ValueError, OverflowError) as exc:
                self._dropped(ANALYZER_EVENT, stream, exc)
        self.events.extend(lines)

    def _write_responses(self, stream: str, results: list[Any]) -> None:
        """alert.log lines for what the responder did (sinks/response_records.py)."""
        for item in results:
            try:
                self.alert.append(records.encode_line(response_records.response_record(item)))
            except (records.RecordError, TypeError, ValueError, OverflowError) as exc:
                self._dropped(RESPONDER_RESULT, stream, exc)

    def _dropped(self, topic: str, stream: str, exc: Exception) -> None:
        self.malformed += 1
        log.warning("dropped a malformed analyzer map | topic=%s stream=%s reason=%s",
                    topic, stream, exc)

    def _handle_one(self, topic: str, stream: str, item: Any) -> None:
        """One decision or session map (or a map on a topic this sink does not write)."""
        if not isinstance(item, Mapping):
            raise records.RecordError(f"map is {type(item).__name__}")
        sid = item.get("session_id")
        if sid in self.closed_recent and topic != ANALYZER_SESSION:
            self.late_messages += 1                        # still written; not tracked again
        elif topic != ANALYZER_SESSION:
            self._track_open(item, stream)
        if topic == ANALYZER_DECISION:
            self._write_decision(item)
        elif topic == ANALYZER_SESSION:
            self._write_session(item, stream)

    def _track_open(self, item: Mapping[str, Any], stream: str) -> None:
        """A session first seen without its "opened" map began before this sink saw it (sink
        restart, lost lifecycle message): part of its data is missing here, so it is incomplete."""
        sid = item.get("session_id")
        if isinstance(sid, int) and sid not in self.open_sessions:
            self._remember(sid, stream)
            self.incomplete.add(sid)
            self.joined_midway += 1

    def _remember(self, sid: int, stream: str) -> None:
        """Track an open session; bounded, forgetting the oldest if close messages went missing."""
        self.open_sessions[sid] = stream
        while len(self.open_sessions) > MAX_TRACKED_SESSIONS:
            oldest = next(iter(self.open_sessions))
            del self.open_sessions[oldest]
            self.incomplete.discard(oldest)

    def _write_decision(self, item: Mapping[str, Any]) -> None:
        audit, alert = decision_records.audit_due(item), decision_records.alert_due(item)
        if not (audit or alert):
            return
        line = records.encode_line(decision_records.decision_record(item))
        if audit:
            self.audit.append(line)
        if alert:
            self.alert.append(line)

    def _write_session(self, item: Mapping[str, Any], stream: str) -> None:
        sid = item.get("session_id")
        if not isinstance(sid, int) or isinstance(sid, bool):
            raise records.RecordError("session map without an integer session_id")
        if item.get("state") == "opened":
            self._remember(sid, stream)
        else:
            self._track_open(item, stream)
        rec = session_records.session_record(item, self.wall_clock_ns(),
                                             sink_saw_loss=sid in self.incomplete)
        if rec is None:                                   # opened
            return
        self.sessions.append(records.encode_line(rec))
        if item.get("state") == "closed":                 # open -> gone
            self.open_sessions.pop(sid, None)
            self.incomplete.discard(sid)
            self.closed_recent.add(sid)
            self.closed_order.append(sid)
            if len(self.closed_order) > MAX_TRACKED_SESSIONS:
                self.closed_recent.discard(self.closed_order.popleft())
        # "shutdown" keeps the session: a restarted sessionizer may continue it from its checkpoint.

    def on_loss(self, stream: str, topic: str, lost: int) -> None:
        """Subscriber callback: messages were lost on ``stream``; its open sessions are incomplete."""
        marked = [sid for sid, s in self.open_sessions.items() if s == stream]
        self.incomplete.update(marked)
        log.warning("analyzer messages lost; open sessions marked incomplete | stream=%s topic=%s "
                    "lost=%d sessions=%s", stream, topic, lost, ",".join(map(str, marked)) or "-")

    def accepted(self) -> tuple[int, ...]:
        """Records handed to each file so far (sinks/checkpoint.py: durable positions)."""
        return tuple(f.counters.queued for f in self.files().values())

    def resolved(self) -> tuple[int, ...]:
        """Records of each file written, or dropped and counted: they are no longer in memory."""
        return tuple(f.counters.written + f.counters.lost for f in self.files().values())

    def held(self) -> int:
        """Nothing is kept outside the backlogs: every record is written as it arrives."""
        return 0

    def drain(self) -> None:
        """Retry backlogs (call on every poll-loop pass)."""
        for f in self.files().values():
            f.drain()

    def reopen_all(self, why: str) -> None:
        log.info("reopening log files | reason=%s", why)
        for f in self.files().values():
            f.reopen()
        self.drain()

    def close(self) -> None:
        for f in self.files().values():
            f.close()
            if f.backlog:
                log.error("records not written at shutdown; the restarted sink counts them as lost "
                          "(its input position stays before them) | path=%s backlog=%d", f.path, f.backlog)

    def counters(self) -> dict[str, int]:
        """Heartbeat counters: records written per file, write errors, backlog, lost."""
        out: dict[str, int] = {"malformed_maps": self.malformed, "skipped_kinds": self.skipped_kinds,
                               "hidden_events": self.hidden_events,
                               "reloads_applied": self.reloads_applied,
                               "open_sessions": len(self.open_sessions),
                               "sessions_joined_midway": self.joined_midway,
                               "late_messages": self.late_messages}
        for name, f in self.files().items():
            out[f"{name}_written"] = f.counters.written
            out[f"{name}_write_errors"] = f.counters.write_errors
            out[f"{name}_backlog"] = f.backlog
            out[f"{name}_lost"] = f.counters.lost
        out["reopens"] = sum(f.counters.reopens for f in self.files().values())
        out["write_errors"] = sum(f.counters.write_errors for f in self.files().values())
        out["lost_records"] = sum(f.counters.lost for f in self.files().values())
        out["backlog"] = sum(f.backlog for f in self.files().values())
        return out
