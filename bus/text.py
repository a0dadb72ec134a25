"""Wire text: how paths, argv and comm cross the bus without losing a byte.

Kernel strings are bytes. Most are UTF-8; some are not (a path can hold any byte but NUL and '/').
On the wire a string that is valid UTF-8 travels as a msgpack ``str``; anything else travels as
msgpack ``bin`` holding the exact bytes. Inside a stage both become ``str``, with undecodable bytes
mapped to lone surrogates (``surrogateescape``), so ``to_bytes(from_wire(x))`` is always the
original. JSON writers then escape those surrogates (``"\\udcff"``), which keeps log lines valid,
single-line and reversible.
"""

from __future__ import annotations

__all__ = ["from_kernel", "to_wire", "from_wire", "to_bytes"]


def from_kernel(raw: bytes) -> str:
    """Decode a NUL-terminated kernel buffer into a stage-side ``str`` (lossless)."""
    end = raw.find(b"\0")
    if end >= 0:
        raw = raw[:end]
    return raw.decode("utf-8", "surrogateescape")


def to_wire(text: str) -> str | bytes:
    """Return ``text`` as msgpack should carry it: ``str`` if clean UTF-8, else the raw bytes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def from_wire(value: str | bytes) -> str:
    """Inverse of :func:`to_wire`."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def to_bytes(text: str) -> bytes:
    """The exact original bytes of a stage-side string."""
    return text.encode("utf-8", "surrogateescape")
