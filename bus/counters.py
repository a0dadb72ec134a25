"""Heartbeat counter names: part of the bus contract (docs/bus.md §8.3).

Every stage publishes a flat map of counters in its heartbeat. Which names exist, and which of
them mean **loss**, is defined here once per stage, so that the publishers and `casa status`
cannot drift apart (they did: status looked for ``kernel_lost`` while the collector published
``kernel_drops``, so kernel ring-buffer loss was never shown).

Each counter has a :class:`Kind`:

* ``LOSS``    data that did not reach the next stage or the records (kernel drops, bus gaps,
              undelivered messages, records a sink could not write). Never silent: `casa status`
              shows every non-zero one.
* ``PROBLEM`` bad, late or refused input, failures that were retried, backlogs: shown when
              non-zero, because they explain or precede loss.
* ``INFO``    throughput, state and versions.

A name is exact (``kernel_drops``) or a pattern with ``*`` (``events_*``, ``dropped_*``). Exact
names win over patterns; among patterns the first declared wins. :meth:`StageCounters.undeclared`
lists the names a heartbeat carries that this module does not know: the publisher logs them once
(bus/publisher.py) and `tests/bus/test_counters.py` fails on them, so a new counter is
declared (and classified) in the same change that publishes it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

__all__ = ["Kind", "CounterSpec", "StageCounters", "STAGES", "for_stage", "for_stream",
           "PUBLISHER", "SUBSCRIBER", "RELOADING"]


class Kind(enum.Enum):
    LOSS = "loss"          # data lost on the way: shown by casa status whenever non-zero
    PROBLEM = "problem"    # bad/late input, retried failures, backlog: shown whenever non-zero
    INFO = "info"          # rates, state, versions


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """One counter (or a family of them, when ``name`` holds ``*``) and what it means."""

    name: str
    kind: Kind
    meaning: str

    @property
    def is_pattern(self) -> bool:
        return "*" in self.name

    def matches(self, key: str) -> bool:
        return fnmatchcase(key, self.name) if self.is_pattern else key == self.name


def _specs(kind: Kind, *pairs: tuple[str, str]) -> tuple[CounterSpec, ...]:
    return tuple(CounterSpec(name, kind, meaning) for name, meaning in pairs)


# bus.Publisher adds these to every heartbeat.
PUBLISHER: tuple[CounterSpec, ...] = (
    *_specs(Kind.INFO, ("pid", "the sending process"), ("sent_events", "events handed to ZeroMQ")),
    *_specs(Kind.LOSS, ("undelivered_events", "events a full queue refused (docs/bus.md §3)"),
            ("undelivered_messages", "messages a full queue refused"),
            ("unpublishable", "events dropped because they could not be packed (bus/publisher.py)")),
)

# bus.Subscriber.counters.as_dict(); the sessionizer publishes them with the prefix ``bus_``.
_SUBSCRIBER_PAIRS = {
    "received_messages": (Kind.INFO, "messages decoded"),
    "received_events": (Kind.INFO, "events in them"),
    "malformed": (Kind.PROBLEM, "messages dropped as malformed"),
    "unknown_version": (Kind.PROBLEM, "messages of an envelope version this stage does not speak"),
    "lost_messages": (Kind.LOSS, "sequence gaps: messages published upstream and never received"),
    "lagging_messages": (Kind.PROBLEM, "messages read more than 2 s after they were sent"),
    "publisher_restarts": (Kind.PROBLEM, "upstream restarts seen (a new epoch); what it lost is counted there"),
    "unknown_kind": (Kind.PROBLEM, "events of a kind the topic does not carry in this build (dropped)"),
    "stream_deaths": (Kind.PROBLEM, "times an upstream stream sent no heartbeat for HEARTBEAT_LIVENESS "
                                    "intervals (declared dead; docs/bus.md §8.2)"),
    "dead_streams": (Kind.INFO, "str: the upstream streams dead now, comma-separated (casa status "
                                "shows them)"),
}
SUBSCRIBER: tuple[CounterSpec, ...] = tuple(
    CounterSpec(name, kind, meaning) for name, (kind, meaning) in _SUBSCRIBER_PAIRS.items())
_BUS_PREFIXED: tuple[CounterSpec, ...] = tuple(
    CounterSpec(f"bus_{name}", kind, meaning) for name, (kind, meaning) in _SUBSCRIBER_PAIRS.items())

# docs/bus.md §7.3: every stage that reloads.
RELOADING: tuple[CounterSpec, ...] = (
    *_specs(Kind.INFO, ("reloads_applied", "reloads validated and swapped in"),
            ("last_reload_id", "id of the last control map handled (0: none)"),
            ("rules_version", "sha256[:12] of the rules in force")),
    *_specs(Kind.PROBLEM, ("reloads_rejected", "reloads refused; the old config stays in force")),
)


@dataclass(frozen=True, slots=True)
class StageCounters:
    """The counters one stage publishes."""

    stage: str
    specs: tuple[CounterSpec, ...]
    _exact: dict[str, CounterSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_exact", {s.name: s for s in self.specs if not s.is_pattern})

    def spec(self, key: str) -> CounterSpec | None:
        """The declaration of ``key``: the exact name first, else the first matching pattern."""
        found = self._exact.get(key)
        if found is not None:
            return found
        return next((s for s in self.specs if s.is_pattern and s.matches(key)), None)

    def kind(self, key: str) -> Kind | None:
        s = self.spec(key)
        return s.kind if s else None

    def of_kind(self, counters: Mapping[str, Any], *kinds: Kind) -> dict[str, Any]:
        """The non-zero counters of ``kinds``, in the order of ``kinds`` then of ``counters``."""
        out: dict[str, Any] = {}
        for kind in kinds:
            for key, value in counters.items():
                if value and _is_number(value) and self.kind(key) is kind:
                    out[key] = value
        return out

    def loss(self, counters: Mapping[str, Any]) -> dict[str, Any]:
        """Non-zero loss counters."""
        return self.of_kind(counters, Kind.LOSS)

    def shown(self, counters: Mapping[str, Any]) -> dict[str, Any]:
        """What `casa status` shows: non-zero loss counters, then non-zero problem counters."""
        return self.of_kind(counters, Kind.LOSS, Kind.PROBLEM)

    def undeclared(self, keys: Iterable[str]) -> list[str]:
        return sorted(k for k in keys if self.spec(k) is None)

    def loss_names(self) -> list[str]:
        return [s.name for s in self.specs if s.kind is Kind.LOSS]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


COLLECTOR = StageCounters("collector", (
    *PUBLISHER,
    *RELOADING,
    *_specs(Kind.LOSS, ("kernel_drops", "events the kernel could not put in the ring buffer (total)"),
            ("malformed_records", "kernel records that could not be decoded (dropped)")),
    *_specs(Kind.PROBLEM, ("truncated_paths", "paths cut at the kernel's length limit (path_truncated)"),
            ("unresolved_paths", "relative paths whose base directory the kernel could not resolve"),
            ("unresolved_*", "unresolved relative paths, by reason (docs/collector.md)"),
            ("env_truncated", "execs whose environment had more entries than the kernel scans "
                              "(an LD_* variable may have been past the scan)"),
            ("ld_env_truncated", "execs with an LD_* value cut at its limit or repeated 3+ times"),
            ("dns_unparsed", "UDP sends to port 53 whose datagram did not parse as a DNS query")),
    *_specs(Kind.INFO, ("tracked_processes", "processes in the kernel's tracked map"),
            ("dns_queries", "send events whose datagram parsed as a DNS query"),
            ("roots", "agent roots being traced"),
            ("dropped_provisional", "events of processes that turned out not to be agent roots"),
            ("reloads", "reload requests sent downstream: the id of the last control map"),
            ("config_version", "sha256[:12] of config/casa.json in force"),
            ("events_*", "events published, per kind")),
))

SESSIONIZER = StageCounters("sessionizer", (
    *PUBLISHER,
    *RELOADING,
    *_BUS_PREFIXED,
    *_specs(Kind.LOSS, ("lost_*", "events known lost upstream, by where: kernel, collector (its bus), "
                          "bus (a gap on collector.*), collector_restart")),
    *_specs(Kind.PROBLEM, ("malformed_events", "events that could not be used (dropped)"),
            ("restored_unclean", "restarts from a checkpoint not written at a clean shutdown"),
            ("collector_restarts", "collector restarts seen: open sessions marked incomplete"),
            ("dns_resolve_failures", "configured endpoint names that did not resolve"),
            ("unknown_control", "control maps with a command this build does not know"),
            ("unknown_kind", "events of a kind this build does not know (dropped)"),
            ("unresolved_paths", "relative paths whose base the kernel could not resolve")),
    *_specs(Kind.INFO, ("accepted", "events published on sessionizer.event"),
            ("dropped_*", "events filtered on purpose, by reason (noise, untracked, ...)"),
            ("hidden_*", "write-intent opens published with a hidden reason"),
            ("open_sessions", "sessions open now"), ("tracked_processes", "processes in the tree"),
            ("sessions_opened", ""), ("sessions_closed", ""), ("sessions_restored", ""),
            ("forks_tracked", ""), ("released", "held events released to a session"),
            ("adopted", "processes adopted from an event of an untracked parent"),
            ("root_reimaged", "roots that exec'd another image"), ("roots", "roots seen"),
            ("forgotten_dead", "processes forgotten after their exit was lost"),
            ("held", "events held until their session exists"), ("trees", "agent trees"),
            ("nested_profile_exec", "profile-matching execs inside a tree (never a new root)")),
))

ANALYZER = StageCounters("analyzer", (
    *PUBLISHER,
    *RELOADING,
    *SUBSCRIBER,
    *_specs(Kind.PROBLEM, ("events_malformed", "maps that could not be used (dropped)"),
            ("events_late", "events for a session this instance already closed"),
            ("loss_marks", "times upstream loss marked every open session incomplete"),
            ("rule_eval_errors", "rule evaluations that failed (the rule did not fire)"),
            ("control_unknown", "control maps with an unknown command (forwarded)"),
            ("unknown_kind", "events of a kind this build does not know (dropped)"),
            ("unresolved_paths", "events whose relative path the kernel could not resolve")),
    *_specs(Kind.INFO, ("events_in", ""), ("events_ignored", "role/hidden events not analysed (original history mode)"), ("events_owned", "events of sessions this instance owns"),
            ("evaluations_skipped", "context unchanged since the last evaluation"),
            ("decisions", ""), ("lifecycle_in", ""), ("sessions_open", ""),
            ("rule_evaluations", ""), ("rule_cache_hits", ""), ("sessions_restored", ""),
            ("history_*", "per-tree history indexes"), ("trees_*", "")),
))

SINKS = StageCounters("sinks", (
    *PUBLISHER,
    *SUBSCRIBER,
    *_specs(Kind.LOSS, ("lost_records", "records dropped: backlog full, or in memory at a kill (jsonl)"),
            ("spans_dropped", "spans not exported: queue or retry buffer full, or shutdown (otel)"),
            ("unsaved_at_restart", "records or spans held in memory when the sink was killed")),
    *_specs(Kind.PROBLEM, ("write_errors", "failed open/write attempts (records kept and retried)"),
            ("backlog", "records waiting to be written (bounded)"),
            ("export_failures", "failed OTLP export requests (spans kept and retried)"),
            ("spans_retry_backlog", "spans kept for re-sending"),
            ("malformed_maps", "analyzer maps that could not become records"),
            ("late_messages", "messages for a session already closed"),
            ("sessions_joined_midway", "sessions first seen after their start (incomplete)"),
            ("unknown_kind", "events of a kind this build does not know (dropped, not written)")),
    *_specs(Kind.INFO, ("reloads_applied", "in-band reloads (log files reopened)"),
            ("reloads_seen", "in-band reloads seen"), ("reopens", "log files reopened"),
            ("tracing_enabled", "0: no OTLP endpoint configured"),
            ("open_sessions", ""), ("skipped_kinds", "events of kinds the logs never held"),
            ("hidden_events", "events a noise filter hid from the logs (kept for the analyzer only)"),
            ("spans_exported", ""), ("spans_queued", "spans waiting for the export thread"),
            ("process_spans_skipped", "process spans beyond the per-session cap (span events kept)"),
            ("durable_lag_messages", "messages received but not yet durably written or exported"),
            ("*_written", "records written, per file"), ("*_write_errors", "per file"),
            ("*_backlog", "per file"), ("*_lost", "per file (their sum is lost_records)"),
            ("*_reopens", "per file")),
    # the notification sinks (sinks-webhook, sinks-program; sinks/notify.py) and the OTLP log
    # records of sinks-otel (sinks/otel_logs.py)
    *_specs(Kind.LOSS, ("notify_dropped_full", "decisions refused because the notification queue was full"),
            ("notify_gave_up", "notifications given up: every attempt failed or the deadline passed"),
            ("notify_dropped_shutdown", "notifications still queued when the stop's bounded wait ended"),
            ("notify_unread_at_exit", "program: lines written to the command that it died without reading"),
            ("log_records_dropped", "OTLP decision log records not exported: queue full or export failed")),
    *_specs(Kind.PROBLEM, ("notify_attempt_failures", "failed delivery attempts (retried until the deadline)"),
            ("notify_backlog", "notifications queued or in flight (bounded by queue_size)"),
            ("notify_restarts", "program: the command died and was started again"),
            ("log_export_failures", "failed OTLP log export requests")),
    *_specs(Kind.INFO, ("notify_enabled", "0: not configured in casa.json (the stage only heartbeats)"),
            ("notify_accepted", "decisions at or above min_action, queued or refused"),
            ("notify_delivered", "notifications delivered"),
            ("notify_skipped", "decisions below min_action"),
            ("log_records_exported", "OTLP log records of decisions the receiver accepted"),
            ("log_records_queued", "OTLP log records waiting for the export thread")),
))

RESPONDER = StageCounters("responder", (
    *PUBLISHER,
    *SUBSCRIBER,
    *_specs(Kind.PROBLEM, ("refused_targets", "pids a response named that failed a check (not signalled)"),
            ("response_errors", "signals that failed for another reason than the process being gone"),
            ("requests_malformed", "response maps that could not be read (ignored)")),
    *_specs(Kind.INFO, ("responses", "ALERT responses carried out (dry runs included)"),
            ("responses_dry_run", "of which dry runs"),
            ("signalled_processes", "processes signalled (SIGKILL, or SIGSTOP then SIGKILL)")),
))

STAGES: dict[str, StageCounters] = {s.stage: s for s in (COLLECTOR, SESSIONIZER, ANALYZER, SINKS,
                                                         RESPONDER)}


def for_stage(stage: str) -> StageCounters | None:
    return STAGES.get(stage)


def for_stream(stream: str) -> StageCounters | None:
    """``analyzer-1`` -> the analyzer's counters, ``sinks-otel`` -> the sinks'."""
    return STAGES.get(stream.split("-", 1)[0])
