"""The collector's core: kernel records in, bus events out (docs/collector.md).

:class:`Collector` decodes each ring-buffer record (collector/decode.py), lets the scope decide
whose it is (collector/scope.py) and publishes the events on ``collector.event``; once per
heartbeat it sweeps the tracked set and turns new kernel ring-buffer drops and undelivered
messages into ``loss`` events. :class:`RingBufferSource` is the stage runtime's poll source over
the eBPF ring buffer; collector/__main__.py wires both (as root: it loads the probes).
"""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import bus
import bus.events
from bus.topics import COLLECTOR_CONTROL, COLLECTOR_EVENT
from collector import config as cconfig
from collector import loader
from collector.decode import DIR_ERRORS, DIR_NONE, ST_EXE_RESOLVED, DecodeError, Decoded, decode
from collector.proc_scan import full_fd_exe
from collector.scope import Scope
from stage.flags import Flags
from stage.runtime import Hooks

__all__ = ["Collector", "Counters", "RingBufferSource"]

log = logging.getLogger("casa.collector")


class RingBufferSource:
    """The runtime's poll source: the eBPF ring buffer (records go to ``Collector.on_record``)."""

    def __init__(self, bpf: Any) -> None:
        self.bpf = bpf

    def poll(self, timeout_ms: int) -> int:
        self.bpf.ring_buffer_poll(timeout_ms)
        self.bpf.ring_buffer_consume()        # records written without a wakeup: poll timed out
        return 0                              # counted by the Collector, not here

    def before_heartbeat(self) -> None:
        """The collector reads the kernel, not a stream: no upstream to watch."""

    def close(self) -> None:
        return None


@dataclass
class Counters:
    """Published in every heartbeat and logged at exit."""

    events: dict[str, int] = field(default_factory=lambda: {k: 0 for k in bus.KINDS})
    malformed_records: int = 0
    unresolved_paths: int = 0        # paths published with abspath "" (as records arrive)
    unresolved: dict[str, int] = field(default_factory=lambda: {k: 0 for k in DIR_ERRORS.values()})
    truncated_paths: int = 0         # paths cut at the kernel buffer (path_truncated)
    env_truncated: int = 0           # execs whose environment had more than MAX_ENV entries
    ld_env_truncated: int = 0        # execs with an LD_* value cut or occurring 3+ times
    dns_queries: int = 0             # send events whose datagram parsed as a DNS query
    dns_unparsed: int = 0            # send events that looked like DNS in the kernel, but did not parse
    kernel_drops: int = 0
    tracked_processes: int = 0
    reloads: int = 0                 # reload requests sent downstream (one per SIGHUP)
    reloads_applied: int = 0         # SIGHUPs whose config was valid and is now in force
    reloads_rejected: int = 0        # SIGHUPs whose config was invalid (the old one stays)
    config_version: str = ""         # sha256[:12] of the config file in force

    def as_dict(self, scope: Scope, pub: bus.Publisher) -> dict[str, int | str]:
        out: dict[str, int | str] = {f"events_{k}": v for k, v in self.events.items()}
        out.update({f"unresolved_{k}": v for k, v in self.unresolved.items()})
        out.update(malformed_records=self.malformed_records, kernel_drops=self.kernel_drops,
                   unresolved_paths=self.unresolved_paths, truncated_paths=self.truncated_paths,
                   env_truncated=self.env_truncated, ld_env_truncated=self.ld_env_truncated,
                   dns_queries=self.dns_queries, dns_unparsed=self.dns_unparsed,
                   tracked_processes=self.tracked_processes, roots=len(scope.roots),
                   dropped_provisional=scope.dropped_events, reloads=self.reloads,
                   reloads_applied=self.reloads_applied, reloads_rejected=self.reloads_rejected,
                   config_version=self.config_version, undelivered_events=pub.undelivered_events)
        return out


