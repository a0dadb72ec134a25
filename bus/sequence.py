"""Exact loss accounting from per-(stream, topic) sequence numbers and heartbeats.

A publisher numbers the messages of each topic 1, 2, 3, ... within one ``epoch`` (its start time).
A subscriber that sees seq jump from 7 to 10 has lost 2 messages; a heartbeat announcing
``last_seq[topic] = 12`` when the last message seen was 10 means 2 more were lost at the tail
(ordering is preserved per connection, so nothing sent before the heartbeat is still in flight).
A new epoch means the publisher restarted: counting starts again, and the restart is counted.
The first message of a stream is never a gap (a late joiner cannot know what it missed before).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["StreamState", "SequenceTracker", "parse_positions"]


@dataclass(slots=True)
class StreamState:
    epoch: int
    last_seq: int
    lost: int = 0


@dataclass(slots=True)
class SequenceTracker:
    """Counts lost messages per (stream, topic). Pure: feed it what arrives."""

    streams: dict[tuple[str, str], StreamState] = field(default_factory=dict)
    restarts: int = 0
    lost_total: int = 0

    def observe(self, stream: str, topic: str, epoch: int, seq: int) -> int:
        """Record a data message; return how many messages were lost just before it."""
        key = (stream, topic)
        st = self.streams.get(key)
        if st is None:
            self.streams[key] = StreamState(epoch=epoch, last_seq=seq)
            return 0
        if epoch != st.epoch:
            if epoch > st.epoch:          # publisher restarted: a new numbering begins
                self.restarts += 1
                st.epoch, st.last_seq = epoch, seq
            return 0
        gap = seq - st.last_seq - 1 if seq > st.last_seq else 0
        st.last_seq = max(st.last_seq, seq)
        if gap:
            st.lost += gap
            self.lost_total += gap
        return gap

    def observe_heartbeat(self, stream: str, epoch: int, last_seq: dict[str, int],
                          topics: set[str] | None = None) -> int:
        """Compare a heartbeat's ``last_seq`` with what arrived; return newly detected tail loss.

        ``topics`` limits the check to the topics this subscriber reads (None: all).
        """
        lost = 0
        for topic, announced in last_seq.items():
            if topics is not None and not any(topic.startswith(t) for t in topics):
                continue
            key = (stream, topic)
            st = self.streams.get(key)
            if st is None or st.epoch != epoch:
                if st is not None and epoch > st.epoch:
                    self.restarts += 1
                # Joined (or rejoined) mid-stream: start counting from the announced position.
                self.streams[key] = StreamState(epoch=epoch, last_seq=announced)
                continue
            if announced > st.last_seq:
                gap = announced - st.last_seq
                st.lost += gap
                st.last_seq = announced
                lost += gap
        self.lost_total += lost
        return lost

    def positions(self) -> list[dict[str, int | str]]:
        """The last position read of every (stream, topic), for a stage's restart checkpoint."""
        return [{"stream": s, "topic": t, "epoch": st.epoch, "seq": st.last_seq}
                for (s, t), st in self.streams.items()]

    def restore_positions(self, items: list[dict[str, int | str]]) -> int:
        """Resume counting from checkpointed positions, so that the first message after a restart
        reveals what was published while the stage was down. Malformed items are skipped; returns
        how many positions were restored."""
        restored = 0
        for item in items:
            stream, topic, epoch, seq = (item.get(k) for k in ("stream", "topic", "epoch", "seq"))
            if isinstance(stream, str) and isinstance(topic, str) and isinstance(epoch, int) \
                    and isinstance(seq, int) and not isinstance(seq, bool):
                self.streams[(stream, topic)] = StreamState(epoch=epoch, last_seq=seq)
                restored += 1
        return restored


def parse_positions(entries: object) -> dict[tuple[str, str], StreamState]:
    """Parse checkpointed positions all-or-nothing: raise ValueError on any damaged entry, so a
    damaged checkpoint changes nothing. Feed the result to ``SequenceTracker.streams.update``."""
    if not isinstance(entries, list):
        raise ValueError("positions must be a list")
    out: dict[tuple[str, str], StreamState] = {}
    for p in entries:
        if not isinstance(p, dict):
            raise ValueError("a position must be a map")
        stream, topic, epoch, seq = (p.get(k) for k in ("stream", "topic", "epoch", "seq"))
        if not (isinstance(stream, str) and isinstance(topic, str)):
            raise ValueError("stream and topic must be text")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in (epoch, seq)):
            raise ValueError(f"bad position {epoch!r}/{seq!r}")
        out[(stream, topic)] = StreamState(epoch=epoch, last_seq=seq)
    return out
