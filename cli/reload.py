"""casa reload: reload rules.json and config/casa.json in every stage, without restarting any.

usage: casa reload [-t SECONDS] [--pid-file FILE]

Sends SIGHUP to the collector (pid from ``collector.pid_file`` in config/casa.json, default
/var/run/casa.pid), exactly like ``kill -HUP $(cat /var/run/casa.pid)``. The collector publishes a
control map in band; each stage validates and swaps its config, or keeps the old one, and forwards
it (docs/bus.md §7.3). This command first waits for one heartbeat of every stage (so it knows
their counters, and from the collector's ``reloads`` the id N the new control map will carry),
signals, then waits until each stage's heartbeat **acknowledges reload id N** (``last_reload_id``
>= N; the collector: ``reloads`` >= N) and says whether ``reloads_applied`` or
``reloads_rejected`` moved. Under load heartbeats come late, not never: it waits for them, up to
``-t`` seconds, instead of a fixed window. One line per stage (the collector's names the
config/casa.json in force):

    collector: ok (SIGHUP sent to pid 4450, reload id 3)
    collector: ok (applied, config_version=5b1e07a9c2d4)
    sessionizer: ok (applied, rules_version=3f2a9c0d1e4b)
    analyzer-0: ERROR (rejected: old config kept (rules_version=3f2a9c0d1e4b); see its log)
    analyzer-1: ERROR (no result in time (waited for reload id 3; its last heartbeat says 2); see its log)

exit status: 0 every stage applied the reload, 1 a stage rejected it or did not answer in time,
3 the collector is not running, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus import bus_dir
from cli.discovery import live_streams
from cli.heartbeats import Beat, HeartbeatListener
from trust.paths import unsafe_writer

__all__ = ["main", "parse_args", "ReloadResult", "outcome", "collector_pid", "expected_id", "handled_id",
           "not_the_collector"]

EXIT_OK, EXIT_ERROR, EXIT_NOT_RUNNING = 0, 1, 3
DEFAULT_PID_FILE = Path("/var/run/casa.pid")
DEFAULT_TIMEOUT_S = 10.0

EXAMPLES = """examples:
  casa reload                 # after editing rules.json
  casa reload -t 30           # wait longer for busy stages
  casa rules check rules.json && casa reload
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="casa reload", description="Reload rules and config in every stage.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-t", "--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"how long to wait for the stages' results (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--pid-file", type=Path, default=None, help="collector pid file (default from config/casa.json)")
    p.add_argument("--bus-dir", type=Path, default=None, help="bus directory (default $CASA_BUS_DIR or /run/casa)")
    args = p.parse_args(argv)
    if args.timeout <= 0:
        p.error("-t must be positive")
    return args


@dataclass(frozen=True, slots=True)
class ReloadResult:
    stream: str
    state: str           # "applied" | "rejected" | "pending" | "restarted" | "no counters"
                         # | "no heartbeat" | "no result"
    rules_version: str
    version_name: str = "rules_version"     # the collector reports config_version instead
    detail: str = ""                        # for pending: what the last heartbeat said

    @property
    def ok(self) -> bool:
        return self.state == "applied"

    def line(self) -> str:
        version = f"{self.version_name}={self.rules_version or '-'}"
        if self.ok:
            return f"{self.stream}: ok (applied, {version})"
        reason = {"rejected": f"rejected: old config kept ({version}); see its log",
                  "pending": f"no result in time{self.detail}; see its log",
                  "restarted": "the stage restarted during the reload; run casa reload again",
                  "no counters": "its heartbeats carry no reloads_applied/reloads_rejected counters",
                  "no heartbeat": f"no heartbeat{self.detail}: is it running? see casa status",
                  "no result": f"acknowledged the reload{self.detail} but counted it neither applied "
                               "nor rejected"}[self.state]
        return f"{self.stream}: ERROR ({reason})"


# docs/bus.md §8.3 names first; older names some stages still publish after them.
APPLIED = ("reloads_applied", "reloads_ok")
REJECTED = ("reloads_rejected", "reloads_failed")


def _count(counters: dict[str, Any], names: tuple[str, ...]) -> int:
    for name in names:
        value = counters.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def _has_counters(counters: dict[str, Any]) -> bool:
    return any(n in counters for n in APPLIED + REJECTED)


def handled_id(stream: str, counters: dict[str, Any]) -> int | None:
    """The id of the last reload a stage handled: ``last_reload_id`` (docs/bus.md §8.3); the
    collector's ``reloads`` counts its control maps, which is the id of the last one it sent."""
    name = "reloads" if stream == "collector" and "last_reload_id" not in counters else "last_reload_id"
    value = counters.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def outcome(stream: str, before: Beat | None, after: Beat | None, expected: int | None = None) -> ReloadResult:
    """Compare a stage's heartbeat before the signal with its latest one.

    With ``expected`` (the id of the control map this reload sends), the stage has answered once
    its heartbeat acknowledges that id; without it (no collector heartbeat to learn it from), once
    its reload counters move.
    """
    if before is None or not _has_counters(before.counters):
        return ReloadResult(stream, "no counters", "")
    latest = after or before
    name = "rules_version" if "rules_version" in latest.counters or "config_version" not in \
        latest.counters else "config_version"
    version = str(latest.counters.get(name, ""))
    if latest.epoch != before.epoch:
        return ReloadResult(stream, "restarted", version, name)
    rejected = _count(latest.counters, REJECTED) > _count(before.counters, REJECTED)
    applied = _count(latest.counters, APPLIED) > _count(before.counters, APPLIED)
    seen = handled_id(stream, latest.counters)
    if expected is not None and seen is not None and seen < expected:
        return ReloadResult(stream, "pending", version, name,
                            f" (waited for reload id {expected}; its last heartbeat says {seen})")
    if rejected:
        return ReloadResult(stream, "rejected", version, name)
    if applied:
        return ReloadResult(stream, "applied", version, name)
    if expected is not None and seen is not None:
        return ReloadResult(stream, "no result", version, name, f" (id {seen})")
    return ReloadResult(stream, "pending", version, name)


