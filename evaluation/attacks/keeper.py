"""Run one scenario inside its sandbox: the process that holds the namespaces (root).

    unshare --net --mount --propagation private -- python -m evaluation.attacks.keeper SPEC.json

The runner starts it in a fresh network namespace (only ``lo``: no packet can leave) and a
private mount namespace. It then, in order:

1. makes every mount of its namespace read-only (one recursive ``mount_setattr``), opens the
   scratch directory again, and mounts the scratch-backed directories (evaluation/attacks/layout.py):
   a write anywhere else fails with EROFS, by construction;
2. brings ``lo`` up and starts the loopback servers the scenario asked for;
3. starts a "victim" process (a service holding fake secrets in its environment and memory, not
   part of the agent tree) for the /proc/<pid>/environ and mem scenarios;
4. runs the launcher as the identity with ``-c SCRIPT`` (cwd ~/project) in its own process group,
   kills that group at the scenario's timeout, and gives detached processes ``linger_s`` to finish;
5. kills whatever is still in the namespace (only processes this keeper started can be there),
   checks the scenario's ``effects`` and prints the report.

Stdout is JSON lines: ``{"launcher_pid": N, ...}`` as soon as the launcher runs, then
``{"report": {...}}`` last. Nothing here talks to CASA: the runner reads CASA's records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaluation.attacks import mounts
from evaluation.attacks.servers import Servers
from evaluation.process_group import kill_group

__all__ = ["main", "setup_sandbox", "namespace_pids", "check_effects", "alive"]

VICTIM_CODE = ("import time\nsecret = 'CASA-FAKE-SECRET-MEM ' * 16\ntime.sleep(600)\n")
OUTPUT_LIMIT = 4000
EFFECT_WAIT_S = 2.0       # how long a network effect may take to be recorded after the scenario ends


def setup_sandbox(scratch: str, mount_list: list[dict[str, Any]]) -> None:
    """Everything read-only, then the scratch-backed mounts (see layout.Layout.mounts)."""
    mounts.bind(scratch, scratch)
    mounts.set_readonly("/", True, recursive=True)
    mounts.set_readonly(scratch, False, recursive=False)
    for m in mount_list:
        if m["kind"] == "overlay":
            mounts.overlay(m["lower"], m["upper"], m["work"], m["target"])
        else:
            mounts.bind(m["source"], m["target"])
    mounts.loopback_up()


def _own_netns() -> str:
    return os.readlink("/proc/self/ns/net")


def namespace_pids(exclude: set[int]) -> list[int]:
    """Processes in this keeper's network namespace, except ``exclude`` (the keeper, the victim)."""
    mine = _own_netns()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") == mine:
                out.append(int(entry))
        except OSError:
            continue
    return out


def _identity_kwargs(identity: dict[str, Any]) -> dict[str, Any]:
    return {"user": identity["uid"], "group": identity["gid"], "extra_groups": []}


def _env(spec: dict[str, Any], victim_pid: int) -> dict[str, str]:
    ident = spec["identity"]
    home = ident["home"]
    return {"HOME": home, "USER": ident["user"], "LOGNAME": ident["user"], "SHELL": "/bin/bash",
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb",
            "PROJECT": f"{home}/project", "VICTIM_PID": str(victim_pid), **spec.get("env", {})}


