"""The attack suite: malicious and benign scenarios through the real stack, scored.

    sudo .venv/bin/python -m evaluation.attacks                      # everything, root then user
    sudo .venv/bin/python -m evaluation.attacks --case atk-revshell-bash-devtcp --identity user
    sudo .venv/bin/python -m evaluation.attacks --rules config/rules.original.json --snapshot

Writes evaluation/results/attacks/latest.json (and run/ with each run's report and raw events);
``--snapshot`` also replaces the attack-suite section of evaluation/RESULTS.md. Exit status: 2 on
a usage error, 1 when any run failed its hygiene self-check or was otherwise invalid (or, with
``--strict``, missed a target), else 0 — detection misses alone are the measurement, not an error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from evaluation.attacks.identity import IDENTITY_NAMES, identities
from evaluation.attacks.results import publish, render_section, replace_section
from evaluation.attacks.runner import CHECKOUT, RESULTS_DIR, RESULTS_MD, run_identity, run_meta, suite_rules
from evaluation.attacks.scenario import load_scenarios
from evaluation.command import command_parser, refuse, root_command

__all__ = ["main"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("evaluation.attacks", __doc__,
                       ("--case atk-curl-pipe-sh", "--identity user --tactic persistence"))
    p.add_argument("--case", action="append", default=[], help="scenario id (repeatable; default: all)")
    p.add_argument("--tactic", action="append", default=[], help="only scenarios of this tactic (repeatable)")
    p.add_argument("--identity", action="append", choices=IDENTITY_NAMES, default=[],
                   help="root and/or user (default: both)")
    p.add_argument("--rules", type=Path, default=CHECKOUT / "rules.json", help="the rules file CASA runs")
    p.add_argument("--no-loopback-ports", action="store_true",
                   help="do not add the stand-in internet ports to allowed_loopback_ports")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json",
                   help="results file; each run's report and raw events go to run/ beside it")
    p.add_argument("--snapshot", action="store_true", help="also update the section in evaluation/RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep each run's scratch directory (under /tmp)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target of issue 13 is not met")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not root_command("evaluation/attacks", "eBPF, namespaces, the casa-attack user"):
        return 2
    if not args.rules.exists():
        return refuse("evaluation/attacks", f"no rules file {args.rules}")
    scenarios = [s for s in load_scenarios() if (not args.case or s.id in args.case)
                 and (not args.tactic or s.tactic in args.tactic)]
    if not scenarios:
        return refuse("evaluation/attacks", "no scenario matches")
    artifacts = args.out.parent / "run"
    artifacts.mkdir(parents=True, exist_ok=True)
    rules = suite_rules(args.rules, artifacts / "rules.json", not args.no_loopback_ports)
    t0 = time.monotonic()
    results = []
    for ident in identities(tuple(args.identity) or IDENTITY_NAMES):
        results += run_identity(ident, scenarios, rules, artifacts, args.keep)
    meta = run_meta(args.rules, rules, t0, len(scenarios), loopback_ports_added=not args.no_loopback_ports)
    summary, bad = publish(args.out, results, meta, "identity", lambda s: render_section(results, s, meta),
                           replace_section, RESULTS_MD if args.snapshot else None)
    if bad:
        print("evaluation/attacks: invalid runs (hygiene, effects or collection):\n  " + "\n  ".join(bad),
              file=sys.stderr)
        return 1
    missed = [i for i, s in summary["identities"].items() if not (s["malicious_target_met"] and s["benign_target_met"])]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
