"""Is a collector event valid? The per-event fast path in front of ``bus.validate_event``.

``plainly_valid`` answers True only for events that ``bus.validate_event`` accepts too, judged by
exact field types (one C-level tuple lookup against every type signature the bus tables allow);
False means "ask validate_event", which then decides and words the problems. It is derived from
the bus tables (bus/events.py), so new kinds and fields there are picked up without a change
here (``test_core_fast_paths.py`` checks that the two never disagree).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any

from bus.events import COMMON_FIELDS, KIND_FIELDS, LOSS

__all__ = ["plainly_valid", "known_kind"]

_TEXT_TYPES = frozenset((str, bytes))
_ARGV_KINDS = frozenset(("exec", "root"))


def _type_signatures(fields: dict[str, tuple[type, ...]]) -> frozenset[tuple[type, ...]]:
    """Every tuple of exact field types a valid event of this kind can have (a few dozen)."""
    return frozenset(itertools.product(*fields.values()))


def _signatures() -> dict[str, tuple[Callable[[dict[str, Any]], Any], frozenset[tuple[type, ...]]]]:
    return {kind: (operator.itemgetter(*{**COMMON_FIELDS, **fields}),
                   _type_signatures({**COMMON_FIELDS, **fields}))
            for kind, fields in KIND_FIELDS.items() if kind != LOSS}


# kind -> (fields getter, accepted type signatures), from the bus tables
_SIGNATURES = _signatures()


def known_kind(kind: Any) -> bool:
    """Is ``kind`` an event kind of the bus tables (the others are counted as unknown_kind)?"""
    return type(kind) is str and kind in KIND_FIELDS


def plainly_valid(event: Any) -> bool:
    """True if ``bus.validate_event`` would find nothing, judged by exact types only (no
    subclasses, so no bool posing as an int). False means "ask validate_event"."""
    if type(event) is not dict:
        return False
    kind = event.get("kind")
    entry = _SIGNATURES.get(kind) if type(kind) is str else None
    if entry is None:
        return False
    getter, signatures = entry
    try:
        if tuple(map(type, getter(event))) not in signatures:
            return False
    except KeyError:                                  # a required field is missing
        return False
    if kind in _ARGV_KINDS:
        for a in event["argv"]:
            if type(a) not in _TEXT_TYPES:
                return False
    return True
