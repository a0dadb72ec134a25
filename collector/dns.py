"""The question of a DNS query datagram, reduced to what may be logged: its length and a hash.

The collector's send probe (bpf/net.bpf.c) passes the first bytes of a UDP datagram whose header
looks like a DNS query (QR 0, opcode QUERY, one question, no answer or authority records). Here
the first question's name is parsed (RFC 1035 §4.1.2: length-prefixed labels, no compression in
a query's first name) and turned into ``(dns_qname_len, dns_qname_hash, dns_qtype)``. The name
itself never leaves this module: a DNS-tunnel exfiltration puts the secret in the name, and the
analyzer only needs to count distinct names and their lengths per destination.

``dns_qname_len`` is the length of the name in dotted form without the final dot
(``example.com`` -> 11; the root name -> 0). ``dns_qname_hash`` is a 63-bit BLAKE2b of the
lower-cased dotted name with a fixed personalisation, stable across runs and machines (so
recordings compare), and fits a signed 64-bit integer (OpenTelemetry attributes are int64).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["Question", "parse_query", "qname_hash"]

HEADER_LEN = 12
MAX_NAME = 255          # RFC 1035: a name is at most 255 bytes in wire form
HASH_PERSON = b"casa-dns-qname"


def qname_hash(name: bytes) -> int:
    digest = hashlib.blake2b(name.lower(), digest_size=8, person=HASH_PERSON).digest()
    return int.from_bytes(digest, "big") >> 1


def _header_is_query(p: bytes) -> bool:
    return (p[2] & 0xF8) == 0 and p[4:6] == b"\0\1" and p[6:10] == b"\0\0\0\0"


@dataclass(frozen=True, slots=True)
class Question:
    """What is published of a query's first question (the module docstring says why)."""

    qname_len: int
    qname_hash: int
    qtype: int


def parse_query(payload: bytes) -> Question | None:
    """The first question of a DNS query, or None when the bytes are not one."""
    if len(payload) < HEADER_LEN + 5 or not _header_is_query(payload):
        return None
    labels: list[bytes] = []
    pos, wire = HEADER_LEN, 0
    while True:
        if pos >= len(payload):
            return None
        n = payload[pos]
        if n == 0:
            pos += 1
            break
        if n > 63 or pos + 1 + n > len(payload):     # 0xC0 pointers and 0x40 types are > 63
            return None
        labels.append(payload[pos + 1:pos + 1 + n])
        pos += 1 + n
        wire += 1 + n
        if wire + 1 > MAX_NAME:
            return None
    if pos + 4 > len(payload):
        return None
    name = b".".join(labels)
    return Question(len(name), qname_hash(name), int.from_bytes(payload[pos:pos + 2], "big"))
