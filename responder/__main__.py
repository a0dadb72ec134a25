"""CASA responder: carry out the response an ALERT decision asks for (opt-in, docs/operating.md).

usage: python -m responder [--instances N] [--bus-dir DIR] [--state-dir DIR] [--protect-pid PID]
                           [--log-level LEVEL]

Subscribes to ``analyzer.decision`` on every analyzer stream; for each ALERT that carries a
``response`` (the rules file chose one, policy/response.py) it selects the targets
(responder/targets.py), signals them through pidfds (responder/signals.py, responder/act.py)
and publishes what it did on ``responder.result`` (stream ``responder``), which sinks-jsonl writes
to alert.log and sinks-otel adds to the session's trace. Heartbeats every second. The core is
responder/core.py; this module is its wiring on the stage runtime (stage/).

Privilege: supervisord starts it through ``setpriv`` as the ``casa`` user with one capability,
CAP_KILL (supervisord.conf): it can signal any process, and nothing else root could do. Running
it as root works but is refused unless ``--allow-root`` is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import zmq

import bus
from bus import topics as T
from bus.envelope import Envelope
from responder.core import Responder
from responder.guard import SUPERVISORD_PID_FILE, casa_guard
from stage import Flags, options
from stage.runtime import Hooks, Runtime, SubscriberSource
from trust import strict_modes

STAGE = "responder"
# How root starts the responder (supervisord.conf spells the same): as casa, with CAP_KILL alone.
SETPRIV = ("/usr/bin/setpriv", "--reuid", "casa", "--regid", "casa", "--init-groups", "--no-new-privs",
           "--inh-caps=-all,+kill", "--ambient-caps=-all,+kill", "--bounding-set=-all,+kill")
RESULT_TOPIC = T.RESPONDER_RESULT
POLL_TIMEOUT_MS = 200

log = logging.getLogger("casa.responder")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options.parser("python -m responder", __doc__)
    options.add(p, "instances", "bus-dir", "state-dir", "log-level",
                state_dir="where frozen sessions are kept for casa thaw (default $CASA_STATE_DIR "
                          "or /var/lib/casa)")
    p.add_argument("--supervisord-pid-file", type=Path, default=SUPERVISORD_PID_FILE,
                   help=f"supervisord's pid file: it and everything below it is never signalled "
                        f"(default {SUPERVISORD_PID_FILE})")
    p.add_argument("--protect-pid", type=int, action="append", default=[],
                   help="a pid that, with everything below it, is never signalled (repeatable)")
    p.add_argument("--allow-root", action="store_true", help="run even as root (tests, benches)")
    return options.resolve(p.parse_args(argv))


class ResponderHooks(Hooks):
    """Each decision message through the core; its results published at once."""

    def __init__(self, core: Responder, sub: bus.Subscriber, pub: bus.Publisher) -> None:
        self.core, self.sub, self.pub = core, sub, pub
        self.source = SubscriberSource(sub, self.handle)

    def handle(self, env: Envelope) -> None:
        results = self.core.handle(env)
        if results:
            self.pub.publish_now(RESULT_TOPIC, results)

    def counters(self) -> dict[str, int]:
        return {**self.core.counters, **self.sub.counters.as_dict()}


def wire(args: argparse.Namespace, flags: Flags) -> Runtime:
    guard = casa_guard(args.supervisord_pid_file, tuple(args.protect_pid))
    core = Responder(guard, args.state_dir)
    ctx = zmq.Context()
    topics = bus.Subscriber.subscriptions([T.ANALYZER_DECISION])
    sub = bus.Subscriber(bus.connect_subscriber(ctx, bus.analyzer_streams(args.instances), topics,
                                                args.bus_dir), topics)
    pub = bus.Publisher(bus.bind_publisher(ctx, STAGE, args.bus_dir), STAGE)
    hooks = ResponderHooks(core, sub, pub)
    return Runtime(STAGE, hooks, hooks.source, pub, ctx, poll_ms=POLL_TIMEOUT_MS, linger_ms=500,
                   running={"uid": os.getuid(), "protected_pids": sorted(guard.protected_pids)},
                   flags=flags)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options.setup_logging(args.log_level)
    if os.geteuid() == 0 and not args.allow_root:
        log.error("refusing to run as root | why=least privilege: run as casa with CAP_KILL "
                  "(supervisord.conf uses setpriv); --allow-root overrides")
        return 2
    refused = strict_modes_refusal()
    if refused:
        log.error("refusing to run with CAP_KILL | %s", refused)
        return 1
    flags = Flags().install()
    try:
        runtime = wire(args, flags)
    except bus.BusError as exc:
        log.error("cannot start: bus unavailable | reason=%s", exc)
        return 1
    return runtime.run()


def strict_modes_refusal() -> str | None:
    """With any capability (CAP_KILL under supervisord), the code that holds it must be root's
    alone, as the collector's is (trust/strict_modes.py): otherwise the casa user could edit the
    responder and signal anything. None when there is no capability or nothing is wrong."""
    status = Path("/proc/self/status").read_text()
    cap_eff = next((int(line.split()[1], 16) for line in status.splitlines()
                    if line.startswith("CapEff:")), 0)
    if not cap_eff:
        return None
    findings = strict_modes.check(strict_modes.code_paths(), [])
    if not findings:
        return None
    f = findings[0]
    return (f"{f.unsafe.sentence(f.what)}; fix: chown root {f.unsafe.path} and chmod go-w "
            f"{f.unsafe.path}" + (f" ({len(findings) - 1} more)" if len(findings) > 1 else ""))


if __name__ == "__main__":
    sys.exit(main())
