"""Evidence: which events made each context field true, as compact references.

A reference (:data:`Ref`) is ``(ts_ns, tgid, kind, what)`` where ``what`` is the event's
effective path (exec, open, rename target, chmod, ...; ``memfd:<name>`` for memfd_create),
``addr:port`` (connect, send, bind, listen; ``[v6]:port``), the target pid (ptrace, vm_read) or a
short detail (socket: family/type/protocol, setid: the euid it gave, capset: the effective mask).
Every field of a session keeps the references of the events that first made it true, at most
:data:`MAX_REFS` (write->exec: the write and the exec; a burst: its first and last events; a
single-event flag: that event). They are kept per session, set once (later completions of an
already true field add nothing: the first is enough to explain it, and memory stays bounded).

Decisions carry ``evidence: {"history.write_then_exec_same_path": [ref, ref], ...}`` for the
fields their newly triggered rules name (``policy.expressions.referenced_fields``) that are true
and have references; each reference a map ``{"ts_ns", "tgid", "kind", "path" | "addr"}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bus.text import to_wire
from policy import Rule
from policy.expressions import referenced_fields

__all__ = ["Ref", "MAX_REFS", "Evidence", "ref_map", "addr_text", "RuleFields", "ENV_TRUNCATED"]

MAX_REFS = 4

Ref = tuple[int, int, str, str]           # (ts_ns, tgid, kind, path or addr:port)
_WHAT_KEY = {"connect": "addr", "send": "addr", "bind": "addr", "listen": "addr",
             "ptrace": "target", "vm_read": "target", "socket": "detail", "setid": "detail",
             "capset": "detail"}
# Not a context field: the execs whose environment had more entries than the kernel checks
# (an LD_* variable may have been past them). Shown with loader_hijack's evidence (rules.md).
ENV_TRUNCATED = "execution.env_truncated"


def addr_text(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def ref_map(ref: Ref) -> dict[str, Any]:
    """The wire shape of one reference (non-UTF-8 paths go back to bytes)."""
    ts, tgid, kind, what = ref
    key = _WHAT_KEY.get(kind, "path")
    if key == "target":
        return {"ts_ns": ts, "tgid": tgid, "kind": kind, "target": int(what) if what.isdigit() else what}
    return {"ts_ns": ts, "tgid": tgid, "kind": kind, key: to_wire(what)}


class Evidence:
    """``"group.field"`` -> the references that first made it true (one session)."""

    __slots__ = ("refs",)

    def __init__(self, refs: dict[str, tuple[Ref, ...]] | None = None) -> None:
        self.refs: dict[str, tuple[Ref, ...]] = refs if refs is not None else {}

    def add(self, name: str, refs: Iterable[Ref | None]) -> None:
        """Record ``refs`` for ``name`` unless it already has evidence (first completion wins)."""
        if name in self.refs:
            return
        kept = tuple(dict.fromkeys(r for r in refs if r is not None))
        if len(kept) > MAX_REFS:              # keep the first and the last ones
            kept = kept[: MAX_REFS - 1] + kept[-1:]
        self.refs[name] = kept

    def append(self, name: str, ref: Ref) -> None:
        """One more reference for ``name``, up to :data:`MAX_REFS` (the first ones are kept)."""
        have = self.refs.get(name, ())
        if len(have) < MAX_REFS and ref not in have:
            self.refs[name] = have + (ref,)

    def for_fields(self, names: Iterable[str], context: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Evidence of those ``names`` that are true in ``context`` (a Context.as_map())."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            group, _, fld = name.partition(".")
            refs = self.refs.get(name)
            value = context.get(group, {}).get(fld)
            if refs and (value is True or (type(value) is int and value > 0)):
                out[name] = [ref_map(r) for r in refs]
            if name == "execution.loader_hijack" and self.refs.get(ENV_TRUNCATED):
                out[ENV_TRUNCATED] = [ref_map(r) for r in self.refs[ENV_TRUNCATED]]
        return out

    def dump(self) -> dict[str, list[list[Any]]]:
        return {k: [list(r) for r in v] for k, v in self.refs.items()}

    @classmethod
    def load(cls, raw: Any) -> "Evidence":
        if not isinstance(raw, dict):
            return cls()
        return cls({str(k): tuple((int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in v)
                    for k, v in raw.items()})


class RuleFields:
    """The context fields each rule names, parsed once per policy."""

    __slots__ = ("_by_rule",)

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._by_rule = {r.name: referenced_fields(r.expr) for r in rules}

    def of(self, rules: Iterable[Rule]) -> list[str]:
        seen: dict[str, None] = {}
        for r in rules:
            for f in self._by_rule.get(r.name, ()):
                seen[f] = None
        return list(seen)
