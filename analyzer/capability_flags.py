"""capability.* flags (docs/original.md §8.5): from the security snapshot on exec events.

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
  a setuid-root binary) or added capabilities over ``prev_cap_eff`` (file capabilities); or a
  successful ``setid``/``capset`` call did (:func:`privilege_call`: euid 0 from a process whose
  euid was not 0, or effective capabilities beyond what it held).

Only tool processes contribute their exec (an exec with a role or of the agent root: nothing);
a privilege-raising call counts whoever makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from typing import Any

from analyzer.session_state import ProcessState, int_field
from analyzer.tree_index import X_BIT, SessionMarks
from policy import DANGEROUS_CAPABILITY_BITS, Analysis

__all__ = ["CapabilityFlags", "capability_flags", "dangerous_mask", "CAPABILITY_FIELDS",
           "privilege_call"]

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
        """Sticky across the session's processes; ``self`` itself when nothing changes."""
        if other is self or other is _NONE:
            return self
        if self is _NONE:
            return other
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
MEMO_LIMIT = 4096     # distinct capability inputs remembered per policy


def capability_flags(proc: ProcessState, a: Analysis, root_cap_eff: int | None = None,
                     memo: dict[tuple[Any, ...], CapabilityFlags] | None = None) -> CapabilityFlags:
    """The flags of one exec'd tool process (``root_cap_eff``: the agent root's CapEff).

    ``memo`` (one per policy): the same inputs give the same object, so merging it into the
    session's value is mostly an identity test (:meth:`CapabilityFlags.merge`)."""
    if not proc.tool:
        return _NONE
    if memo is None:
        return _flags(proc, a, root_cap_eff)
    key = (proc.cap_eff, proc.seccomp, proc.prev_cap_eff, proc.euid, proc.prev_euid, root_cap_eff)
    flags = memo.get(key)
    if flags is None:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        flags = memo[key] = _flags(proc, a, root_cap_eff)
    return flags


def _flags(proc: ProcessState, a: Analysis, root_cap_eff: int | None) -> CapabilityFlags:
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


_GAINED = X_BIT["capability.privilege_gained"]


def privilege_call(kind: str, ev: dict[str, Any], proc: ProcessState, lifecycle: dict[str, Any],
                   marks: SessionMarks) -> None:
    """A successful ``setid`` that left euid 0 in a process whose euid was not 0, or a ``capset``
    of its own effective set beyond what it held. "Held" is what its exec gave it (``euid``,
    ``cap_eff`` of its exec in this session), else the agent root's (lifecycle ``root_uid``,
    ``root_cap_eff``): a root process dropping to a user and back is not a gain. A setid by a
    process with neither known counts when its real uid is not 0; a capset, not at all."""
    if int_field(ev.get("ret"), 0) != 0:
        return
    ts, tgid = int_field(ev.get("ts_ns")), int_field(ev.get("tgid"))
    if kind == "setid":
        if int_field(ev.get("euid"), -1) != 0:
            return
        base = proc.euid if proc.euid is not None else lifecycle.get("root_uid")
        if base is None or type(base) is not int:
            base = int_field(ev.get("uid"), 0)
        if base != 0:
            marks.hit_x(_GAINED, ((ts, tgid, kind, "euid=0"),))
        return
    target = int_field(ev.get("pid"), 0)
    if target not in (0, tgid):
        return
    base = proc.cap_eff if proc.cap_eff is not None else lifecycle.get("root_cap_eff")
    effective = int_field(ev.get("effective"), 0)
    if type(base) is int and effective & ~base:
        marks.hit_x(_GAINED, ((ts, tgid, kind, f"effective={effective:#x}"),))
