"""The machine's network as the evaluation sees it: the scan addresses M06 probes, the resolvers
the rules must ignore, and whether a loopback port already listens.

Nothing here reaches beyond the machine: the scan addresses are put on ``lo`` for the run, so
M06's connects are refused locally.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

__all__ = ["SCAN_ADDRS", "ensure_scan_targets", "remove_scan_targets", "machine_resolvers", "port_open"]

SCAN_IFACE = "lo"
SCAN_ADDRS = tuple(f"198.18.0.{i}" for i in range(1, 7))


def ensure_scan_targets() -> None:
    """Put SCAN_ADDRS on ``lo`` as /32 local addresses: M06's connects are refused on this machine.

    (A dummy interface would be neater, but kernels without the dummy module exist; on ``lo``
    the addresses are still not loopback ones, so the rules see an ordinary scan.)
    """
    have = subprocess.run(["ip", "-o", "addr", "show", "dev", SCAN_IFACE], capture_output=True,
                          text=True, check=True).stdout
    for addr in SCAN_ADDRS:
        if f" {addr}/" not in have:
            subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", SCAN_IFACE], check=True)


def remove_scan_targets() -> None:
    for addr in SCAN_ADDRS:
        subprocess.run(["ip", "addr", "del", f"{addr}/32", "dev", SCAN_IFACE], capture_output=True, check=False)


def machine_resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The non-loopback nameservers of this machine (loopback DNS is dropped by CASA anyway)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith(("127.", "::1")):
            out.append(parts[1])
    return out


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
