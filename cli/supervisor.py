"""Talking to supervisord over its XML-RPC unix socket (what supervisorctl does).

The socket is ``/run/casa-root/supervisord.sock`` (supervisord.conf: ``[unix_http_server]``, mode
0700 root, in a directory only root can write), so only root can ask. Before asking, the socket
and every directory above it must be root's alone (trust/paths.py): a socket that another user
could have put there -- a compromised stage replacing it with its own server -- would answer
`casa status` with whatever it likes, so it is refused. Errors come back as
:class:`SupervisorUnavailable` with a reason a person can act on.
"""

from __future__ import annotations

import os
import socket
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from trust.paths import unsafe_writer

__all__ = ["ProcessInfo", "SupervisorUnavailable", "call", "default_url", "process_info",
           "SUPERVISOR_SOCKET", "check_socket"]

SUPERVISOR_SOCKET = Path("/run/casa-root/supervisord.sock")


class SupervisorUnavailable(RuntimeError):
    """supervisord cannot be asked (not running, or no permission)."""


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    name: str                  # supervisor process name: collector, analyzer-0, sinks-jsonl, ...
    group: str
    state: str                 # RUNNING, STARTING, BACKOFF, EXITED, FATAL, STOPPED, ...
    pid: int
    uptime_s: int
    description: str


def default_url() -> str:
    return os.environ.get("CASA_SUPERVISOR_URL") or f"unix://{SUPERVISOR_SOCKET}"


def check_socket(url: str) -> None:
    """Refuse a ``unix://`` control socket that anyone but root could have created or replaced."""
    if not url.startswith("unix://"):
        return
    path = os.path.abspath(url[len("unix://"):])
    unsafe = unsafe_writer(path)
    if unsafe is not None and unsafe.who == "missing":
        raise SupervisorUnavailable(f"no control socket at {path}: is supervisord running?")
    if unsafe is not None:
        raise SupervisorUnavailable(
            f"refusing the control socket {path}: {unsafe.path} is {unsafe.who}, so it may not be "
            "supervisord's; put [unix_http_server] file= in a directory only root can write "
            "(default /run/casa-root)")


def call(url: str, method: str, *params: Any) -> Any:
    """One XML-RPC call (``supervisor.getAllProcessInfo`` ...); the connection is closed after it."""
    check_socket(url)
    transport = SupervisorTransport(None, None, serverurl=url)
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    target = proxy
    for part in method.split("."):
        target = getattr(target, part)
    try:
        return target(*params)
    except (OSError, socket.error) as exc:
        raise SupervisorUnavailable(f"cannot reach supervisord at {url}: {exc}") from None
    except xmlrpc.client.Fault as exc:
        raise SupervisorUnavailable(f"supervisord at {url} refused: {exc.faultString}") from None
    finally:
        transport.close()


def process_info(url: str) -> list[ProcessInfo]:
    """Every process supervisord manages."""
    raw = call(url, "supervisor.getAllProcessInfo")
    return [ProcessInfo(name=p["name"], group=p["group"], state=p["statename"], pid=p["pid"],
                        uptime_s=max(0, p["now"] - p["start"]) if p["start"] else 0,
                        description=p["description"]) for p in raw]
