"""Real, idle processes whose pids stand in for the agent roots of a synthetic recording.

    with LivePids(2000) as pids:                 # 2000 forked children, each in pause()
        events = rebase_roots(generate(spec), pids)

The sessionizer checks every 2 s that the leader of each open invocation session still exists in
/proc (and sweeps tracked processes every 30 s), so it can close sessions whose exit event was
lost. A leader tgid invented by a generator does not exist, so its session would be closed after
2 s. Giving each synthetic session a real, idle leader keeps the replay faithful to what the
sessionizer sees live. Children keep invented tgids: events carry ``root``, which lets the
sessionizer re-adopt a child the 30 s sweep forgot.

All the processes share one new process group, killed (SIGKILL) on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

__all__ = ["LivePids", "rebase_roots"]

_FORKER = r"""
import os, signal, sys
n = int(sys.argv[1])
pids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        while True:
            signal.pause()
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
sys.stdin.read()
"""


class LivePids:
    """``count`` idle processes; iterate or index the instance for their pids."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.proc: subprocess.Popen[str] | None = None
        self.pids: list[int] = []

    def __enter__(self) -> list[int]:
        self.proc = subprocess.Popen([sys.executable, "-c", _FORKER, str(self.count)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.pids = [int(p) for p in line.split()]
        if len(self.pids) != self.count:
            self.__exit__()
            raise RuntimeError(f"could only start {len(self.pids)} of {self.count} idle processes")
        return self.pids

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None


_PID_FIELDS = ("tgid", "tid", "ppid", "root", "child_tgid")


def rebase_roots(events: list[dict[str, Any]], pids: list[int]) -> list[dict[str, Any]]:
    """Replace each session root's invented tgid (the tgid of a ``root`` event) by a live pid, in
    every pid field of every event. Raises ValueError if there are fewer pids than roots."""
    mapping: dict[int, int] = {}
    for e in events:
        if e["kind"] == "root" and e["tgid"] not in mapping:
            if len(mapping) >= len(pids):
                raise ValueError(f"the recording has more than {len(pids)} roots; start more LivePids")
            mapping[e["tgid"]] = pids[len(mapping)]
    for e in events:
        for f in _PID_FIELDS:
            v = e.get(f)
            if v in mapping:
                e[f] = mapping[v]
    return events
