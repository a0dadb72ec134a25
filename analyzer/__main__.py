"""casa analyzer: derive context flags per session, score weighted CEL rules, publish decisions.

usage: python -m analyzer [--instance I] [--instances N] [--rules FILE] [--bus-dir DIR]

Subscribes to the sessionizer (sessionizer.event/.session/.control and its heartbeat), runs the
pure core (analyzer/core.py) and publishes analyzer.event/.decision/.session/.control plus
heartbeats on its own stream ``analyzer-I``. Instance I of N owns the messages with
``shard % N == I`` (``session_id % N`` when a message has no shard): every session of an agent
tree carries the tree's shard, so one instance holds the tree's history. Run N of them to spread
the load (sinks read every stream).

Signals: SIGTERM/SIGINT stop after a final heartbeat (and checkpoint); SIGHUP re-reads the rules
file locally (the normal path is the in-band reload on sessionizer.control, which is forwarded).

Caveats: runs as the unprivileged casa user; needs write access to the bus directory. A broken
rules file at start is fatal (exit 1); at reload it is logged and the old rules stay.

examples:
  python -m analyzer                        # one instance, rules from $CASA_RULES_PATH
  python -m analyzer --instance 1 --instances 2 --rules config/rules.eval.json
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import msgpack
import zmq

import policy
from analyzer.checkpoint import Checkpointer
from analyzer.core import Analyzer
from bus import Publisher, Subscriber, bind_publisher, connect_subscriber
from bus import topics as T
from bus.envelope import Envelope, raw_events
from bus.errors import BusError
from bus.runtime import tune_gc

POLL_TIMEOUT_MS = 100                 # also bounds how long a partial batch waits
CHECKPOINT_INTERVAL_S = 5.0
TICK_INTERVAL_S = 5.0
UNPUBLISHABLE: dict[str, int] = {}      # topic -> maps dropped because they could not be packed
SUBSCRIBED = [T.SESSIONIZER_EVENT, T.SESSIONIZER_SESSION, T.SESSIONIZER_CONTROL]

log = logging.getLogger("casa.analyzer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m analyzer", description=__doc__.split("\n")[0],
                                epilog=__doc__[__doc__.index("examples:"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instance", type=int, default=0, help="this instance's index I (default 0)")
    p.add_argument("--instances", type=int, default=None,
                   help="number of instances N (default $CASA_ANALYZER_INSTANCES or 1)")
    p.add_argument("--rules", type=Path, default=None, help="rules file (default $CASA_RULES_PATH)")
    p.add_argument("--bus-dir", type=Path, default=None, help="bus directory (default $CASA_BUS_DIR)")
    p.add_argument("--state-dir", type=Path,
                   default=Path(os.environ.get("CASA_STATE_DIR", "/var/lib/casa")),
                   help="checkpoint directory (default $CASA_STATE_DIR or /var/lib/casa)")
    p.add_argument("--no-checkpoint", action="store_true", help="neither restore nor save state")
    p.add_argument("--log-level", default=os.environ.get("CASA_LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    if args.instances is None:
        env = os.environ.get("CASA_ANALYZER_INSTANCES", "1")
        if not env.isdigit():
            p.error(f"CASA_ANALYZER_INSTANCES must be a positive integer, not {env!r}")
        args.instances = int(env)
    if args.instances < 1 or not 0 <= args.instance < args.instances:
        p.error(f"--instance must be in 0..{args.instances - 1} (got {args.instance})")
    args.rules = args.rules or policy.rules_path()
    return args


class Flags:
    """Signal flags, set by handlers and acted on in the loop."""

    stop = False
    reload = False

    def on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True

    def on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload = True


def run(args: argparse.Namespace) -> int:
    stream = f"analyzer-{args.instance}"
    try:
        pol = policy.load_policy(args.rules)
        core = Analyzer(pol, args.instance, args.instances,
                        reload_policy=lambda: policy.load_policy(args.rules))
    except policy.PolicyError as exc:
        log.error("cannot start: %s | rules=%s", exc, args.rules)
        return 1
    ckpt = None if args.no_checkpoint else Checkpointer(args.state_dir / f"{stream}.json")
    if ckpt is not None:
        ckpt.restore(core, time.time_ns())
    ctx = zmq.Context()
    try:
        pub_sock = bind_publisher(ctx, stream, args.bus_dir)
    except BusError as exc:
        log.error("cannot start: %s | stream=%s", exc, stream)
        return 1
    pub = Publisher(pub_sock, "analyzer", stream)
    sub_sock = connect_subscriber(ctx, ["sessionizer"], Subscriber.subscriptions(SUBSCRIBED), args.bus_dir)
    sub = Subscriber(sub_sock, SUBSCRIBED, on_loss=lambda stream_, topic, n: core.mark_loss(n))
    if ckpt is not None:
        ckpt.resume_positions(sub.tracker)    # the first message after a restart reveals the gap
    flags = Flags()
    signal.signal(signal.SIGTERM, flags.on_stop)
    signal.signal(signal.SIGINT, flags.on_stop)
    signal.signal(signal.SIGHUP, flags.on_hup)
    tune_gc()
    log.info("analyzer running | stream=%s instance=%d instances=%d rules=%d version=%s",
             stream, args.instance, args.instances, len(pol.enabled_rules), pol.version)
    try:
        loop(core, pub, sub, sub_sock, flags, ckpt)
    finally:
        if ckpt is not None:
            ckpt.save(core, clean=True, tracker=sub.tracker)
        pub.heartbeat({**core.stats(), **sub.counters.as_dict()})
        log.info("analyzer stopped | %s", " ".join(f"{k}={v}" for k, v in
                                                   {**core.stats(), **sub.counters.as_dict()}.items()))
        sub_sock.close(0)
        pub_sock.close(1000)
        ctx.term()
    return 0


def loop(core: Analyzer, pub: Publisher, sub: Subscriber, sub_sock: zmq.Socket, flags: Flags,
         ckpt: "Checkpointer | None") -> None:
    poller = zmq.Poller()
    poller.register(sub_sock, zmq.POLLIN)
    next_ckpt = next_tick = time.monotonic()
    while not flags.stop:
        if poller.poll(POLL_TIMEOUT_MS):
            for env in sub.receive():
                out = core.handle(env, time.time_ns())
                if not forward_unchanged(pub, env, out):
                    publish(pub, out)
        pub.flush()
        now = time.monotonic()
        if flags.reload:
            flags.reload = False
            core.reload()
        if pub.heartbeat_due(now):
            sub.check_liveness()
            pub.heartbeat({**core.stats(), **sub.counters.as_dict(),
                           "unpublishable": sum(UNPUBLISHABLE.values())}, now)
        if now >= next_tick:
            publish(pub, core.tick(time.time_ns()))
            next_tick = now + TICK_INTERVAL_S
        if ckpt is not None:                  # spread over passes: no stall behind it
            if now >= next_ckpt:
                ckpt.begin(core, sub.tracker)
                next_ckpt = now + CHECKPOINT_INTERVAL_S
            ckpt.step(core)


def forward_unchanged(pub: Publisher, env: Envelope, out: list[tuple[str, dict]]) -> bool:
    """Forward a sessionizer batch as the bytes it arrived in, when the output is exactly that
    batch passed through (every event owned and well formed, no decision in between).

    Packing every event map again would cost about as much per-event CPU as the per-event publish
    calls (docs/performance.md, section 7); most batches qualify. Anything else (a decision, another
    instance's sessions, a malformed event) goes through :func:`publish` map by map, which keeps
    each decision right after its triggering event.
    """
    events = env.events
    if env.topic != T.SESSIONIZER_EVENT or env.body is None or not events or len(out) != len(events):
        return False
    for (_, m), ev in zip(out, events):
        if m is not ev:
            return False
    raw = raw_events(env.body)
    if raw is None:
        return False
    pub.publish_raw(T.ANALYZER_EVENT, raw, len(events))
    return True


def publish(pub: Publisher, out: list[tuple[str, dict]]) -> None:
    """Events are batched; decisions, lifecycle and control go out at once, after what precedes them.

    Passed-through events were decoded from msgpack, so they always pack again; maps this stage
    builds are checked first, because a map that cannot be packed would otherwise stay queued and
    fail every later flush.
    """
    for topic, m in out:
        if topic == T.ANALYZER_EVENT:
            pub.publish(topic, m)
            continue
        try:
            msgpack.packb(m, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            UNPUBLISHABLE[topic] = UNPUBLISHABLE.get(topic, 0) + 1
            log.error("dropped a message that cannot be packed | topic=%s reason=%s", topic, exc)
            continue
        pub.publish_now(topic, [m])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
