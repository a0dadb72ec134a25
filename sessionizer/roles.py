"""Roles of processes in an agent tree: what the runtime itself runs, as opposed to the tools.

``role`` (docs/bus.md, sessionizer fields) is published on every event of a process that has one:

* ``agent``: the runtime's own image. The root (until it execs an image foreign to its
  profile), a child exec'd by an ``agent`` process that runs the root's executable and either
  matches the root's profile (the CLI re-executing itself as ``node … openclaw agent …``) or runs
  a script inside the root's install directory (a runtime worker), and fork-only children of these.
* ``wrapper``: the runtime's shell wrapper (``/bin/bash -c "<cmd>"``): a shell from a root-owned
  system directory, started with ``-c``, with no system shell above it in the tree.
* ``routine``: a routine exec (``uname -a``, ``id``, ...) from a system directory.

No role is ever a reason to drop an exec: role-tagged execs and exits are published, and the
analyzer keeps them out of execution flags and lineage names. Wrappers and routine execs are
also transparent in the tracker (skipped in lineage, not counted in depth), as before.

Every name shortcut is anchored (anchors.py): ``/tmp/d/sh -c x``, ``/tmp/d/id`` and an
``exec /tmp/d/sh`` replacing the wrapper in place have no role and count like any tool.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from bus.paths import effective_path, normalise
from bus.text import from_wire

__all__ = ["AGENT", "WRAPPER", "ROUTINE", "ExecFacts", "exec_facts", "is_wrapper_argv",
           "script_argument", "install_dir", "same_image"]

AGENT, WRAPPER, ROUTINE = "agent", "wrapper", "routine"
SCRIPT_SUFFIXES = (".mjs", ".cjs", ".js")
# never an install directory: a filter anchored there would cover far more than the runtime
TOO_BROAD = frozenset({"/tmp", "/var/tmp", "/dev/shm", "/run", "/home", "/root", "/usr", "/opt",
                       "/srv", "/var", "/etc", "/usr/local", "/usr/lib", "/usr/local/lib"})


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    return from_wire(value) if isinstance(value, bytes) else ""


@dataclass(slots=True)
class ExecFacts:
    """What an exec ran, read once: ``image`` is the absolute, normalised executable (for an fd
    exec, the file behind the fd: ``memfd:x (deleted)``), ``resolved`` False when a relative
    path could not be made absolute; ``name`` the post-exec name for lineage and shell checks."""

    image: str
    resolved: bool
    name: str
    argv: list[str]
    exe_id: tuple[int, int] | None
    fd_exec: bool = False


def _absolute(text: str) -> str:
    """``text`` (absolute) normalised; the common, already normal case without a call."""
    return normalise(text) if ("//" in text or "/." in text or text[-1] == "/") else text


def exec_facts(event: dict[str, Any]) -> ExecFacts:
    """Not frozen, on purpose: a frozen dataclass's ``__init__`` costs about 1 us more, on
    every exec."""
    path_raw, exe_raw = _text(event.get("path")), _text(event.get("exe"))
    fd_exec = bool(exe_raw) and exe_raw != path_raw
    if fd_exec:                                      # the file behind the fd
        resolved = exe_raw.startswith("/")
        image = _absolute(exe_raw) if resolved else exe_raw
    elif "abspath" in event or not path_raw.startswith("/"):
        image, resolved = effective_path(event)      # relative: the kernel's abspath, if any
    else:
        image, resolved = _absolute(path_raw), True
    # an fd exec (fexecve: no path) is named after the file behind the fd, not after the
    # event's comm, which is the pre-exec one (the runtime's own name)
    name = (posixpath.basename(path_raw.rstrip("/")) or posixpath.basename(exe_raw)
            or _text(event.get("comm")))
    argv = [_text(a) for a in event.get("argv") or [] if isinstance(a, (str, bytes))]
    ino, dev = event.get("ino"), event.get("dev")
    exe_id = (ino, dev) if type(ino) is int and type(dev) is int else None
    return ExecFacts(image, resolved, name, argv, exe_id, fd_exec)


def is_wrapper_argv(argv: list[str]) -> bool:
    """A shell started to run a command string: ``-c`` (also ``-lc``, ``-ec``, ...)."""
    return any(a.startswith("-") and not a.startswith("--") and "c" in a[1:] for a in argv[1:])


def script_argument(argv: list[str], names: tuple[str, ...] = ()) -> str | None:
    """The absolute script path a runtime was started with: the first absolute ``argv[1:]``
    item whose basename is one of ``names`` (the profile's ``argv_basename_any``), else the
    first absolute item that is not an option. None when there is none."""
    candidates = [a for a in argv[1:] if a.startswith("/") and not a.startswith("-")]
    for a in candidates:
        if posixpath.basename(a) in names:
            return posixpath.normpath(a)
    return posixpath.normpath(candidates[0]) if candidates else None


def install_dir(script: str | None, home: str | None = None,
                exclude: frozenset[str] = frozenset()) -> str | None:
    """The install directory of a runtime started as ``script`` (lexically; no file is read):

    * ``<p>/node_modules/.bin/<name>`` -> ``<p>/node_modules`` (a project-local install: the
      package's dependencies sit beside it, hoisted);
    * ``<p>/bin/<name>`` -> ``<p>/lib/node_modules/<name>`` (npm's global layout, nvm's too);
    * ``<p>/node_modules/<pkg>/...`` -> ``<p>/node_modules/<pkg>``;
    * otherwise the script's directory.

    None when there is no script or the result would be a broad shared directory (/tmp, /usr,
    a system directory in ``exclude``, the user's ``home`` or a directory above it): an
    anchored filter there would hide far more than the runtime."""
    if not script or not script.startswith("/"):
        return None
    parts = script.split("/")
    name = parts[-1]
    for suffix in SCRIPT_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    parent = posixpath.dirname(script)
    if parent.endswith("/node_modules/.bin"):
        out = posixpath.dirname(parent)
    elif "node_modules" in parts[:-1]:
        i = parts.index("node_modules")
        out = "/".join(parts[: i + 2]) if i + 2 < len(parts) else parent
    elif posixpath.basename(parent) == "bin" and name:
        out = posixpath.join(posixpath.dirname(parent), "lib", "node_modules", name)
    else:
        out = parent
    out = posixpath.normpath(out)
    if out in TOO_BROAD or out in exclude or out.count("/") < 2:
        return None
    if home and (home.rstrip("/") + "/").startswith(out + "/"):
        return None
    return out


def same_image(facts: ExecFacts, exe: str, exe_id: tuple[int, int] | None) -> bool:
    """Does the exec run the executable ``exe`` (identified by ``exe_id`` when both sides have
    an inode and device from the kernel; else by path)?"""
    if facts.exe_id is not None and exe_id is not None:
        return facts.exe_id == exe_id
    return bool(exe) and facts.resolved and facts.image == exe
