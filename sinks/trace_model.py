"""The trace model: what a session's trace says, as span names, attributes, ids and links.

One trace per session (sinks/otel.py builds it):

    session N                      root span: session start (created_ns) -> close (closed_ns)
      span events                  process / file / network / exit (the original's names), and
                                   one per schema-2 kind named after it (chmod ... capset);
                                   rule matched: <name> (with its evidence), audit/alert emitted
      process <name> (tgid)        one child span per exec'd process, exec -> exit

Span-event attributes are the events.log record of the event (sinks/records.py, one definition
of what an event says) under OpenTelemetry names: :data:`ATTRIBUTE_NAMES` maps each record field
to its attribute, so a field added to the records reaches the traces by one line here. Values are
made what OTLP can carry: text with ``\\udcXX`` escapes for non-UTF-8 bytes (protobuf strings
must be UTF-8), integers outside int64 as decimal text (one would fail the whole export batch),
``ld_env`` flattened to ``casa.process.ld_env.<NAME>``.

Ids: a session's trace id and its first root span's id are derived from the session id and the
sink's namespace (service name and host, sinks/otel_export.py) by a hash, not drawn at random,
so a session whose ``parent_session_id`` names a session exported by an earlier sink process can
link to that root span by computing its ids (:func:`session_ids`, :class:`PinnedIds`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Span
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from sinks import decision_records, records

__all__ = ["ATTRIBUTE_NAMES", "EVENT_NAMES", "COUNT_NAMES", "otel_text", "otel_value",
           "event_attributes", "flag_attributes", "session_ids", "PinnedIds", "remote_context",
           "EvidenceRef", "evidence_refs", "rule_fields", "SessionTrace", "MAX_EVENT_INDEX"]

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
MAX_EVENT_INDEX = 10_000             # events of a session findable as evidence (= span events kept)

_COMMON = {"pid": "process.pid", "ppid": "process.parent_pid", "tid": "thread.id", "uid": "user.id",
           "type": "casa.event.type", "comm": "process.command", "role": "casa.process.role",
           "syscall": "casa.event.syscall", "ret": "casa.event.ret"}
_FILE = {"path": "file.path", "abspath": "casa.file.abspath", "path_truncated": "casa.file.path_truncated"}
_PEER = {"addr": "server.address", "port": "server.port"}
_TARGET = {"target": "casa.target.pid", "target_tgid": "casa.target.pid", "target_in_tree": "casa.target.in_tree"}

# record type -> record field -> attribute name (the common fields above apply to every type).
ATTRIBUTE_NAMES: dict[str, dict[str, str]] = {
    "EXECVE": {"path": "process.executable.path", "args": "process.args", "exe": "casa.process.exe",
               "abspath": "casa.process.executable.abspath", "path_truncated": "casa.file.path_truncated",
               "stdio": "casa.process.stdio", "parent_stdio": "casa.process.parent_stdio",
               "ld_env": "casa.process.ld_env", "ld_env_truncated": "casa.process.ld_env_truncated",
               "env_truncated": "casa.process.env_truncated", "euid": "casa.process.euid",
               "prev_euid": "casa.process.prev_euid"},
    "OPENAT": {**_FILE, "flags": "file.flags", "mode": "file.mode", **_TARGET},
    "CONNECT": _PEER,
    "EXIT": {},
    "CHMOD": {**_FILE, "mode": "file.mode"},
    "UNLINK": {**_FILE, "flags": "casa.file.flags"},
    "RENAME": {**_FILE, "new_path": "casa.file.new_path", "new_abspath": "casa.file.new_abspath",
               "new_path_truncated": "casa.file.new_path_truncated", "flags": "casa.file.flags"},
    "TRUNCATE": {**_FILE, "length": "casa.file.length"},
    "MEMFD": {"name": "casa.memfd.name", "flags": "casa.memfd.flags"},
    "PTRACE": {"request": "casa.ptrace.request", **_TARGET},
    "VM_READ": _TARGET,
    "SEND": {**_PEER, "bytes": "casa.send.bytes", "dns_qname_len": "casa.dns.qname_len",
             "dns_qname_hash": "casa.dns.qname_hash"},
    "BIND": _PEER,                   # the socket's own address: it is the server
    "LISTEN": {**_PEER, "backlog": "casa.listen.backlog"},
    "SOCKET": {"family": "casa.socket.family", "sock_type": "casa.socket.type",
               "protocol": "casa.socket.protocol"},
    "SETID": {"ids": "casa.setid.ids", "euid": "casa.process.euid"},
    "CAPSET": {"effective": "casa.capset.effective", "permitted": "casa.capset.permitted",
               "inheritable": "casa.capset.inheritable"},
}
_ORIGINAL = {"EXECVE": ("process", "execve"), "OPENAT": ("file", "openat"),
             "CONNECT": ("network", "connect"), "EXIT": ("exit", "exit")}
# record type -> span event name, and -> its casa.session.event_count.<name>
EVENT_NAMES = {t: _ORIGINAL.get(t, (k, k))[0] for k, t in records.TYPE_NAMES.items()}
COUNT_NAMES = {t: _ORIGINAL.get(t, (k, k))[1] for k, t in records.TYPE_NAMES.items()}


def otel_text(value: Any) -> str:
    """Wire text -> a valid UTF-8 str for protobuf: non-UTF-8 bytes become ``\\udcXX`` escapes."""
    return _escaped(records.text(value))


def _escaped(s: str) -> str:
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def otel_value(value: Any) -> Any:
    """A record value as an attribute value OTLP can carry (module doc). Record values are exact
    builtin types (records.py builds them), so exact type tests answer the common cases first."""
    kind = type(value)
    if kind is str:
        return value if value.isascii() else _escaped(value)
    if kind is int:
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if kind is bool or kind is float:
        return value
    if isinstance(value, list):
        items = [otel_value(v) for v in value]
        return items if len({type(v) for v in items}) <= 1 else [str(v) for v in items]
    return str(value)


def event_attributes(event: Mapping[str, Any], session_id: int) -> dict[str, Any]:
    """The span-event attributes of one accepted event (raises RecordError for a malformed one)."""
    body = records.event_body(event)
    names = ATTRIBUTE_NAMES.get(body["type"], {})
    attrs: dict[str, Any] = {"casa.session.id": session_id, "casa.event.type": body["type"],
                             "casa.event.timestamp": records.rfc3339nano(records.int_field(event, "ts_ns"))}
    for key, value in body.items():
        name = names.get(key) or _COMMON.get(key)
        if name is None or (key == "comm" and not value):
            continue
        if isinstance(value, dict):                 # ld_env: one attribute per variable
            attrs.update({f"{name}.{k}": otel_value(v) for k, v in value.items()})
        else:
            attrs[name] = otel_value(value)
    return attrs


def flag_attributes(context: Any) -> dict[str, Any]:
    """``{"execution": {...}, ...}`` -> ``casa.execution.<flag>`` etc. (bool/int/float/str only)."""
    out: dict[str, Any] = {}
    if not isinstance(context, Mapping):
        return out
    for group in ("execution", "capability", "history"):
        flags = context.get(group)
        if isinstance(flags, Mapping):
            for name, value in flags.items():
                if isinstance(value, (bool, int, float, str)):
                    out[f"casa.{group}.{name}"] = otel_value(value)
    return out


# --------------------------------------------------------------------------- ids and links

def session_ids(namespace: str, session_id: int) -> tuple[int, int]:
    """(trace id, root span id) of session ``session_id``: a hash, the same in every sink process."""
    digest = hashlib.blake2b(f"casa-session\0{namespace}\0{session_id}".encode(), digest_size=24).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:], "big") or 1


def remote_context(trace_id: int, span_id: int) -> trace_api.SpanContext:
    """A span context to link to a span this process may never have seen."""
    return trace_api.SpanContext(trace_id, span_id, is_remote=True,
                                 trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED))


class PinnedIds(IdGenerator):
    """The tracer's id generator: random ids, except for the next root span after :meth:`pin`.

    The SDK asks the generator for a root span's trace id and then its span id; there is no other
    way to give a root span chosen ids. Used only from the sink's one pipeline thread.
    """

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._trace_id: int | None = None
        self._span_id: int | None = None

    def pin(self, trace_id: int, span_id: int | None) -> None:
        """The next root span gets ``trace_id`` and ``span_id`` (None: a random span id)."""
        self._trace_id, self._span_id = trace_id, span_id

    def generate_trace_id(self) -> int:
        trace_id, self._trace_id = self._trace_id, None
        return trace_id if trace_id is not None else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        span_id, self._span_id = self._span_id, None
        return span_id if span_id is not None else self._random.generate_span_id()


# --------------------------------------------------------------------------- evidence

@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """One analyzer reference, validated: the event it names and how a person reads it."""

    ts_ns: int
    tgid: int
    kind: str
    text: str            # "<RFC3339> <TYPE> pid=<tgid> <path or addr:port>"


def evidence_refs(evidence: Any) -> dict[str, list[EvidenceRef]]:
    """``{"group.field": [ref map, ...]}`` -> validated references, bounded as in the logs
    (decision_records.evidence_record: malformed ones and those beyond the bounds are left out)."""
    out: dict[str, list[EvidenceRef]] = {}
    if not isinstance(evidence, Mapping):
        return out
    for name, refs in evidence.items():
        if len(out) >= decision_records.MAX_EVIDENCE_FIELDS or type(name) is not str or not isinstance(refs, list):
            continue
        kept = []
        for ref in refs[:decision_records.MAX_EVIDENCE_REFS]:
            try:
                rec = decision_records.evidence_ref(ref)
            except records.RecordError:
                continue
            what = next((rec[k] for k in ("path", "addr", "target", "detail") if k in rec), "")
            kept.append(EvidenceRef(ref["ts_ns"], ref["tgid"], ref["kind"] if type(ref["kind"]) is str else "",
                                    _escaped(f"{rec['timestamp']} {rec['type']} pid={rec['pid']} {what}".rstrip())))
        if kept:
            out[name] = kept
    return out


_FIELD = re.compile(r"\b(?:execution|capability|history)\.[A-Za-z_][A-Za-z0-9_]*")


def rule_fields(expr: str, evidence: Mapping[str, Any]) -> list[str]:
    """The evidence fields a rule's expression names (all of them when it has no expression)."""
    if not expr:
        return list(evidence)
    named = set(_FIELD.findall(expr))
    return [name for name in evidence if name in named]


# --------------------------------------------------------------------------- live state

@dataclass(slots=True)
class SessionTrace:
    """The live trace of one session: its root span, process spans, running totals, and where
    each of its events is (for evidence): (ts_ns, tgid, kind) -> (span event seq, process span)."""

    session_id: int
    stream: str
    root: Span
    processes: dict[int, Span] = field(default_factory=dict)
    parents: dict[int, Span] = field(default_factory=dict)   # tgid -> parent span of its span
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("accepted", "connect", "openat", "execve", "exit"), 0))
    score: int | float = 0
    action: str = "IGNORE"
    audit_emitted: bool = False
    alert_emitted: bool = False
    context: Any = None
    last_ts_ns: int = 0
    complete: bool = True
    parent_linked: bool = False
    evidence_links: int = 0
    events: dict[tuple[int, int, str], tuple[int, Any]] = field(default_factory=dict)

    def remember(self, ts_ns: int, tgid: int, kind: str, span: Span | None) -> int:
        """Index an accepted event (bounded); returns its seq in this trace (1, 2, ...)."""
        seq = self.counts["accepted"]
        if len(self.events) < MAX_EVENT_INDEX:
            self.events.setdefault((ts_ns, tgid, kind), (seq, span.get_span_context() if span else None))
        return seq
