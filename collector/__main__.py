"""casa-collector: trace agent process trees with eBPF and publish their events on the bus.

usage: python -m collector [--config F] [--bus-dir D] [--pid-file F] [-p PID ...] [-b PAGES] [--ebpf]

Runs as root (the only CASA stage that does). Attaches the tracepoints of bpf/collector.bpf.c,
seeds the tracked set from /proc (processes matching a profile of config/casa.json, and their
descendants), then publishes every exec/open/connect/exit/fork of tracked processes and their
detection signals (chmod, unlink, rename, truncate, memfd, ptrace, vm_read, send, bind, listen,
socket, setid, capset), plus ``root`` and ``loss`` events, on ``collector.event``
(XPUB ipc://$CASA_BUS_DIR/collector.sock).
A heartbeat with counters goes out every second.

Signals: SIGHUP re-reads the profiles (invalid: logged, old kept) and publishes a reload request
on ``collector.control``; SIGTERM/SIGINT flush, send a final heartbeat and exit 0.

Caveats: see docs/collector.md (when a relative path stays unresolved, argv limits, provisional
tracking).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import zmq

import bus
import bus.events
from stage.memory import tune_gc
from bpf import EVENTS_H, PARTS
from bus.topics import COLLECTOR_CONTROL, COLLECTOR_EVENT
from collector import config as cconfig
from collector import loader
from collector.decode import DIR_ERRORS, DIR_NONE, ST_EXE_RESOLVED, DecodeError, Decoded, decode
from collector.proc_scan import full_fd_exe, scan
from collector.scope import Scope
from trust import strict_modes

# Open, connect, fork and exit records do not wake this reader (bpf/collector.bpf.c
# lazy_wakeup): they wait at most this long, or until an exec record or 1/8 of the ring buffer
# wakes it.
POLL_TIMEOUT_MS = 5
STAGE = "collector"

log = logging.getLogger("casa.collector")

EXAMPLES = """examples:
  python -m collector                       # trace the agents of config/casa.json
  python -m collector -p 4242               # also treat PID 4242 as an agent root
  python -m collector -b 1024               # a 4 MiB ring buffer for bursty agents
  python -m collector --config my.json --bus-dir /tmp/casa-bus
  python -m collector --ebpf                # print the BPF C and cflags, then exit
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="casa-collector", description=__doc__.split("\n")[0],
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="config/casa.json to use (default: $CASA_CONFIG_PATH or the checkout's)")
    ap.add_argument("--bus-dir", help="directory of the bus sockets (default: $CASA_BUS_DIR or /run/casa)")
    ap.add_argument("--pid-file", help="write the collector's pid here (default: collector.pid_file)")
    ap.add_argument("-p", "--pid", type=int, action="append", default=[], metavar="PID",
                    help="extra root process (repeatable); its profile is --profile")
    ap.add_argument("--profile", help="profile name for -p roots (default: the first profile)")
    ap.add_argument("-b", "--buffer-pages", type=int, metavar="PAGES",
                    help="ring buffer size in 4 KiB pages, a power of two (default: collector.ringbuf_pages)")
    ap.add_argument("--ebpf", action="store_true", help="print the BPF program and cflags, then exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return ap.parse_args(argv)


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


class Collector:
    """The running stage: kernel records in, bus messages out. Signals only set flags."""

    def __init__(self, cfg: cconfig.CollectorConfig, args: argparse.Namespace, pub: bus.Publisher,
                 bpf: Any, scope: Scope, boot_epoch_ns: int) -> None:
        self.cfg = cfg
        self.args = args
        self.pub = pub
        self.bpf = bpf
        self.scope = scope
        self.boot_epoch_ns = boot_epoch_ns
        self.counters = Counters(config_version=cconfig.version_of(cfg.path))
        self.stop = False
        self.reload_requested = False
        self.reload_id = 0
        self.reported_drops = 0
        self.reported_undelivered = 0

    def publish(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            self.counters.events[ev["kind"]] = self.counters.events.get(ev["kind"], 0) + 1
            self.pub.publish(COLLECTOR_EVENT, _wire(ev))

    def count_paths(self, d: Decoded) -> None:
        """Unresolved (abspath "") and truncated paths, by reason: never silent (docs/collector.md)."""
        for error in (d.dir_error, d.new_dir_error):
            if error != DIR_NONE:
                self.counters.unresolved_paths += 1
                self.counters.unresolved[DIR_ERRORS.get(error, "unreadable")] += 1
        ev = d.event
        if "path_truncated" in ev or "new_path_truncated" in ev:
            self.counters.truncated_paths += ("path_truncated" in ev) + ("new_path_truncated" in ev)
        kind = ev["kind"]
        if kind == "exec":
            self.counters.env_truncated += "env_truncated" in ev
            self.counters.ld_env_truncated += "ld_env_truncated" in ev
        elif kind == "send":
            self.counters.dns_queries += "dns_qname_hash" in ev
            self.counters.dns_unparsed += d.dns_unparsed

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
            self.counters.malformed_records += 1
            log.warning("dropped a kernel record | reason=%s", exc)
        except Exception:   # noqa: BLE001 - one bad record must not stop the stage
            self.counters.malformed_records += 1
            log.exception("failed to handle a kernel record")
        return -1 if self.stop or self.reload_requested or self.pub.heartbeat_due() else 0

    def heartbeat(self) -> None:
        tracked, roots = self.scope.sweep()
        self.publish(roots)
        self.counters.tracked_processes = tracked
        self.counters.kernel_drops = loader.kernel_drops(self.bpf)
        now = time.time_ns()
        if self.counters.kernel_drops > self.reported_drops:
            self.publish([{"kind": "loss", "ts_ns": now, "where": "kernel",
                           "count": self.counters.kernel_drops - self.reported_drops}])
            log.warning("kernel ring buffer full, events lost | lost=%d",
                        self.counters.kernel_drops - self.reported_drops)
            self.reported_drops = self.counters.kernel_drops
        undelivered = self.pub.undelivered_events
        if undelivered > self.reported_undelivered:
            self.publish([{"kind": "loss", "ts_ns": now, "where": "collector",
                           "count": undelivered - self.reported_undelivered}])
            self.reported_undelivered = undelivered
        self.pub.heartbeat(self.counters.as_dict(self.scope, self.pub))

    def reload(self) -> None:
        """SIGHUP: new profiles (or keep the old ones), then a reload request downstream."""
        self.reload_requested = False
        try:
            new = cconfig.load(self.cfg.path)
        except cconfig.ConfigError as exc:
            self.counters.reloads_rejected += 1
            log.error("reload failed, keeping the %d profiles loaded | reason=%s version=%s",
                      len(self.scope.profiles), exc, self.counters.config_version)
        else:
            self.scope.profiles = new.profiles
            loader.set_root_comms(self.bpf, self.scope.root_comms())
            self.cfg = cconfig.CollectorConfig(self.cfg.path, self.cfg.limits, self.cfg.pid_file,
                                               new.profiles)
            self.counters.reloads_applied += 1
            self.counters.config_version = cconfig.version_of(self.cfg.path)
            log.info("profiles reloaded | profiles=%s version=%s",
                     ",".join(p.name for p in new.profiles), self.counters.config_version)
        self.reload_id += 1
        self.counters.reloads += 1
        self.pub.flush()             # every event before the request goes out first
        self.pub.publish_now(COLLECTOR_CONTROL, [{"kind": "control", "command": "reload",
                                                  "id": self.reload_id, "requested_ns": time.time_ns()}])

    def run(self) -> None:
        while not self.stop:
            self.bpf.ring_buffer_poll(POLL_TIMEOUT_MS)
            self.bpf.ring_buffer_consume()    # records written without a wakeup: poll timed out
            self.pub.flush()
            if self.reload_requested:
                self.reload()
            if self.pub.heartbeat_due():
                self.heartbeat()
        self.bpf.ring_buffer_consume()
        self.heartbeat()


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


def boot_epoch_ns() -> int:
    """Wall clock at boot: CLOCK_REALTIME - CLOCK_BOOTTIME, measured now (bpf_ktime_get_boot_ns base)."""
    best = None
    for _ in range(5):        # keep the tightest bracket
        a = time.clock_gettime_ns(time.CLOCK_REALTIME)
        b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        c = time.clock_gettime_ns(time.CLOCK_REALTIME)
        cand = (c - a, (a + c) // 2 - b)
        best = cand if best is None or cand[0] < best[0] else best
    return best[1]


def write_pid_file(path: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"{os.getpid()}\n")


def remove_pid_file(path: str) -> None:
    try:
        if Path(path).read_text().strip() == str(os.getpid()):
            Path(path).unlink()
    except OSError:
        pass


def extra_roots(args: argparse.Namespace, cfg: cconfig.CollectorConfig) -> dict[int, str]:
    if not args.pid:
        return {}
    names = [p.name for p in cfg.profiles]
    profile = args.profile or names[0]
    if profile not in names:
        raise cconfig.ConfigError(f"--profile {profile!r} is not in {cfg.path} (profiles: {names})")
    return {pid: profile for pid in args.pid}


def with_buffer_pages(cfg: cconfig.CollectorConfig, pages: int | None) -> cconfig.CollectorConfig:
    """``-b PAGES`` overrides collector.ringbuf_pages (same rule: a power of two)."""
    if pages is None:
        return cfg
    if pages < 1 or pages & (pages - 1) or pages > 65536:
        raise cconfig.ConfigError(f"-b {pages}: ring buffer pages must be a power of two from 1 to 65536")
    return replace(cfg, limits=replace(cfg.limits, ringbuf_pages=pages))


def print_ebpf(cfg: cconfig.CollectorConfig) -> int:
    """The program exactly as bcc compiles it: cflags, the included files, the probes."""
    print(f"// cflags: {' '.join(loader.cflags(cfg.limits))}")
    for part in (EVENTS_H, *PARTS):
        print(f"// ---- {part.name} (#include \"{part.name}\") ----")
        print(part.read_text())
    print(f"// ---- {loader.SOURCE.name} ----")
    print(loader.SOURCE.read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config_path = args.config or os.environ.get("CASA_CONFIG_PATH")
    try:
        cfg = cconfig.load(config_path)
        extra = extra_roots(args, cfg)
        cfg = with_buffer_pages(cfg, args.buffer_pages)
    except cconfig.ConfigError as exc:
        print(f"casa-collector: error: {exc}", file=sys.stderr)
        return 2
    if args.ebpf:
        return print_ebpf(cfg)
    if os.geteuid() != 0:       # after the config check, so anyone can validate a config file
        print("casa-collector: error: must run as root (it loads eBPF programs); "
              "run it with sudo or under supervisord as root", file=sys.stderr)
        return 1
    refused = strict_modes.refusal(str(cfg.path), args.pid_file or cfg.pid_file)
    if refused:                 # root must not run what a non-root user can change
        print(f"casa-collector: error: {refused}", file=sys.stderr)
        return 1
    return run(args, cfg, extra)


def run(args: argparse.Namespace, cfg: cconfig.CollectorConfig, extra: dict[int, str]) -> int:
    pid_file = args.pid_file or cfg.pid_file
    directory = Path(args.bus_dir) if args.bus_dir else None
    ctx = zmq.Context()
    try:
        sock = bus.bind_publisher(ctx, STAGE, directory)
    except bus.BusPermissionError as exc:
        print(f"casa-collector: error: {exc}", file=sys.stderr)
        return 1
    pub = bus.Publisher(sock, STAGE)
    profiles = cfg.profiles
    comms = set().union(*(p.root_comms() for p in profiles))
    try:
        b = loader.load(cfg.limits, os.getpid(), comms)
    except (loader.LoaderError, ValueError) as exc:
        print(f"casa-collector: error: {exc}", file=sys.stderr)
        sock.close(0)
        ctx.term()
        return 1
    scope = Scope(profiles, loader.KernelTrackedMap(b[b"tracked"]), os.getpid())
    scope.kmap.delete(os.getpid())         # inherited if started from a traced shell: never traced
    col = Collector(cfg, args, pub, b, scope, boot_epoch_ns())
    b[b"events"].open_ring_buffer(col.on_record)
    _install_signals(col)
    procs = scan()
    for pid in sorted(set(extra) - set(procs)):
        log.warning("-p process not found, not tracked | pid=%d", pid)
    col.publish(scope.bootstrap(procs, extra))
    scope.adopt_descendants(scan())        # children forked while the first scan ran
    write_pid_file(pid_file)
    tune_gc()
    log.info("Tracing agent trees (exec, open, connect, exit, fork, detection signals)... Ctrl-C to end. | roots=%d "
             "tracked=%d bus=%s pid_file=%s", len(scope.roots), len(scope.kmap.items()),
             bus.endpoint(STAGE, directory), pid_file)
    try:
        col.run()
    finally:
        remove_pid_file(pid_file)
        log.info("collector stopped | %s", " ".join(f"{k}={v}" for k, v in
                                                    col.counters.as_dict(scope, pub).items()))
        sock.close(linger=1000)
        ctx.term()
    return 0


def _install_signals(col: Collector) -> None:
    def stop(_sig: int, _frame: Any) -> None:
        col.stop = True

    def hup(_sig: int, _frame: Any) -> None:
        col.reload_requested = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)


if __name__ == "__main__":
    sys.exit(main())
