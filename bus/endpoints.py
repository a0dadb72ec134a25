"""Where each stage's publisher lives, and the permissions that keep agents off the bus.

Every publishing stage binds one XPUB socket on ``ipc://$CASA_BUS_DIR/<stream>.sock``
(default directory ``/run/casa``, created by setup.sh as root:casa 0770). Subscribers connect.
Sockets are 0660 and group ``casa``, so only root and the casa group can connect; an agent
running as any other user can neither read events nor publish fakes.

The bus directory is writable by the casa user, and the collector binds in it as root. So root
never acts on a socket path after the bind by a call that follows symlinks: the mode comes from
the umask at bind (the file never exists with other permissions), and the group is set with
``lchown``, which changes a symlink swapped in by a compromised stage, never its target. A stale
path is removed with ``unlink``, which removes a planted symlink itself.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import zmq

from bus.errors import BusPermissionError

__all__ = ["bus_dir", "endpoint", "analyzer_streams", "bind_publisher", "connect_subscriber",
           "SOCKET_MODE", "BUS_GROUP", "SNDHWM_MESSAGES", "RCVHWM_MESSAGES"]

SOCKET_MODE = 0o660
BUS_GROUP = "casa"
SNDHWM_MESSAGES = 200_000     # queued batches per subscriber before send() reports zmq.Again
RCVHWM_MESSAGES = 200_000


def bus_dir() -> Path:
    return Path(os.environ.get("CASA_BUS_DIR", "/run/casa"))


def endpoint(stream: str, directory: Path | None = None) -> str:
    """``collector`` -> ``ipc:///run/casa/collector.sock``."""
    return f"ipc://{(directory or bus_dir()) / (stream + '.sock')}"


def analyzer_streams(instances: int | None = None) -> list[str]:
    """Stream names of the analyzer instances: ``analyzer-0`` .. ``analyzer-(N-1)``.

    N comes from ``CASA_ANALYZER_INSTANCES`` (default 1).
    """
    n = instances if instances is not None else int(os.environ.get("CASA_ANALYZER_INSTANCES", "1"))
    return [f"analyzer-{i}" for i in range(n)]


def _give_to_bus_group(path: Path) -> None:
    """Group ``casa`` on the socket just bound, without following a symlink (see the module
    docstring). Only root needs it: a casa stage's sockets get group casa from its own gid."""
    if os.geteuid() != 0:
        return
    try:
        gid = grp.getgrnam(BUS_GROUP).gr_gid
    except KeyError:
        return                     # no casa group here: root-only access is the safe side
    try:
        os.chown(path, 0, gid, follow_symlinks=False)
        st = os.lstat(path)
    except OSError as exc:
        raise BusPermissionError(f"cannot restrict bus socket {path}: {exc}") from None
    if not stat.S_ISSOCK(st.st_mode) or stat.S_IMODE(st.st_mode) != SOCKET_MODE:
        raise BusPermissionError(f"bus socket {path} was replaced right after bind "
                                 f"(mode {stat.filemode(st.st_mode)}); is another process using {path.parent}?")


def _remove_stale(path: Path) -> None:
    """A stale socket of a previous run (or anything planted there): unlink never follows."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise BusPermissionError(f"{path} is a directory; remove it") from None
    except OSError as exc:
        raise BusPermissionError(f"cannot remove the stale {path}: {exc}") from None


def bind_publisher(ctx: zmq.Context, stream: str, directory: Path | None = None) -> zmq.Socket:
    """Bind an XPUB for ``stream``; send() raises zmq.Again instead of dropping silently."""
    d = directory or bus_dir()
    try:
        d.mkdir(mode=0o770, parents=True, exist_ok=True)
    except OSError as exc:
        raise BusPermissionError(f"cannot create bus directory {d}: {exc}; run setup.sh") from None
    path = d / f"{stream}.sock"
    _remove_stale(path)
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.setsockopt(zmq.SNDHWM, SNDHWM_MESSAGES)
    sock.setsockopt(zmq.LINGER, 1000)
    old = os.umask(0o117)      # never exists with wider permissions, not even for a moment
    try:
        sock.bind(f"ipc://{path}")
    except zmq.ZMQError as exc:
        sock.close(0)
        raise BusPermissionError(f"cannot bind {path}: {exc}") from None
    finally:
        os.umask(old)
    try:
        _give_to_bus_group(path)
    except BusPermissionError:
        sock.close(0)
        raise
    return sock


def connect_subscriber(ctx: zmq.Context, streams: list[str], topics: list[str],
                       directory: Path | None = None) -> zmq.Socket:
    """A SUB connected to every stream in ``streams``, subscribed to ``topics`` (prefixes)."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, RCVHWM_MESSAGES)
    sock.setsockopt(zmq.LINGER, 0)
    for t in topics:
        sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    for s in streams:
        sock.connect(endpoint(s, directory))
    return sock
