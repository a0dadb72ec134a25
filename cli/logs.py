"""Reading CASA's JSONL records back, rotated generations included: the source of `casa sessions`
and `casa explain`.

The jsonl sink never rotates its files itself: logrotate (or anything else) renames them and the
sink reopens the path (docs/sinks.md, "Rotation"). So a log is the live file plus whatever
generations sit next to it under the usual names: ``alert.log.1``, ``alert.log.2.gz`` (logrotate's
default, with or without ``compress``) and ``alert.log-20261205`` / ``alert.log-20261205.gz``
(``dateext``). Generations are read oldest first, by modification time (a rename keeps it, so
it is the order they were written in), the live file last.

A line that is not a JSON object (a torn last line while the sink writes, a foreign line) is
counted and skipped, never fatal: one bad line must not hide the rest of a session.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from cli.terminal import safe
from sinks.envfile import load_env_file
from sinks.logpaths import LogPaths

__all__ = ["LogSet", "LogReader", "generations", "parse_time_ns", "parse_duration_s", "SID_TAIL"]

_ROTATED = re.compile(r"^\.(\d+)(\.gz)?$|^-\d{8,14}(\.gz)?$")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
CHECKOUT_ENV = Path(__file__).resolve().parents[1] / ".env"   # where `make run` keeps the sinks' .env
SID_TAIL = re.compile(rb',"session_id":(\d+)\}\s*$')


def generations(path: Path) -> list[Path]:
    """``path``'s rotated generations, oldest first, then ``path`` itself if it exists."""
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    rotated = [path.parent / n for n in names
               if n.startswith(path.name) and _ROTATED.match(n[len(path.name):])]
    rotated.sort(key=lambda p: (_mtime(p), -_generation(p)))
    try:
        live = [path] if path.is_file() else []
    except OSError:                                  # listable but not searchable: lines() says why
        live = [path]
    return rotated + live


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _generation(p: Path) -> int:
    """logrotate's number (``.2`` is older than ``.1``); dated generations sort by mtime alone."""
    m = re.search(r"\.(\d+)(?:\.gz)?$", p.name)
    return int(m.group(1)) if m else 0


def _open(p: Path) -> BinaryIO:
    return gzip.open(p, "rb") if p.name.endswith(".gz") else open(p, "rb")   # type: ignore[return-value]


def parse_time_ns(stamp: Any) -> int | None:
    """The sinks' RFC3339Nano text (``2026-05-02T17:44:19.0275-05:00``, ``...Z``) -> ns since the
    epoch; None when it is not one."""
    if not isinstance(stamp, str):
        return None
    m = _STAMP.match(stamp)
    if not m:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        seconds = int(datetime.fromisoformat(m.group(1) + zone).timestamp())
    except ValueError:
        return None
    return seconds * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))


def parse_duration_s(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``, ``1d`` -> seconds; ValueError otherwise."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 10m, 2h, 1d)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


@dataclass(frozen=True, slots=True)
class LogSet:
    """The four logs, as the sinks resolve them (``CASA_LOG_DIR``, ``CASA_*_LOG_PATH``)."""

    events: Path
    sessions: Path
    audit: Path
    alert: Path

    @classmethod
    def resolve(cls, log_dir: Path | None = None, environ: Mapping[str, str] | None = None,
                env_file: Path | None = CHECKOUT_ENV) -> "LogSet":
        """``--log-dir`` wins; otherwise the sinks' own rules: the environment, then the
        checkout's ``.env`` (which the sinks read too), then ``/var/log/casa``."""
        env = dict(os.environ if environ is None else environ)
        if env_file is not None and log_dir is None:
            load_env_file(env_file, env)
        if log_dir is not None:
            env = {k: v for k, v in env.items() if not k.endswith("_LOG_PATH") and
                   k not in ("CASA_EVENTS_LOG", "CASA_SESSIONS_LOG")}
            env["CASA_LOG_DIR"] = str(log_dir)
        paths = LogPaths.from_env(env)
        return cls(paths.events, paths.sessions, paths.audit, paths.alert)


def add_log_options(p: argparse.ArgumentParser, color_help: str) -> None:
    """The options of every verb that reads the logs: where they are (``LogSet.resolve``), and
    whether to colour what it prints (``cli.terminal.palette_for``)."""
    p.add_argument("--log-dir", type=Path, default=None,
                   help="the logs' directory (default $CASA_LOG_DIR, the checkout's .env, /var/log/casa)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help=color_help)


@dataclass(slots=True)
class LogReader:
    """Reads records; counts what it had to skip (``bad_lines``) and could not open (``errors``)."""

    bad_lines: int = 0
    errors: list[str] = field(default_factory=list)

    def generations(self, path: Path) -> list[Path]:
        """:func:`generations`, noting a directory that exists but cannot be read (the logs are
        casa:casa 0750: root or the casa group only), so "no session" is never a silent denial."""
        found = generations(path)
        if not found:
            try:
                os.listdir(path.parent)
            except PermissionError:
                note = f"{path.parent}: permission denied (the logs are readable by root and the casa group)"
                if note not in self.errors:
                    self.errors.append(note)
            except OSError:
                pass                                 # missing: nothing written yet
        return found

    def records(self, path: Path) -> Iterator[dict[str, Any]]:
        """Every JSON object of every generation of ``path``, oldest first."""
        for gen in self.generations(path):
            for raw in self.lines(gen):
                record = self._decode(raw)
                if record is not None:
                    yield record

    def session_events(self, path: Path, session_id: int) -> Iterator[dict[str, Any]]:
        """events.log lines of one session: the line's tail names it (sinks/records.py writes
        ``session_id`` last), so other sessions' lines are skipped without a JSON parse."""
        for gen in self.generations(path):
            for raw in self.lines(gen):
                m = SID_TAIL.search(raw)
                if m and int(m.group(1)) == session_id:
                    record = self._decode(raw)
                    if record is not None and record.get("session_id") == session_id:
                        yield record

    def lines(self, path: Path) -> Iterator[bytes]:
        """The raw lines of one file (gzip or plain); an unreadable file is noted in ``errors``."""
        try:
            with _open(path) as fh:
                yield from fh
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            self.errors.append(f"{path}: {exc}")

    def report_errors(self, verb: str, out: TextIO) -> None:
        """One ``casa <verb>: ERROR`` line per file or directory that could not be read."""
        for e in self.errors:
            out.write(f"casa {verb}: ERROR (cannot read {safe(e)})\n")

    def report_skipped(self, verb: str, out: TextIO) -> None:
        """Say how many lines were not records (a torn write, a stranger's line), if any: the
        verb's answer leaves them out, and the reader should know it did."""
        if self.bad_lines:
            out.write(f"casa {verb}: skipped {self.bad_lines} line(s) that are not records\n")

    def _decode(self, raw: bytes) -> dict[str, Any] | None:
        try:
            # the sinks write non-UTF-8 text as \\udcXX escapes: the line itself is valid UTF-8
            record = json.loads(raw.decode("utf-8", "surrogateescape"))
        except (ValueError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict):
            if raw.strip():
                self.bad_lines += 1
            return None
        return record
