"""casa sessionizer: group the collector's raw events into agent sessions.

Reads ``collector.event`` / ``collector.control`` from ipc://$CASA_BUS_DIR/collector.sock and
publishes ``sessionizer.event`` (accepted events with session_id, profile, depth, lineage),
``sessionizer.session`` (opened / flushed / closed / shutdown) and ``sessionizer.control`` on
ipc://$CASA_BUS_DIR/sessionizer.sock. Runs as the unprivileged ``casa`` user.

Signals: SIGHUP reloads rules.json and config/casa.json locally (validate, then swap; on error
the old settings stay and the reason is logged); the in-band ``collector.control`` reload does
the same and is forwarded on ``sessionizer.control``. SIGTERM/SIGINT publish ``shutdown`` for
every open session, write a checkpoint, send a final heartbeat and exit 0.

Caveats: session timers run on event time; the state directory must be writable by this user
for restart recovery and restart-proof session ids (otherwise ids derive from the clock). Live,
sessions whose leader vanished from /proc without an exit event are closed (liveness check);
for a replay of a recording whose processes are gone, turn that off with ``--no-liveness``.

This module is the wiring: the core (sessionizer/core.py) on the stage runtime (stage/), which
owns the loop, the signals, the heartbeat and checkpoint cadence and the stopped line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

import zmq

from bus import BusError, Envelope, Publisher, Subscriber, bind_publisher, bus_dir, connect_subscriber
from stage import Flags, options
from stage.runtime import Hooks, Runtime, SubscriberSource
from bus.topics import (COLLECTOR_CONTROL, COLLECTOR_EVENT, SESSIONIZER_CONTROL, SESSIONIZER_EVENT,
                        SESSIONIZER_SESSION)
from policy import rules_path
from sessionizer.checkpoint import TREE_IDS, StateStore, input_positions
from sessionizer.connect_filter import ConfiguredEndpoints
from sessionizer.core import FLUSH_INTERVAL_S, Out, Sessionizer
from sessionizer.roots_file import FILE_NAME as ROOTS_FILE, RootsFile, roots_snapshot
from sessionizer.sessions import SessionIds
from sessionizer.settings import Settings, SettingsError, load_settings

STAGE = "sessionizer"
POLL_TIMEOUT_MS = 5
CHECKPOINT_INTERVAL_S = 5.0
# A root or session appearing triggers a checkpoint at once, but at most this often: each one
# serialises every open session and tracked process (about 3-6 ms with the bench's ~500 sessions
# open or in grace), and with a new session every ~6 ms under load the stage spent more time
# writing checkpoints than handling events (11.2 -> 5.8 us of CPU per event, one message per pass).
STRUCTURE_CHECKPOINT_MIN_S = 0.2
LIVENESS_INTERVAL_S = 2.0
DEAD_SWEEP_INTERVAL_S = 30.0
DATA_TOPICS = (COLLECTOR_EVENT, COLLECTOR_CONTROL)
LIVENESS_ENV = "CASA_SESSIONIZER_LIVENESS"
LIVENESS_VALUES = {"1": True, "true": True, "yes": True, "on": True,
                   "0": False, "false": False, "no": False, "off": False}

EXAMPLES = """examples:
  python -m sessionizer                          # defaults from the environment
  python -m sessionizer --flush-interval-s 5     # flushed lifecycle every 5 s
  CASA_BUS_DIR=/tmp/bus python -m sessionizer --state-dir /tmp/state
  python -m sessionizer --no-liveness            # for casa replay: no /proc checks
