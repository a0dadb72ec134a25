"""Synthetic collector recordings: many concurrent agent sessions of mixed exec/open/connect/exit.

    from bench.recording import RecordingSpec, generate
    events = generate(RecordingSpec(sessions=2000, concurrent=200))   # list of collector.event maps

Each session is one invocation of the bench profile's root (``/opt/casa-bench/casabenchroot``,
see bench/config.py): the root's exec and the collector's ``root`` event, then children forked and
exec'd by the root that open files, connect to public addresses and exit, then the root's exit.
Sessions are interleaved at random (seeded, so two runs replay the same recording), ``concurrent``
at a time. Every event is one the sessionizer accepts (no loader noise, no loopback connects, no
transparent routine execs), so the number of exec/open/connect/exit events generated is the
number of lines events.log must end up with (less the roots' own execs); :func:`expected_records`
counts them.

A probe session (:func:`alert_session`) reproduces the README's worked example: a file written
under /tmp and then executed by bash, which the bundled rules score 9 (ALERT).

Caveats: ``ts_ns`` is stamped by the replayer (bench/feeder.py), not here; tgids start at
``TGID_BASE`` and never collide with each other, only with nothing real (no real process is read).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecordingSpec", "generate", "expected_records", "alert_session", "alert_trigger", "open_sessions",
           "close_sessions", "ROOT_EXE", "ROOT_COMM", "PROFILE", "RECORD_KINDS"]

ROOT_EXE = "/opt/casa-bench/casabenchroot"
ROOT_COMM = "casabenchroot"
PROFILE = "bench-agent"
TGID_BASE = 5_000_000
RECORD_KINDS = ("exec", "open", "connect", "exit")   # the kinds events.log has a line for

O_RDONLY, O_WRONLY_CREAT_TRUNC = 0, 0o1 | 0o100 | 0o1000
CHILD_PROGRAMS = (("/usr/bin/python3", ["python3", "analyze.py"]),
                  ("/usr/bin/git", ["git", "status", "--short"]),
                  ("/usr/bin/grep", ["grep", "-rn", "TODO", "src"]),
                  ("/usr/bin/curl", ["curl", "-sS", "https://example.com/api"]),
                  ("/usr/bin/node", ["node", "build.js"]))
PUBLIC_ADDRS = ("93.184.216.34", "151.101.1.69", "140.82.112.3", "2606:2800:220:1:248:1893:25c8:1946")


@dataclass(frozen=True, slots=True)
class RecordingSpec:
    """Shape of a recording. The mix is per child process: one exec, ``opens`` opens,
    ``connects`` connects, one exit (plus the fork event on the root)."""

    sessions: int = 2000          # sessions in the whole recording
    concurrent: int = 200         # sessions interleaved at any moment
    children: int = 12            # child processes per session
    opens: int = 14               # opens per child
    connects: int = 2             # connects per child (public addresses, port 443)
    seed: int = 7


def _common(kind: str, tgid: int, ppid: int, comm: str, root: int) -> dict[str, Any]:
    return {"kind": kind, "ts_ns": 0, "tgid": tgid, "tid": tgid, "ppid": ppid, "uid": 1000,
            "comm": comm, "root": root}


def _exec(tgid: int, ppid: int, comm: str, root: int, path: str, argv: list[str]) -> dict[str, Any]:
    return {**_common("exec", tgid, ppid, comm, root), "syscall": "execve", "path": path,
            "argv": argv, "argv_truncated": False, "ret": 0, "exe": path, "dirfd": -100,
            "flags": 0, "cap_eff": 0, "seccomp": 2}


def _open(tgid: int, ppid: int, comm: str, root: int, path: str, flags: int) -> dict[str, Any]:
    return {**_common("open", tgid, ppid, comm, root), "syscall": "openat", "path": path,
            "flags": flags, "mode": 0o644 if flags else 0, "ret": 3}


def _connect(tgid: int, ppid: int, comm: str, root: int, addr: str) -> dict[str, Any]:
    return {**_common("connect", tgid, ppid, comm, root), "family": 10 if ":" in addr else 2,
            "addr": addr, "port": 443, "ret": 0}


def _exit(tgid: int, ppid: int, comm: str, root: int) -> dict[str, Any]:
    return {**_common("exit", tgid, ppid, comm, root), "exit_code": 0}


def root_start(root: int, number: int) -> list[dict[str, Any]]:
    """The root's exec and the collector's ``root`` event for it."""
    argv = [ROOT_COMM, "run", "--task", str(number)]
    return [_exec(root, 1, "bash", root, ROOT_EXE, argv),
            {**_common("root", root, 1, ROOT_COMM, root), "profile": PROFILE, "reason": "exec",
             "exe": ROOT_EXE, "argv": argv}]


def root_exit(root: int) -> dict[str, Any]:
    return _exit(root, 1, ROOT_COMM, root)


def _child(rng: random.Random, spec: RecordingSpec, root: int, child: int, number: int) -> list[dict[str, Any]]:
    path, argv = CHILD_PROGRAMS[rng.randrange(len(CHILD_PROGRAMS))]
    comm = path.rsplit("/", 1)[1]
    out = [{**_common("fork", root, 1, ROOT_COMM, root), "child_tgid": child},
           _exec(child, root, ROOT_COMM, root, path, argv)]
    work = f"/srv/casa-bench/project-{number}"
    body: list[dict[str, Any]] = []
    for k in range(spec.opens):
        flags = O_WRONLY_CREAT_TRUNC if k % 5 == 4 else O_RDONLY
        body.append(_open(child, root, comm, root, f"{work}/src/module_{k}.py", flags))
    for _ in range(spec.connects):
        body.append(_connect(child, root, comm, root, PUBLIC_ADDRS[rng.randrange(len(PUBLIC_ADDRS))]))
    rng.shuffle(body)
    return out + body + [_exit(child, root, comm, root)]


def session_events(rng: random.Random, spec: RecordingSpec, number: int) -> list[dict[str, Any]]:
    """All events of session ``number`` in their own order."""
    root = TGID_BASE + number * (spec.children + 1)
    events = root_start(root, number)
    for c in range(spec.children):
        events += _child(rng, spec, root, root + 1 + c, number)
    events.append(root_exit(root))
    return events


@dataclass(slots=True)
class _Active:
    events: list[dict[str, Any]]
    pos: int = 0


@dataclass(slots=True)
class _Interleaver:
    spec: RecordingSpec
    rng: random.Random
    started: int = 0
    active: list[_Active] = field(default_factory=list)

    def refill(self) -> None:
        while len(self.active) < self.spec.concurrent and self.started < self.spec.sessions:
            self.active.append(_Active(session_events(self.rng, self.spec, self.started)))
            self.started += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.refill()
        while self.active:
            i = self.rng.randrange(len(self.active))
            s = self.active[i]
            yield s.events[s.pos]
            s.pos += 1
            if s.pos == len(s.events):
                self.active[i] = self.active[-1]
                self.active.pop()
                self.refill()


def generate(spec: RecordingSpec) -> list[dict[str, Any]]:
    """The whole recording, interleaved; events are fresh dicts (the replayer stamps ts_ns)."""
    return list(_Interleaver(spec, random.Random(spec.seed)))


def expected_records(events: list[dict[str, Any]]) -> int:
    """How many events.log lines the recording must produce: exec/open/connect/exit, except the
    roots' own execs (the sessionizer opens the session on them and does not log them)."""
    return sum(1 for e in events if e["kind"] in RECORD_KINDS
               and not (e["kind"] == "exec" and e["path"] == ROOT_EXE))


