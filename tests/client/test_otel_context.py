"""Whether a trace is current, as the client's spans find it without a tracer provider: from
the ContextVar of opentelemetry-api's default runtime context, or through the API when another
runtime context keeps the current context elsewhere (client/_otel.py)."""

from __future__ import annotations

import contextvars

import opentelemetry.context as otel_context
import pytest
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.context.context import _RuntimeContext
from opentelemetry.trace import NonRecordingSpan, SpanContext

from muxwsgi.client._models import parse_url
from muxwsgi.client._otel import ClientSpans

REMOTE = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True)


class _ElsewhereContext(_RuntimeContext):
    """A runtime context that keeps the current context in a ContextVar of its own, as one
    that ``OTEL_PYTHON_CONTEXT`` names might."""

    def __init__(self) -> None:
        self._var: contextvars.ContextVar[Context] = contextvars.ContextVar("elsewhere")

    def attach(self, context: Context) -> contextvars.Token[Context]:
        return self._var.set(context)

    def get_current(self) -> Context:
        return self._var.get(Context())

    def detach(self, token: contextvars.Token[Context]) -> None:
        self._var.reset(token)


def _spans() -> ClientSpans:
    endpoint, _ = parse_url("mux://127.0.0.1:9")
    return ClientSpans([endpoint])


def _check_only_a_current_trace_makes_a_span(spans: ClientSpans) -> None:
    assert spans.start("GET", "/", 0) is None  # nothing current
    with trace.use_span(NonRecordingSpan(REMOTE)):
        attempt = spans.start("GET", "/", 0)
        assert attempt is not None
        assert attempt.span.get_span_context().trace_id == REMOTE.trace_id
    token = otel_context.attach(baggage.set_baggage("tenant", "blue"))
    try:
        assert spans.start("GET", "/", 0) is None  # a context, but no span in it
    finally:
        otel_context.detach(token)


def test_the_default_runtime_context_is_read_from_its_context_var() -> None:
    spans = _spans()
    assert spans._context is not None
    _check_only_a_current_trace_makes_a_span(spans)


def test_another_runtime_context_is_read_through_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", _ElsewhereContext())
    spans = _spans()
    assert spans._context is None
    _check_only_a_current_trace_makes_a_span(spans)
