"""The jsonl sink's cost per event, end to end but for the socket (``python -m bench.profile sinks``).

The input is what the analyzer core publishes for the synthetic recording, with the fields a
schema-2 collector and sessionizer add filled in the way they arrive from the real stages (the
recording predates them, and their text is what the sink spends its time on): every exec gets
``stdio``, ``parent_stdio``, ``euid``, ``prev_euid``, ``prev_cap_eff``, ``ino``/``dev``;
write-intent opens get ``ino``/``dev``; one open in eight a relative ``path`` with its
``abspath``; the events of the root's own image get ``role: agent``. The maps are packed into bus
envelopes of up to 64 (as bus.Publisher batches them), decoded by a bus.Subscriber and handed to
a JsonlSink writing to files in a temporary directory, so the time is decode + records + write.

It reports CPU microseconds per analyzer.event, for the events.log line builder as built and for
the general record path (``encode_line(event_record(...))``) in its place, and the top functions.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bus.envelope import Envelope, pack
from bus.subscriber import Subscriber
from bus.topics import ANALYZER_EVENT

__all__ = ["profile_sinks", "schema2", "frames_of", "sink_cpu_us", "compare"]

Out = list[tuple[str, dict[str, Any]]]
WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000
REPEATS = 5


def schema2(messages: Out) -> Out:
    """The recording's analyzer output with the schema-2 fields of real traffic (module doc)."""
    out: Out = []
    for i, (topic, m) in enumerate(messages):
        if topic == ANALYZER_EVENT:
            m = dict(m)
            kind = m.get("kind")
            if kind == "exec":
                m.update(stdio=[{"type": "pipe", "ino": 1000 + i}, {"type": "pipe", "ino": 2000 + i},
                                {"type": "char"}],
                         parent_stdio=["pipe", "pipe", "char"], euid=m.get("uid", 0),
                         prev_euid=m.get("uid", 0), prev_cap_eff=0, ino=4_000_000 + i % 50, dev=2049)
            elif kind == "open":
                if m.get("flags", 0) & WRITE_FLAGS:
                    m.update(ino=5_000_000 + i, dev=2049)
                if i % 8 == 0 and isinstance(m.get("path"), str):
                    m["abspath"], m["path"] = m["path"], m["path"].rsplit("/", 1)[-1]
            if m.get("depth") == 0:
                m["role"] = "agent"
        out.append((topic, m))
    return out


def frames_of(messages: Out, stream: str = "analyzer-0") -> list[list[bytes]]:
    """Consecutive maps of one topic packed into envelopes of up to 64, with per-topic seqs."""
    frames: list[list[bytes]] = []
    seqs: dict[str, int] = {}
    batch: list[dict[str, Any]] = []
    topic = ""

    def flush() -> None:
        if batch:
            seqs[topic] = seqs.get(topic, 0) + 1
            frames.append(pack(Envelope(topic, stream, 1, seqs[topic], time.time_ns(), list(batch))))
            batch.clear()
    for t, m in messages:
        if t != topic or len(batch) == 64:
            flush()
            topic = t
        batch.append(m)
    flush()
    return frames


def _run(frames: list[list[bytes]], log_dir: Path) -> float:
    """CPU seconds to decode and write ``frames`` with a fresh JsonlSink."""
    from sinks.jsonl import JsonlSink, LogPaths
    sink = JsonlSink.from_paths(LogPaths.from_env({"CASA_LOG_DIR": str(log_dir)}))
    sub = Subscriber(None, ["analyzer."])    # type: ignore[arg-type]  # frames are handed in
    t = time.process_time()
    for f in frames:
        env = sub.handle_frames(f)
        if env is not None:
            sink.handle(env)
    sink.close()
    return time.process_time() - t


def sink_cpu_us(frames: list[list[bytes]], events: int) -> float:
    """CPU microseconds per analyzer.event of one decode-and-write pass."""
    d = Path(tempfile.mkdtemp(prefix="casa-bench-sinks-"))
    try:
        return _run(frames, d) * 1e6 / max(events, 1)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def compare(frames: list[list[bytes]], events: int) -> tuple[float, float]:
    """(as built, general path): the best of REPEATS passes each, interleaved so that a neighbour
    loading the shared machine for a while weighs on both alike."""
    from sinks import records
    line_as_built = records.event_line
    built, general = [], []
    try:
        for _ in range(REPEATS):
            records.event_line = line_as_built       # type: ignore[assignment]
            built.append(sink_cpu_us(frames, events))
            records.event_line = _general_line       # type: ignore[assignment]
            general.append(sink_cpu_us(frames, events))
    finally:
        records.event_line = line_as_built           # type: ignore[assignment]
    return min(built), min(general)


def _general_line(event: Any) -> bytes | None:
    from sinks import records
    record = records.event_record(event)
    return None if record is None else records.encode_line(record)


def profile_sinks(messages: Out, top: int) -> int:
    messages = schema2(messages)
    frames = frames_of(messages)
    events = sum(1 for t, _ in messages if t == ANALYZER_EVENT)
    built, general = compare(frames, events)
    print(f"sinks jsonl: {len(messages)} messages, {events} events, {len(frames)} envelopes")
    print(f"  as built:      {built:.2f} us CPU per event (decode + records + write)")
    print(f"  general path:  {general:.2f} us CPU per event "
          f"(events.log lines from encode_line(event_record(...)))")
    print(f"  the line builder as built saves {100 * (general - built) / general:.1f} % of the sink's cost")
    prof = cProfile.Profile()
    d = Path(tempfile.mkdtemp(prefix="casa-bench-sinks-"))
    try:
        prof.enable()
        _run(frames, d)
        prof.disable()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    stats = pstats.Stats(prof, stream=io.StringIO())
    stats.sort_stats("tottime").print_stats(top)
    print(stats.stream.getvalue())  # type: ignore[attr-defined]
    return 0
