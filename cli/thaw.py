"""casa thaw SESSION_ID: resume a session the responder froze (``freeze_session``).

Reads the responder's record of the frozen session (``$CASA_STATE_DIR/frozen-<id>.json``) and
sends SIGCONT, through a pidfd, to each process that is still the one that was stopped: same pid
and start time, still stopped, still below the session's anchor, never a CASA process
(responder/frozen.py). Prints one line per refused pid and a summary; the record is removed when
every process was resumed or is gone.

examples:
  sudo casa thaw 42
  sudo casa thaw 42 --state-dir /var/lib/casa

exit status: 0 resumed (or nothing left to resume), 1 some process could not be resumed or the
record is unusable, 3 no such frozen session.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from responder.frozen import frozen_path, load, thaw
from responder.guard import SUPERVISORD_PID_FILE, casa_guard
from responder.procfs import snapshot
from responder.signals import PidfdSender

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="casa thaw", description=__doc__.split("\n")[0],
                                epilog=__doc__[__doc__.index("examples:"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session_id", type=int, help="the frozen session (alert.log's session_id)")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="where the responder keeps frozen sessions (default $CASA_STATE_DIR or /var/lib/casa)")
    p.add_argument("--supervisord-pid-file", type=Path, default=SUPERVISORD_PID_FILE)
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    state_dir = args.state_dir or Path(os.environ.get("CASA_STATE_DIR", "/var/lib/casa"))
    path = frozen_path(state_dir, args.session_id)
    if not path.exists():
        print(f"casa thaw: no frozen session {args.session_id} ({path} does not exist)", file=sys.stderr)
        return 3
    try:
        frozen = load(state_dir, args.session_id)
    except (OSError, ValueError) as exc:
        print(f"casa thaw: {path}: unusable record: {exc}", file=sys.stderr)
        return 1
    sender = PidfdSender()
    try:
        result = thaw(frozen, snapshot(), casa_guard(args.supervisord_pid_file), sender)
    finally:
        sender.close()
    for pid, why in result.refused:
        if why != "gone":
            print(f"refused: pid {pid}: {why}", file=sys.stderr)
    for err in result.errors:
        print(f"error: {err}", file=sys.stderr)
    bad = [p for p, why in result.refused if why != "gone"] + result.errors
    print(f"session {args.session_id}: resumed {len(result.resumed)} process(es) "
          f"{sorted(result.resumed)}" + (f", {len(bad)} not resumed" if bad else ""))
    if not bad:
        path.unlink(missing_ok=True)
    return 1 if bad else 0
