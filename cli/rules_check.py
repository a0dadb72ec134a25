"""casa rules check FILE: validate a rules file the way every stage will load it.

Prints each problem as ``FILE:LINE: what is wrong`` (rule name and field included) and exits 1,
or prints warnings and notes (a rule field left out, and the documented default that applies)
followed by a one-line OK summary and exits 0. Bad usage exits 2.

examples:
  casa rules check rules.json
  casa rules check config/rules.eval.json
"""

from __future__ import annotations

import argparse
import sys

from policy import PolicyError, describe, load_policy

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="casa rules check", description=__doc__.split("\n")[0],
                                epilog=__doc__[__doc__.index("examples:"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="rules file to validate (rules.json schema)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print warnings and notes")
    return p


def main(argv: list[str]) -> int:
    """Validate ``argv[-1]``-style arguments; return an LSB-style exit code."""
    args = _parser().parse_args(argv)
    try:
        policy = load_policy(args.file, log_warnings=False)
    except PolicyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{args.file}: INVALID | errors={len(exc.problems)}", file=sys.stderr)
        return 1
    if not args.quiet:
        for warning in policy.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for note in policy.notes:
            print(f"note: {note}", file=sys.stderr)
    print(describe(policy) + (f" warnings={len(policy.warnings)}" if policy.warnings else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
