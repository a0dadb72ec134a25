"""casa analyzer: derive context flags per session, score weighted CEL rules, publish decisions.

usage: python -m analyzer [--instance I] [--instances N] [--rules FILE] [--bus-dir DIR]
                          [--state-dir DIR] [--no-checkpoint] [--log-level LEVEL]

Subscribes to the sessionizer (sessionizer.event/.session/.control and its heartbeat), runs the
pure core (analyzer/core.py) and publishes analyzer.event/.decision/.session/.control plus
heartbeats on its own stream ``analyzer-I``. Instance I of N owns the messages with
``shard % N == I`` (``session_id % N`` when a message has no shard): every session of an agent
tree carries the tree's shard, so one instance holds the tree's history. Run N of them to spread
the load (sinks read every stream). This module is the wiring: the core on the stage runtime
(stage/), which owns the loop, the signals, the heartbeat and checkpoint cadence.

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
import sys
import time
from operator import is_, itemgetter

import zmq

import policy
from analyzer.checkpoint import Checkpointer
from analyzer.core import Analyzer
from bus import Publisher, Subscriber, bind_publisher, connect_subscriber
from bus import topics as T
from bus.envelope import Envelope
from bus.errors import BusError
from stage import Flags, options
from stage.runtime import Hooks, Runtime, SubscriberSource

POLL_TIMEOUT_MS = 100                 # also bounds how long a partial batch waits
CHECKPOINT_INTERVAL_S = 5.0
TICK_INTERVAL_S = 5.0
SUBSCRIBED = [T.SESSIONIZER_EVENT, T.SESSIONIZER_SESSION, T.SESSIONIZER_CONTROL]

log = logging.getLogger("casa.analyzer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options.parser("python -m analyzer", __doc__, __doc__[__doc__.index("examples:"):])
    p.add_argument("--instance", type=int, default=0, help="this instance's index I (default 0)")
    options.add(p, "instances", "rules", "bus-dir", "state-dir", "no-checkpoint", "log-level",
                no_checkpoint="neither restore nor save this instance's sessions")
    args = options.resolve(p.parse_args(argv))
    if args.instances is None:
        env = os.environ.get("CASA_ANALYZER_INSTANCES", "1")
        if not env.isdigit():
            p.error(f"CASA_ANALYZER_INSTANCES must be a positive integer, not {env!r}")
        args.instances = int(env)
    if args.instances < 1 or not 0 <= args.instance < args.instances:
        p.error(f"--instance must be in 0..{args.instances - 1} (got {args.instance})")
    args.rules = args.rules or policy.rules_path()
    return args


class AnalyzerHooks(Hooks):
    """The core on the runtime: each message through ``core.handle``, timers every
    ``TICK_INTERVAL_S``, the periodic checkpoint spread over passes."""

    def __init__(self, core: Analyzer, pub: Publisher, sub: Subscriber, ckpt: Checkpointer | None) -> None:
        self.core, self.pub, self.sub, self.ckpt = core, pub, sub, ckpt
        self.source = SubscriberSource(sub, self.handle)
        self.next_tick = time.monotonic()

    def handle(self, env: Envelope) -> None:
        out = self.core.handle(env, time.time_ns())
        raw = env.raw_events
        if raw is not None and env.topic == T.SESSIONIZER_EVENT and passes_through(out, env.events):
            self.pub.publish_raw(T.ANALYZER_EVENT, raw, len(out))
        else:
            publish(self.pub, out)

    def each_pass(self, read: int) -> None:
        now = time.monotonic()
        if now >= self.next_tick:
            publish(self.pub, self.core.tick(time.time_ns()))
            self.next_tick = now + TICK_INTERVAL_S
        if self.ckpt is not None:             # spread over passes: no stall behind it
            self.ckpt.step(self.core)

    def reload(self) -> None:
        self.core.reload()

    def counters(self) -> dict[str, object]:
        return {**self.core.stats(), **self.sub.counters.as_dict()}

    def checkpoint(self, clean: bool) -> None:
        if self.ckpt is None:
            return
        if clean:
            self.ckpt.save(self.core, clean=True, tracker=self.sub.tracker)
        elif self.ckpt.due(time.monotonic()):     # CPU-share cap (Checkpointer.due)
            self.ckpt.begin(self.core, self.sub.tracker)


def wire(args: argparse.Namespace, core: Analyzer, flags: Flags) -> Runtime:
    """Restore, sockets and hooks of instance ``args.instance``; BusError if the bus is unusable."""
    stream = f"analyzer-{args.instance}"
    ckpt = None if args.no_checkpoint else Checkpointer(args.state_dir / f"{stream}.json")
    if ckpt is not None:
        ckpt.restore(core, time.time_ns())
    ctx = zmq.Context()
    try:
        pub = Publisher(bind_publisher(ctx, stream, args.bus_dir), "analyzer", stream)
    except BusError:
        ctx.term()
        raise
    sub_sock = connect_subscriber(ctx, ["sessionizer"], Subscriber.subscriptions(SUBSCRIBED), args.bus_dir)
    sub = Subscriber(sub_sock, SUBSCRIBED, on_loss=lambda stream_, topic, n: core.mark_loss(n),
                     keep_raw=True)           # batches passed on unchanged are not packed again
    if ckpt is not None:
        ckpt.resume_positions(sub.tracker)    # the first message after a restart reveals the gap
    hooks = AnalyzerHooks(core, pub, sub, ckpt)
    pol = core.policy
    return Runtime("analyzer", hooks, hooks.source, pub, ctx, ident={"stream": stream},
                   running={"instance": args.instance, "instances": args.instances,
                            "rules": len(pol.enabled_rules), "version": pol.version},
                   poll_ms=POLL_TIMEOUT_MS, checkpoint_s=None if ckpt is None else CHECKPOINT_INTERVAL_S,
                   flags=flags)


def passes_through(out: list[tuple[str, dict]], events: list[dict]) -> bool:
    """Whether ``out`` is exactly ``events`` passed on, in order, and nothing else: every event
    owned and well-formed, no decision among them. Then the batch's bytes as received are what
    packing ``out`` would produce (the analyzer never changes an event it passes on), and the
    stage forwards them instead (Publisher.publish_raw)."""
    return len(out) == len(events) and all(map(is_, map(itemgetter(1), out), events)) \
        and all(map(T.ANALYZER_EVENT.__eq__, map(itemgetter(0), out)))


def publish(pub: Publisher, out: list[tuple[str, dict]]) -> None:
    """Events are batched; decisions, lifecycle and control go out at once, after what precedes
    them (``publish_now`` flushes first). A map that cannot be packed is the publisher's to drop
    and count (``unpublishable``)."""
    for topic, m in out:
        if topic == T.ANALYZER_EVENT:
            pub.publish(topic, m)
        else:
            pub.publish_now(topic, [m])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options.setup_logging(args.log_level)
    flags = Flags().install()
    try:
        core = Analyzer(policy.load_policy(args.rules), args.instance, args.instances,
                        reload_policy=lambda: policy.load_policy(args.rules))
    except policy.PolicyError as exc:
        log.error("cannot start: %s | rules=%s", exc, args.rules)
        return 1
    try:
        runtime = wire(args, core, flags)
    except BusError as exc:
        log.error("cannot start: %s | stream=analyzer-%d", exc, args.instance)
        return 1
    return runtime.run()


if __name__ == "__main__":
    sys.exit(main())
