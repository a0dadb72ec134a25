"""What the CLI prints for a person: text from the logs made harmless, and colour only on a TTY.

Every path, argument and comm in the logs was chosen by the monitored agent. Printed raw, a
newline in a path would start a forged line (``\\n[ALERT] nothing to see``), an escape sequence
would recolour, move the cursor or retitle the terminal, and a bidi override would reorder what
the reader sees. :func:`safe` writes each such character as a visible escape instead, and escapes
the backslash too, so the escaped text names exactly one original.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["safe", "Palette", "palette_for"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:                 # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _harmful(ch: str) -> bool:
    """Anything Python does not call printable (controls Cc, format Cf — bidi and zero-width —,
    separators other than the space, surrogates Cs, unassigned Cn) and the backslash."""
    return ch == "\\" or not ch.isprintable()


def safe(value: Any) -> str:
    """``value`` as text for one terminal line: control characters (C0, DEL, C1 — ESC included),
    non-UTF-8 bytes (``\\udcXX`` in the logs), lone surrogates, bidi and zero-width characters,
    line separators and the backslash are written as escapes (``\\n``, ``\\x1b``, ``\\xff``, ``\\u202e``, ``\\\\``)."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and "\\" not in text:
        return text                                # the common case: nothing to do
    return "".join(_escape(ch) if _harmful(ch) else ch for ch in text)


@dataclass(frozen=True, slots=True)
class Palette:
    """ANSI colours, or none. Applied only to the CLI's own words, after :func:`safe`."""

    enabled: bool

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def action(self, action: str) -> str:
        return self.paint(action, {"ALERT": "1;31", "LOG": "33"}.get(action.strip(), "32"))

    def dim(self, text: str) -> str:
        return self.paint(text, "2")

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def rule(self, text: str) -> str:
        return self.paint(text, "1;35")


def palette_for(stream: TextIO, choice: str = "auto") -> Palette:
    """``always`` / ``never``; ``auto``: colour only when ``stream`` is a terminal and NO_COLOR
    (https://no-color.org: any non-empty value) is not set."""
    if choice == "always":
        return Palette(True)
    if choice == "never" or os.environ.get("NO_COLOR"):
        return Palette(False)
    try:
        return Palette(stream.isatty())
    except (AttributeError, ValueError):
        return Palette(False)
