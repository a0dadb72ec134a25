"""The shape every evaluation command shares (``python -m evaluation.runner``, ``.overhead``,
``.attacks``, ``.attacks.openclaw``): help built from the module's docstring with examples, one log
format, and a refusal, with the reason, to run as anyone but root (each starts the root collector
or builds namespaces)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from evaluation.toolchain import EVAL_DIR

__all__ = ["command_parser", "add_results_dir", "root_command", "refuse", "RESULTS_DIR"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RESULTS_DIR = EVAL_DIR / "results" / "latest"     # make eval's EVAL_OUT: the runner, the scorer and overhead share it


def command_parser(module: str, doc: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """A parser for ``python -m module``: the docstring's first line as description, each of
    ``examples`` (the arguments only) as an example in the epilog."""
    prog = f"python -m {module}"
    return argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0],
                                   epilog="examples:\n" + "\n".join(f"  {prog} {e}" for e in examples),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_results_dir(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out``, the results directory (default RESULTS_DIR); ``what`` the command writes there."""
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"results directory: {what}")


def refuse(name: str, reason: str) -> int:
    """Say on stderr why the command ``name`` does not run; the usage-error exit status (2)."""
    print(f"{name}: {reason}", file=sys.stderr)
    return 2


def root_command(name: str, needs: str) -> bool:
    """Set up logging; False (having said why) unless running as root. ``needs``: what root is for."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if os.geteuid() != 0:
        refuse(name, f"must run as root ({needs})")
        return False
    return True