def alert_session(number: int) -> list[dict[str, Any]]:
    """The README's worked example: bash writes /tmp/.../helper.sh, then executes it (score 9).

    The triggering event is the exec of helper.sh (:func:`alert_trigger`; its tgid is unique per
    number); then everything exits, so probe sessions close like real ones.
    """
    root = TGID_BASE // 2 + number * 4
    shell, script = root + 1, root + 2
    path = f"/tmp/casa-bench-{number}/helper.sh"
    return root_start(root, number) + [
        {**_common("fork", root, 1, ROOT_COMM, root), "child_tgid": shell},
        _exec(shell, root, ROOT_COMM, root, "/bin/bash", ["bash", "-c", "setup"]),
        _open(shell, root, "bash", root, path, O_WRONLY_CREAT_TRUNC),
        {**_common("fork", shell, root, "bash", root), "child_tgid": script},
        _exec(script, shell, "bash", root, path, [path]),
        _exit(script, shell, "helper.sh", root),
        _exit(shell, root, "bash", root),
        root_exit(root),
    ]


def alert_trigger(session: list[dict[str, Any]]) -> dict[str, Any]:
    """The event of an :func:`alert_session` that makes the score reach the alert threshold."""
    return [e for e in session if e["kind"] == "exec"][-1]


def open_sessions(first: int, count: int) -> list[dict[str, Any]]:
    """``count`` sessions that stay open: a root exec, one child exec, one open each."""
    out: list[dict[str, Any]] = []
    for n in range(first, first + count):
        root = TGID_BASE * 2 + n * 2
        out += root_start(root, n)
        out.append(_exec(root + 1, root, ROOT_COMM, root, "/usr/bin/python3", ["python3", "agent.py"]))
        out.append(_open(root + 1, root, "python3", root, f"/srv/casa-bench/open-{n}/notes.txt", O_RDONLY))
    return out


def close_sessions(first: int, count: int) -> list[dict[str, Any]]:
    """Exit events that close the sessions of :func:`open_sessions` (after the profile's grace)."""
    out: list[dict[str, Any]] = []
    for n in range(first, first + count):
        root = TGID_BASE * 2 + n * 2
        out.append(_exit(root + 1, root, "python3", root))
        out.append(root_exit(root))
    return out
