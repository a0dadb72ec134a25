"""Run one attack-suite scenario through the real OpenClaw, inside its sandbox (root, in the namespaces).

    unshare --net --mount --propagation private -- python -m evaluation.attacks.openclaw_keeper SPEC.json

The OpenClaw counterpart of keeper.py, with the same sandbox (keeper.setup_sandbox: every mount
read-only but the scratch-backed directories, only ``lo``), the same loopback servers and the
same victim. Instead of the generic launcher it runs, as the unprivileged evaluation agent
(``casa-agent``, whose home is the scratch-backed ``S/home`` here, holding the fake secrets, the
project and OpenClaw's own state):

1. the fake model (evaluation/fakellm) on 127.0.0.1:18080 *inside the namespace*, knowing one
   scenario: the spec's neutral prompt, answered with one ``exec`` tool call whose ``command`` is
   the scenario's script (``workdir`` ~/project), then a final text;
2. in gateway mode ``openclaw gateway run`` (waits until it listens), then one
   ``openclaw agent --agent main --session-id ... --json --message PROMPT`` turn; in local mode
   the turn alone with ``--local``;
3. stops the gateway, gives detached processes ``linger_s``, kills what is left in the
   namespace, checks the scenario's effects and prints the report (``roots``: the gateway's and
   the CLI's pids, the trees CASA's records are followed from).

One difference from keeper.py's sandbox: ``/proc`` (the mount itself, not its submounts) is
writable again. OpenClaw's exec wrapper raises each command's own OOM score (``echo 1000 >
/proc/self/oom_score_adj``) and should not fail where it succeeds on a real machine; the agent is
unprivileged, so the kernel lets it write only its own processes' attributes there, as on the
host, and /proc holds no storage.

The agent's command runs as OpenClaw runs it (its ``bash -c`` wrapper under the gateway's spawn
broker, or under the CLI in --local mode), with the environment OpenClaw gives it: the runtime's
own, where the keeper put ``VICTIM_PID``, ``PROJECT`` and ``DEV_PYTHON`` as keeper.py does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from evaluation.attacks import mounts
from evaluation.attacks.keeper import check_effects, linger, setup_sandbox, spec_main, start_victim
from evaluation.attacks.servers import Servers
from evaluation.fakellm.scenario import Scenario as ModelScenario
from evaluation.fakellm.scenario import ToolCall
from evaluation.fakellm.server import FakeModelServer
from evaluation.agent import FAKELLM_PORT, GATEWAY_PORT, AgentHome
from evaluation.cases import openclaw_turn_argv, parse_turn
from evaluation.gateway import GATEWAY_START_TIMEOUT_S, GATEWAY_STOP_S
from evaluation.network import port_open
from evaluation.process_group import kill_group, stop_group
from evaluation.toolchain import Toolchain

__all__ = ["main", "run", "model_scenario", "exec_args", "tool_outcome"]

TURN_MARGIN_S = 120.0          # OpenClaw's own time around the command (a turn is 8-20 s)
OUTPUT_LIMIT = 1 << 18
FINAL_TEXT = "Done."
_EXIT = re.compile(r"\(Command exited with code (\d+)\)\s*$")


def exec_args(sc: dict[str, Any], home: str) -> dict[str, Any]:
    """The one ``exec`` call: the script as the command, run in ~/project, killed by OpenClaw at
    the scenario's timeout and never backgrounded before it (yieldMs past the timeout)."""
    return {"command": sc["script"], "workdir": f"{home}/project", "timeoutSeconds": int(sc["timeout_s"]),
            "yieldMs": int(sc["timeout_s"] * 1000) + 5000}


def model_scenario(spec: dict[str, Any]) -> ModelScenario:
    """The fake model's script for this run: one exec step, then the final text."""
    sc = spec["scenario"]
    call = ToolCall("exec", exec_args(sc, spec["identity"]["home"]))
    return ModelScenario(id=sc["id"], category="malicious", name=sc["id"], expectation="", expected_action="IGNORE",
                         expected_rules=(), expected_score=0, prompt=spec["prompt"], script=(call,),
                         final=FINAL_TEXT)


class _Model(FakeModelServer):
    """The fake model, keeping its request log in memory (the sandbox has nowhere private to write)."""

    def __init__(self, scenario: ModelScenario) -> None:
        super().__init__(("127.0.0.1", FAKELLM_PORT), [scenario], None)
        self.requests: list[dict[str, Any]] = []

    def record(self, entry: dict[str, Any]) -> None:
        with self.log_lock:
            self.requests.append(entry)


def start_model(spec: dict[str, Any]) -> _Model:
    srv = _Model(model_scenario(spec))
    threading.Thread(target=srv.serve_forever, name="fakellm", daemon=True).start()
    return srv


def agent_env(spec: dict[str, Any], victim_pid: int) -> dict[str, str]:
    """OpenClaw's environment (evaluation/agent.AgentHome: no LANG, the pinned node first on
    PATH) plus what the scenarios read, as keeper.py gives its launcher."""
    home = spec["identity"]["home"]
    env = AgentHome(Path(home)).env(Toolchain.in_checkout())
    env.update({"USER": spec["identity"]["user"], "LOGNAME": spec["identity"]["user"], "SHELL": "/bin/bash",
                "PROJECT": f"{home}/project", "VICTIM_PID": str(victim_pid), **spec.get("env", {})})
    return env


def _as_agent(spec: dict[str, Any]) -> dict[str, Any]:
    ident = spec["identity"]
    return {"user": ident["uid"], "group": ident["gid"], "extra_groups": []}