def start_victim(spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    """A service of the same user holding fake secrets, outside the agent tree."""
    env = {"PATH": "/usr/bin:/bin", "SERVICE_TOKEN": "CASA-FAKE-SECRET-ENVIRON", "HOME": spec["identity"]["home"]}
    return subprocess.Popen(["/usr/bin/python3", "-c", VICTIM_CODE], env=env, cwd="/",
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, **_identity_kwargs(spec["identity"]))


def _drain(stream: Any, sink: bytearray) -> None:
    for chunk in iter(lambda: stream.read(4096), b""):
        if len(sink) < OUTPUT_LIMIT:
            sink += chunk[:OUTPUT_LIMIT - len(sink)]


def run_launcher(spec: dict[str, Any], victim_pid: int) -> dict[str, Any]:
    """The launcher as the identity; returns exit status, timing and (bounded) output."""
    sc = spec["scenario"]
    ident = spec["identity"]
    out, err = bytearray(), bytearray()
    t0 = time.time_ns()
    proc = subprocess.Popen([spec["launcher"], "-c", sc["script"]], cwd=f"{ident['home']}/project",
                            env=_env(spec, victim_pid), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **_identity_kwargs(ident))
    print(json.dumps({"launcher_pid": proc.pid, "started_ns": t0}), flush=True)
    readers = [threading.Thread(target=_drain, args=(s, b), daemon=True) for s, b in ((proc.stdout, out),
                                                                                       (proc.stderr, err))]
    for r in readers:
        r.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=sc["timeout_s"])
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc.pid)
        rc = proc.wait()
    return {"launcher_pid": proc.pid, "started_ns": t0, "exited_ns": time.time_ns(), "exit_code": rc,
            "timed_out": timed_out, "readers": readers, "stdout": out, "stderr": err}


def linger(exclude: set[int], linger_s: float) -> tuple[list[int], list[int]]:
    """Wait up to ``linger_s`` for detached processes to finish; kill the rest.

    Returns (processes seen lingering, processes killed)."""
    seen: set[int] = set()
    deadline = time.monotonic() + linger_s
    while True:
        left = namespace_pids(exclude)
        seen.update(left)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait_dead(left, 2.0)
    return sorted(seen), left


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is dead: it runs nothing and holds no files)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def check_effects(effects: list[str], servers: Servers, home: str,
                  wait_s: float = EFFECT_WAIT_S) -> dict[str, bool]:
    """Each ``kind:arg`` effect: did it happen? (Checked inside the sandbox, before teardown;
    ``file:~/x`` is the identity's home.)

    A server records what it received on its own thread (the TCP sink once the client's stream
    ends), which may run after the scenario's processes are gone, so an effect not seen yet is
    looked for again until ``wait_s`` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        out = {effect: _happened(effect, servers, home) for effect in effects}
        if all(out.values()) or time.monotonic() >= deadline:
            return out
        time.sleep(0.05)


def _happened(effect: str, servers: Servers, home: str) -> bool:
    kind, arg = effect.split(":", 1)
    if kind == "file":
        return os.path.lexists(home + arg[1:] if arg.startswith("~/") else arg)
    if kind == "dns":
        rec = servers.records.get("dns")
        return bool(rec) and len(rec.names) >= int(arg)
    name = {"http": ["http"], "tcp": ["tcp_sink"], "shell": ["listener", "bind_client"]}[kind]
    return any(arg in servers.text(n) for n in name)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Steps 1-5 of the module docstring; the report."""
    implant = Path(spec["implant"]).read_bytes() if spec.get("implant") else b""
    setup_sandbox(spec["scratch"], spec["mounts"])
    sc = spec["scenario"]
    servers = Servers(sc["servers"], sc["commands"], implant)
    servers.start()
    victim = start_victim(spec)
    try:
        launched = run_launcher(spec, victim.pid)
        lingering, killed = linger({os.getpid(), victim.pid}, sc["linger_s"])
        for r in launched.pop("readers"):
            r.join(1.0)
        time.sleep(0.3 if "listener" in sc["servers"] or "bind_client" in sc["servers"] else 0)
        effects = check_effects(sc["effects"], servers, spec["identity"]["home"])
    finally:
        kill_group(victim.pid)
        victim.wait()
        servers.stop()
    return {**launched, "stdout": launched["stdout"].decode("utf-8", "replace"),
            "stderr": launched["stderr"].decode("utf-8", "replace"), "victim_pid": victim.pid,
            "lingering": lingering, "killed": killed, "finished_ns": time.time_ns(), "effects": effects,
            "servers": {n: r.summary() for n, r in servers.records.items()}}


def spec_main(argv: list[str] | None, module: str, run_spec: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """A keeper's entry point: ``run_spec`` on the one SPEC.json argument, its report printed as
    one JSON line (``{"report": ...}``), which the runner reads from the keeper's stdout."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m {module} SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    print(json.dumps({"report": run_spec(spec)}, default=str), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return spec_main(argv, "evaluation.attacks.keeper", run)


if __name__ == "__main__":
    sys.exit(main())
