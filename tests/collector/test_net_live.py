"""UDP send, bind, listen and raw/packet socket events: real sockets under a real collector, the
exact bus events (docs/bus.md §5.17-§5.20). Everything talks to 127.0.0.1 / ::1 on ports the
workload bound itself.

A DNS query's question reaches the bus only as its length and a hash: the name never does.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from collector.dns import qname_hash
from tests.collector.live import SIGNALS, live_fixture

pytestmark = pytest.mark.root
CLOEXEC = socket.SOCK_CLOEXEC


live = live_fixture("net")


def dns(name: str, qtype: int) -> dict:
    return {"dns_qname_len": len(name), "dns_qname_hash": qname_hash(name.encode()), "dns_qtype": qtype}


def test_udp_sends_with_a_destination_and_connected_dns_queries(live):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    name = f"{secret}.exfil.example"
    pid, f = live.workload(SIGNALS, "sends", live.fresh(), env={"CASA_TEST_QNAME": name})
    p4, p6 = f["port4"], f["port6"]
    udp = {"sock_type": socket.SOCK_DGRAM, "messages": 1, "connected": False}
    assert live.own(pid, "send") == [
        {"syscall": "sendto", "ret": f["sendto"], "family": 2, "addr": "127.0.0.1", "port": p4,
         "bytes": f["sendto_len"], **udp, **dns(name, 16)},
        {"syscall": "sendmsg", "ret": 11, "family": 10, "addr": "::1", "port": p6, "bytes": 11, **udp},
        {"syscall": "sendmmsg", "ret": 2, "family": 2, "addr": "127.0.0.1", "port": p4,
         "bytes": f["sendmmsg_bytes"], **udp, "messages": 2, **dns("one." + name, 1)},
        # connected (no address given): reported only because it is a DNS query
        {"syscall": "sendto", "ret": f["connected_dns"], "family": 2, "addr": "127.0.0.1", "port": p4,
         "bytes": f["connected_dns"], **udp, "connected": True, **dns("c." + name, 16)},
    ]
    # the connected non-DNS datagram, the AF_UNIX datagram and the TCP send are not sends
    assert f["connected_other"] == 40 and f["unix"] > 0 and f["tcp"] > 0
    everything = repr([e for e in live.tap.events if e.get("root") == pid])
    assert secret not in everything and secret not in live.col.log()
    assert live.counters()["dns_queries"] >= 3


def test_bind_and_listen_report_the_address_the_socket_got(live):
    pid, f = live.workload(SIGNALS, "listens", live.fresh())
    assert live.own(pid, "bind") == [
        {"syscall": "bind", "ret": 0, "family": 2, "addr": "127.0.0.1", "port": f["port4"]},
        {"syscall": "bind", "ret": 0, "family": 10, "addr": "::", "port": f["port6"]},
    ]
    assert live.own(pid, "listen") == [
        {"syscall": "listen", "ret": 0, "family": 2, "addr": "127.0.0.1", "port": f["port4"], "backlog": 3},
        {"syscall": "listen", "ret": 0, "family": 10, "addr": "::", "port": f["port6"], "backlog": 7},
        # listen without bind: the kernel bound 0.0.0.0 and an ephemeral port, read from the sock
        {"syscall": "listen", "ret": 0, "family": 2, "addr": "0.0.0.0", "port": f["port0"], "backlog": 1},
    ]


def test_raw_and_packet_sockets_only(live):
    pid, f = live.workload(SIGNALS, "sockets", live.fresh())
    assert f["udp"] >= 0 and f["netlink"] >= 0          # created, and not reported
    assert live.own(pid, "socket") == [
        {"syscall": "socket", "ret": f["raw_icmp"], "family": 2, "type": socket.SOCK_RAW | CLOEXEC,
         "protocol": socket.IPPROTO_ICMP},
        {"syscall": "socket", "ret": f["packet"], "family": 17, "type": socket.SOCK_RAW | CLOEXEC,
         "protocol": socket.htons(3)},
        {"syscall": "socket", "ret": f["packet_dgram"], "family": 17, "type": socket.SOCK_DGRAM | CLOEXEC,
         "protocol": 0},
    ]
