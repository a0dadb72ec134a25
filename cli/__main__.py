"""casa: control and observe a running CASA stack (in the manner of supervisorctl).

usage: casa <verb> [options]      casa help [verb]

verbs:
  status        each stage: supervisor state, pid, event rate and loss counters; the agent roots watched
  sessions      recent sessions from the logs, newest first (--action ALERT, --since 10m)
  explain ID    one session as a person reads it: process tree, timeline, rules with evidence, verdict
  reload        reload rules.json and config in every stage, in band, and report each stage's result
  tap           print bus messages as JSON lines
  record FILE   record bus traffic to a .casarec file
  replay FILE   feed a recording's collector events into the pipeline in place of the collector
  rules check   validate a rules.json without touching the running stack
  thaw ID       resume a session the responder froze (freeze_session)

exit status (LSB): 0 ok, 1 error, 2 bad arguments, 3 not running.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

__all__ = ["main", "VERBS"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3

# verb -> module that implements it: its main(argv) -> int, or (most verbs) its
# parse_args(argv) -> Namespace and run(args) -> int
VERBS: dict[str, str] = {
    "status": "cli.status",
    "sessions": "cli.sessions",
    "explain": "cli.explain",
    "reload": "cli.reload",
    "tap": "cli.tap",
    "record": "cli.record",
    "replay": "cli.replay",
    "rules check": "cli.rules_check",
    "thaw": "cli.thaw",
}


def _usage(out=sys.stderr) -> None:
    out.write(__doc__.split("\n", 2)[2].lstrip("\n"))


def _resolve(argv: list[str]) -> tuple[str | None, list[str]]:
    """Split argv into a verb (one or two words) and the verb's own arguments."""
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in VERBS:
        return f"{argv[0]} {argv[1]}", argv[2:]
    if argv and argv[0] in VERBS:
        return argv[0], argv[1:]
    return None, argv


def _entry(verb: str) -> Callable[[list[str]], int]:
    try:
        module = importlib.import_module(VERBS[verb])
    except ModuleNotFoundError as exc:
        sys.stderr.write(f"casa {verb}: ERROR (not available: {exc})\n")
        sys.exit(EXIT_ERROR)
    if hasattr(module, "main"):
        return module.main
    return lambda argv: module.run(module.parse_args(argv))


def _help(argv: list[str]) -> int:
    if not argv:
        _usage(sys.stdout)
        return EXIT_OK
    verb, _ = _resolve(argv)
    if verb is None and len(argv) == 1:
        # "casa help rules": the first word of a two-word verb names it when only one verb has it
        named = [v for v in VERBS if v.split()[0] == argv[0]]
        verb = named[0] if len(named) == 1 else None
    if verb is None:
        sys.stderr.write(f"casa help: unknown verb {' '.join(argv)!r}\n")
        _usage()
        return EXIT_USAGE
    try:
        return _entry(verb)(["--help"])
    except SystemExit as exc:          # argparse exits after printing help
        return int(exc.code or 0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        _usage(sys.stdout if args else sys.stderr)
        return EXIT_OK if args else EXIT_USAGE
    if args[0] == "help":
        return _help(args[1:])
    verb, rest = _resolve(args)
    if verb is None:
        sys.stderr.write(f"casa: unknown verb {args[0]!r}\n")
        _usage()
        return EXIT_USAGE
    try:
        return _entry(verb)(rest)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
