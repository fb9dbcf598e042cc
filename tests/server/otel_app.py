"""A WSGI application with the OpenTelemetry SDK, for `muxwsgi serve --opentelemetry` in the
tests: every span that ends (the server's and the application's own) is written as one JSON
line (the SDK's ``span.to_json()``) to the file named by MUXWSGI_TEST_SPANS."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from .apps import StartResponse, _text

_out = open(os.environ["MUXWSGI_TEST_SPANS"], "a", encoding="utf-8")  # noqa: SIM115 (lives as long as the worker)


def _line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=_out, formatter=_line)))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("tests.server.otel_app")


def _current() -> dict[str, str]:
    context = trace.get_current_span().get_span_context()
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def _stream() -> Iterator[bytes]:
    # Runs while the server iterates the response: the server's span is still current.
    with tracer.start_as_current_span("app.chunk"):
        yield json.dumps(_current()).encode()
    yield b"\n"


def _fail_midstream() -> Iterator[bytes]:
    yield b"first"
    raise RuntimeError("the application failed mid-stream")


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/work":  # an application span, and the context it ran in
        with tracer.start_as_current_span("app.work"):
            body = json.dumps(_current()).encode()
        return _text(start_response, body)
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    if path == "/raise":
        raise RuntimeError("the application failed")
    if path == "/raise-midstream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _fail_midstream()
    if path == "/wait-cancel":  # until the client resets the stream or its deadline passes
        environ["muxwsgi.cancelled"].wait(10)
        return _text(start_response, b"too late")
    if path.startswith("/status/"):
        code = path.rpartition("/")[2]
        return _text(start_response, code.encode(), f"{code} Status")
    return _text(start_response, b"Hello, World!")
