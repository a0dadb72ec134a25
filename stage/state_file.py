"""A stage's state file: one JSON document in ``$CASA_STATE_DIR``, replaced atomically.

Every stage that survives a restart (the sessionizer's sessions and id reservations, an analyzer's
sessions, a sink's input positions) keeps its state the same way:

* **atomic and durable**: written to ``<name>.tmp``, flushed and fsync'd, then renamed over the
  file, so a crash leaves the old document or the new one, never half of one;
* **one version key**, ``"version"``: a stage reads the versions it lists and refuses any other
  with a clear error (files written before the key was unified carry ``"v"``, read the same way);
* **an unusable file starts the stage clean**: :meth:`StateFile.load` logs why, sets the file
  aside as ``<name>.corrupt`` (for a person to look at; never trusted) and returns None;
* **one parser for saved bus positions** (:func:`read_positions`): all or nothing, so a damaged
  list changes nothing.

A failed write is logged once (with what it costs the stage), then quietly retried at the next
checkpoint until one works again.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.sequence import StreamState, parse_positions

__all__ = ["StateFile", "StateFileError", "read_positions", "VERSION_KEY"]

VERSION_KEY = "version"
_OLD_VERSION_KEY = "v"          # analyzer and sink files written before the key was unified

log = logging.getLogger("casa.stage")


class StateFileError(ValueError):
    """A state file that cannot be used: unreadable, not a JSON object, or another version."""


@dataclass
class StateFile:
    """The state file at ``path``, of format ``version`` (``older``: versions still read)."""

    path: Path
    version: int
    what: str = "state file"            # names it in log lines: "analyzer checkpoint"
    cost: str = "restart recovery is off"   # what a failed write means, said once
    older: tuple[int, ...] = ()
    failed: bool = False                # the last write failed (warned once)
    write_failures: int = 0

    def read(self) -> dict[str, Any] | None:
        """The document, None when there is none; StateFileError when it cannot be used."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateFileError(f"unreadable: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise StateFileError(f"unreadable: not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise StateFileError("of another format: not a JSON object")
        found = doc.get(VERSION_KEY, doc.get(_OLD_VERSION_KEY))
        if found is None or isinstance(found, bool) or found not in (self.version, *self.older):
            known = ", ".join(str(v) for v in (self.version, *self.older))
            raise StateFileError(f"of another format: version {found!r} (this build reads {known})")
        return doc

    def load(self) -> dict[str, Any] | None:
        """:meth:`read`, except that an unusable file is logged, set aside and None returned."""
        try:
            return self.read()
        except StateFileError as exc:
            log.error("%s unusable; starting clean | path=%s reason=%s", self.what, self.path, exc)
            self.set_aside()
            return None

    def set_aside(self) -> None:
        try:
            self.path.replace(self.path.with_name(self.path.name + ".corrupt"))
        except OSError:
            pass

    def write(self, doc: dict[str, Any]) -> bool:
        """Replace the file with ``doc`` (the version key first); False when that failed."""
        return self.write_text(json.dumps({VERSION_KEY: self.version, **doc}, separators=(",", ":")))

    def write_text(self, text: str) -> bool:
        """Replace the file with ``text``, a JSON object that already carries the version key
        (for documents serialized piece by piece); atomic and fsync'd."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:      # one write of the whole text
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            self.write_failed(exc)
            return False
        self.failed = False
        return True

    def write_failed(self, exc: Exception) -> None:
        """Count a failed write (warned once until one works again)."""
        if not self.failed:
            log.warning("cannot write the %s; %s | path=%s reason=%s", self.what, self.cost,
                        self.path, getattr(exc, "strerror", None) or exc)
        self.failed = True
        self.write_failures += 1


def read_positions(raw: Any, stream: str | None = None) -> dict[tuple[str, str], StreamState]:
    """Saved bus positions (``SequenceTracker.positions()``) for ``tracker.streams.update``.

    All or nothing: ValueError on any damaged entry (bus.sequence.parse_positions). None is no
    positions. With ``stream``, a per-topic map ``{topic: {"epoch", "seq"}}`` (how the sessionizer
    saved them before they were a list) is read as that stream's.
    """
    if raw is None:
        return {}
    if isinstance(raw, dict) and stream is not None:
        raw = [{"stream": stream, "topic": topic, **pos} if isinstance(pos, dict) else pos
               for topic, pos in raw.items()]
    return parse_positions(raw)
