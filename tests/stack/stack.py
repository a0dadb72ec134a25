"""Run the real stack under the real supervisord, from the real supervisord.conf, in private dirs.

    from tests.stack.stack import Stack

    with Stack(tmp_path, analyzers=2) as st:          # waits until every program is RUNNING
        st.run_agent("echo hi > x.sh; chmod +x x.sh; ./x.sh")
        st.wait_for_log("alert.log", lambda r: r["session_id"] > 0)
        st.kill9("sessionizer"); st.wait_restarted("sessionizer", old_pid)

The harness copies supervisord.conf with three textual changes (plus, when a test asks, extra
environment for every program and a smaller jsonl backlog bound): /run/casa, /run/casa-root,
/var/log/casa, /var/log/casa-root and /var/lib/casa become private directories (same owners and
modes as setup.sh makes them), %(here)s becomes the checkout, and numprocs /
CASA_ANALYZER_INSTANCES become ``analyzers``. The collector's profile is
the collector suite's test profile (a copy of bash named casa-test-root), so the stack only sees
what the test runs. Needs root (eBPF, the casa user).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.supervisor import ProcessInfo, process_info
from tests.collector.harness import TEST_PROFILE, make_test_root, test_config
from tests.harness.heartbeats import HeartbeatWatch

__all__ = ["Stack", "CHECKOUT", "read_jsonl"]

CHECKOUT = Path(__file__).resolve().parents[2]
SUPERVISORD = Path(sys.executable).parent / "supervisord"
START_TIMEOUT_S = 60.0


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSONL file (a line being written is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="surrogateescape").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _chown(path: Path, user: str, group: str, mode: int) -> None:
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


class Stack:
    """supervisord + collector + sessionizer + analyzer-0..N-1 + sinks, in a private sandbox."""

    def __init__(self, base: Path | None = None, *, analyzers: int = 1, rules: Path | None = None,
                 config_profiles: list[dict[str, Any]] | None = None, env: dict[str, str] | None = None,
                 records_tmpfs_kb: int | None = None, jsonl_backlog_kb: int | None = None,
                 config_extra: dict[str, Any] | None = None) -> None:
        self.root = Path("/tmp") / f"casa-stack-{uuid.uuid4().hex[:8]}"
        self.bus_dir = self.root / "run"
        self.root_run = self.root / "run-root"     # supervisord's socket and pid, the collector's pid
        self.log_dir = self.root / "log"           # the JSONL records (CASA_LOG_DIR)
        self.root_log = self.root / "log-root"     # supervisord's and every stage's own log
        self.state_dir = self.root / "state"      # checkpoints: private, never /var/lib/casa
        self.work = self.root / "work"
        self.analyzers = analyzers
        self.conf = self.root / "supervisord.conf"
        self.config = self.root / "casa.json"
        self.rules = self.root / "rules.json"
        self.pid_file = self.root_run / "collector.pid"
        self._rules_src = rules or CHECKOUT / "rules.json"
        self._profiles = config_profiles
        self._env = env or {}                     # added to supervisord's environment= (every program)
        self._records_tmpfs_kb = records_tmpfs_kb  # the JSONL records on a tmpfs this small
        self._jsonl_backlog_kb = jsonl_backlog_kb  # sinks-jsonl --backlog-max-kb
        self._config_extra = config_extra or {}     # top-level casa.json sections (e.g. "notify")
        self.proc: subprocess.Popen[bytes] | None = None
        self.agent: Path | None = None
        self._agents: list[subprocess.Popen[bytes]] = []     # start_agent's, killed at exit
        self.agent_comm = f"casastk{uuid.uuid4().hex[:6]}"   # unique: other suites run test roots too

    # -- setup ---------------------------------------------------------------------------------

    def _make_dirs(self) -> None:
        self.root.mkdir(mode=0o755)
        os.chmod(self.root, 0o755)
        self.bus_dir.mkdir()
        _chown(self.bus_dir, "root", "casa", 0o770)
        self.log_dir.mkdir()
        if self._records_tmpfs_kb:
            casa = pwd.getpwnam("casa")
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self._records_tmpfs_kb}k,mode=0750,"
                            f"uid={casa.pw_uid},gid={casa.pw_gid}", "casa-records", str(self.log_dir)],
                           check=True)
        _chown(self.log_dir, "casa", "casa", 0o750)
        self.root_run.mkdir()
        _chown(self.root_run, "root", "root", 0o755)
        self.root_log.mkdir()
        _chown(self.root_log, "root", "casa", 0o750)
        self.state_dir.mkdir()
        _chown(self.state_dir, "casa", "casa", 0o750)
        self.work.mkdir()
        os.chmod(self.work, 0o777)

    def _write_files(self) -> None:
        profiles = self._profiles or [{"name": TEST_PROFILE, "kind": "invocation",
                                       "match": [{"comm": [self.agent_comm]}]}]
        test_config(self.config, pid_file=self.pid_file, profiles=profiles)
        if self._config_extra:
            self.config.write_text(json.dumps({**json.loads(self.config.read_text()), **self._config_extra}))
        shutil.copy(self._rules_src, self.rules)
        os.chmod(self.config, 0o644)
        os.chmod(self.rules, 0o644)
        self.agent = make_test_root(self.root, self.agent_comm)
        text = (CHECKOUT / "supervisord.conf").read_text()
        text = text.replace("%(here)s", str(CHECKOUT))
        text = text.replace("/run/casa-root", str(self.root_run)).replace("/var/log/casa-root", str(self.root_log))
        text = text.replace("/run/casa", str(self.bus_dir)).replace("/var/log/casa", str(self.log_dir))
        text = text.replace("/var/lib/casa", str(self.state_dir))
        text = re.sub(r"^numprocs=\d+", f"numprocs={self.analyzers}", text, flags=re.M)
        extra = "".join(f',{k}="{v}"' for k, v in self._env.items())
        text = text.replace('CASA_ANALYZER_INSTANCES="1"',
                            f'CASA_ANALYZER_INSTANCES="{self.analyzers}",CASA_CONFIG_PATH="{self.config}",'
                            f'CASA_RULES_PATH="{self.rules}"{extra}')
        if self._jsonl_backlog_kb:
            text = text.replace("-m sinks jsonl", f"-m sinks jsonl --backlog-max-kb {self._jsonl_backlog_kb}")
        self.conf.write_text(text)

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self._make_dirs()
        self._write_files()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASA_")}
        self.proc = subprocess.Popen([str(SUPERVISORD), "-n", "-c", str(self.conf)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            self.wait_all_running()
            self.wait_until(lambda: self.pid_file.exists(), START_TIMEOUT_S, "the collector's pid file")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for agent in self._agents:              # a test that failed may leave one blocked
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        self.stop()
        if self._records_tmpfs_kb and not os.environ.get("CASA_KEEP_STACK"):
            subprocess.run(["umount", "-l", str(self.log_dir)], check=False)
        if not os.environ.get("CASA_KEEP_STACK"):
            shutil.rmtree(self.root, ignore_errors=True)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGINT to supervisord, as Ctrl-C in `make run`; returns its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("supervisord did not stop within the timeout") from None

    # -- supervisor ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"unix://{self.root_run / 'supervisord.sock'}"

    def processes(self) -> dict[str, ProcessInfo]:
        try:
            return {p.name: p for p in process_info(self.url)}
        except Exception:          # not up yet
            return {}

    def names(self) -> list[str]:
        return ["collector", "sessionizer", *[f"analyzer-{i}" for i in range(self.analyzers)],
                "responder", "sinks-jsonl", "sinks-otel", "sinks-webhook", "sinks-program"]

    def wait_until(self, cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = cond()
            if got:
                return got
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"supervisord exited ({self.proc.returncode}) while waiting for {what}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; logs in {self.log_dir}")

    def wait_all_running(self, timeout_s: float = START_TIMEOUT_S) -> dict[str, ProcessInfo]:
        def ready() -> dict[str, ProcessInfo] | None:
            procs = self.processes()
            ok = all(procs.get(n) and procs[n].state == "RUNNING" for n in self.names())
            return procs if ok else None
        return self.wait_until(ready, timeout_s, "every program RUNNING")

    def pid(self, name: str) -> int:
        return self.processes()[name].pid

    def kill9(self, name: str) -> int:
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout_s: float = 30.0) -> int:
        def again() -> int | None:
            p = self.processes().get(name)
            return p.pid if p and p.state == "RUNNING" and p.pid != old_pid else None
        return self.wait_until(again, timeout_s, f"{name} restarted")

    # -- workload and results ------------------------------------------------------------------

    def run_agent(self, script: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
        """Run ``script`` under the test agent (a bash with a unique name) as user nobody."""
        assert self.agent is not None
        return subprocess.run([str(self.agent), "-c", script], cwd=self.work, user="nobody", group="nogroup",
                              extra_groups=[], capture_output=True, text=True, timeout=timeout_s)

    def start_agent(self, script: str) -> subprocess.Popen[bytes]:
        """Like run_agent, in the background (the caller kills it)."""
        assert self.agent is not None
        proc = subprocess.Popen([str(self.agent), "-c", script], cwd=self.work, user="nobody", group="nogroup",
                                extra_groups=[], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._agents.append(proc)
        return proc

    def log(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.log_dir / name)

    def wait_for_log(self, name: str, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0) -> dict:
        def found() -> dict | None:
            return next((r for r in self.log(name) if pred(r)), None)
        return self.wait_until(found, timeout_s, f"a matching record in {name}")

    def stage_log(self, name: str) -> str:
        path = self.root_log / f"{name}.err.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def counters(self, streams: list[str], until: Callable[[dict[str, dict[str, Any]]], Any],
                 timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
        """The latest heartbeat counters of ``streams`` once ``until(latest)`` holds (a readiness
        signal: heartbeats, not a fixed wait)."""
        def met(watch: HeartbeatWatch) -> dict[str, dict[str, Any]] | None:
            latest = watch.latest_all()
            return latest if until(latest) else None
        with HeartbeatWatch(self.bus_dir, streams) as watch:
            return watch.wait(met, timeout_s, f"heartbeats of {streams} that meet the condition")

    def casa(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        env = {**os.environ, "CASA_BUS_DIR": str(self.bus_dir), "CASA_CONFIG_PATH": str(self.config)}
        return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                              env=env, cwd=CHECKOUT, timeout=timeout_s)

