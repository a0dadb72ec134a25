"""capability.* flags (casa-original.md §8.5): from the security snapshot on exec events.

The collector reads ``CapEff`` and the seccomp mode right after each exec and carries them as
``cap_eff``/``seccomp`` (None when unreadable). A process without a complete snapshot contributes
only "unknown", which rules cannot see. Session value: OR of the booleans, max of the count,
updated on exec events only.

Beyond the original (issue 13), capabilities *gained* inside the session:

* ``gained_dangerous_caps``: the exec'd process holds a dangerous capability the agent root did
  not hold. The root's CapEff is ``root_cap_eff`` of the session's lifecycle map; when that is
  unknown, the process's own CapEff before the exec (``prev_cap_eff``); when both are unknown,
  nothing is gained (a root agent's children hold what the root held).
* ``privilege_gained``: an exec raised the effective uid to 0 (``prev_euid`` != 0, ``euid`` == 0:
  a setuid-root binary) or added capabilities over ``prev_cap_eff`` (file capabilities). The
  setid/capset calls of the schema-2 kinds join later (analyzer/pending_flags.py).

Only tool processes contribute (an exec with a role or of the agent root: nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from analyzer.session_state import ProcessState
from policy import DANGEROUS_CAPABILITY_BITS, Analysis

__all__ = ["CapabilityFlags", "capability_flags", "dangerous_mask", "CAPABILITY_FIELDS"]

CAPABILITY_FIELDS = ("has_dangerous_caps", "dangerous_count", "seccomp_disabled",
                     "gained_dangerous_caps", "privilege_gained")


@dataclass(frozen=True, slots=True)
class CapabilityFlags:
    has_dangerous_caps: bool = False
    dangerous_count: int = 0
    seccomp_disabled: bool = False
    unknown: bool = False          # some process had no snapshot (not exposed to CEL)
    gained_dangerous_caps: bool = False
    privilege_gained: bool = False

    def merge(self, other: "CapabilityFlags") -> "CapabilityFlags":
        merged = CapabilityFlags(self.has_dangerous_caps or other.has_dangerous_caps,
                                 max(self.dangerous_count, other.dangerous_count),
                                 self.seccomp_disabled or other.seccomp_disabled,
                                 self.unknown or other.unknown,
                                 self.gained_dangerous_caps or other.gained_dangerous_caps,
                                 self.privilege_gained or other.privilege_gained)
        return self if merged == self else merged

    def as_map(self) -> dict[str, bool | int]:
        return {"has_dangerous_caps": self.has_dangerous_caps,
                "dangerous_count": self.dangerous_count, "seccomp_disabled": self.seccomp_disabled,
                "gained_dangerous_caps": self.gained_dangerous_caps,
                "privilege_gained": self.privilege_gained}

    def newly_true(self, before: "CapabilityFlags") -> list[str]:
        mine, old = self.as_map(), before.as_map()
        return [k for k, v in mine.items() if v and not old[k] or (k == "dangerous_count" and v > old[k])]


@lru_cache(maxsize=16)
def dangerous_mask(names: tuple[str, ...]) -> int:
    """Bitmask of the configured capability names (upper-cased, trimmed; unknown names ignored)."""
    mask = 0
    for name in names:
        bit = DANGEROUS_CAPABILITY_BITS.get(name.strip().upper())
        if bit is not None:
            mask |= 1 << bit
    return mask


_NONE = CapabilityFlags()


def capability_flags(proc: ProcessState, a: Analysis, root_cap_eff: int | None = None) -> CapabilityFlags:
    """The flags of one exec'd tool process (``root_cap_eff``: the agent root's CapEff)."""
    if not proc.tool:
        return _NONE
    gained = _privilege_gained(proc)
    if proc.cap_eff is None or proc.seccomp is None:
        return CapabilityFlags(unknown=True, privilege_gained=gained)
    hits = proc.cap_eff & dangerous_mask(a.dangerous_capability_names)
    baseline = root_cap_eff if root_cap_eff is not None else proc.prev_cap_eff
    return CapabilityFlags(has_dangerous_caps=hits != 0, dangerous_count=bin(hits).count("1"),
                           seccomp_disabled=proc.seccomp == 0,
                           gained_dangerous_caps=baseline is not None and hits & ~baseline != 0,
                           privilege_gained=gained)


def _privilege_gained(proc: ProcessState) -> bool:
    if proc.prev_euid is not None and proc.euid is not None and proc.prev_euid != 0 and proc.euid == 0:
        return True
    return proc.prev_cap_eff is not None and proc.cap_eff is not None \
        and proc.cap_eff & ~proc.prev_cap_eff != 0
