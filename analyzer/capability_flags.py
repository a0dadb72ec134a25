"""capability.* flags (casa-original.md §8.5): from the security snapshot on exec events.

The collector reads ``CapEff`` and the seccomp mode right after each exec and carries them as
``cap_eff``/``seccomp`` (None when unreadable). A process without a complete snapshot contributes
only "unknown", which rules cannot see. Session value: OR of the booleans, max of the count,
updated on exec events only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from analyzer.session_state import ProcessState
from policy import DANGEROUS_CAPABILITY_BITS, Analysis

__all__ = ["CapabilityFlags", "capability_flags", "dangerous_mask"]


@dataclass(frozen=True, slots=True)
class CapabilityFlags:
    has_dangerous_caps: bool = False
    dangerous_count: int = 0
    seccomp_disabled: bool = False
    unknown: bool = False          # some process had no snapshot (not exposed to CEL)

    def merge(self, other: "CapabilityFlags") -> "CapabilityFlags":
        return CapabilityFlags(self.has_dangerous_caps or other.has_dangerous_caps,
                               max(self.dangerous_count, other.dangerous_count),
                               self.seccomp_disabled or other.seccomp_disabled,
                               self.unknown or other.unknown)

    def as_map(self) -> dict[str, bool | int]:
        return {"has_dangerous_caps": self.has_dangerous_caps,
                "dangerous_count": self.dangerous_count, "seccomp_disabled": self.seccomp_disabled}


@lru_cache(maxsize=16)
def dangerous_mask(names: tuple[str, ...]) -> int:
    """Bitmask of the configured capability names (upper-cased, trimmed; unknown names ignored)."""
    mask = 0
    for name in names:
        bit = DANGEROUS_CAPABILITY_BITS.get(name.strip().upper())
        if bit is not None:
            mask |= 1 << bit
    return mask


def capability_flags(proc: ProcessState, a: Analysis) -> CapabilityFlags:
    if proc.cap_eff is None or proc.seccomp is None:
        return CapabilityFlags(unknown=True)
    hits = proc.cap_eff & dangerous_mask(a.dangerous_capability_names)
    return CapabilityFlags(has_dangerous_caps=hits != 0, dangerous_count=bin(hits).count("1"),
                           seccomp_disabled=proc.seccomp == 0)
