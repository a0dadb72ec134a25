"""casa sessions: the recent sessions, newest first, from the JSONL logs (rotated ones included).

usage: casa sessions [--action A | --min-action A] [--since DURATION] [--limit N] [--json]

One row per session: id, profile, leader pid, start, duration, events, score, action, complete.
Read from sessions.log (snapshots), audit.log and alert.log (decisions) and events.log (event
counts) in ``$CASA_LOG_DIR`` (default /var/log/casa) or ``--log-dir``, each with its rotated
generations (``.1``, ``.2.gz``, ``-YYYYMMDD``). A session still open shows its duration so far.

exit status: 0 ok (also when no session matched), 1 no log could be read, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from cli.logs import LogReader, LogSet, add_log_options, parse_duration_s
from cli.sessionlog import ACTIONS, SessionSummary, action_rank, summaries
from cli.terminal import Palette, palette_for, safe

__all__ = ["main", "parse_args", "select", "render", "format_duration", "format_time"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_LIMIT = 20
EXAMPLES = """examples:
  casa sessions                         # the 20 most recent sessions
  casa sessions --action ALERT          # only sessions whose verdict is ALERT
  casa sessions --min-action LOG        # LOG or ALERT
  casa sessions --since 10m --limit 0   # every session active in the last 10 minutes
  casa sessions --json | jq .           # one JSON object per session
  casa explain 25                       # then: why session 25 got its verdict
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="casa sessions", description="List recent sessions from the logs.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--action", type=str.upper, choices=ACTIONS, help="only this exact verdict")
    which.add_argument("--min-action", type=str.upper, choices=ACTIONS,
                       help="only this verdict or a more severe one (IGNORE < LOG < ALERT)")
    p.add_argument("--since", default=None, metavar="DURATION",
                   help="only sessions active within DURATION (90s, 10m, 2h, 1d)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                   help=f"at most N rows, newest first (default {DEFAULT_LIMIT}; 0: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per session")
    add_log_options(p, "colour the action column (auto: on a terminal, unless NO_COLOR is set)")
    args = p.parse_args(argv)
    if args.limit < 0:
        p.error("--limit must not be negative")
    try:
        args.since_s = parse_duration_s(args.since) if args.since is not None else None
    except ValueError as exc:
        p.error(f"--since: {exc}")
    return args


def select(rows: list[SessionSummary], *, action: str | None = None, min_action: str | None = None,
           since_ns: int | None = None, limit: int = 0) -> list[SessionSummary]:
    """Filter, then newest first (by start; a session without a known start sorts by its id)."""
    out = [s for s in rows
           if (action is None or s.action == action)
           and (min_action is None or action_rank(s.action) >= action_rank(min_action))
           and (since_ns is None or (s.end_ns or s.start_ns or 0) >= since_ns)]
    out.sort(key=lambda s: (s.start_ns or 0, s.session_id), reverse=True)
    return out[:limit] if limit else out


def format_time(ts_ns: int | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Local time of ``ts_ns``; the table uses ``%m-%d %H:%M`` to stay under 80 columns."""
    if ts_ns is None:
        return "-"
    return time.strftime(fmt, time.localtime(ts_ns // 1_000_000_000))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _complete(s: SessionSummary) -> str:
    if s.complete is None:
        return "-"
    return "yes" if s.complete else f"no ({s.incomplete_reason})" if s.incomplete_reason else "no"


def render(rows: list[SessionSummary], colours: Palette) -> list[str]:
    """The table, under 80 columns for ids up to 4 digits (wider ids widen the first column)."""
    w = max([4] + [len(str(s.session_id)) for s in rows])     # ids come from a persistent counter
    lines = [f"{'ID':>{w}} {'PROFILE':<16} {'LEADER':>7} {'START':<11}{'DURATION':>9}{'EVENTS':>7}"
             f"{'SCORE':>6} {'ACTION':<6} COMPLETE"]
    for s in rows:
        # an open session: its duration so far
        duration = format_duration(s.duration_s) + ("+" if not s.closed and s.duration_s is not None else "")
        score = "-" if s.score is None else f"{s.score:g}"
        lines.append(f"{s.session_id:>{w}} {safe(s.profile or '-')[:16]:<16} {s.leader or '-':>7} "
                     f"{format_time(s.start_ns, '%m-%d %H:%M'):<11}{duration:>9}"
                     f"{s.events if s.events is not None else '-':>7}{score:>6} "
                     f"{colours.action(f'{s.action:<6}')} {_complete(s)}")
    return lines


def to_json(s: SessionSummary) -> dict:
    out = asdict(s)
    out["duration_s"] = s.duration_s
    return out


def run(args: argparse.Namespace) -> int:
    logs = LogSet.resolve(args.log_dir)
    reader = LogReader()
    rows = list(summaries(reader, logs).values())
    if not rows and reader.errors:
        reader.report_errors("sessions", sys.stderr)
        return EXIT_ERROR
    since_ns = time.time_ns() - int(args.since_s * 1e9) if args.since_s is not None else None
    rows = select(rows, action=args.action, min_action=args.min_action, since_ns=since_ns, limit=args.limit)
    if args.json:
        for s in rows:
            sys.stdout.write(json.dumps(to_json(s), ensure_ascii=True) + "\n")
    else:
        sys.stdout.write("\n".join(render(rows, palette_for(sys.stdout, args.color))) + "\n")
        if not rows:
            sys.stderr.write(f"casa sessions: no session matched (logs: {safe(logs.sessions.parent)})\n")
    reader.report_skipped("sessions", sys.stderr)
    return EXIT_OK

