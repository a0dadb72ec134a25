"""The attack suite's sandbox, by construction (root; no CASA needed).

A scenario runs in a network namespace with only ``lo`` and a mount namespace where everything is
read-only but the scratch-backed directories. These tests run real scenarios in it and look at
the host afterwards: what tried to leave did not, and what "persistence" wrote landed in scratch.
The self-check's view of the same probe, through CASA's own events, is in
test_runner.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluation.attacks.identity import Identity, identities
from evaluation.attacks.keeper import alive
from evaluation.attacks.launcher import build_implant, install_launchers
from evaluation.attacks.layout import Layout
from evaluation.attacks.runner import keeper_spec, run_keeper, run_sandboxed, sandbox_unavailable
from evaluation.attacks.scenario import Scenario, load_scenarios

SANDBOX = pytest.mark.skipif(sandbox_unavailable() is not None, reason=sandbox_unavailable() or "")
pytestmark = [pytest.mark.root, SANDBOX]


def _probe() -> Scenario:
    return next(s for s in load_scenarios(include_probes=True) if s.id == "probe-escape")


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Path], Path]]:
    d = tmp_path_factory.mktemp("attack-tools")
    yield install_launchers(), build_implant(d / "implant")


def _run(sc: Scenario, ident: Identity, scratch: Path, tools: tuple[dict[str, Path], Path]) -> dict:
    layout = Layout(scratch / "S", ident.home, ident.uid, ident.gid)
    layout.create()
    report, stderr = run_sandboxed(sc, ident, layout, *tools)
    assert report is not None, stderr
    return report


@pytest.mark.parametrize("who", ["root", "user"])
def test_writes_outside_scratch_and_packets_to_10_0_0_1_go_nowhere(who: str, tmp_path: Path, tools) -> None:
    report = _run(_probe(), identities((who,))[0], tmp_path, tools)
    assert not Path("/usr/local/casa-escape-probe").exists()
    assert not os.path.lexists("/usr/local/casa-escape-link")
    assert report["stderr"].count("Read-only file system") == 2, report["stderr"]
    assert report["stdout"].split() == ["lo"]                      # the only interface
    assert "unreachable" in report["stderr"].lower()               # python's sendto to 10.0.0.1


def test_persistence_and_log_writes_land_in_scratch_not_on_the_host(tmp_path: Path, tools) -> None:
    sc = Scenario(id="probe-persist", name="n", category="probe", tactic="sandbox", expected="IGNORE",
                  script="echo x > /etc/ld.so.preload.casa-probe; echo y > /var/spool/cron/crontabs/root;"
                         " : > /var/log/auth.log; echo z >> ~/.bashrc; echo w > /var/tmp/casa-probe;"
                         " echo v > /tmp/casa-probe; cat /etc/shadow /etc/resolv.conf")
    report = _run(sc, identities(("root",))[0], tmp_path, tools)
    s = tmp_path / "S"
    assert (s / "etc-upper" / "ld.so.preload.casa-probe").read_text() == "x\n"
    assert not Path("/etc/ld.so.preload.casa-probe").exists()
    assert (s / "spool-upper" / "cron" / "crontabs" / "root").read_text() == "y\n"
    assert (s / "log" / "auth.log").read_text() == ""
    assert (s / "home" / ".bashrc").read_text().endswith("z\n")
    assert (s / "var-tmp" / "casa-probe").exists() and (s / "tmp" / "casa-probe").exists()
    assert not Path("/var/tmp/casa-probe").exists()
    assert "CASA-FAKE-SECRET-SHADOW" in report["stdout"]           # the fake shadow, not the host's
    assert "nameserver 127.0.0.1" in report["stdout"]


def test_detached_processes_are_given_their_linger_and_then_killed(tmp_path: Path, tools) -> None:
    sc = Scenario(id="probe-linger", name="n", category="probe", tactic="sandbox", expected="IGNORE",
                  linger_s=1.0, timeout_s=10,
                  script="setsid sh -c 'sleep 0.3; touch /tmp/early' & setsid sleep 60 >/dev/null 2>&1 &")
    report = _run(sc, identities(("user",))[0], tmp_path, tools)
    assert (tmp_path / "S" / "tmp" / "early").exists()
    assert len(report["killed"]) == 1 and report["killed"][0] in report["lingering"]
    assert not alive(report["killed"][0])


def test_a_scenario_that_runs_too_long_is_killed_at_its_timeout(tmp_path: Path, tools) -> None:
    sc = Scenario(id="probe-timeout", name="n", category="probe", tactic="sandbox", expected="IGNORE",
                  timeout_s=1.0, linger_s=0, script="sleep 30; echo never")
    report = _run(sc, identities(("user",))[0], tmp_path, tools)
    assert report["timed_out"] and "never" not in report["stdout"]
    assert (report["exited_ns"] - report["started_ns"]) / 1e9 < 5


def test_the_victim_holds_fake_secrets_the_scenario_can_read(tmp_path: Path, tools) -> None:
    sc = Scenario(id="probe-victim", name="n", category="probe", tactic="sandbox", expected="IGNORE",
                  script="tr '\\0' '\\n' < /proc/$VICTIM_PID/environ; id -un")
    report = _run(sc, identities(("user",))[0], tmp_path, tools)
    assert "SERVICE_TOKEN=CASA-FAKE-SECRET-ENVIRON" in report["stdout"]
    assert report["stdout"].split()[-1] == "casa-attack"


def _sleepers(marker: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker in Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"):
                out.append(int(entry))
        except OSError:
            continue
    return [p for p in out if alive(p)]


def test_a_keeper_that_overruns_is_killed_with_everything_in_its_namespace(tmp_path: Path, tools) -> None:
    marker = f"{time.monotonic_ns() % 1000}.{os.getpid()}"       # a sleep length no other process uses
    sc = Scenario(id="probe-overrun", name="n", category="probe", tactic="sandbox", expected="IGNORE",
                  timeout_s=60, linger_s=0, script=f"setsid sleep 1{marker} & sleep 2{marker}")
    ident = identities(("user",))[0]
    layout = Layout(tmp_path / "S", ident.home, ident.uid, ident.gid)
    layout.create()
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(keeper_spec(sc, ident, layout, *tools)))
    t0 = time.monotonic()
    report, stderr = run_keeper(spec, 3.0)
    assert report is None and "did not finish within 3 s" in stderr
    assert time.monotonic() - t0 < 10
    assert int(stderr.split("killed it and ")[1].split()[0]) >= 3      # the victim, the launcher, the sleeps
    deadline = time.monotonic() + 2
    while _sleepers(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _sleepers(marker)