def _drain(stream: Any, sink: bytearray) -> None:
    """Read a pipe to its end, keeping the first OUTPUT_LIMIT bytes (the CLI's JSON answer is
    longer than keeper.py's limit for a script's output)."""
    for chunk in iter(lambda: stream.read(4096), b""):
        if len(sink) < OUTPUT_LIMIT:
            sink += chunk[:OUTPUT_LIMIT - len(sink)]


class _Captured:
    """A child's stdout and stderr drained by threads into bounded buffers."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.out, self.err = bytearray(), bytearray()
        self.threads = [threading.Thread(target=_drain, args=(s, b), daemon=True)
                        for s, b in ((proc.stdout, self.out), (proc.stderr, self.err))]
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(2.0)

    def text(self) -> tuple[str, str]:
        return self.out.decode("utf-8", "replace"), self.err.decode("utf-8", "replace")


def _spawn(argv: list[str], spec: dict[str, Any], env: dict[str, str], cwd: str) -> _Captured:
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **_as_agent(spec))
    return _Captured(proc)


def start_gateway(spec: dict[str, Any], env: dict[str, str]) -> _Captured:
    """``openclaw gateway run`` as the agent; returns once it listens on GATEWAY_PORT."""
    gw = _spawn([str(Toolchain.in_checkout().openclaw), "gateway", "run"], spec, env, spec["identity"]["home"])
    deadline = time.monotonic() + GATEWAY_START_TIMEOUT_S
    while not port_open(GATEWAY_PORT):
        if gw.proc.poll() is not None or time.monotonic() > deadline:
            _stop(gw)
            raise RuntimeError(f"openclaw gateway did not come up (rc {gw.proc.returncode}): {gw.text()[1][-1500:]}")
        time.sleep(0.25)
    return gw


def _stop(c: _Captured) -> None:
    """SIGTERM the child's process group, SIGKILL it after GATEWAY_STOP_S."""
    stop_group(c.proc, GATEWAY_STOP_S)
    c.join()


def run_turn(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One ``openclaw agent`` turn as the agent, killed at the scenario's timeout plus TURN_MARGIN_S."""
    argv = openclaw_turn_argv(Toolchain.in_checkout(), spec["mode"], spec["prompt"], f"atk-{uuid.uuid4().hex[:12]}")
    t0 = time.time_ns()
    cli = _spawn(argv, spec, env, spec["identity"]["home"])
    timed_out = False
    try:
        rc = cli.proc.wait(spec["scenario"]["timeout_s"] + TURN_MARGIN_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(cli.proc.pid)
        rc = cli.proc.wait()
    cli.join()
    out, err = cli.text()
    calls, text = parse_turn(out.encode())
    return {"cli_pid": cli.proc.pid, "started_ns": t0, "exited_ns": time.time_ns(), "openclaw_rc": rc,
            "turn_timed_out": timed_out, "tool_calls": calls, "final_text": text[:500],
            "openclaw_stderr": err[-2000:]}


def tool_outcome(requests: list[dict[str, Any]]) -> dict[str, Any]:
    """What OpenClaw told the model about the exec call: its exit code (None when it did not
    complete: timed out, killed, never ran) and the result text's tail."""
    results = [r.get("tool_result") for r in requests if r.get("tool_result") is not None]
    if not results:
        return {"exit_code": None, "timed_out": False, "tool_result": ""}
    text = str(results[-1])
    m = _EXIT.search(text)
    timed_out = "timed out" in text.lower()
    failed = timed_out or "Command aborted" in text
    code = int(m.group(1)) if m else (None if failed else 0)
    return {"exit_code": code, "timed_out": timed_out, "tool_result": text[-800:]}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Steps 1-3 of the module docstring; the report."""
    implant = Path(spec["implant"]).read_bytes() if spec.get("implant") else b""
    setup_sandbox(spec["scratch"], spec["mounts"])
    mounts.set_readonly("/proc", False, recursive=False)
    sc = spec["scenario"]
    servers = Servers(sc["servers"], sc["commands"], implant)
    servers.start()
    model = start_model(spec)
    victim = start_victim(spec)
    gateway: _Captured | None = None
    report: dict[str, Any] = {"mode": spec["mode"], "victim_pid": victim.pid}
    try:
        env = agent_env(spec, victim.pid)
        if spec["mode"] == "gateway":
            t0 = time.monotonic()
            gateway = start_gateway(spec, env)
            report.update(gateway_pid=gateway.proc.pid, gateway_start_s=round(time.monotonic() - t0, 2))
        report.update(run_turn(spec, env))
        if gateway is not None:
            _stop(gateway)
        lingering, killed = linger({os.getpid(), victim.pid}, sc["linger_s"])
        time.sleep(0.3 if "listener" in sc["servers"] or "bind_client" in sc["servers"] else 0)
        report.update(lingering=lingering, killed=killed,
                      effects=check_effects(sc["effects"], servers, spec["identity"]["home"]))
    finally:
        if gateway is not None:
            _stop(gateway)
            report["gateway_log_tail"] = "\n".join(gateway.text())[-3000:]
        kill_group(victim.pid)
        victim.wait()
        servers.stop()
        model.shutdown()
        model.server_close()
    report["roots"] = [p for p in (report.get("gateway_pid"), report.get("cli_pid")) if p]
    report.update(tool_outcome(model.requests), model_requests=[{k: r.get(k) for k in ("scenario", "step", "tool")}
                                                                 for r in model.requests])
    report.update(finished_ns=time.time_ns(), servers={n: r.summary() for n, r in servers.records.items()})
    return report


def main(argv: list[str] | None = None) -> int:
    return spec_main(argv, "evaluation.attacks.openclaw_keeper", run)


if __name__ == "__main__":
    sys.exit(main())
