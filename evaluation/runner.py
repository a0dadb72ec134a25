"""Drive the real OpenClaw through the evaluation's cases and collect CASA's records for each, by session.

    python -m evaluation.runner [--pack default|original] [--mode gateway|local|both] [--case M05 ...]
                                [--casa start|external|none] [--out DIR]

Each case is one OpenClaw turn, run as the unprivileged ``casa-agent`` user against the scripted
fake model (evaluation/fakellm) and the local stand-in servers (evaluation/servers); its records
are collected off the bus by session (evaluation/cases.py).

``--casa start`` (the default) starts the collector (root), sessionizer, analyzer and the JSONL
sink (user casa) with the pack's rules (``--pack``: ``default`` is rules.json with the
evaluation's analysis values, ``original`` is config/rules.eval.json; evaluation/packs.py) and
private bus/log directories (evaluation/stack.py); results go to ``OUT/PACK/``. ``external``
uses a stack already running on ``$CASA_BUS_DIR`` (e.g. ``make run`` with
``CASA_RULES_PATH=config/rules.eval.json``).

Caveats: the agent runs as ``casa-agent``, never root (as root every session has every dangerous
capability and no seccomp); the M06 scan targets 198.18.0.1-6, which the runner adds to ``lo`` for the
run, so nothing leaves the machine (evaluation/network.py).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.agent import FAKELLM_PORT, AgentHome, reset_scratch
from evaluation.cases import MODES, BusRecorder, CaseRecords, run_case, run_turn
from evaluation.command import add_results_dir, command_parser, root_command
from evaluation.fakellm import Scenario, load_scenarios
from evaluation.fakellm.server import serve
from evaluation.gateway import Gateway
from evaluation.network import ensure_scan_targets, remove_scan_targets
from evaluation.packs import PACKS
from evaluation.servers import serve_download, serve_sink, serve_weather
from evaluation.stack import CasaStack
from evaluation.toolchain import SCENARIO_DIR, Toolchain

__all__ = ["EvalSession", "main"]

log = logging.getLogger("casa.eval.runner")


@dataclass(slots=True)
class EvalSession:
    """Everything a run needs, started once: servers, fake model, CASA, recorder, gateway."""

    out_dir: Path
    casa: str = "start"                  # start | external | none
    modes: tuple[str, ...] = ("gateway",)
    runtime_noise: bool = True           # see eval_casa_config
    pack: str = "original"               # the rule pack CASA runs (pack_rules); make eval runs both
    toolchain: Toolchain = field(default_factory=Toolchain.in_checkout)
    homes: dict[str, AgentHome] = field(default_factory=lambda: {m: AgentHome.of_user(m) for m in MODES})
    stack: CasaStack | None = None
    recorder: BusRecorder | None = None
    gateway: Gateway | None = None
    servers: list[Any] = field(default_factory=list)
    scratch: Path | None = None

    def __enter__(self) -> EvalSession:
        with contextlib.ExitStack() as on_failure:     # a half-started session is closed, then raises
            on_failure.callback(self.close)
            self._start()
            on_failure.pop_all()
        return self

    def _start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.toolchain.ensure()
        for home in self.homes.values():
            home.write_config()
        ensure_scan_targets()
        self.servers = [serve(FAKELLM_PORT, [SCENARIO_DIR, SCENARIO_DIR / "overhead"],
                              self.out_dir / "fakellm.jsonl"),
                        serve_sink(self.out_dir / "sink-requests.jsonl"), serve_download(), serve_weather()]
        if self.casa != "none":
            self.scratch = Path(tempfile.mkdtemp(prefix="casa-eval-"))
            self.stack = CasaStack(self.scratch, pack=self.pack, external=self.casa == "external",
                                   runtime_noise=self.runtime_noise)
            self.stack.start()
            if not self.stack.external:     # the composed file the analyzer ran, kept with the results
                shutil.copyfile(self.scratch / "rules.eval.json", self.out_dir / "rules.json")
            self.recorder = BusRecorder(self.stack.bus_dir)
            self.recorder.start()
        if "gateway" in self.modes:
            self.gateway = Gateway(self.toolchain, self.homes["gateway"], self.out_dir / "gateway.log")
            self.gateway.start()

    def run(self, scenario: Scenario, mode: str) -> CaseRecords | None:
        out = self.out_dir / "cases" / f"{scenario.id}-{mode}"
        if self.recorder is None:
            out.mkdir(parents=True, exist_ok=True)
            reset_scratch()
            run_turn(self.toolchain, self.homes[mode], mode, scenario.prompt, out)
            return None
        if self.stack:
            self.stack.check_alive()
        return run_case(scenario, mode, self.toolchain, self.homes[mode], self.recorder, out)

    def close(self) -> None:
        if self.gateway:
            self.gateway.stop()
        if self.recorder:
            self.recorder.stop()
        if self.stack:
            self.stack.stop()
            if self.scratch and self.stack.log_dir.exists():
                shutil.copytree(self.stack.log_dir, self.out_dir / "casa-logs", dirs_exist_ok=True)
        remove_scan_targets()
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = command_parser("evaluation.runner", __doc__, ("--case M05 --mode gateway", "--casa external --mode both"))
    p.add_argument("--case", action="append", default=[], help="case id (repeatable; default: all)")
    p.add_argument("--mode", choices=(*MODES, "both"), default="both",
                   help="through the gateway, with --local, or both (default)")
    p.add_argument("--casa", choices=("start", "external", "none"), default="start",
                   help="start a private stack (default), use the one on $CASA_BUS_DIR, or run without CASA")
    p.add_argument("--pack", choices=PACKS, default="default",
                   help="default: rules.json with the evaluation's analysis values (default_pack_rules); "
                        "original: config/rules.eval.json as it is (the parity column)")
    add_results_dir(p, "this pack's cases go to OUT/PACK/cases/")
    p.add_argument("--no-runtime-noise", action="store_true",
                   help="do not filter the OpenClaw install's own module loads (see eval_casa_config)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not root_command("evaluation/runner", "it starts the collector and runs the agent as casa-agent"):
        return 2
    scenarios = [s for s in load_scenarios(SCENARIO_DIR) if not args.case or s.id in args.case]
    modes = MODES if args.mode == "both" else (args.mode,)
    out = args.out / args.pack
    if not args.case:
        shutil.rmtree(out / "cases", ignore_errors=True)    # no stale case from an earlier run
    with EvalSession(out, casa=args.casa, modes=modes, runtime_noise=not args.no_runtime_noise,
                     pack=args.pack) as ev:
        for mode in modes:
            for s in scenarios:
                ev.run(s, mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
