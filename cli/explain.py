"""casa explain: why a session got its verdict, as a person reads it.

usage: casa explain SESSION_ID [--json] [--max-events N] [--log-dir DIR] [--color WHEN]

Prints the session (profile, leader, start, duration, completeness), its process tree, the
timeline of its accepted events with each rule at the moment it fired (its weight, the running
score and the evidence: the events that made each context field of the rule true) and the final
verdict. Read from the JSONL logs, rotated generations included (docs/operating.md). Every path,
argument and name from the logs is printed escaped (``\\n``, ``\\x1b``, ``\\xff``): the agent
chose them, and must not be able to forge lines or drive the terminal.

exit status: 0 ok, 1 no log names the session, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.explanation import Explanation, FiredRule, Proc, explain
from cli.logs import LogReader, LogSet, add_log_options
from cli.sessions import format_duration, format_time
from cli.terminal import Palette, palette_for, safe

__all__ = ["main", "parse_args", "render", "describe_event"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_MAX_EVENTS = 400
EXAMPLES = """examples:
  casa sessions --action ALERT    # find the session
  casa explain 25                 # its tree, timeline, rules with evidence, verdict
  casa explain 25 --json | jq .rules
  casa explain 25 --max-events 0  # every event, however many
"""
_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000          # O_WRONLY, O_RDWR, O_CREAT, O_TRUNC


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="casa explain", description="Explain one session's verdict.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session_id", type=int, metavar="SESSION_ID")
    p.add_argument("--json", action="store_true", help="one JSON object (processes, timeline, rules, verdict)")
    p.add_argument("--max-events", type=int, default=DEFAULT_MAX_EVENTS, metavar="N",
                   help=f"timeline: at most N events besides those a rule fired on or cites "
                        f"(default {DEFAULT_MAX_EVENTS}, the first and last halves; 0: all)")
    add_log_options(p, "auto: colour on a terminal, unless NO_COLOR is set")
    args = p.parse_args(argv)
    if args.max_events < 0:
        p.error("--max-events must not be negative")
    return args


def _rel(ts_ns: int | None, start_ns: int | None) -> str:
    if ts_ns is None or start_ns is None:
        return "       ?"
    return f"{(ts_ns - start_ns) / 1e9:+8.3f}s"


def describe_event(ev: dict[str, Any]) -> str:
    """What an events.log record (or an evidence reference) says, escaped for the terminal."""
    kind = ev.get("type")
    path = ev.get("abspath") or ev.get("path")
    if kind == "EXECVE":
        args = " ".join(safe(a) for a in ev.get("args") or [])
        return f"{safe(path or '')}" + (f"  argv: {args}" if args else "")
    if kind == "OPENAT":
        flags = ev.get("flags") if isinstance(ev.get("flags"), int) else 0
        return f"{safe(path or '')}" + ("  (write)" if flags & _WRITE_FLAGS else "")
    if kind == "RENAME":
        return f"{safe(path or '')} -> {safe(ev.get('new_abspath') or ev.get('new_path') or '')}"
    if kind == "CHMOD":
        mode = ev.get("mode") if isinstance(ev.get("mode"), int) else 0
        return f"{safe(path or '')}  mode {mode:o}"
    if "addr" in ev and "port" in ev:
        return f"{safe(ev.get('addr'))}:{safe(ev.get('port'))}"
    for key in ("path", "addr", "name", "target", "detail"):
        if ev.get(key) not in (None, ""):
            return f"{key} {safe(ev[key])}" if key in ("target", "name") else safe(ev[key])
    return ""


def _proc_line(p: Proc, leader: int | None) -> str:
    if p.execs:
        last = p.execs[-1]
        argv = " ".join(safe(a) for a in last["args"]) or safe(last["path"])
        what = f"{safe(last['path'])}  argv: {argv}"
    elif p.pid == leader:
        what = f"({safe(p.comm)}, the session's leader: its own start opened the session)"
    else:
        what = f"({safe(p.comm)}, no exec seen)"
    ended = "" if p.exit_ns is not None else "  (no exit seen)"
    return f"{p.pid} {what}{ended}"


def render_tree(tops: list[Proc], leader: int | None = None) -> list[str]:
    lines: list[str] = []

    def walk(p: Proc, prefix: str, last: bool, top: bool) -> None:
        lines.append(("  " if top else f"  {prefix}{'└─ ' if last else '├─ '}") + _proc_line(p, leader))
        child_prefix = "" if top else prefix + ("   " if last else "│  ")
        for i, c in enumerate(p.children):
            walk(c, child_prefix, i == len(p.children) - 1, False)

    for p in tops:
        walk(p, "", True, True)
    return lines or ["  (no process seen)"]


def _rule_lines(r: FiredRule, start_ns: int | None, c: Palette) -> list[str]:
    head = (f"           {c.rule('▶ rule ' + safe(r.name))}  +{r.weight:g}  "
            f"score {r.score_after:g}  -> {c.action(r.action_after)}")
    lines = [head]
    if r.expr:
        lines.append(f"               when {safe(r.expr)}")
    for name, refs in r.evidence.items():
        lines.append(f"               {c.bold(safe(name))} because:")
        for ref in refs if isinstance(refs, list) else []:
            ts = ref.get("ts_ns")
            earlier = "  (before this session)" if ts is not None and start_ns is not None and ts < start_ns else ""
            lines.append(f"                 {_rel(ts, start_ns)}  pid {safe(ref.get('pid'))}  "
                         f"{safe(ref.get('type'))}  {describe_event(ref)}{earlier}")
    return lines


def _keep(x: Explanation, limit: int) -> set[int]:
    """Indices of the timeline's events to show: all under the limit; else the first and last
    halves and every event a rule fired on or cites."""
    n = len(x.events)
    if not limit or n <= limit:
        return set(range(n))
    cited = {(r.ts_ns, r.pid) for r in x.rules}
    for r in x.rules:
        cited |= {(ref.get("ts_ns"), ref.get("pid")) for refs in r.evidence.values() for ref in refs}
    keep = set(range(limit // 2)) | set(range(n - limit // 2, n))
    return keep | {i for i, ev in enumerate(x.events) if (ev.get("ts_ns"), ev.get("pid")) in cited}


def render_timeline(x: Explanation, limit: int, c: Palette) -> list[str]:
    start = x.summary.start_ns
    rules = sorted(x.rules, key=lambda r: r.ts_ns)
    keep, lines, skipped, ri = _keep(x, limit), [], 0, 0
    for i, ev in enumerate(x.events):
        while ri < len(rules) and rules[ri].ts_ns < (ev.get("ts_ns") or 0):
            lines += _rule_lines(rules[ri], start, c)
            ri += 1
        if i not in keep:
            skipped += 1
            continue
        if skipped:
            lines.append(c.dim(f"           ... {skipped} events not shown (--max-events 0 shows all)"))
            skipped = 0
        lines.append(f"  {_rel(ev.get('ts_ns'), start)}  {safe(ev.get('pid')):>7}  "
                     f"{safe(ev.get('type')):<8} {describe_event(ev)}")
        while ri < len(rules) and rules[ri].ts_ns == ev.get("ts_ns") and rules[ri].pid == ev.get("pid"):
            lines += _rule_lines(rules[ri], start, c)
            ri += 1
    if skipped:
        lines.append(c.dim(f"           ... {skipped} events not shown (--max-events 0 shows all)"))
    for r in rules[ri:]:
        lines += _rule_lines(r, start, c)
    return lines or ["  (no event in the logs)"]


def _header(x: Explanation, c: Palette) -> list[str]:
    s = x.summary
    state = "closed" if s.closed else "open (so far)" if s.snapshot or s.end_ns else "open"
    return [f"{c.bold(f'session {s.session_id}')}  profile {safe(s.profile or '-')}  leader {s.leader or '-'}"
            + (f"  tree {s.tree_id}" if s.tree_id is not None else "")
            + (f"  after session {s.parent_session_id}" if s.parent_session_id is not None else ""),
            f"  start {format_time(s.start_ns)}  duration {format_duration(s.duration_s)} {state}"
            f"  events {s.events if s.events is not None else '-'}"]


def _verdict(x: Explanation, c: Palette) -> list[str]:
    s = x.summary
    score = "-" if s.score is None else f"{s.score:g}"
    t = x.thresholds
    limits = f" (log threshold {t['log_threshold']}, alert threshold {t['alert_threshold']})" \
        if "log_threshold" in t and "alert_threshold" in t else ""
    lines = [f"{c.bold('verdict')}: {c.action(s.action)}  score {score}{limits}",
             "  rules: " + (", ".join(safe(r) for r in s.rules) or "none matched")]
    if s.complete is False:
        why = f" ({safe(s.incomplete_reason)})" if s.incomplete_reason else ""
        lines.append(f"  {c.paint('INCOMPLETE', '1;33')}{why}: the logs lack some of its events "
                     f"({s.lost_events} known lost); a clean verdict cannot be trusted")
    elif s.complete is None:
        lines.append("  completeness unknown: no sessions.log snapshot yet (the session is open)")
    if x.evidence_omitted:
        lines.append(f"  evidence references left out (bounds): {x.evidence_omitted}")
    if x.events_source == "recent_events":
        lines.append("  timeline from the snapshot's recent_events only (events.log lines without session_id)")
    return lines


def render(x: Explanation, max_events: int, c: Palette) -> list[str]:
    return (_header(x, c) + ["", c.bold("process tree")] + render_tree(x.tree, x.summary.leader)
            + ["", c.bold("timeline") + c.dim("  (seconds from the session's start)")]
            + render_timeline(x, max_events, c) + [""] + _verdict(x, c))


def run(args: argparse.Namespace) -> int:
    reader = LogReader()
    logs = LogSet.resolve(args.log_dir)
    x = explain(reader, logs, args.session_id)
    reader.report_errors("explain", sys.stderr)
    if x is None:
        sys.stderr.write(f"casa explain: ERROR (no session {args.session_id} in the logs under "
                         f"{safe(logs.sessions.parent)})\n")
        return EXIT_ERROR
    if args.json:
        sys.stdout.write(json.dumps(x.to_json(), ensure_ascii=True) + "\n")
    else:
        sys.stdout.write("\n".join(render(x, args.max_events, palette_for(sys.stdout, args.color))) + "\n")
    reader.report_skipped("explain", sys.stderr)
    return EXIT_OK

