"""Talking to supervisord over its XML-RPC unix socket (what supervisorctl does).

The socket is ``$CASA_BUS_DIR/supervisord.sock`` (supervisord.conf: ``[unix_http_server]``, mode
0700 root), so only root can ask. Errors come back as :class:`SupervisorUnavailable` with a
reason a person can act on.
"""

from __future__ import annotations

import os
import socket
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from bus import bus_dir

__all__ = ["ProcessInfo", "SupervisorUnavailable", "call", "default_url", "process_info"]


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


def default_url(directory: Path | None = None) -> str:
    return os.environ.get("CASA_SUPERVISOR_URL") or f"unix://{(directory or bus_dir()) / 'supervisord.sock'}"


def call(url: str, method: str, *params: Any) -> Any:
    """One XML-RPC call (``supervisor.getAllProcessInfo`` ...); the connection is closed after it."""
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
