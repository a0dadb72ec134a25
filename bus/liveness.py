"""Stream liveness from heartbeats (the ZeroMQ guide's Paranoid Pirate pattern, docs/bus.md §8.2).

Every publisher heartbeats every ``interval_s`` (its heartbeats carry it). A subscriber that has
heard a stream and then reads no heartbeat of it for :data:`HEARTBEAT_LIVENESS` intervals
reports that stream **dead**; its next heartbeat makes it **alive** again. Nothing is killed:
liveness is a report (a log line, a counter, a state in the subscriber's own heartbeat).

Pure and clock-free: the caller passes monotonic seconds, so a unit test drives it with a fake
clock. A heartbeat is the only proof of life (data messages are not looked at, so the per-message
path costs nothing), and the check runs on the caller's heartbeat cadence, not per message.

A subscriber that is itself behind (input still queued when it checks) cannot tell a silent
stream from one whose heartbeat waits in its own queue. It then declares a stream dead only on
evidence from the bus's own clock: a heartbeat of another stream it has read was sent more than
the silent stream's timeout after the silent stream's last one. A stage that was paused (SIGSTOP,
a long GC) therefore does not call its upstreams dead when it resumes to a full queue.

Silence the subscriber did not witness is not evidence either: when its own checks stopped for
longer than a stream's timeout (it was paused or starved of CPU, and its bus I/O with it), the
next check judges by the bus clock only, as if input were pending; one interval later, with
what was queued read, it judges by its own clock again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HEARTBEAT_LIVENESS", "DEFAULT_INTERVAL_S", "StreamLiveness", "LivenessTracker"]

HEARTBEAT_LIVENESS = 3          # missed heartbeat intervals before a stream is reported dead
DEFAULT_INTERVAL_S = 1.0        # bus.publisher.HEARTBEAT_INTERVAL_S: for a stream not heard yet
MAX_INTERVAL_S = 60.0           # a heartbeat claiming a longer interval (or none that is a number)
                                # must not make its stream undying


@dataclass(slots=True)
class StreamLiveness:
    """What a subscriber knows of one stream's heartbeats."""

    interval_s: float           # the stream's heartbeat interval (from its last heartbeat)
    last_heard_s: float         # monotonic time the last heartbeat was read (or watching began)
    last_sent_ns: int = 0       # that heartbeat's sent_ns (0: none heard yet)
    dead: bool = False
    dead_since_s: float = 0.0

    def timeout_s(self, liveness: int) -> float:
        return liveness * self.interval_s

    def silent_s(self, now_s: float) -> float:
        return max(0.0, now_s - self.last_heard_s)


@dataclass(slots=True)
class LivenessTracker:
    """Per-stream liveness. ``beat`` on every heartbeat read; ``check`` once per interval."""

    liveness: int = HEARTBEAT_LIVENESS
    streams: dict[str, StreamLiveness] = field(default_factory=dict)
    deaths: int = 0             # times a stream was declared dead
    newest_sent_ns: int = 0     # the latest sent_ns of any heartbeat read: the bus's clock

    def expect(self, stream: str, now_s: float, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        """Watch ``stream`` from ``now_s`` although it has not been heard (``casa status``: a
        stage that is up must heartbeat). Stages do not call it: a late start is not a death."""
        if stream not in self.streams:
            self.streams[stream] = StreamLiveness(interval_s=interval_s, last_heard_s=now_s)

    def beat(self, stream: str, interval_s: float | None, sent_ns: int, now_s: float) -> float | None:
        """A heartbeat of ``stream`` was read. Returns how long the stream had been silent when
        this heartbeat brings it back from dead (the caller logs that once), else None."""
        interval = _interval(interval_s)
        st = self.streams.get(stream)
        if st is None:
            self.streams[stream] = StreamLiveness(interval_s=interval, last_heard_s=now_s, last_sent_ns=sent_ns)
            revived = None
        else:
            revived = st.silent_s(now_s) if st.dead else None
            st.interval_s, st.last_heard_s, st.last_sent_ns, st.dead = interval, now_s, sent_ns, False
        self.newest_sent_ns = max(self.newest_sent_ns, sent_ns)
        return revived

    def check(self, now_s: float, input_pending: bool = False, unwatched_s: float = 0.0) -> list[str]:
        """Declare dead every stream silent for ``liveness`` intervals; return the newly dead.

        ``input_pending``: the subscriber has unread input, so a heartbeat may be waiting in its
        queue; a stream is then dead only if the bus clock proves it (see the module docstring).
        ``unwatched_s``: how long the caller was not reading its input before this check (a stage:
        the time since its previous check); longer than a stream's timeout counts as pending input.
        """
        newly = []
        for name, st in self.streams.items():
            timeout = st.timeout_s(self.liveness)
            if st.dead or st.silent_s(now_s) < timeout:
                continue
            if (input_pending or unwatched_s > timeout) \
                    and (self.newest_sent_ns - st.last_sent_ns) < timeout * 1e9:
                continue
            st.dead, st.dead_since_s = True, now_s
            self.deaths += 1
            newly.append(name)
        return newly

    def dead(self) -> list[str]:
        """The streams dead now, sorted."""
        return sorted(name for name, st in self.streams.items() if st.dead)

    def heard(self, stream: str) -> bool:
        """A heartbeat of ``stream`` was read (not only expected)."""
        st = self.streams.get(stream)
        return st is not None and st.last_sent_ns > 0


def _interval(claimed: object) -> float:
    """The heartbeat's ``interval_s`` if it is a sane number of seconds, else the default."""
    if isinstance(claimed, bool) or not isinstance(claimed, (int, float)) or not claimed > 0:
        return DEFAULT_INTERVAL_S
    return min(float(claimed), MAX_INTERVAL_S)
