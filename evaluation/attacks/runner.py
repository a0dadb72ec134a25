"""Run attack-suite scenarios through the real stack and score them.

    python -m evaluation.attacks [--identity root|user ...] [--case ID ...] [--rules FILE] [--snapshot]

Per identity (root, then the unprivileged ``casa-attack``): the real stack starts once under the
real supervisord in private directories (tests/stack/stack.py's ``Stack``) with the generic
launcher profiles of config/casa.attacks.json, and every scenario runs in its own sandbox
(keeper.py) one after another. Each run's records are read off the bus (recorder.py), its
sessions followed through the process tree (collect.py), checked for hygiene (selfcheck.py) and
scored (results.py) into ``evaluation/results/attacks/latest.json``; ``--snapshot`` also updates
the attack-suite section of evaluation/RESULTS.md.

The rules are a copy of ``--rules`` (default: the checkout's rules.json) with one change: the
sandbox's stand-in internet ports (servers.LOOPBACK_PORTS) are added to
``allowed_loopback_ports``, as config/rules.eval.json does for make eval's servers, so that a
connect to the stand-in C2 is seen as the network it stands for (a developer's own loopback
server on another port stays ignored). ``--no-loopback-ports`` runs the rules unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.attacks import selfcheck
from evaluation.attacks.collect import collect
from evaluation.attacks.identity import Identity
from evaluation.attacks.launcher import attack_profiles, build_implant, install_launchers
from evaluation.attacks.layout import Layout
from evaluation.attacks.recorder import Recorder
from evaluation.attacks.results import ScenarioResult, met, now_utc
from evaluation.attacks.scenario import Scenario
from evaluation.attacks.servers import LOOPBACK_PORTS
from tests.stack.stack import Stack

__all__ = ["SuiteContext", "suite_rules", "suite_session", "run_sandboxed", "run_scenario", "run_identity", "invalid_reason", "checkout_commit", "run_keeper", "kill_namespace", "keeper_spec", "CHECKOUT",
           "RESULTS_DIR", "sandbox_unavailable"]

CHECKOUT = Path(__file__).resolve().parents[2]
RESULTS_DIR = CHECKOUT / "evaluation" / "results" / "attacks"
RESULTS_MD = CHECKOUT / "evaluation" / "RESULTS.md"      # --snapshot writes the suite's section there
KEEPER_MARGIN_S = 60.0

log = logging.getLogger("casa.eval.attacks")


def suite_rules(source: Path, dest: Path, loopback_ports: bool = True) -> Path:
    """A copy of ``source`` with the sandbox's stand-in internet ports in ``allowed_loopback_ports``."""
    rules = json.loads(source.read_text())
    if loopback_ports:
        analysis = rules.setdefault("analysis", {})
        ports = list(analysis.get("allowed_loopback_ports") or [])
        analysis["allowed_loopback_ports"] = ports + [p for p in LOOPBACK_PORTS if p not in ports]
    dest.write_text(json.dumps(rules, indent=2) + "\n")
    dest.chmod(0o644)
    return dest


def rules_version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def checkout_commit() -> str:
    """The checkout's HEAD (short), for the results' meta."""
    return subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip() or "unknown"


def run_meta(rules_arg: Path, rules: Path, started_s: float, scenarios: int, **extra: Any) -> dict[str, Any]:
    """The results' meta: when, at which commit, with which rules (the file named on the command
    line and the hash of the copy CASA ran), how long since ``started_s`` (monotonic), how many
    scenarios, plus ``extra``."""
    return {"date": now_utc(), "commit": checkout_commit(), "rules": os.path.relpath(rules_arg, CHECKOUT),
            "rules_version": rules_version(rules), **extra,
            "duration_s": round(time.monotonic() - started_s, 1), "scenarios": scenarios}


@dataclass(slots=True)
class SuiteContext:
    """What every scenario run of one identity shares."""

    identity: Identity
    run_dir: Path                 # scratch root of this identity's runs (host)
    artifacts: Path | None        # where each run's spec/report/records go (None: nowhere)
    launchers: dict[str, Path]
    implant: Path
    recorder: Recorder
    keep_scratch: bool = False


def kill_namespace(keeper_pid: int) -> int:
    """SIGKILL every process in the keeper's network namespace but the keeper; returns how many.

    The backstop for a keeper that overran its own deadlines: the namespace was made by the
    keeper's ``unshare``, so only processes the keeper started can be in it (the same test
    keeper.namespace_pids uses from inside)."""
    try:
        ns = os.readlink(f"/proc/{keeper_pid}/ns/net")
    except OSError:
        return 0
    if ns == os.readlink("/proc/self/ns/net"):
        return 0                       # unshare had not made the namespace yet: nothing started in it
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == keeper_pid:
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") == ns:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
        except OSError:
            continue
    return killed


