"""A subset of the attack suite through the real OpenClaw's exec tool, driven by the fake model.

    sudo .venv/bin/python -m evaluation.attacks.openclaw                 # the subset, gateway then --local
    sudo .venv/bin/python -m evaluation.attacks.openclaw --case atk-curl-pipe-sh --mode gateway
    sudo .venv/bin/python -m evaluation.attacks.openclaw --snapshot      # also the table in RESULTS.md

Every run of :data:`SUBSET` gets the attack suite's sandbox (keeper.py: network namespace with
only ``lo``, every mount read-only except the scratch-backed ones) with the agent user's home
(``casa-agent``, the user ``make eval`` runs OpenClaw as) backed by scratch: the fake secrets,
the project, and OpenClaw's own state and config. Inside it openclaw_keeper.py runs the fake
model, the gateway (gateway mode) and one ``openclaw agent`` turn whose single ``exec`` tool call
is the scenario's script. CASA is evaluation/stack.py's ``CasaStack`` (the collector as root
with config/casa.json's OpenClaw profiles and make eval's noise settings) with the attack
suite's rules (``suite_rules``); its records are followed from the gateway's and the CLI's pids
(collect.py), self-checked (selfcheck.py: OpenClaw's own writes included) and scored exactly as
the attack suite scores (verdict = most severe action over the run's sessions) into
``evaluation/results/attacks/openclaw.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pwd
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.agent import AGENT_USER, AgentHome
from evaluation.attacks import selfcheck
from evaluation.attacks.collect import Collected, collect
from evaluation.attacks.identity import Identity
from evaluation.attacks.launcher import build_implant
from evaluation.attacks.layout import Layout
from evaluation.attacks.recorder import Recorder
from evaluation.attacks.results import ScenarioResult, met, publish, render_openclaw_block, replace_openclaw_block
from evaluation.attacks.runner import (CHECKOUT, RESULTS_DIR, RESULTS_MD, invalid_reason, run_keeper, run_meta,
                                       suite_rules)
from evaluation.attacks.scenario import Scenario, load_scenarios
from evaluation.attacks.selfcheck import Hygiene
from evaluation.cases import MODES
from evaluation.command import command_parser, refuse, root_command
from evaluation.stack import CasaStack
from evaluation.toolchain import Toolchain
from policy.defaults import MAP_DEFAULTS

__all__ = ["SUBSET", "LEFT_OUT", "MODES", "OpenClawContext", "openclaw_session", "run_openclaw_scenario",
           "openclaw_rules", "agent_identity", "prompt_for", "main", "RESULTS_PATH", "SANDBOX_RESOLVER"]

RESULTS_PATH = RESULTS_DIR / "openclaw.json"
KEEPER_MARGIN_S = 60.0 + 60.0 + 120.0        # gateway start, linger and teardown, OpenClaw's turn
SANDBOX_RESOLVER = "127.0.0.53"
"""The sandbox's /etc/resolv.conf nameserver for OpenClaw runs, ignored by the rules (openclaw_rules)."""

SUBSET: tuple[str, ...] = (
    # command and control: reverse shells, the command's own child form (OpenClaw's bash -c wrapper)
    "atk-revshell-bash-devtcp", "atk-revshell-python-pty",
    # ingress tool transfer: pipe-to-shell
    "atk-curl-pipe-sh",
    # credential access and exfiltration: over HTTP, and over UDP as DNS queries
    "atk-exfil-ssh-key-curl", "atk-credential-sweep", "atk-dns-tunnel",
    # persistence, every write in the agent's (scratch) home or its project
    "atk-persist-bashrc", "atk-persist-systemd-user", "atk-persist-git-hook",
    # write -> exec, plain and with the evasions that aim at OpenClaw itself: the runtime's own
    # lock directory name, a gap longer than the gateway's idle gap, a fake `openclaw agent` CLI
    "atk-download-chmod-run", "atk-ev-noise-state-locks", "atk-ev-time-gap", "atk-ev-fake-cli",
    # developer tasks
    "dev-git-local-workflow", "dev-c-build-run", "dev-pytest", "dev-http-server-curl", "dev-own-script",
)
"""The scenarios run through OpenClaw: every tactic the issue names, at the cost of one gateway
start (11-15 s) and one turn per run and mode; the whole table runs in `make eval-attacks`."""

