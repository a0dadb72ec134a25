"""Root never follows a path a non-root user chose, and never runs what one can change.

* trust/paths.py and the collector's StrictModes for real (their rules on made-up trees are
  tests/trust/): the root collector refuses a config file in a directory the casa user can write.
* The bus socket the collector binds as root in the casa-writable bus directory: a symlink
  planted there (before the bind, or swapped in right after it) never makes root chmod or chown
  its target.
* `casa status` refuses a control socket another user could have put in place; `casa reload`
  refuses a pid file another user could have written, and a pid that is not the collector.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from bus import BusPermissionError, bind_publisher
from bus.endpoints import _give_to_bus_group
from tests.collector.harness import CHECKOUT, test_config
from trust.paths import unsafe_writer

# --------------------------------------------------------------------------- as root, for real

root = pytest.mark.root


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory like /run/casa: root:casa 0770 (the casa user may plant things in it)."""
    d = Path("/tmp") / f"casa-priv-{uuid.uuid4().hex[:8]}"
    d.mkdir(mode=0o755)
    (d / "bus").mkdir()
    os.chown(d / "bus", 0, grp.getgrnam("casa").gr_gid)
    os.chmod(d / "bus", 0o770)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _as_casa(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), user="casa", group="casa", extra_groups=[], capture_output=True,
                          text=True, timeout=30, cwd="/")


def _victim(directory: Path) -> Path:
    victim = directory / "victim"
    victim.write_text("root's secret\n")
    os.chmod(victim, 0o600)
    return victim


def _unchanged(victim: Path) -> bool:
    st = victim.stat()
    return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)


@root
def test_the_root_collector_refuses_a_config_the_casa_user_can_change(shared: Path) -> None:
    cfg = test_config(shared / "bus" / "casa.json", pid_file=shared / "collector.pid")
    os.chmod(cfg, 0o644)
    out = subprocess.run([sys.executable, "-m", "collector", "--config", str(cfg), "--bus-dir",
                          str(shared / "bus")], capture_output=True, text=True, timeout=60, cwd=CHECKOUT)
    assert out.returncode == 1, out.stderr[-2000:]
    casa_gid = grp.getgrnam("casa").gr_gid
    assert (f"casa-collector: error: refusing to run as root: config file: {shared / 'bus'} is writable "
            f"by group {casa_gid} (casa); fix: chown root {shared / 'bus'} and chmod go-w") in out.stderr
    assert not (shared / "collector.pid").exists()             # refused before anything was loaded


@root
def test_a_symlink_planted_at_the_socket_path_is_removed_not_followed(shared: Path) -> None:
    victim = _victim(shared)
    planted = _as_casa("ln", "-s", str(victim), str(shared / "bus" / "collector.sock"))
    assert planted.returncode == 0, planted.stderr          # the casa user can write the bus dir
    ctx = zmq.Context()
    try:
        sock = bind_publisher(ctx, "collector", shared / "bus")
        st = os.lstat(shared / "bus" / "collector.sock")
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("casa").gr_gid)
        sock.close(0)
    finally:
        ctx.term()
    assert _unchanged(victim)


@root
def test_a_socket_swapped_for_a_symlink_after_bind_is_not_chowned_through(shared: Path) -> None:
    """The window between bind and setting the group: a stage swaps the new socket for a link to a
    root file. The old code chmod'ed it 0660 and chowned it root:casa (readable by casa)."""
    victim = _victim(shared)
    path = shared / "bus" / "collector.sock"
    os.symlink(victim, path)                                   # what the swap leaves behind
    with pytest.raises(BusPermissionError, match="was replaced right after bind"):
        _give_to_bus_group(path)
    assert _unchanged(victim)


FAKE_SUPERVISORD = r"""
import socketserver, sys
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler

class Server(socketserver.UnixStreamServer, SimpleXMLRPCDispatcher):
    def __init__(self, path):
        SimpleXMLRPCDispatcher.__init__(self, allow_none=True)
        socketserver.UnixStreamServer.__init__(self, path, SimpleXMLRPCRequestHandler)

class Handler(SimpleXMLRPCRequestHandler):
    def address_string(self):
        return "local"

server = Server(sys.argv[1])
server.RequestHandlerClass = Handler
server.logRequests = False
server.register_function(lambda: [{"name": "collector", "group": "collector", "statename": "RUNNING",
                                   "pid": 1, "start": 1, "now": 2, "description": "forged"}],
                         "supervisor.getAllProcessInfo")
print("ready", flush=True)
server.serve_forever()
"""