def sandbox_unavailable() -> str | None:
    """Why this machine cannot build the scenarios' sandbox, or None.

    The keeper's ``unshare --mount --propagation private`` makes ``/`` private in its new mount
    namespace, so that its read-only mounts never reach the host; the kernel refuses that
    (EINVAL) when ``/`` is not a mount point, as inside a plain chroot. A real machine, a VM or a
    container always has ``/`` mounted."""
    if not root_is_a_mount():
        return ("the attack sandbox needs / to be a mount point (unshare --propagation private "
                "makes it private); here it is not, as inside a plain chroot")
    return None


def root_is_a_mount(mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """Whether this process's / is a mount point. ``os.path.ismount("/")`` cannot tell inside a
    chroot (``/..`` is ``/``); the mount table, seen from the process's root, lists a mount whose
    mount point (field 5) is ``/`` only when it is one."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return True                    # no /proc: assume a real root and let unshare say more
    return any(len(f) > 4 and f[4] == "/" for f in (line.split() for line in lines))


def run_keeper(spec_path: Path, timeout_s: float, module: str = "evaluation.attacks.keeper"
               ) -> tuple[dict[str, Any] | None, str]:
    """Run a keeper (``module``: keeper.py, or openclaw_keeper.py) in fresh network and mount
    namespaces; returns (report, stderr). At ``timeout_s`` the keeper and everything in its
    namespace are killed: every run stops, even one whose keeper hangs."""
    cmd = ["unshare", "--net", "--mount", "--propagation", "private", "--", sys.executable, "-m", module,
           str(spec_path)]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(CHECKOUT), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, cwd=CHECKOUT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        killed = kill_namespace(proc.pid)
        proc.kill()
        out, err = proc.communicate()
        return None, (f"keeper did not finish within {timeout_s:.0f} s: killed it and {killed} process(es) "
                      f"of its namespace; stderr: {err[-800:]}")
    report = None
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        report = msg.get("report", report) if isinstance(msg, dict) else report
    return report, err


def keeper_spec(sc: Scenario, identity: Identity, layout: Layout, launchers: dict[str, Path],
                implant: Path) -> dict[str, Any]:
    """What keeper.py needs to run ``sc`` (JSON-able)."""
    return {"scenario": sc.as_spec(), "identity": identity.as_spec(), "launcher": str(launchers[sc.profile]),
            "scratch": str(layout.scratch), "mounts": layout.mounts(), "implant": str(implant),
            "env": {"DEV_PYTHON": sys.executable}}


def run_sandboxed(sc: Scenario, identity: Identity, layout: Layout, launchers: dict[str, Path],
                  implant: Path) -> tuple[dict[str, Any] | None, str]:
    """Run ``sc`` as ``identity`` in a sandbox backed by ``layout`` (already created); returns the
    keeper's report (None if the sandbox itself failed) and its stderr."""
    spec = keeper_spec(sc, identity, layout, launchers, implant)
    spec_path = layout.scratch.with_name(layout.scratch.name + ".spec.json")
    spec_path.write_text(json.dumps(spec))
    try:
        return run_keeper(spec_path, sc.timeout_s + sc.linger_s + KEEPER_MARGIN_S)
    finally:
        spec_path.unlink(missing_ok=True)


def _base_result(sc: Scenario, ctx: SuiteContext) -> ScenarioResult:
    return ScenarioResult(id=sc.id, name=sc.name, category=sc.category, tactic=sc.tactic,
                          technique=list(sc.techniques), expected=sc.expected, identity=ctx.identity.name,
                          profile=sc.profile)


def invalid_reason(res: ScenarioResult, report: dict[str, Any], closed: bool, events: int, lost: int) -> str:
    why = []
    if lost:
        why.append(f"the recorder lost {lost} bus message(s)")
    if any(s.get("complete") is False for s in res.sessions):
        why.append("a session is incomplete (CASA counted a loss)")
    if not res.hygiene.get("ok", False):
        why.append(f"hygiene: {len(res.hygiene.get('violations', []))} violation(s)")
    if not events:
        why.append("CASA saw no event of the scenario's tree")
    if not closed:
        why.append("a session did not close")
    missing = [e for e, ok in report.get("effects", {}).items() if not ok]
    if missing:
        why.append(f"effects did not happen: {missing}")
    if report.get("timed_out"):
        why.append("timed out")
    elif res.category == "benign" and report.get("exit_code") != 0:
        why.append(f"the developer task failed (exit {report.get('exit_code')})")
    return "; ".join(why)


def run_scenario(sc: Scenario, ctx: SuiteContext) -> ScenarioResult:
    """One scenario, one identity: sandbox, records, self-check, verdict."""
    res = _base_result(sc, ctx)
    if not sc.runs_as(ctx.identity.is_root):
        res.skipped = f"needs root: {sc.root_reason}"
        return res
    t0 = time.monotonic()
    run = Path(tempfile.mkdtemp(prefix=f"{sc.id}-", dir=ctx.run_dir))
    layout = Layout(run / "S", ctx.identity.home, ctx.identity.uid, ctx.identity.gid)
    layout.create()
    mark, lost_before = ctx.recorder.mark(), ctx.recorder.lost_messages
    report, stderr = run_sandboxed(sc, ctx.identity, layout, ctx.launchers, ctx.implant)
    if report is None:
        res.invalid_reason = f"the sandbox failed: {stderr[-800:]}"
        res.duration_s = round(time.monotonic() - t0, 2)
        return res
    got = collect(ctx.recorder, mark, int(report["launcher_pid"]), int(report["finished_ns"]))
    hygiene = selfcheck.check(got.raw, layout.backed_prefixes())
    v = got.verdict
    res.action, res.score, res.rules, res.time_to_alert_ms, res.sessions = (v.action, v.score, v.rules,
                                                                            v.time_to_alert_ms, v.sessions)
    res.hygiene, res.effects, res.event_kinds = hygiene.as_dict(), report.get("effects", {}), got.event_kinds
    res.launcher_pid, res.exit_code, res.timed_out = report["launcher_pid"], report["exit_code"], report["timed_out"]
    res.stderr_head = report.get("stderr", "")[:600]
    res.invalid_reason = invalid_reason(res, report, got.closed, len(got.raw),
                                         ctx.recorder.lost_messages - lost_before)
    res.valid = not res.invalid_reason
    res.met = met(sc.category, sc.expected, v.action)
    res.duration_s = round(time.monotonic() - t0, 2)
    _save(ctx, sc, report, got)
    log.info("scenario done | id=%s identity=%s action=%s score=%d expected=%s met=%s valid=%s %s",
             sc.id, ctx.identity.name, res.action, res.score, sc.expected, res.met, res.valid,
             res.invalid_reason)
    if not ctx.keep_scratch:
        shutil.rmtree(run, ignore_errors=True)
    return res


def _save(ctx: SuiteContext, sc: Scenario, report: dict[str, Any], got: Any) -> None:
    if ctx.artifacts is None:
        return
    d = ctx.artifacts / ctx.identity.name / sc.id
    d.mkdir(parents=True, exist_ok=True)
    (d / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (d / "events.json").write_text(json.dumps(got.raw, indent=0, default=str))
    (d / "session_events.json").write_text(json.dumps(got.session_events, indent=0, default=str))


@contextmanager
def suite_session(identity: Identity, rules: Path, artifacts: Path | None = None,
                  keep_scratch: bool = False) -> Iterator[SuiteContext]:
    """The real stack (started once) and the recorder, for running scenarios as ``identity``."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"casa-attacks-{identity.name}-"))
    os.chmod(run_dir, 0o755)
    try:
        launchers = install_launchers()
        implant = build_implant(run_dir / "implant")
        with Stack(rules=rules, config_profiles=attack_profiles()) as st:
            rec = Recorder(st.bus_dir).start()
            try:
                yield SuiteContext(identity, run_dir, artifacts, launchers, implant, rec, keep_scratch)
            finally:
                rec.stop()
                if artifacts is not None:
                    shutil.copytree(st.log_dir, artifacts / identity.name / "casa-logs", dirs_exist_ok=True)
    finally:
        if not keep_scratch:
            shutil.rmtree(run_dir, ignore_errors=True)


def run_identity(identity: Identity, scenarios: list[Scenario], rules: Path, artifacts: Path | None,
                 keep_scratch: bool = False) -> list[ScenarioResult]:
    """Start the stack once for ``identity`` and run every scenario through it, in order."""
    with suite_session(identity, rules, artifacts, keep_scratch) as ctx:
        return [run_scenario(sc, ctx) for sc in scenarios]
