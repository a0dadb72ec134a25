"""casa status: each stage's supervisor state and pid, its event rate and loss counters, and the
agent roots being watched.

usage: casa status [NAME ...] [-w SECONDS] [--json]

NAME is ``all`` (default), a process (``collector``, ``analyzer-1``) or a group (``analyzer:*``).
States come from supervisord's XML-RPC socket (root only); rates and counters from the stages'
heartbeats on the bus, listened to until every stage sent two (a rate), at most ``-w`` seconds
(default: HEARTBEAT_LIVENESS heartbeat intervals and a half). A stage that sent no heartbeat for
HEARTBEAT_LIVENESS intervals shows ``DEAD: no heartbeat for N s`` (stopped, hung, or paused:
supervisord may still call it RUNNING), the same rule by which a stage reports its own upstream
streams dead (docs/bus.md §8.2.1); those show on a line ``upstream dead: NAME, ...`` under it. A
stage not heard while listening for less than that shows ``no heartbeat``. The loss column lists
the stage's non-zero loss counters, then its non-zero problem counters, as bus/counters.py
classifies them.
When the sessionizer is selected, the agent roots it tracks follow (profile, pid, user, since, open
sessions; from its roots file in the bus directory), with a WARNING when there is none: then CASA
watches no agent. ``--json`` puts them on the sessionizer's object (``agent_roots``, ...), and
``heartbeat`` (alive, dead, unknown), ``silent_s`` and ``dead_upstreams`` on every stage's.

exit status: 0 all selected stages RUNNING, 3 supervisord unreachable, a stage not running or its
heartbeats dead, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bus import bus_dir
from bus.counters import for_stream
from bus.liveness import HEARTBEAT_LIVENESS
from bus.publisher import HEARTBEAT_INTERVAL_S
from cli.discovery import live_streams, stream_sort_key
from cli.heartbeats import HeartbeatListener, Liveness, event_rate
from cli.roots import RootsView, read_roots, render_roots
from cli.supervisor import ProcessInfo, SupervisorUnavailable, default_url, process_info

__all__ = ["main", "parse_args", "StageStatus", "collect", "dead_upstreams", "exit_status", "select"]

EXIT_OK, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 2, 3
# At most: listening ends once every stage sent two heartbeats (a rate). Long enough to call a
# silent stage dead by the bus's own rule.
LISTEN_S = HEARTBEAT_LIVENESS * HEARTBEAT_INTERVAL_S + 0.5
EXAMPLES = """examples:
  casa status                   # every stage
  casa status analyzer:*        # the analyzer instances
  casa status collector --json  # one JSON object per line
  casa status sessionizer       # the agent roots being watched, and its rate
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="casa status", description="Show each stage's state, rate and loss.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help="all | PROCESS | GROUP:* (default all)")
    p.add_argument("-w", "--wait", type=float, default=LISTEN_S, metavar="SECONDS",
                   help=f"the longest to listen for heartbeats (default {LISTEN_S})")
    p.add_argument("--json", action="store_true", help="one JSON object per stage")
    p.add_argument("--bus-dir", type=Path, default=None, help="bus directory (default $CASA_BUS_DIR or /run/casa)")
    p.add_argument("--url", default=None,
                   help="supervisord URL (default $CASA_SUPERVISOR_URL or unix:///run/casa-root/supervisord.sock)")
    args = p.parse_args(argv)
    if args.wait < 0:
        p.error("-w must not be negative")
    return args


@dataclass(slots=True)
class StageStatus:
    name: str
    group: str
    state: str                  # supervisor state, or "UNKNOWN" without supervisord
    pid: int
    uptime_s: int
    rate_eps: float | None      # events sent per second, from two heartbeats
    counters: dict[str, Any]    # the latest heartbeat's counters ({} if none arrived)
    loss: dict[str, Any] = field(default_factory=dict)   # its non-zero loss counters
    heartbeat: str = "unknown"  # alive | dead (silent HEARTBEAT_LIVENESS intervals) | unknown
    silent_s: float | None = None             # dead: seconds without a heartbeat
    dead_upstreams: list[str] = field(default_factory=list)   # what its own heartbeat reports dead


def select(names: list[str], procs: list[ProcessInfo]) -> tuple[list[ProcessInfo], list[str]]:
    """Apply supervisorctl-style selectors; return the chosen processes and unknown names."""
    if not names or "all" in names:
        return procs, []
    chosen, unknown = [], []
    for n in names:
        hit = [p for p in procs if (n.endswith(":*") and p.group == n[:-2]) or p.name == n
               or f"{p.group}:{p.name}" == n]
        if not hit:
            unknown.append(n)
        chosen += [p for p in hit if p not in chosen]
    return chosen, unknown


def collect(procs: list[ProcessInfo], listener: HeartbeatListener | None,
            liveness: dict[str, Liveness] | None = None) -> list[StageStatus]:
    """Join supervisor's view with the bus's view, by process name == stream name."""
    out = []
    for p in procs:
        beats = listener.beats.get(p.name, []) if listener else []
        counter = "received_events" if p.name.startswith("sinks-") else "sent_events"   # sinks only consume
        counters = dict(beats[-1].counters) if beats else {}
        spec = for_stream(p.name)
        live = (liveness or {}).get(p.name) or Liveness("alive" if beats else "unknown")
        out.append(StageStatus(p.name, p.group, p.state, p.pid, p.uptime_s, event_rate(beats, counter),
                               counters, spec.loss(counters) if spec else {}, live.state, live.silent_s,
                               dead_upstreams(counters)))
    return out


