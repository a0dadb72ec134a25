"""Line numbers for rules.json errors: where a top-level key, a rule, or a rule field sits.

``json`` gives positions only for syntax errors. For the semantic errors of
:mod:`policy.schema` ("rule 'x' weight must be an integer") we re-scan the valid document with
``JSONDecoder.raw_decode`` to learn where the top-level values and the rule objects start, and
then search a rule's own text for a field's key. Every lookup is best effort: a miss returns
None and the message simply has no line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

__all__ = ["Locator", "line_of"]

_WS = re.compile(r"\s*")
_DECODER = json.JSONDecoder()


def line_of(text: str, offset: int) -> int:
    """1-based line number of character ``offset``."""
    return text.count("\n", 0, offset) + 1


@dataclass(slots=True)
class Locator:
    """Offsets of the parts of one rules.json text that error messages point at."""

    text: str
    keys: dict[str, int] = field(default_factory=dict)        # top-level key -> offset of its value
    rules: list[tuple[int, int]] = field(default_factory=list)  # rule index -> (start, end)

    @classmethod
    def scan(cls, text: str) -> "Locator":
        loc = cls(text)
        try:
            loc._scan_top()
        except (ValueError, IndexError):
            pass      # positions are a courtesy; the parsed document is already known to be valid
        return loc

    def _skip(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()  # type: ignore[union-attr]

    def _scan_top(self) -> None:
        pos = self._skip(0)
        if self.text[pos] != "{":
            return
        pos = self._skip(pos + 1)
        while self.text[pos] != "}":
            key, pos = _DECODER.raw_decode(self.text, pos)
            pos = self._skip(pos)
            pos = self._skip(pos + 1)             # the ':'
            self.keys[key] = pos
            if key == "rules" and self.text[pos] == "[":
                self.rules = self._scan_array(pos)
            _, pos = _DECODER.raw_decode(self.text, pos)
            pos = self._skip(pos)
            if self.text[pos] == ",":
                pos = self._skip(pos + 1)

    def _scan_array(self, pos: int) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        pos = self._skip(pos + 1)
        while self.text[pos] != "]":
            _, end = _DECODER.raw_decode(self.text, pos)
            spans.append((pos, end))
            pos = self._skip(end)
            if self.text[pos] == ",":
                pos = self._skip(pos + 1)
        return spans

    def key_line(self, key: str, sub: str | None = None) -> int | None:
        """Line of top-level ``key`` (or of ``sub`` inside its object value)."""
        start = self.keys.get(key)
        if start is None:
            return None
        if sub is None:
            return line_of(self.text, start)
        _, end = _DECODER.raw_decode(self.text, start) if self._decodable(start) else (None, start)
        return self._find_key(sub, start, end)

    def rule_line(self, index: int, sub: str | None = None) -> int | None:
        """Line of rule number ``index`` (0-based), or of its field ``sub``."""
        if not 0 <= index < len(self.rules):
            return None
        start, end = self.rules[index]
        if sub is None:
            return line_of(self.text, start)
        return self._find_key(sub, start, end) or line_of(self.text, start)

    def _decodable(self, pos: int) -> bool:
        try:
            _DECODER.raw_decode(self.text, pos)
        except ValueError:
            return False
        return True

    def _find_key(self, key: str, start: int, end: int) -> int | None:
        m = re.compile(r'"%s"\s*:' % re.escape(key)).search(self.text, start, end)
        return line_of(self.text, m.start()) if m else None