@dataclass
class Collector(Hooks):
    """Kernel records in, bus events out; its loop, signals and heartbeat cadence are the stage
    runtime's (``flags`` are the runtime's: the ring-buffer callback looks at them)."""

    cfg: cconfig.CollectorConfig
    pub: bus.Publisher
    bpf: Any
    scope: Scope
    boot_epoch_ns: int
    flags: Flags
    stats: Counters = field(init=False)
    reload_id: int = 0
    reported_drops: int = 0
    reported_undelivered: int = 0

    def __post_init__(self) -> None:
        self.stats = Counters(config_version=cconfig.version_of(self.cfg.path))

    def publish(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            self.stats.events[ev["kind"]] = self.stats.events.get(ev["kind"], 0) + 1
            self.pub.publish(COLLECTOR_EVENT, _wire(ev))

    def count_paths(self, d: Decoded) -> None:
        """Unresolved (abspath "") and truncated paths, by reason: never silent (docs/collector.md)."""
        for error in (d.dir_error, d.new_dir_error):
            if error != DIR_NONE:
                self.stats.unresolved_paths += 1
                self.stats.unresolved[DIR_ERRORS.get(error, "unreadable")] += 1
        ev = d.event
        if "path_truncated" in ev or "new_path_truncated" in ev:
            self.stats.truncated_paths += ("path_truncated" in ev) + ("new_path_truncated" in ev)
        kind = ev["kind"]
        if kind == "exec":
            self.stats.env_truncated += "env_truncated" in ev
            self.stats.ld_env_truncated += "ld_env_truncated" in ev
        elif kind == "send":
            self.stats.dns_queries += "dns_qname_hash" in ev
            self.stats.dns_unparsed += d.dns_unparsed

    def on_record(self, _ctx: Any, data: Any, size: int) -> int:
        """Ring-buffer callback: never raises (bcc would only print it).

        Returns -1 (stop polling; this record is consumed) when the loop has work due, so a
        sustained flood cannot hold off heartbeats, reloads or shutdown inside one poll.
        """
        try:
            lim = self.cfg.limits
            d = decode(ctypes.string_at(data, size), self.boot_epoch_ns, lim.max_args,
                       lim.max_arg_len, lim.max_path_len)
            if d.status & ST_EXE_RESOLVED and d.event["ret"] == 0 and not d.event["exe"].startswith("memfd:"):
                d.event["exe"] = full_fd_exe(d.event["tgid"], d.event["exe"])
            self.count_paths(d)
            self.publish(self.scope.handle(d))
        except DecodeError as exc:
            self.stats.malformed_records += 1
            log.warning("dropped a kernel record | reason=%s", exc)
        except Exception:   # noqa: BLE001 - one bad record must not stop the stage
            self.stats.malformed_records += 1
            log.exception("failed to handle a kernel record")
        flags = self.flags
        return -1 if flags.stop or flags.reload or self.pub.heartbeat_due() else 0

    def on_heartbeat(self) -> None:
        """Before each heartbeat: sweep the tracked set, and publish any new kernel or bus loss."""
        tracked, roots = self.scope.sweep()
        self.publish(roots)
        self.stats.tracked_processes = tracked
        self.stats.kernel_drops = loader.kernel_drops(self.bpf)
        now = time.time_ns()
        if self.stats.kernel_drops > self.reported_drops:
            self.publish([{"kind": "loss", "ts_ns": now, "where": "kernel",
                           "count": self.stats.kernel_drops - self.reported_drops}])
            log.warning("kernel ring buffer full, events lost | lost=%d",
                        self.stats.kernel_drops - self.reported_drops)
            self.reported_drops = self.stats.kernel_drops
        undelivered = self.pub.undelivered_events
        if undelivered > self.reported_undelivered:
            self.publish([{"kind": "loss", "ts_ns": now, "where": "collector",
                           "count": undelivered - self.reported_undelivered}])
            self.reported_undelivered = undelivered

    def counters(self) -> dict[str, int | str]:
        return self.stats.as_dict(self.scope, self.pub)

    def stopping(self) -> None:
        """What the kernel wrote before the stop, then the sweep and loss a heartbeat would send."""
        self.bpf.ring_buffer_consume()
        self.on_heartbeat()

    def reload(self) -> None:
        """SIGHUP: new profiles (or keep the old ones), then a reload request downstream."""
        try:
            new = cconfig.load(self.cfg.path)
        except cconfig.ConfigError as exc:
            self.stats.reloads_rejected += 1
            log.error("reload failed, keeping the %d profiles loaded | reason=%s version=%s",
                      len(self.scope.profiles), exc, self.stats.config_version)
        else:
            self.scope.profiles = new.profiles
            loader.set_root_comms(self.bpf, self.scope.root_comms())
            self.cfg = cconfig.CollectorConfig(self.cfg.path, self.cfg.limits, self.cfg.pid_file,
                                               new.profiles)
            self.stats.reloads_applied += 1
            self.stats.config_version = cconfig.version_of(self.cfg.path)
            log.info("profiles reloaded | profiles=%s version=%s",
                     ",".join(p.name for p in new.profiles), self.stats.config_version)
        self.reload_id += 1
        self.stats.reloads += 1
        self.pub.publish_now(                 # after every event queued before it
            COLLECTOR_CONTROL, [{"kind": "control", "command": "reload",
                                                  "id": self.reload_id, "requested_ns": time.time_ns()}])


def _wire(ev: dict[str, Any]) -> dict[str, Any]:
    """Text fields as the bus carries them (str, or bytes when not UTF-8). In place: the
    collector owns its event dicts, and a copy per event is measurable at 200k events/s."""
    for k in bus.events.TEXT_FIELDS:
        if k in ev and isinstance(ev[k], str):
            ev[k] = bus.to_wire(ev[k])
    if "argv" in ev:
        ev["argv"] = [bus.to_wire(a) for a in ev["argv"]]
    if ev.get("ld_env"):
        ev["ld_env"] = {k: bus.to_wire(v) for k, v in ev["ld_env"].items()}
    return ev


