"""OpenTelemetry spans for the client's requests (the ``opentelemetry`` setting).

opentelemetry-api is optional (``pip install 'muxwsgi[otel]'``): this module imports it at the
top and is itself imported only by :func:`~muxwsgi.client._tracing.client_spans`, when the
setting asks for spans and the API is installed.

As the HTTP semantic conventions ask, each *attempt* to send a request is one CLIENT span
named after the method ("GET"; "HTTP" for a method they do not know): a retry is a new span
with ``http.request.resend_count``. It starts before a connection is chosen (pool waits and
connecting count) and ends when the response head arrives, or the attempt fails: reading the
body is the caller's time, and a stream the caller leaves unread must not end it later. Its
context goes out as the configured propagator's headers (W3C ``traceparent`` and
``tracestate`` by default), so the server's span is its child; a header the caller set goes
out as it is.

Spans are made while a tracer provider is configured (``trace.set_tracer_provider``, an SDK's).
Without one, a request makes none and adds nothing, unless a trace is current (a server span
with no SDK behind it): that trace is passed on, as the API does without an SDK.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

import opentelemetry.context as _context
import opentelemetry.trace as _api
from opentelemetry.context import Context, get_current
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.propagate import inject
from opentelemetry.propagators.textmap import Setter
from opentelemetry.trace import (
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    get_current_span,
    get_tracer_provider,
    set_span_in_context,
)

from muxwsgi import VarsBlock, __version__

from ._exceptions import Retry

if TYPE_CHECKING:
    from ._models import Endpoint

__all__ = ("KNOWN_METHODS", "AttemptSpan", "ClientSpans")

#: The methods the semantic conventions know (RFC 9110's and PATCH); any other is "_OTHER".
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_ERROR = StatusCode.ERROR
#: opentelemetry-api keeps the provider that ``set_tracer_provider`` set in a module global,
#: None until then. Reading it is the first thing ``get_tracer_provider()`` does; while it is
#: None that function also looks the environment variable that names a provider up in
#: ``os.environ``, on every call: about a microsecond a request, for a question answered when
#: the client was made (``__init__`` calls it, and a provider the variable names is set then).
_UNKNOWN = object()


def _context_var() -> ContextVar[Context] | None:
    """The ContextVar in which opentelemetry-api's default runtime context keeps the current
    context, or None when another runtime context is configured (``OTEL_PYTHON_CONTEXT``).

    Without a tracer provider, each request asks whether a trace is current. The API's
    answer, ``get_current_span().get_span_context().is_valid``, is seven Python calls: ~4.5k
    instructions, 5% of a compiled client's request. The current context is empty unless
    something attached one (a span, baggage), and reading that from the ContextVar is one C
    call. The variable is the runtime context's own attribute, not API: it is used only when
    the runtime context is the class known to keep it there, and is then read, never set."""
    runtime = getattr(_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, ContextVar) else None


class _VarsSetter(Setter[dict[str, str]]):
    """Writes a propagator's headers as uwsgi vars (traceparent: HTTP_TRACEPARENT)."""

    names: dict[str, str] = {}

    def set(self, carrier: dict[str, str], key: str, value: str) -> None:
        name = self.names.get(key)
        if name is None:
            name = "HTTP_" + key.upper().replace("-", "_")
            if len(self.names) < 64:  # bounded: the propagators choose the names
                self.names[key] = name
        carrier[name] = value


_SETTER = _VarsSetter()