def collector_pid(pid_file: Path | None) -> tuple[int | None, str]:
    """The collector's pid, or None and why not.

    The pid is only believed when the pid file is root's alone (trust/paths.py) and the process
    is a root collector: root sends it a signal, and a pid file another user could write would
    let them make root signal any process.
    """
    if pid_file is None:
        pid_file = DEFAULT_PID_FILE
        try:
            from agents import load_config
            pid_file = Path(load_config(os.environ.get("CASA_CONFIG_PATH")).get("collector", {})
                            .get("pid_file", DEFAULT_PID_FILE))
        except Exception as exc:          # a broken config must not stop a reload being attempted
            sys.stderr.write(f"casa reload: cannot read the config ({exc}); using {pid_file}\n")
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        return None, f"no readable pid in {pid_file}: {exc}"
    unsafe = unsafe_writer(os.path.abspath(pid_file))
    if unsafe is not None:
        return None, (f"refusing the pid file {pid_file}: {unsafe.path} is {unsafe.who}, so the pid "
                      "may not be the collector's; collector.pid_file must be in a directory only root "
                      "can write (default /var/run/casa.pid)")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None, f"pid {pid} from {pid_file} is not running"
    except PermissionError:
        pass                              # alive; the real kill below will say if we may not signal it
    why = not_the_collector(pid)
    return (None, f"refusing pid {pid} from {pid_file}: it {why}") if why else (pid, "")


def not_the_collector(pid: int, proc: Path = Path("/proc")) -> str:
    """Why ``pid`` is not a root CASA collector ("" when it is): its real uid must be 0 and its
    command line ``python -m collector`` or ``casa-collector``."""
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        uid_line = next(line for line in (proc / str(pid) / "status").read_text().splitlines()
                        if line.startswith("Uid:"))
    except (OSError, StopIteration) as exc:
        return f"cannot be inspected ({exc})"
    if uid_line.split()[1] != "0":
        return f"does not run as root ({' '.join(uid_line.split())})"
    words = [w.decode(errors="replace") for w in argv if w]
    is_module = any(a == "-m" and b == "collector" for a, b in zip(words, words[1:]))
    is_script = bool(words) and os.path.basename(words[0]) == "casa-collector"
    if not (is_module or is_script):
        return f"is not the collector (command line: {' '.join(words)[:120]!r})"
    return ""


def _baseline(listener: HeartbeatListener, streams: list[str], timeout_s: float) -> dict[str, Beat | None]:
    """One heartbeat of every stage before the signal: waits for them (each sends one a second,
    later under load), at most ``timeout_s``; a stage with none is reported, not waited for."""
    listener.listen(timeout_s, until=lambda lst: all(s in lst.beats for s in streams))
    return {s: listener.latest(s) for s in streams}


def expected_id(before: dict[str, Beat | None]) -> int | None:
    """The id the collector's next control map will carry: one more than the last it sent."""
    beat = before.get("collector")
    last = handled_id("collector", beat.counters) if beat is not None else None
    return None if last is None else last + 1


def _results(listener: HeartbeatListener, streams: list[str], before: dict[str, Beat | None],
             expected: int | None, timeout_s: float) -> list[ReloadResult]:
    def result(s: str) -> ReloadResult:
        if before[s] is None:
            return ReloadResult(s, "no heartbeat", "", detail=f" within {timeout_s:g} s")
        return outcome(s, before[s], listener.latest(s), expected)

    def settled(_lst: HeartbeatListener) -> bool:
        return all(result(s).state != "pending" for s in streams)

    listener.listen(timeout_s, until=settled)
    results = [result(s) for s in streams]
    # The collector's own part is the SIGHUP line unless it publishes reload counters.
    return [r for r in results if not (r.stream == "collector" and r.state == "no counters")]


def run(args: argparse.Namespace) -> int:
    pid, why = collector_pid(args.pid_file)
    if pid is None and why.startswith("refusing"):
        sys.stderr.write(f"collector: ERROR ({why})\n")
        return EXIT_ERROR
    if pid is None:
        sys.stderr.write(f"collector: ERROR (not running: {why})\n")
        return EXIT_NOT_RUNNING
    directory = args.bus_dir or bus_dir()
    streams = [s for s in live_streams(directory) if not s.startswith("sinks-")]   # sinks do not reload rules
    listener = HeartbeatListener(directory, streams)
    try:
        before = _baseline(listener, streams, args.timeout)
        expected = expected_id(before)
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            sys.stderr.write(f"collector: ERROR (cannot signal pid {pid}: {exc.strerror})\n")
            return EXIT_ERROR
        sys.stdout.write(f"collector: ok (SIGHUP sent to pid {pid}"
                         + (f", reload id {expected})\n" if expected is not None else ")\n"))
        results = _results(listener, streams, before, expected, args.timeout)
    finally:
        listener.close()
    if not [s for s in streams if s != "collector"]:
        sys.stderr.write(f"casa reload: no downstream stage is live in {directory}; only the collector was signalled\n")
    for r in results:
        (sys.stdout if r.ok else sys.stderr).write(r.line() + "\n")
    return EXIT_OK if all(r.ok for r in results) else EXIT_ERROR

