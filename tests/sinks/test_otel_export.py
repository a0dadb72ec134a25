"""Export never grows without bound: the retry buffer and the admission queue drop and count."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sinks.otel import BoundedProcessor, RetryingExporter


class Switchable(SpanExporter):
    """Fails until ``up`` is set; remembers what it accepted."""

    def __init__(self) -> None:
        self.up = False
        self.accepted: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.up:
            return SpanExportResult.FAILURE
        self.accepted.extend(s.name for s in spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def ended(n: int) -> list[ReadableSpan]:
    tracer = TracerProvider().get_tracer("t")
    out = []
    for i in range(n):
        span = tracer.start_span(f"s{i}", start_time=1)
        span.end(end_time=2)
        out.append(span)  # type: ignore[arg-type]
    return out


def test_retry_buffer_is_bounded_and_counts_what_it_drops() -> None:
    inner = Switchable()
    ex = RetryingExporter(inner, max_retry_spans=5, retry_interval_s=3600)
    spans = ended(12)
    for i in range(0, 12, 3):
        assert ex.export(spans[i:i + 3]) is SpanExportResult.FAILURE
    assert (ex.retry_backlog, ex.dropped, ex.exported) == (5, 7, 0)
    inner.up = True
    assert ex.export([]) is SpanExportResult.SUCCESS          # any export re-sends the kept spans
    assert inner.accepted == ["s7", "s8", "s9", "s10", "s11"] and ex.retry_backlog == 0
    assert (ex.exported, ex.received) == (5, 12)
    ex.shutdown()


def test_retry_thread_resends_without_new_spans() -> None:
    inner = Switchable()
    ex = RetryingExporter(inner, retry_interval_s=0.05)
    ex.export(ended(2))
    inner.up = True
    import time
    deadline = time.monotonic() + 5
    while ex.retry_backlog and time.monotonic() < deadline:
        time.sleep(0.02)
    assert inner.accepted == ["s0", "s1"]
    ex.shutdown()


def test_admission_queue_drops_instead_of_blocking() -> None:
    inner = Switchable()
    ex = RetryingExporter(inner, retry_interval_s=3600)
    proc = BoundedProcessor(ex, max_queue=4)
    proc.batch.shutdown()                                    # the export thread takes nothing now
    for span in ended(10):
        proc.on_end(span)
    assert (proc.submitted, proc.dropped) == (4, 6)
    ex.shutdown()
