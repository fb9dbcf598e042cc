"""The OpenTelemetry SDK in the tests' own process: :func:`recording` records the spans that
end while it is active, with a tracer provider it sets and then removes again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once


@contextmanager
def recording() -> Iterator[InMemorySpanExporter]:
    """An SDK tracer provider, the global one while the block runs, that keeps every span
    that ends in the returned exporter (``get_finished_spans()``)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        # The API lets a process set its provider once; this is how OpenTelemetry's own test
        # utilities (opentelemetry-test-utils) take it back, so that other tests run without.
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None


def traceparent(context: trace.SpanContext) -> str:
    """The W3C traceparent that carries ``context``."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