class ClientSpans:
    """A client's span maker: :meth:`start` gives each attempt its :class:`AttemptSpan`."""

    __slots__ = ("_base", "_context", "_provider", "_tracer", "_url")

    def __init__(self, endpoints: list[Endpoint]) -> None:
        #: The attributes every span starts with: the server, when the client has one.
        self._base: dict[str, str | int] = {}
        #: The URL of that server without the target (url.full is this + target).
        self._url = ""
        first = endpoints[0]
        if all((e.host, e.port, e.path) == (first.host, first.port, first.path) for e in endpoints):
            self._base = _server(first)
            if not first.path:
                host = f"[{first.host}]" if ":" in first.host else first.host
                self._url = f"{first.protocol}://{host}:{first.port}"
        self._provider = get_tracer_provider()
        self._tracer = self._provider.get_tracer("muxwsgi.client", __version__)
        #: Where the current context is read (see _context_var).
        self._context = _context_var()

    def start(self, method: str, target: str, resend_count: int) -> AttemptSpan | None:
        """The span of one attempt at ``method target``, or None: no tracer provider is
        configured and no trace is current, so there is nothing to record or pass on."""
        configured = getattr(_api, "_TRACER_PROVIDER", _UNKNOWN)
        # None: none was ever set, so the one we hold is the proxy (see _UNKNOWN).
        provider = self._provider if configured is None else get_tracer_provider()
        if type(provider) is ProxyTracerProvider:
            current = get_current() if self._context is None else self._context.get()
            if not current or not get_current_span(current).get_span_context().is_valid:
                return None  # an empty context holds no span: the usual case, one C call
        if provider is not self._provider:
            # A provider configured after the client was made is used from then on.
            self._provider = provider
            self._tracer = provider.get_tracer("muxwsgi.client", __version__)
        attributes = self._base.copy()
        if method in KNOWN_METHODS:
            attributes["http.request.method"] = method
            name = method
        else:
            attributes["http.request.method"] = "_OTHER"
            attributes["http.request.method_original"] = method
            name = "HTTP"
        if self._url:
            attributes["url.full"] = self._url + target
        if resend_count:
            attributes["http.request.resend_count"] = resend_count
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        return AttemptSpan(span, not self._base)


class AttemptSpan:
    """The span of one attempt: :meth:`send` its context with the request, then
    :meth:`answered` or :meth:`failed` ends it."""

    __slots__ = ("_per_endpoint", "span")

    def __init__(self, span: Span, per_endpoint: bool) -> None:
        self.span = span
        #: Whether server.address is the endpoint's (the client has several servers).
        self._per_endpoint = per_endpoint

    def send(self, endpoint: Endpoint, vars: dict[str, str], block: VarsBlock | None) -> None:
        """Add the span's context to the request's ``vars`` (the propagator's headers, but
        none the caller set: those are in ``vars`` or ``block``), and note the peer."""
        span = self.span
        if span.is_recording():
            peer = _peer(endpoint)
            if self._per_endpoint:
                peer.update(_server(endpoint))
            span.set_attributes(peer)
        carrier: dict[str, str] = {}
        inject(carrier, set_span_in_context(span), _SETTER)
        for name, value in carrier.items():
            if name not in vars and (block is None or name not in block.names):
                vars[name] = value

    def answered(self, status: int) -> None:
        """The response head arrived: end the span (an error from status 400 on)."""
        span = self.span
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_attribute("error.type", str(status))
                span.set_status(_ERROR)
        span.end()

    def failed(self, exc: BaseException) -> None:
        """The attempt failed with ``exc``: end the span as an error. ``error.type`` is the
        exception's class name (as ``client.metrics()`` counts errors), or "not_processed"
        for a request the server refused or never saw, which is sent again."""
        span = self.span
        if span.is_recording():
            if isinstance(exc, Retry):
                # Routine under load, and retried: no traceback worth its cost.
                span.set_attribute("error.type", "not_processed")
            else:
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(_ERROR, str(exc)))
        span.end()


def _server(endpoint: Endpoint) -> dict[str, str | int]:
    """server.address and server.port: the host as the URL names it, or the socket's path."""
    if endpoint.path:
        return {"server.address": endpoint.path, "network.transport": "unix"}
    return {"server.address": endpoint.host, "server.port": endpoint.port}


def _peer(endpoint: Endpoint) -> dict[str, str | int]:
    """network.peer.address and .port: where the connection goes (a name's address)."""
    if endpoint.path:
        return {"network.peer.address": endpoint.path}
    return {"network.peer.address": endpoint.connect_host, "network.peer.port": endpoint.port}
