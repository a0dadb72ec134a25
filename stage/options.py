"""The command-line flags every stage spells the same, with the same help and defaults.

    p = options.parser("python -m analyzer", __doc__, EXAMPLES)
    options.add(p, "bus-dir", "state-dir", "log-level", "rules")
    args = options.resolve(p.parse_args(argv))
    options.setup_logging(args.log_level)

Each flag falls back to the environment variable supervisord.conf and docs/operating.md use, so a
stage started by hand and one started by supervisord read the same places.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["parser", "add", "resolve", "setup_logging", "DEFAULT_STATE_DIR", "LOG_FORMAT"]

DEFAULT_STATE_DIR = "/var/lib/casa"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_FLAGS: dict[str, dict[str, Any]] = {
    "bus-dir": dict(type=Path, default=None, metavar="DIR",
                    help="directory of the bus sockets (default $CASA_BUS_DIR or /run/casa)"),
    "state-dir": dict(type=Path, default=None, metavar="DIR",
                      help=f"restart checkpoints (default $CASA_STATE_DIR or {DEFAULT_STATE_DIR})"),
    "log-level": dict(default=None, type=str.upper, choices=LEVELS,
                      help="log level (default $CASA_LOG_LEVEL or INFO)"),
    "config": dict(type=Path, default=None, metavar="FILE",
                   help="config/casa.json (default $CASA_CONFIG_PATH or the checkout's)"),
    "rules": dict(type=Path, default=None, metavar="FILE",
                  help="rules.json (default $CASA_RULES_PATH or the checkout's)"),
    "instances": dict(type=int, default=None, metavar="N",
                      help="number of analyzer instances (default $CASA_ANALYZER_INSTANCES or 1)"),
    "no-checkpoint": dict(action="store_true",
                          help="neither restore nor save restart state (tests, replays)"),
}


def parser(prog: str, doc: str, examples: str = "") -> argparse.ArgumentParser:
    """A stage's parser: the first line of its module docstring, its examples after the flags."""
    return argparse.ArgumentParser(prog=prog, description=doc.strip().split("\n")[0], epilog=examples or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add(parser: argparse.ArgumentParser, *names: str, **helps: str) -> None:
    """Add the flags ``names`` (``"bus-dir"``, ...); ``helps`` overrides a help text by its
    dest (``config="..."``) where a stage reads only part of the file."""
    for name in names:
        spec = dict(_FLAGS[name])
        dest = name.replace("-", "_")
        if dest in helps:
            spec["help"] = helps[dest]
        parser.add_argument(f"--{name}", **spec)


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the environment defaults of the flags that were added and not given."""
    if hasattr(args, "state_dir") and args.state_dir is None:
        args.state_dir = Path(os.environ.get("CASA_STATE_DIR", DEFAULT_STATE_DIR))
    if hasattr(args, "log_level") and args.log_level is None:
        args.log_level = os.environ.get("CASA_LOG_LEVEL", "INFO").upper()
    return args


def setup_logging(level: str | int = "INFO") -> None:
    """Log lines on stderr, "time LEVEL logger: human summary | key=value" (supervisord keeps them)."""
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)