"""

log = logging.getLogger("casa.sessionizer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = options.parser("python -m sessionizer", __doc__, EXAMPLES)
    options.add(p, "rules", "config", "bus-dir", "state-dir", "log-level",
                state_dir="checkpoint and id reservations (default $CASA_STATE_DIR or /var/lib/casa)")
    p.add_argument("--flush-interval-s", type=float,
                   default=float(os.environ.get("CASA_FLUSH_INTERVAL_S", FLUSH_INTERVAL_S)),
                   help="periodic 'flushed' lifecycle interval ($CASA_FLUSH_INTERVAL_S, default 30)")
    p.add_argument("--checkpoint-interval-s", type=float, default=CHECKPOINT_INTERVAL_S,
                   help=f"seconds between periodic checkpoints (default {CHECKPOINT_INTERVAL_S:g}; "
                        "also soon after a new root or session)")
    p.add_argument("--no-liveness", dest="liveness", action="store_false", default=None,
                   help="never look in /proc for session leaders and tracked processes; sessions "
                        "close only on exit events, grace and idle timers (replays; "
                        f"${LIVENESS_ENV}=0)")
    args = options.resolve(p.parse_args(argv))
    args.rules = args.rules or rules_path()
    args.config = args.config or os.environ.get("CASA_CONFIG_PATH")
    if args.flush_interval_s <= 0:
        p.error("--flush-interval-s must be > 0")
    if args.liveness is None:
        raw = os.environ.get(LIVENESS_ENV, "1").strip().lower()
        if raw not in LIVENESS_VALUES:
            p.error(f"{LIVENESS_ENV}={raw!r}: expected 1 or 0")
        args.liveness = LIVENESS_VALUES[raw]
    return args


class SessionizerHooks(Hooks):
    """The core on the runtime: sockets, restore, reloads, liveness checks, checkpoints."""

    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.store = StateStore(args.state_dir)
        doc = self.store.load()
        ids = SessionIds(self.store.first_id(), reserve=self.store.reserve)
        tree_ids = SessionIds(self.store.first_id(TREE_IDS), reserve=self.store.reserve_trees)
        self.endpoints = ConfiguredEndpoints()
        self._configure_endpoints(settings)
        self.core = Sessionizer(settings, self.endpoints, ids, args.flush_interval_s,
                                tree_ids=tree_ids)
        self.ctx = zmq.Context()
        self.pub = Publisher(bind_publisher(self.ctx, STAGE, args.bus_dir), STAGE)
        topics = Subscriber.subscriptions(list(DATA_TOPICS))
        self.sub = Subscriber(connect_subscriber(self.ctx, ["collector"], topics, args.bus_dir), topics,
                              on_loss=self._on_bus_loss)
        self.source = SubscriberSource(self.sub, self.handle)
        self.restarts = 0                # collector restarts seen by the subscriber, handled
        directory = args.bus_dir or bus_dir()
        self.roots_file = RootsFile(directory / ROOTS_FILE)     # for `casa status` (roots_file.py)
        self.reloads = {"reloads_applied": 0, "reloads_rejected": 0, "last_reload_id": 0,
                        "unknown_control": 0}
        mono = time.monotonic()
        self.next_liveness, self.next_sweep = mono, mono + DEAD_SWEEP_INTERVAL_S
        self._restore(doc.get("checkpoint"))

    # -------------------------------------------------------------- setup

    def _configure_endpoints(self, settings: Settings) -> None:
        self.endpoints.configure(settings.llm_provider_urls + settings.channel_urls,
                                 settings.known_cidrs, settings.refresh_s)

    def _restore(self, checkpoint: Any) -> None:
        if not isinstance(checkpoint, dict) or not self.store.writable:
            return
        clean = checkpoint.get("clean") is True
        try:
            positions = input_positions(checkpoint)        # parsed first: a bad one changes nothing
            n = self.core.restore(checkpoint, time.time_ns(), self._alive, clean=clean)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("checkpoint unusable; starting empty | reason=%s", exc)
            return
        # Resume loss accounting where we stopped: the first message after the restart reveals
        # exactly how many collector messages were missed.
        restored = self.sub.tracker.restore_positions(positions)
        log.info("restored from checkpoint | sessions=%d processes=%d clean=%s positions=%d", n,
                 len(self.core.tracker), clean, restored)

    def _alive(self, tgid: int) -> bool:
        """/proc existence, or always True with liveness off (a replay's processes are gone)."""
        return _alive(tgid) if self.args.liveness else True

    def _on_bus_loss(self, stream: str, topic: str, lost: int) -> None:
        if stream == "collector":
            self.emit(self.core.loss(lost, "bus", time.time_ns()))

    # -------------------------------------------------------------- per message

    def handle(self, env: Envelope) -> None:
        """One message, as it is decoded: a gap reported for it has marked the sessions open at
        that point of the stream, not the ones opened later in the same poll."""
        if self.sub.tracker.restarts != self.restarts:
            self.restarts = self.sub.tracker.restarts
            self._on_collector_restart()
        if env.topic == COLLECTOR_EVENT:
            handle, publish, clock = self.core.handle, self.pub.publish, time.time_ns
            for event in env.events:
                out = handle(event, clock())
                if len(out) == 1 and out[0][0] == SESSIONIZER_EVENT:   # most events: one
                    publish(SESSIONIZER_EVENT, out[0][1])             # accepted event, as emit()
                else:                                                  # would queue it
                    self.emit(out)
        elif env.topic == COLLECTOR_CONTROL:
            for msg in env.events:
                self._control(msg)
        # heartbeats: accounted by handle_frames; input positions live in self.sub.tracker

    def _on_collector_restart(self) -> None:
        """A new collector epoch: whatever happened while it was down was never seen."""
        n = len(self.core.sessions)
        self.emit(self.core.loss(0, "collector_restart", time.time_ns()))
        self.core.counters["collector_restarts"] += 1
        log.warning("collector restarted; open sessions marked incomplete | sessions=%d", n)

    def _control(self, msg: dict[str, Any]) -> None:
        if msg.get("kind") == "control" and msg.get("command") == "reload":
            log.info("reload requested in band | id=%s", msg.get("id"))
            self.reload()
            if isinstance(msg.get("id"), int):
                self.reloads["last_reload_id"] = msg["id"]
        else:
            self.reloads["unknown_control"] += 1
            log.warning("unknown control message forwarded unchanged | command=%r", msg.get("command"))
        self.pub.publish_now(SESSIONIZER_CONTROL, [msg])

    def emit(self, outputs: list[Out]) -> None:
        """Publish in order; a lifecycle message goes out at once, after the events queued before it."""
        for topic, msg in outputs:
            if topic == SESSIONIZER_SESSION:
                self.pub.publish_now(topic, [msg])
            else:
                self.pub.publish(topic, msg)

    # -------------------------------------------------------------- per pass (stage.runtime.Hooks)

    def each_pass(self, read: int) -> None:
        self.emit(self.core.tick(time.time_ns()))
        if not self.args.liveness:
            return
        mono = time.monotonic()
        if mono >= self.next_liveness:
            self.next_liveness = mono + LIVENESS_INTERVAL_S
            self._check_leaders()
        if mono >= self.next_sweep:               # exits lost to loss would leak entries
            self.next_sweep = mono + DEAD_SWEEP_INTERVAL_S
            self.core.forget_dead(_alive)

    def reload(self) -> bool:
        """Validate the files, then swap; on error keep the old settings and say why."""
        try:
            settings = load_settings(self.args.rules, self.args.config)
        except SettingsError as exc:
            self.reloads["reloads_rejected"] += 1
            log.error("reload failed; keeping the previous settings | reason=%s version_kept=%s",
                      exc, self.core.settings.rules_version)
            return False
        self.reloads["reloads_applied"] += 1
        self.core.reconfigure(settings)
        self._configure_endpoints(settings)
        log.info("settings reloaded | rules=%s version=%s profiles=%d", self.args.rules,
                 settings.rules_version, len(settings.profiles))
        return True

    def _check_leaders(self) -> None:
        """Sessions whose leader's exit was lost (loss, restart) would never close otherwise."""
        for s in self.core.sessions:
            if s.origin.value == "invocation" and s.state.value == "open" and not _alive(s.leader_tgid):
                log.warning("session leader gone without an exit event | session_id=%d tgid=%d",
                            s.session_id, s.leader_tgid)
                self.core.leader_gone(s.leader_tgid, time.time_ns())

    def checkpoint_wanted(self) -> bool:
        """Soon after a root or session appeared, so a crash right after cannot orphan a tree."""
        return self.core.structure_changed

    def checkpoint(self, clean: bool) -> None:
        """Save tracker, sessions and the input position (after the pass's flush, so it reflects
        what was sent); ``clean`` only at the stop, after the shutdown lifecycle was published."""
        self.core.structure_changed = False
        if not self.store.writable:
            return
        state = self.core.checkpoint_state()
        state["bus"] = self.sub.tracker.positions()     # what was read, loss already counted
        state["clean"] = clean
        self.store.checkpoint(state)

    def on_heartbeat(self) -> None:
        self.roots_file.update(roots_snapshot(self.core.tracker, self.core.sessions), time.time_ns())

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.core.stats())
        out.update({f"bus_{k}": v for k, v in self.sub.counters.as_dict().items()})
        out["dns_resolve_failures"] = self.endpoints.resolve_failures
        out.update(self.reloads)
        out["rules_version"] = self.core.settings.rules_version
        return out

    def stopping(self) -> None:
        self.emit(self.core.shutdown(time.time_ns()))
        self.roots_file.remove()
        self.endpoints.stop()

    def runtime(self, flags: Flags) -> Runtime:
        self.endpoints.start()
        settings = self.core.settings
        return Runtime(STAGE, self, self.source, self.pub, self.ctx, poll_ms=POLL_TIMEOUT_MS,
                       running={"profiles": ",".join(p.name for p in settings.profiles),
                                "flush_interval_s": self.args.flush_interval_s, "state": self.store.path,
                                "liveness": "on" if self.args.liveness else "off",
                                "system_dirs": ",".join(sorted(settings.system_dirs))},
                       checkpoint_s=self.args.checkpoint_interval_s,
                       checkpoint_min_gap_s=STRUCTURE_CHECKPOINT_MIN_S, flags=flags)


def _alive(tgid: int) -> bool:
    """Does the process still exist? (/proc is readable by any user for existence.)"""
    return tgid > 0 and os.path.exists(f"/proc/{tgid}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options.setup_logging(args.log_level)
    flags = Flags().install()
    try:
        settings = load_settings(args.rules, args.config)
    except SettingsError as exc:
        log.error("cannot start: configuration invalid | reason=%s", exc)
        return 1
    try:
        hooks = SessionizerHooks(args, settings)
    except BusError as exc:
        log.error("cannot start: bus unavailable | reason=%s", exc)
        return 1
    return hooks.runtime(flags).run()


if __name__ == "__main__":
    sys.exit(main())