def dead_upstreams(counters: dict[str, Any]) -> list[str]:
    """The upstream streams a stage's heartbeat reports dead (``dead_streams``; the sessionizer
    publishes its subscriber's counters as ``bus_dead_streams``)."""
    names = counters.get("dead_streams", counters.get("bus_dead_streams", ""))
    return [n for n in names.split(",") if n] if isinstance(names, str) else []


def _uptime(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def _loss(row: StageStatus) -> str:
    """Every non-zero loss counter of the stage, then its non-zero problem counters
    (bus/counters.py: the names are part of the bus contract); a dead stage says so instead."""
    if row.heartbeat == "dead":
        return f"DEAD: no heartbeat for {row.silent_s or 0:.1f} s"
    stream, counters = row.name, row.counters
    if not counters:
        return "no heartbeat"
    spec = for_stream(stream)
    shown = spec.shown(counters) if spec else {}
    if not shown and counters.get("notify_enabled") == 0:
        return "off (not configured in casa.json notify)"      # sinks-webhook / sinks-program
    return " ".join(f"{k}={v}" for k, v in shown.items())


def render(rows: list[StageStatus]) -> list[str]:
    lines = [f"{'NAME':<14}{'STATE':<9}{'PID':>7} {'UPTIME':>8}{'EV/S':>9}  LOSS (non-zero counters)"]
    for r in rows:
        rate = f"{r.rate_eps:9.1f}" if r.rate_eps is not None else f"{'-':>9}"
        lines.append(f"{r.name:<14}{r.state:<9}{r.pid or '-':>7} {_uptime(r.uptime_s):>8}{rate}  "
                     f"{_loss(r) or 'none'}")
        if r.dead_upstreams:
            lines.append(f"{'':<14}upstream dead: {', '.join(r.dead_upstreams)}")
        if r.counters.get("rules_version") or r.counters.get("reloads_applied") or r.counters.get("reloads_rejected"):
            version = (f"config={r.counters['config_version']}" if "config_version" in r.counters
                       and "rules_version" not in r.counters else f"rules={r.counters.get('rules_version', '')}")
            lines.append(f"{'':<14}{version} "
                         f"reloads_applied={r.counters.get('reloads_applied', 0)} "
                         f"reloads_rejected={r.counters.get('reloads_rejected', 0)}")
    return lines


def _bus_only(directory: Path) -> list[ProcessInfo]:
    """Without supervisord: the live streams, state unknown."""
    return [ProcessInfo(s, s.split("-", 1)[0], "UNKNOWN", 0, 0, "") for s in live_streams(directory)]


def _roots(rows: list[StageStatus], directory: Path) -> RootsView | None:
    """The agent roots, when the sessionizer is among the rows shown."""
    row = next((r for r in rows if r.name == "sessionizer"), None)
    if row is None:
        return None
    pid = row.counters.get("pid") if isinstance(row.counters.get("pid"), int) else None
    return read_roots(directory, pid or row.pid or None)


def run(args: argparse.Namespace) -> int:
    directory = args.bus_dir or bus_dir()
    url = args.url or default_url()
    supervised = True
    try:
        procs = process_info(url)
    except SupervisorUnavailable as exc:
        sys.stderr.write(f"supervisord: ERROR (not running: {exc})\n")
        procs, supervised = _bus_only(directory), False
    procs, unknown = select(args.names, sorted(procs, key=lambda p: stream_sort_key(p.name)))
    for n in unknown:
        sys.stderr.write(f"{n}: ERROR (no such process)\n")
    streams = [p.name for p in procs if (directory / f"{p.name}.sock").exists()]   # bound
    listener = HeartbeatListener(directory, streams) if streams and args.wait else None
    try:
        if listener:
            listener.listen(args.wait, until=lambda lst: all(len(lst.beats.get(s, [])) >= 2
                                                             for s in streams))
    finally:
        if listener:
            listener.close()
    rows = collect(procs, listener, listener.liveness() if listener else None)
    roots = _roots(rows, directory)
    if args.json:
        for r in rows:
            extra = roots.to_json() if roots is not None and r.name == "sessionizer" else {}
            sys.stdout.write(json.dumps({**asdict(r), **extra}, default=str) + "\n")
    else:
        sys.stdout.write("\n".join(render(rows) + (render_roots(roots) if roots else [])) + "\n")
    return exit_status(rows, supervised, bool(unknown))


def exit_status(rows: list[StageStatus], supervised: bool, unknown_names: bool) -> int:
    """2 for a name that is no process; 3 unless supervisord answered and every selected stage
    is RUNNING with live heartbeats (a stopped, hung or paused stage can still be RUNNING)."""
    if unknown_names:
        return EXIT_USAGE
    if not supervised or not rows or any(r.state != "RUNNING" or r.heartbeat == "dead" for r in rows):
        return EXIT_NOT_RUNNING
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