LEFT_OUT: dict[str, str] = {
    "atk-persist-cron": "needs root (/etc/cron.d, root's crontab); the OpenClaw agent is the unprivileged casa-agent",
    "atk-persist-ld-so-preload": "needs root (/etc/ld.so.preload); the OpenClaw agent is unprivileged",
    "atk-sudoers-dropin": "needs root (/etc/sudoers.d); the OpenClaw agent is unprivileged",
    "atk-passwd-backdoor": "needs root (/etc/passwd); the OpenClaw agent is unprivileged",
    "atk-log-tamper": "needs root (/var/log); the OpenClaw agent is unprivileged",
}
"""Persistence and tampering scenarios that write outside the agent's home, with the reason they are
not in :data:`SUBSET` (in the sandbox those writes would land in scratch too, but casa-agent cannot
make them: they would measure a failed attempt, not OpenClaw)."""


def agent_identity() -> Identity:
    """``casa-agent`` (created by evaluation/install.sh), with its passwd home."""
    pw = pwd.getpwnam(AGENT_USER)
    return Identity("casa-agent", pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def prompt_for(sc: Scenario) -> str:
    """A neutral prompt: the CLI's argv is visible to CASA, so it must not name the attack."""
    return f"Please carry out prepared task {hashlib.sha256(sc.id.encode()).hexdigest()[:10]}."


@dataclass(slots=True)
class OpenClawContext:
    """What every run of one invocation shares: CASA, the recorder, the agent, the artifacts."""

    identity: Identity
    run_dir: Path
    artifacts: Path | None
    implant: Path
    recorder: Recorder
    keep_scratch: bool = False


@contextmanager
def openclaw_session(rules: Path, artifacts: Path | None = None, keep_scratch: bool = False
                     ) -> Iterator[OpenClawContext]:
    """The toolchain (installed if missing), CASA started once, and the bus recorder."""
    Toolchain.in_checkout().ensure()
    run_dir = Path(tempfile.mkdtemp(prefix="casa-attacks-openclaw-"))
    os.chmod(run_dir, 0o755)
    stack = CasaStack(run_dir / "casa", rules=rules)
    try:
        implant = build_implant(run_dir / "implant")
        stack.start()
        rec = Recorder(stack.bus_dir).start()
        try:
            yield OpenClawContext(agent_identity(), run_dir, artifacts, implant, rec, keep_scratch)
        finally:
            rec.stop()
    finally:
        stack.stop()
        if artifacts is not None and stack.log_dir.exists():
            shutil.copytree(stack.log_dir, artifacts / "casa-logs", dirs_exist_ok=True)
        if not keep_scratch:
            shutil.rmtree(run_dir, ignore_errors=True)


def openclaw_rules(source: Path, dest: Path) -> Path:
    """The attack suite's rules (``suite_rules``: the stand-in internet ports) with the sandbox's
    resolver in ``ignored_connect_ips``.

    OpenClaw looks names up by itself (its model catalog host, at start and now and then); make
    eval ignores the machine's resolver for that reason (evaluation/runner.eval_rules). Here the
    resolver is :data:`SANDBOX_RESOLVER`, a loopback address of its own, because port 53 is a
    stand-in internet port: without it the gateway's own lookups would count as the agent's
    network activity. The DNS-tunnel scenario sends to 127.0.0.1:53 itself and stays visible.
    """
    suite_rules(source, dest)
    rules = json.loads(dest.read_text())
    analysis = rules.setdefault("analysis", {})
    analysis["ignored_connect_ips"] = list(analysis.get("ignored_connect_ips") or []) + [SANDBOX_RESOLVER]
    analysis["credential_consumers"] = runtime_node_consumers(analysis.get("credential_consumers"))
    dest.write_text(json.dumps(rules, indent=2) + "\n")
    return dest


def runtime_node_consumers(configured: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """``credential_consumers`` with the project-local node as a reader of ``~/.npmrc``.

    OpenClaw runs `npm root -g` under its own node on every turn, and npm reads ~/.npmrc: a
    node outside system_dirs is not trusted by name, so a user whose node comes from nvm or a
    project-local install names it by absolute path (docs/rules.md "Tuning"), as done here."""
    consumers = {k: list(v) for k, v in (configured or MAP_DEFAULTS["credential_consumers"]).items()}
    node = os.path.realpath(Toolchain.in_checkout().node_bin_dir / "node")
    readers = consumers.setdefault("~/.npmrc", [])
    if node not in readers:
        readers.append(node)
    return consumers


def _prepare(layout: Layout) -> None:
    """Seed the scratch home (Layout.create), OpenClaw's config in it (evaluation/runner's) and
    the resolver OpenClaw's own lookups go to (openclaw_rules)."""
    layout.create()
    AgentHome(layout.scratch / "home").write_config()
    (layout.scratch / "etc-upper" / "resolv.conf").write_text(
        f"nameserver {SANDBOX_RESOLVER}\noptions timeout:1 attempts:1\n")


def _openclaw_invalid(report: dict[str, Any]) -> list[str]:
    """What makes an OpenClaw run invalid beyond the attack suite's reasons: the turn itself."""
    why = []
    if report.get("turn_timed_out") or report.get("openclaw_rc") != 0:
        why.append(f"the openclaw turn failed (rc {report.get('openclaw_rc')})")
    if report.get("tool_calls") != 1:
        why.append(f"OpenClaw made {report.get('tool_calls')} tool call(s), not the scripted 1")
    return why


def _score(res: ScenarioResult, sc: Scenario, report: dict[str, Any], got: Collected, hygiene: Hygiene,
           lost: int) -> None:
    """Fill ``res`` as the launcher suite does (runner.run_scenario), plus the turn's own checks."""
    v = got.verdict
    res.action, res.score, res.rules, res.time_to_alert_ms, res.sessions = (v.action, v.score, v.rules,
                                                                            v.time_to_alert_ms, v.sessions)
    res.hygiene, res.effects, res.event_kinds = hygiene.as_dict(), report.get("effects", {}), got.event_kinds
    res.launcher_pid, res.exit_code, res.timed_out = report["roots"][0], report["exit_code"], report["timed_out"]
    res.stderr_head = report.get("tool_result", "")[:600]
    why = [w for w in (invalid_reason(res, report, got.closed, len(got.raw), lost),) if w]
    res.invalid_reason = "; ".join(why + _openclaw_invalid(report))
    res.valid = not res.invalid_reason
    res.met = met(sc.category, sc.expected, v.action)


def run_openclaw_scenario(sc: Scenario, mode: str, ctx: OpenClawContext) -> ScenarioResult:
    """One scenario through OpenClaw in one mode: sandbox, records, self-check, verdict."""
    res = ScenarioResult(id=sc.id, name=sc.name, category=sc.category, tactic=sc.tactic,
                         technique=list(sc.techniques), expected=sc.expected, identity=ctx.identity.name,
                         profile=f"openclaw-{mode}", mode=mode)
    if not sc.runs_as(False):
        res.skipped = f"needs root: {sc.root_reason}"
        return res
    t0 = time.monotonic()
    run = Path(tempfile.mkdtemp(prefix=f"{sc.id}-{mode}-", dir=ctx.run_dir))
    layout = Layout(run / "S", ctx.identity.home, ctx.identity.uid, ctx.identity.gid)
    _prepare(layout)
    spec = {"scenario": sc.as_spec(), "identity": ctx.identity.as_spec(), "mode": mode, "prompt": prompt_for(sc),
            "scratch": str(layout.scratch), "mounts": layout.mounts(), "implant": str(ctx.implant),
            "env": {"DEV_PYTHON": sys.executable}}
    mark, lost_before = ctx.recorder.mark(), ctx.recorder.lost_messages
    spec_path = run / "spec.json"
    spec_path.write_text(json.dumps(spec))
    report, stderr = run_keeper(spec_path, sc.timeout_s + sc.linger_s + KEEPER_MARGIN_S,
                                "evaluation.attacks.openclaw_keeper")
    spec_path.unlink(missing_ok=True)
    if report is None or not report.get("roots"):
        res.invalid_reason = f"the sandbox or OpenClaw failed: {stderr[-800:]}"
        res.duration_s = round(time.monotonic() - t0, 2)
        if not ctx.keep_scratch:
            shutil.rmtree(run, ignore_errors=True)
        return res
    got = collect(ctx.recorder, mark, report["roots"], int(report["finished_ns"]))
    hygiene = selfcheck.check(got.raw, layout.backed_prefixes())
    _score(res, sc, report, got, hygiene, ctx.recorder.lost_messages - lost_before)
    res.duration_s = round(time.monotonic() - t0, 2)
    _save(ctx, sc, mode, report, got)
    logging.getLogger("casa.eval.attacks").info(
        "openclaw scenario done | id=%s mode=%s action=%s score=%d expected=%s met=%s valid=%s %s",
        sc.id, mode, res.action, res.score, sc.expected, res.met, res.valid, res.invalid_reason)
    if not ctx.keep_scratch:
        shutil.rmtree(run, ignore_errors=True)
    return res


def _save(ctx: OpenClawContext, sc: Scenario, mode: str, report: dict[str, Any], got: Collected) -> None:
    if ctx.artifacts is None:
        return
    d = ctx.artifacts / mode / sc.id
    d.mkdir(parents=True, exist_ok=True)
    (d / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (d / "events.json").write_text(json.dumps(got.raw, indent=0, default=str))
    (d / "session_events.json").write_text(json.dumps(got.session_events, indent=0, default=str))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("evaluation.attacks.openclaw", __doc__,
                       ("--mode gateway", "--case atk-curl-pipe-sh --snapshot"))
    p.add_argument("--case", action="append", default=[], help="scenario id (repeatable; default: the subset)")
    p.add_argument("--mode", choices=(*MODES, "both"), default="both",
                   help="through the gateway, with --local, or both (default)")
    p.add_argument("--rules", type=Path, default=CHECKOUT / "rules.json", help="the rules file CASA runs")
    p.add_argument("--out", type=Path, default=RESULTS_PATH,
                   help="results file; each run's report and raw events go to run/openclaw/ beside it")
    p.add_argument("--snapshot", action="store_true",
                   help="also replace the OpenClaw block of the attack-suite section of evaluation/RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep each run's scratch directory (under /tmp)")
    return p.parse_args(argv)


def _chosen(cases: list[str]) -> list[Scenario] | str:
    """The subset (or ``cases``, which may name any scenario of the table); an error text otherwise."""
    table = {s.id: s for s in load_scenarios()}
    ids = cases or list(SUBSET)
    unknown = [c for c in ids if c not in table]
    return f"unknown scenario(s) {unknown}" if unknown else [table[c] for c in ids]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not root_command("evaluation/attacks/openclaw", "eBPF, namespaces, the casa-agent user"):
        return 2
    chosen = _chosen(args.case)
    if isinstance(chosen, str) or not args.rules.exists():
        return refuse("evaluation/attacks/openclaw",
                      chosen if isinstance(chosen, str) else f"no rules file {args.rules}")
    artifacts = args.out.parent / "run" / "openclaw"
    artifacts.mkdir(parents=True, exist_ok=True)
    rules = openclaw_rules(args.rules, artifacts / "rules.json")
    modes = MODES if args.mode == "both" else (args.mode,)
    t0 = time.monotonic()
    with openclaw_session(rules, artifacts, args.keep) as ctx:
        results = [run_openclaw_scenario(sc, mode, ctx) for mode in modes for sc in chosen]
    meta = run_meta(args.rules, rules, t0, len(chosen), openclaw=Toolchain.in_checkout().openclaw_version(),
                    agent=AGENT_USER, modes=list(modes), left_out=LEFT_OUT)
    _, bad = publish(args.out, results, meta, "mode", lambda s: render_openclaw_block(results, s, meta, LEFT_OUT),
                     replace_openclaw_block, RESULTS_MD if args.snapshot else None)
    if bad:
        print("evaluation/attacks/openclaw: invalid runs:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
