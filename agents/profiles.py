"""Agent profiles: how CASA recognises an agent root and what a session of it is.

A profile names a kind of agent process and lists matchers; a process is a root of the profile
when ANY matcher matches, and a matcher matches when ALL of its fields do:

    comm               the task comm is one of these (exact; comms are at most 15 bytes)
    exe_basename       basename of the executable path is one of these
    exe_contains       the executable path contains one of these substrings (case-insensitive)
    argv_contains      every one of these tokens appears in argv[1:]
    argv_any           at least one of these tokens appears in argv[1:]
    argv_basename_any  some argv[1:] item not starting with '-' has one of these basenames
    argv_suffix_any    some argv[1:] item not starting with '-' ends with one of these path
                       suffixes; each starts with '/' and names at least three components
                       (``/openclaw/dist/index.js``): a script anchored in its package, for
                       entry points whose own basename (``index.js``) says nothing

Profile kinds (sessionizer/sessions.py gives them meaning):

    runtime     long-lived (the OpenClaw gateway): its descendants' activity is grouped into
                sessions opened by activity and closed after ``idle_gap_s`` without events
    invocation  each matching exec is one session containing its whole descendant tree, closed
                ``close_grace_s`` after the root process exits (the original's CLI window)

``same_dir_required`` (invocation) keeps the original's extra check that the node binary and the
``openclaw`` script argument sit in one directory (true for global nvm installs only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Matcher", "Profile", "ProfileError", "load_config", "load_profiles", "DEFAULT_CONFIG_PATH"]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "casa.json"
KINDS = ("runtime", "invocation")
_MATCHER_FIELDS = ("comm", "exe_basename", "exe_contains", "argv_contains", "argv_any", "argv_basename_any",
                   "argv_suffix_any")
MIN_SUFFIX_COMPONENTS = 3


class ProfileError(ValueError):
    """config/casa.json is invalid; the message names the profile and field."""


@dataclass(frozen=True, slots=True)
class Matcher:
    comm: tuple[str, ...] = ()
    exe_basename: tuple[str, ...] = ()
    exe_contains: tuple[str, ...] = ()
    argv_contains: tuple[str, ...] = ()
    argv_any: tuple[str, ...] = ()
    argv_basename_any: tuple[str, ...] = ()
    argv_suffix_any: tuple[str, ...] = ()

    def matches(self, comm: str, exe: str, argv: list[str] | tuple[str, ...]) -> bool:
        args = list(argv[1:])
        if self.comm and comm not in self.comm:
            return False
        if self.exe_basename and os.path.basename(exe) not in self.exe_basename:
            return False
        if self.exe_contains and not any(s.lower() in exe.lower() for s in self.exe_contains):
            return False
        if self.argv_contains and not all(t in args for t in self.argv_contains):
            return False
        if self.argv_any and not any(t in args for t in self.argv_any):
            return False
        if self.argv_basename_any and not any(
                not a.startswith("-") and os.path.basename(a) in self.argv_basename_any for a in args):
            return False
        if self.argv_suffix_any and not any(
                not a.startswith("-") and a.endswith(self.argv_suffix_any) for a in args):
            return False
        return True

    def script_argument(self, argv: list[str] | tuple[str, ...]) -> str | None:
        """The argv item that satisfied ``argv_basename_any`` (for ``same_dir_required``)."""
        for a in argv[1:]:
            if not a.startswith("-") and os.path.basename(a) in self.argv_basename_any:
                return a
        return None


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    kind: str
    match: tuple[Matcher, ...]
    description: str = ""
    idle_gap_s: float = 5.0
    close_grace_s: float = 2.0
    same_dir_required: bool = False

    def matches(self, comm: str, exe: str, argv: list[str] | tuple[str, ...]) -> bool:
        for m in self.match:
            if not m.matches(comm, exe, argv):
                continue
            if self.same_dir_required and m.argv_basename_any:
                script = m.script_argument(argv)
                if script is None or os.path.dirname(os.path.normpath(script)) != \
                        os.path.dirname(os.path.normpath(exe)):
                    continue
            return True
        return False

    def root_comms(self) -> set[str]:
        """Post-exec comms that may start a root: fed to the kernel for provisional tracking."""
        out: set[str] = set()
        for m in self.match:
            out.update(c[:15] for c in m.comm)
            out.update(b[:15] for b in m.exe_basename)
        return out


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ProfileError(f"{where}: must be a list of non-empty strings")
    return tuple(value)


def _matcher(where: str, raw: Any) -> Matcher:
    if not isinstance(raw, dict) or not raw:
        raise ProfileError(f"{where}: must be a non-empty object")
    unknown = set(raw) - set(_MATCHER_FIELDS)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {sorted(unknown)}; known: {list(_MATCHER_FIELDS)}")
    fields = {k: _strings(f"{where}.{k}", v) for k, v in raw.items()}
    for suffix in fields.get("argv_suffix_any", ()):
        parts = suffix.split("/")
        if not suffix.startswith("/") or len(parts) - 1 < MIN_SUFFIX_COMPONENTS or "" in parts[1:]:
            raise ProfileError(f"{where}.argv_suffix_any: {suffix!r} must be an anchored path suffix "
                               f"of at least {MIN_SUFFIX_COMPONENTS} components, like "
                               "'/openclaw/dist/index.js' (a lone basename is not)")
    return Matcher(**fields)


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ProfileError(f"{where}: must be a number > 0")
    return float(value)


def _profile(i: int, raw: Any) -> Profile:
    if not isinstance(raw, dict):
        raise ProfileError(f"profiles[{i}]: must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"profiles[{i}]: missing 'name'")
    where = f"profile {name!r}"
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ProfileError(f"{where}: 'kind' must be one of {list(KINDS)}, got {kind!r}")
    matchers = raw.get("match")
    if not isinstance(matchers, list) or not matchers:
        raise ProfileError(f"{where}: 'match' must be a non-empty list of matchers")
    known = {"name", "kind", "match", "description", "idle_gap_s", "close_grace_s", "same_dir_required"}
    unknown = set(raw) - known
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {sorted(unknown)}")
    return Profile(
        name=name, kind=kind, description=str(raw.get("description", "")),
        match=tuple(_matcher(f"{where}.match[{j}]", m) for j, m in enumerate(matchers)),
        idle_gap_s=_number(f"{where}.idle_gap_s", raw.get("idle_gap_s", 5.0)),
        close_grace_s=_number(f"{where}.close_grace_s", raw.get("close_grace_s", 2.0)),
        same_dir_required=bool(raw.get("same_dir_required", False)),
    )


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read config/casa.json (or ``$CASA_CONFIG_PATH``) as a dict; ProfileError if unreadable."""
    p = Path(path or os.environ.get("CASA_CONFIG_PATH") or DEFAULT_CONFIG_PATH)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ProfileError(f"{p}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{p}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{p}: top level must be an object")
    return data


def load_profiles(path: str | Path | None = None, data: dict[str, Any] | None = None) -> tuple[Profile, ...]:
    """Parse and validate the profiles; names must be unique."""
    data = data if data is not None else load_config(path)
    raw = data.get("profiles")
    if not isinstance(raw, list) or not raw:
        raise ProfileError("'profiles' must be a non-empty list")
    profiles = tuple(_profile(i, p) for i, p in enumerate(raw))
    names = [p.name for p in profiles]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ProfileError(f"duplicate profile name(s): {dupes}")
    return profiles
