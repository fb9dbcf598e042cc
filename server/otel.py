"""OpenTelemetry SERVER spans around the application (the ``opentelemetry`` setting).

opentelemetry-api is optional (``pip install 'muxwsgi[otel]'``): the worker imports this module
only when the setting is on, and it says what to install when the API is missing.

:func:`with_spans` wraps the WSGI application a worker loaded. Each call gets a SERVER span
named after the method, as the HTTP semantic conventions ask of a server that cannot know the
route (an application or framework that does may rename it and set ``http.route``). Its parent
is the context the configured propagator extracts from the request's headers (W3C
``traceparent`` and ``tracestate``: ``environ["HTTP_TRACEPARENT"]``), so a muxwsgi client's
span is its parent. The span is current while the application runs and while the server
iterates its response, so the spans the application makes are its children.

It ends when the application returns a list or tuple (the body is whole, and the server's
fast path for it stays), else when the server closes the response iterable (PEP 3333's
close(), which muxwsgi calls on the thread that called the application, whatever happened).
Status 500 and above, an exception from the application or its iterable, and a request the
client cancelled (or whose deadline passed) make it an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import Token
from typing import Any

try:
    from opentelemetry.context import Context, attach, detach
    from opentelemetry.propagate import extract
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import (
        Span,
        SpanKind,
        Status,
        StatusCode,
        get_tracer,
        set_span_in_context,
    )
except ImportError as exc:  # pragma: no cover - the message is tested in a subprocess
    raise ImportError(
        "--opentelemetry needs opentelemetry-api: pip install 'muxwsgi[otel]'"
    ) from exc

from muxwsgi import __version__

from ._types import StartResponse, WSGIApplication
from .wsgi import ExcInfo, close_iterable

__all__ = ("with_spans",)

#: The methods the semantic conventions know (RFC 9110's and PATCH); any other is "_OTHER".
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
#: environ keys copied to the span as they are, when present and not empty.
_COPIED = (
    ("QUERY_STRING", "url.query"),
    ("REMOTE_ADDR", "client.address"),
    ("REMOTE_ADDR", "network.peer.address"),
    ("HTTP_USER_AGENT", "user_agent.original"),
    ("muxwsgi.protocol", "muxwsgi.protocol"),
    ("muxwsgi.stream_id", "muxwsgi.stream_id"),
    ("muxwsgi.request_id", "muxwsgi.request_id"),
)


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """Reads a propagator's headers from a WSGI environ (traceparent: HTTP_TRACEPARENT)."""

    names: dict[str, str] = {}

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        name = self.names.get(key)
        if name is None:
            name = "HTTP_" + key.upper().replace("-", "_")
            if len(self.names) < 64:  # bounded: the propagators choose the names
                self.names[key] = name
        value = carrier.get(name)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_GETTER = _EnvironGetter()


def with_spans(app: WSGIApplication) -> WSGIApplication:
    """``app``, with a SERVER span around each call (the module's docstring says which)."""
    tracer = get_tracer("muxwsgi.server", __version__)

    def traced(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        parent = extract(environ, getter=_GETTER)
        method = environ.get("REQUEST_METHOD", "")
        known = method in KNOWN_METHODS
        span = tracer.start_span(
            method if known else "HTTP",
            parent,
            kind=SpanKind.SERVER,
            attributes=_request_attributes(environ, method, known),
        )
        call = _Call(environ, span, attach(set_span_in_context(span, parent)), start_response)
        try:
            result = app(environ, call.start_response)
        except BaseException as exc:
            call.end(exc)
            raise
        if type(result) is list or type(result) is tuple:
            call.end(None)
            return result
        return _TracedBody(call, result)

    return traced


class _Call:
    """One call's span: notes the status the application gives ``start_response``, and
    ends the span (once) with what became of the call."""

    __slots__ = ("_start_response", "environ", "span", "status", "token")

    def __init__(
        self,
        environ: dict[str, Any],
        span: Span,
        token: Token[Context],
        start_response: StartResponse,
    ) -> None:
        self.environ = environ
        self.span = span
        #: The attach() token of the span's context, detached when the span ends.
        self.token = token
        self.status = 0
        self._start_response = start_response

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], Any]:
        code = status[:3]
        self.status = int(code) if code.isdigit() else 0
        return self._start_response(status, headers, exc_info)

    def end(self, exc: BaseException | None) -> None:
        span = self.span
        try:
            if span.is_recording():
                _record_outcome(span, self.status, exc, self.environ.get("muxwsgi.cancelled"))
        finally:
            span.end()
            detach(self.token)


def _record_outcome(span: Span, status: int, exc: BaseException | None, cancelled: Any) -> None:
    """The response status, and whether the call is an error: an exception, a cancelled
    request, a status from 500 on (4xx are the client's errors, not the server's)."""
    if status:
        span.set_attribute("http.response.status_code", status)
    if exc is not None:
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, str(exc)))
    elif cancelled is not None and cancelled.is_set():
        span.set_attribute("error.type", "cancelled")
        span.set_status(Status(StatusCode.ERROR, "the client cancelled the request"))
    elif status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(StatusCode.ERROR)


class _TracedBody:
    """A streamed response: iterates the application's iterable, notes an exception it
    raises, and ends the span when the server closes it."""

    __slots__ = ("_call", "_error", "_result")

    def __init__(self, call: _Call, result: Iterable[bytes]) -> None:
        self._call = call
        self._result = result
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._result
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._error = exc
            raise

    def close(self) -> None:
        try:
            close_iterable(self._result)
        except BaseException as exc:
            self._error = self._error or exc
            raise
        finally:
            self._call.end(self._error)


def _request_attributes(environ: dict[str, Any], method: str, known: bool) -> dict[str, str | int]:
    """The span's attributes at its start: the HTTP server semantic conventions', and the
    server's own (protocol, stream id, request id)."""
    uri = environ.get("REQUEST_URI")
    if uri:
        path = uri.partition("?")[0]
    else:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    attributes: dict[str, str | int] = {
        "http.request.method": method if known else "_OTHER",
        "url.path": path,
        "url.scheme": environ.get("wsgi.url_scheme", "http"),
    }
    if not known:
        attributes["http.request.method_original"] = method
    for key, attribute in _COPIED:
        value = environ.get(key)
        if value is not None and value != "":
            attributes[attribute] = value
    port = environ.get("REMOTE_PORT", "")
    if port.isdigit():
        attributes["network.peer.port"] = int(port)
    host = environ.get("HTTP_HOST", "")
    if host.startswith("["):  # [IPv6] or [IPv6]:port
        host, _, port = host[1:].partition("]")
        port = port[1:]
    else:
        host, _, port = host.partition(":")
    if host:
        attributes["server.address"] = host
        if port.isdigit():
            attributes["server.port"] = int(port)
    protocol = environ.get("SERVER_PROTOCOL", "")
    if protocol.startswith("HTTP/"):
        attributes["network.protocol.version"] = protocol[5:]
    return attributes
