"""The .casarec file format: raw bus frames with their receive time (docs/operating.md §Recordings).

A recording is one msgpack stream (no framing beyond msgpack's own):

    object 0      header map {"format": "casarec", "version": 1, "created_ns": int,
                              "bus_dir": str, "streams": [str], "topics": [str]}
    object 1..n   one message each: [recv_ns: int, topic: bin, body: bin]

``topic`` and ``body`` are the two frames exactly as they arrived (so a recording also keeps
malformed or future-version messages, byte for byte); ``recv_ns`` is the recorder's wall clock when
it read them. Files are append-only while recording and readable while still being written (a
truncated last object is ignored).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

__all__ = ["FORMAT", "FORMAT_VERSION", "RecordingError", "Recorded", "RecordingWriter", "read_recording"]

FORMAT = "casarec"
FORMAT_VERSION = 1


class RecordingError(ValueError):
    """The file is not a recording this build can read; the message says why."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded bus message."""

    recv_ns: int
    frames: list[bytes]

    @property
    def topic(self) -> str:
        return self.frames[0].decode("utf-8", "replace")


@dataclass(slots=True)
class RecordingWriter:
    """Appends messages to an open binary file."""

    out: BinaryIO
    streams: list[str]
    topics: list[str]
    bus_dir: str = ""
    written: int = 0
    _packer: msgpack.Packer = field(default_factory=lambda: msgpack.Packer(use_bin_type=True))

    def write_header(self) -> None:
        self.out.write(self._packer.pack({
            "format": FORMAT, "version": FORMAT_VERSION, "created_ns": time.time_ns(),
            "bus_dir": self.bus_dir, "streams": self.streams, "topics": self.topics}))

    def write(self, frames: list[bytes], recv_ns: int | None = None) -> None:
        if len(frames) != 2:
            frames = [frames[0] if frames else b"", b"".join(frames[1:])]
        self.out.write(self._packer.pack([recv_ns if recv_ns is not None else time.time_ns(),
                                          bytes(frames[0]), bytes(frames[1])]))
        self.written += 1


def _check_header(header: Any, path: Path) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RecordingError(f"{path}: not a CASA recording (no casarec header); record one with `casa record`")
    if header.get("version") != FORMAT_VERSION:
        raise RecordingError(f"{path}: recording format version {header.get('version')!r}, "
                             f"this build reads {FORMAT_VERSION}")
    return header


def read_recording(path: Path) -> tuple[dict[str, Any], Iterator[Recorded]]:
    """Return the header and an iterator over the recorded messages."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open recording: {exc.strerror}") from None
    unpacker = msgpack.Unpacker(fh, raw=False, strict_map_key=False, max_buffer_size=64 << 20)
    try:
        header = _check_header(next(unpacker), path)
    except (StopIteration, ValueError, msgpack.UnpackException) as exc:
        fh.close()
        if isinstance(exc, RecordingError):
            raise
        raise RecordingError(f"{path}: not a CASA recording ({type(exc).__name__})") from None

    def messages() -> Iterator[Recorded]:
        with fh:
            try:
                for item in unpacker:
                    if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], int)
                            and all(isinstance(x, bytes) for x in item[1:])):
                        yield Recorded(item[0], [item[1], item[2]])
            except (ValueError, msgpack.UnpackException):
                return       # a truncated tail: the recorder was killed mid-write

    return header, messages()