@root
def test_casa_status_refuses_a_control_socket_the_casa_user_put_in_place(shared: Path) -> None:
    path = shared / "bus" / "supervisord.sock"
    fake = subprocess.Popen([sys.executable, "-c", FAKE_SUPERVISORD, str(path)], user="casa", group="casa",
                            extra_groups=[], stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
        out = subprocess.run([sys.executable, "-m", "cli", "status", "--url", f"unix://{path}", "-w", "0",
                              "--bus-dir", str(shared / "bus")], capture_output=True, text=True,
                             timeout=30, cwd=CHECKOUT)
    finally:
        fake.kill()
        fake.communicate()
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"supervisord: ERROR (not running: refusing the control socket {path}: {shared / 'bus'} is " \
           "writable by group" in out.stderr, out.stderr
    assert "RUNNING" not in out.stdout                          # the forged answer was never asked for


def _reload(pid_file: Path, directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", "reload", "--pid-file", str(pid_file), "--bus-dir",
                           str(directory), "-t", "2"], capture_output=True, text=True, timeout=30, cwd=CHECKOUT)


@root
def test_casa_reload_refuses_a_pid_file_the_casa_user_wrote_and_a_pid_that_is_not_the_collector(
        shared: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])          # a root process that SIGHUP would kill
    try:
        forged = shared / "bus" / "casa.pid"
        assert _as_casa("sh", "-c", f"echo {bystander.pid} > {forged}").returncode == 0
        out = _reload(forged, shared / "bus")
        assert out.returncode == 1 and f"refusing the pid file {forged}" in out.stderr, out.stderr
        held = shared / "root.pid"                             # root's own file, but not the collector
        held.write_text(f"{bystander.pid}\n")
        out = _reload(held, shared / "bus")
        assert out.returncode == 1 and f"refusing pid {bystander.pid} from {held}: it is not the collector" \
            in out.stderr, out.stderr
        time.sleep(0.2)
        assert bystander.poll() is None                        # never signalled
    finally:
        bystander.kill()
        bystander.wait()


def test_supervisord_conf_puts_what_root_writes_in_root_only_directories() -> None:
    """Every file supervisord writes as root is under /run/casa-root or /var/log/casa-root."""
    text = (CHECKOUT / "supervisord.conf").read_text()
    keys = ("file=", "logfile=", "pidfile=", "childlogdir=", "stdout_logfile=", "stderr_logfile=")
    paths = [line.split("=", 1)[1].split(";")[0].strip() for line in text.splitlines()
             if line.startswith(keys) and not line.startswith("serverurl")]
    assert len(paths) >= 14
    assert all(p.startswith(("/run/casa-root/", "/var/log/casa-root")) for p in paths), paths


@root
def test_setup_made_the_root_directories_root_only() -> None:
    for path, group, mode in (("/run/casa-root", "root", 0o755), ("/var/log/casa-root", "casa", 0o750)):
        st = os.lstat(path)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0, path
        assert (grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)) == (group, mode), path
        assert unsafe_writer(path) is None
    assert pwd.getpwnam("casa")


def _root_written(conf: Path) -> list[str]:
    """Every path the deployed supervisord.conf has root write (files, and the log directory)."""
    keys = ("file=", "logfile=", "pidfile=", "childlogdir=", "stdout_logfile=", "stderr_logfile=")
    return [line.split("=", 1)[1].split(";")[0].strip() for line in conf.read_text().splitlines()
            if line.startswith(keys)]


@root
@pytest.mark.stack
def test_a_compromised_stage_cannot_make_root_write_through_a_planted_symlink() -> None:
    """As casa, in a running stack: no path root writes can be replaced by a symlink (they all
    live in root-only directories), and the one root path in casa's bus directory -- the
    collector's socket, planted while the collector is down -- is removed, not followed."""
    from tests.stack.stack import Stack
    with Stack() as st:
        victim = _victim(st.root)
        paths = _root_written(st.conf) + [str(st.pid_file)]
        assert len(paths) >= 15
        dirs = sorted({p if os.path.isdir(p) else os.path.dirname(p) for p in paths})
        plant = ("import errno, os, sys\nfor d in sys.argv[2:]:\n    try:\n"
                 "        os.symlink(sys.argv[1], os.path.join(d, 'planted.log'))\n"
                 "        print('planted in', d)\n    except OSError as e:\n"
                 "        print(errno.errorcode[e.errno], d)\n")
        out = _as_casa(sys.executable, "-c", plant, str(victim), *dirs)
        assert out.stdout.split()[::2] == ["EACCES"] * len(dirs), out.stdout + out.stderr
        old = st.kill9("collector")
        sock = st.bus_dir / "collector.sock"
        swap = _as_casa("sh", "-c", f"rm -f {sock}; ln -s {victim} {sock}")
        assert swap.returncode == 0, swap.stderr                 # casa may write the bus directory
        st.wait_restarted("collector", old)
        st.counters(["collector"], lambda c: "collector" in c)   # it bound and heartbeats
        st_sock = os.lstat(sock)
        assert stat.S_ISSOCK(st_sock.st_mode) and (st_sock.st_uid, stat.S_IMODE(st_sock.st_mode)) == (0, 0o660)
        assert _unchanged(victim)
