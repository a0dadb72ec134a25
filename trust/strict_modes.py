"""StrictModes for the root collector: refuse to run as root what a non-root user could change.

Like sshd's StrictModes: before the collector loads anything into the kernel as root, every file
it executes or reads its settings from, and every directory above them, must be changeable by
root alone (trust/paths.py). Otherwise whoever can write there -- the agent's user, or a
compromised stage running as ``casa`` -- could make root run their code. Checked:

* the Python interpreter and every module already imported (the collector's code, the bus, bcc,
  ZeroMQ ...: source and cached bytecode), and every directory on ``sys.path`` (a module planted
  there would be imported by the next ``import`` of that name);
* ``config/casa.json`` (``$CASA_CONFIG_PATH``), ``rules.json`` (``$CASA_RULES_PATH``) and the
  ``.env`` files of the working directory and of the checkout, when they exist;
* the directory of the collector's pid file (root writes it; ``casa reload`` signals the pid).

The first problem found is reported in one line that says which path, who can change it, and how
to fix it. Caveat: the check runs once the collector's modules are imported, so it refuses to
*run* (load probes, publish, stay root) rather than to import; the interpreter's start-up (site
packages, ``.pth`` files) precedes any check a Python program can make. setup.sh makes the tree
root's, and this check catches it drifting. :func:`check` is pure given its ``lstat`` and
``readlink``, so the rules are unit-tested (tests/trust/test_strict_modes.py) without root.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from trust.paths import Lstat, Readlink, Unsafe, real_lstat, unsafe_writer

__all__ = ["Finding", "check", "code_paths", "collector_paths", "refusal"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason not to start: ``what`` (the role of the path) and the unsafe entry."""

    what: str
    unsafe: Unsafe

    def line(self) -> str:
        fix = (f"fix: chown root {self.unsafe.path} and chmod go-w {self.unsafe.path} "
               "(or install CASA where only root can write)")
        if self.unsafe.who == "missing":
            fix = "fix: create it, or point the setting at an existing file"
        return f"refusing to run as root: {self.unsafe.sentence(self.what)}; {fix}"


def code_paths(modules: Iterable[object] | None = None, path: Iterable[str] | None = None) -> list[str]:
    """The interpreter, every loaded module's file and every ``sys.path`` directory that exists."""
    out = [os.path.realpath(sys.executable)]
    for module in (sys.modules.values() if modules is None else modules):
        for attr in ("__file__", "__cached__"):          # the source and the bytecode loaded
            f = getattr(module, attr, None)
            if isinstance(f, str) and os.path.isabs(f) and os.path.exists(f):
                out.append(f)
    out += [p for p in (sys.path if path is None else path) if p and os.path.isabs(p) and os.path.isdir(p)]
    return sorted(set(out))


def collector_paths(config: str, rules: str, pid_file: str, checkout: str, cwd: str) -> list[tuple[str, str, bool]]:
    """(what, path, must exist) for the settings the collector trusts."""
    return [("config file", config, True), ("rules file", rules, True),
            (".env file", os.path.join(cwd, ".env"), False),
            (".env file", os.path.join(checkout, ".env"), False),
            ("pid file directory", os.path.dirname(os.path.abspath(pid_file)), True)]


def check(code: Iterable[str], settings: Iterable[tuple[str, str, bool]], *,
          lstat: Lstat = real_lstat, readlink: Readlink = os.readlink) -> list[Finding]:
    """Every path root must own alone, and what is wrong with each one that it does not."""
    findings: list[Finding] = []
    seen: set[str] = set()
    for what, p, must_exist in [("code", c, True) for c in code] + list(settings):
        p = os.path.abspath(p)
        if p in seen:
            continue
        seen.add(p)
        if not must_exist and not _exists(p, lstat):
            continue
        unsafe = unsafe_writer(p, lstat=lstat, readlink=readlink)
        if unsafe is not None:
            findings.append(Finding(what, unsafe))
    return findings


def _exists(p: str, lstat: Lstat) -> bool:
    try:
        lstat(p)
        return True
    except FileNotFoundError:
        return False


def refusal(config: str, pid_file: str, rules: str | None = None) -> str | None:
    """For the running collector: the line to print and exit with, or None when all is held.
    ``rules`` defaults to ``$CASA_RULES_PATH``, else the checkout's rules.json."""
    checkout = str(Path(__file__).resolve().parent.parent)
    rules = rules or os.environ.get("CASA_RULES_PATH") or os.path.join(checkout, "rules.json")
    findings = check(code_paths(), collector_paths(config, rules, pid_file, checkout, os.getcwd()))
    if not findings:
        return None
    more = f" ({len(findings) - 1} more path(s) after fixing this one)" if len(findings) > 1 else ""
    return findings[0].line() + more
