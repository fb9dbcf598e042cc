"""The seams between the server's parts, as typing protocols (httpcore's ``interfaces.py``).

An :class:`~muxwsgi.server.exchange.Exchange` runs one request on an application thread. It
takes what it needs from the worker's application runner (a :class:`Runner`) and hands its
results to the connection protocol that owns the request (a :class:`Sink`). The runner writes
the output of the protocols that queued some (:class:`Flushable`) once per batch of results.

They live here, apart from the classes that implement them, so that ``exchange``,
``dispatch`` and ``protocols/base`` depend on this module instead of on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, TypeVarTuple

from ._types import WSGIApplication
from .wsgi import ResponseHead

__all__ = ("Flushable", "Post", "Runner", "Sink")

_Args = TypeVarTuple("_Args")
#: The exchange type a sink receives (always :class:`~muxwsgi.server.exchange.Exchange`; a
#: type variable only so that this module need not import the class that uses it).
ExchangeT = TypeVar("ExchangeT", contravariant=True)


class Sink(Protocol[ExchangeT]):
    """Where an exchange's results go: the loop-side half of a request.

    An exchange sends its sink one of these sequences, each message exactly once:

    - :meth:`respond`: the whole response at once (the common case). It ends the exchange:
      nothing follows it.
    - :meth:`send_head`, :meth:`send_chunk` any number of times, then :meth:`end_response`
      or :meth:`abort_response`, and last :meth:`done`. A response cut short may stop after
      any of them (the head included) and go to ``abort_response`` or straight to ``done``
      (the stream is gone: cancelled).
    - :meth:`abort_response` then :meth:`done`, or :meth:`done` alone: no response (deadline
      passed, or the stream was cancelled before the application ran).

    The messages run on the loop thread, in the order the application thread posted them
    (see :meth:`Runner.post`), unless the sink lives on the application thread itself (see
    :func:`~muxwsgi.server.exchange.call_now`). The one exception: a worker whose request
    outran harakiri calls :meth:`abort_response` from the loop at any point.
    """

    @property
    def tls_environ(self) -> Mapping[str, object] | None:
        """What the connection's TLS adds to the environ (None: not over TLS)."""

    def respond(self, exchange: ExchangeT, head: ResponseHead, body: bytes, /) -> None:
        """Send this whole response; the exchange is over (account for it as :meth:`done`
        does). One message per body-less request is what makes result batching pay."""

    def respond_now(self, exchange: ExchangeT, head: ResponseHead, body: bytes, /) -> bool:
        """Called on the application thread, before :meth:`respond` is posted: write this
        whole response from here if nothing stands in the way, and return True (the exchange
        is then over; the sink accounts for it itself), else False (respond follows)."""

    def send_head(self, exchange: ExchangeT, head: ResponseHead, /) -> None:
        """A streamed response starts with this head."""

    def send_chunk(self, exchange: ExchangeT, chunk: bytes, /) -> None:
        """A non-empty chunk of the streamed body; call ``exchange.sent(len(chunk))`` once
        the protocol took it (the application thread waits for buffer room)."""

    def end_response(self, exchange: ExchangeT, /) -> None:
        """The streamed body is complete."""

    def abort_response(self, exchange: ExchangeT, reason: str, /) -> None:
        """The response cannot be completed (application error after the head, short body,
        ``"deadline"``, ``"harakiri"``): end it as a failure the peer can see (a stream
        reset, or a dropped connection)."""

    def done(self, exchange: ExchangeT, /) -> None:
        """The application thread is finished with the exchange: the last message of every
        exchange that did not end with :meth:`respond`."""


class Post(Protocol):
    """How an application thread hands a message to a sink: ``post(func, *args)`` runs
    ``func(*args)`` (on the loop thread, or at once for a sink on the calling thread)."""

    def __call__(self, func: Callable[[*_Args], None], /, *args: *_Args) -> None: ...


class Runner(Protocol):
    """What an exchange needs of the worker's application runner
    (:class:`~muxwsgi.server.dispatch.AppRunner`)."""

    #: The WSGI application.
    app: WSGIApplication
    #: The environ keys that are the same for every request of the worker.
    environ_constants: dict[str, Any]
    server_name: str
    server_port: str
    #: The environ key of the incoming request-id header.
    request_id_var: str
    #: Streamed response bytes in flight per stream before the application thread waits.
    send_buffer_size: int
    #: Application calls that raised (the stats count them).
    exceptions: int

    def post(self, func: Callable[[*_Args], None], /, *args: *_Args) -> None:
        """Run ``func(*args)`` on the loop thread, in order with the other posted calls."""

    def new_request_id(self) -> str:
        """A request id for a request that brought none."""


class Flushable(Protocol):
    """A protocol whose output the runner writes once after a batch of results."""

    def flush(self) -> None:
        """Write whatever output the protocol has queued."""
