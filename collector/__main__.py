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

The core is collector/core.py; this module loads the probes and hands the core and the ring
buffer to the stage runtime (stage/), which owns the loop, the signal flags and the heartbeat.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import zmq

import bus
from bpf import EVENTS_H, PARTS
from collector import config as cconfig
from collector import loader
from collector.core import Collector, Counters, RingBufferSource   # noqa: F401 (Counters: tests)
from collector.proc_scan import scan
from collector.scope import Scope
from stage import Flags, options
from stage.runtime import Runtime
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
    ap = options.parser("casa-collector", __doc__, EXAMPLES)
    options.add(ap, "config", "bus-dir", "log-level")
    ap.add_argument("--pid-file", help="write the collector's pid here (default: collector.pid_file)")
    ap.add_argument("-p", "--pid", type=int, action="append", default=[], metavar="PID",
                    help="extra root process (repeatable); its profile is --profile")
    ap.add_argument("--profile", help="profile name for -p roots (default: the first profile)")
    ap.add_argument("-b", "--buffer-pages", type=int, metavar="PAGES",
                    help="ring buffer size in 4 KiB pages, a power of two (default: collector.ringbuf_pages)")
    ap.add_argument("--ebpf", action="store_true", help="print the BPF program and cflags, then exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging (= --log-level DEBUG)")
    args = options.resolve(ap.parse_args(argv))
    if args.verbose:
        args.log_level = "DEBUG"
    return args


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
    options.setup_logging(args.log_level)
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
    flags = Flags().install()
    ctx = zmq.Context()
    try:
        sock = bus.bind_publisher(ctx, STAGE, directory)
    except bus.BusPermissionError as exc:
        print(f"casa-collector: error: {exc}", file=sys.stderr)
        return 1
    pub = bus.Publisher(sock, STAGE)
    comms = set().union(*(p.root_comms() for p in cfg.profiles))
    try:
        b = loader.load(cfg.limits, os.getpid(), comms)
    except (loader.LoaderError, ValueError) as exc:
        print(f"casa-collector: error: {exc}", file=sys.stderr)
        sock.close(0)
        ctx.term()
        return 1
    scope = Scope(cfg.profiles, loader.KernelTrackedMap(b[b"tracked"]), os.getpid())
    scope.kmap.delete(os.getpid())         # inherited if started from a traced shell: never traced
    col = Collector(cfg, pub, b, scope, boot_epoch_ns(), flags)
    b[b"events"].open_ring_buffer(col.on_record)
    procs = scan()
    for pid in sorted(set(extra) - set(procs)):
        log.warning("-p process not found, not tracked | pid=%d", pid)
    col.publish(scope.bootstrap(procs, extra))
    scope.adopt_descendants(scan())        # children forked while the first scan ran
    write_pid_file(pid_file)
    log.info("Tracing agent trees (exec, open, connect, exit, fork, detection signals)... Ctrl-C to end. | roots=%d "
             "tracked=%d bus=%s pid_file=%s", len(scope.roots), len(scope.kmap.items()),
             bus.endpoint(STAGE, directory), pid_file)
    runtime = Runtime(STAGE, col, RingBufferSource(b), pub, ctx, poll_ms=POLL_TIMEOUT_MS, flags=flags)
    try:
        return runtime.run()
    finally:
        remove_pid_file(pid_file)


if __name__ == "__main__":
    sys.exit(main())
