"""The client's settings: one table, shared by both flavours (``AsyncClient`` and ``Client``).

Each setting is a keyword of the client's constructor, whose default is read from here (so it
is written once); ``client.config`` is the ``ClientConfig`` it built. docs/client.md lists the
same settings (tests/test_docs.py checks the list against this class).
"""

from __future__ import annotations

import enum
import math
import ssl
from dataclasses import dataclass
from functools import cached_property

from muxwsgi import DEFAULT_WINDOW, MAX_WINDOW, ConnectionConfig, Settings

from ._tls import CertTypes, VerifyTypes, build_context, check_settings

__all__ = ("BALANCING", "USE_CLIENT_DEFAULT", "ClientConfig", "UseClientDefault")

#: The balancing policies (``balancing=``): how a request chooses among the connections.
BALANCING = ("peak_ewma", "least_outstanding")


class UseClientDefault(enum.Enum):
    """The type of :data:`USE_CLIENT_DEFAULT`."""

    USE_CLIENT_DEFAULT = enum.auto()


#: A request's ``timeout=`` when it is not given: the client's ``timeout`` applies (a request's
#: ``timeout=None`` means no deadline, so None cannot say "not given").
USE_CLIENT_DEFAULT = UseClientDefault.USE_CLIENT_DEFAULT


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """How a client behaves. Times are in seconds, windows in bytes.

    Raises ValueError, naming the setting, for a value of the wrong type or out of range.
    """

    #: The deadline of every request that gives no ``timeout=`` of its own: connecting,
    #: waiting for a stream, sending and receiving, body included. None: no deadline.
    timeout: float | None = None
    #: How many times a request that may have reached the application is sent again after a
    #: failure (a broken connection, a reset stream): idempotent methods with a bytes body
    #: only, never after a timeout.
    retries: int = 0
    #: How long one connection attempt may take.
    connect_timeout: float = 10.0
    #: How long one write may wait for the socket. Writes are not cut short by a request's
    #: deadline (a frame cut in half would corrupt the connection for every stream on it): this
    #: bounds them instead, and a write that exceeds it fails the connection (WriteError).
    write_timeout: float = 30.0
    #: How many connections each mux endpoint gets at most; a new one opens only when the
    #: others are at the server's stream limit.
    max_connections_per_endpoint: int = 2
    #: After this long without a byte from the server, a connection sends a PING. 0: never
    #: (gRPC's minimum is 10 s).
    keepalive_interval: float = 0.0
    #: How long a keepalive PING may go unanswered before the connection is closed as dead.
    keepalive_timeout: float = 20.0
    #: How many response body bytes the server may send on one stream before the client has
    #: read them (the INITIAL_WINDOW_SIZE the client advertises).
    stream_window: int = 1 << 20
    #: How many response body bytes the server may send on one connection, all its streams
    #: together, before the client has read them.
    connection_window: int = 16 << 20
    #: How many times a request the server never processed (a refused stream, a stream above
    #: a GOAWAY's last stream id) is sent again, whatever its method, within its deadline.
    max_transparent_retries: int = 10
    #: How often host names are read again (new addresses join the pool, vanished ones are
    #: drained); a connection failure or a GOAWAY reads them sooner, at most once a second.
    #: gRPC's DNS resolver waits at least 30 s between two resolutions.
    resolve_interval: float = 30.0
    #: How a request chooses a connection: "peak_ewma" (two connections drawn at random, the
    #: one with the lower latency x (outstanding + 1) wins: Finagle's and Linkerd's), or
    #: "least_outstanding" (the one with the fewest streams in flight).
    balancing: str = "peak_ewma"
    #: Consecutive failures (a connection that cannot be opened, or dies with no GOAWAY) after
    #: which an endpoint is ejected: it takes no new streams and no new connections for a while.
    ejection_failures: int = 5
    #: How long the first ejection of an endpoint lasts; each consecutive one lasts twice the
    #: last, up to max_ejection_time. A response from the endpoint ends the series.
    ejection_time: float = 30.0
    #: The longest one ejection lasts.
    max_ejection_time: float = 300.0
    #: At most this share of the endpoints is ejected at once (one may always be): a fault on
    #: the client's side must not empty the pool.
    max_ejection_percent: int = 10
    #: Give every request that carries no ``traceparent`` header a new one (W3C Trace
    #: Context), so that the server's access log and the application can follow it.
    trace: bool = False
    #: OpenTelemetry: a CLIENT span per attempt, its context sent as ``traceparent`` (see
    #: docs/client.md). "auto": when opentelemetry-api is installed; True: the same, but the
    #: client cannot be made without it; False: never (it is not even imported).
    opentelemetry: bool | str = "auto"
    #: How muxs:// and uwsgis:// verify the server (httpx's ``verify``): True checks its
    #: certificate against the system's CAs and its name against the URL's host; a path
    #: checks against that CA bundle instead; False checks nothing (tests only: anyone can
    #: then pose as the server); an ssl.SSLContext is used as is (cert= must then be unset:
    #: load it into the context; its ALPN, ciphers and versions are its own).
    verify: VerifyTypes = True
    #: A client certificate for servers that require one (mutual TLS): a PEM file holding the
    #: certificate and its key, or (certificate file, key file).
    cert: CertTypes = None

    def __post_init__(self) -> None:
        if self.timeout is not None:
            _check("timeout", self.timeout, float, above=0)
        _check("retries", self.retries, int, least=0)
        _check("connect_timeout", self.connect_timeout, float, above=0)
        _check("write_timeout", self.write_timeout, float, above=0)
        _check("max_connections_per_endpoint", self.max_connections_per_endpoint, int, least=1)
        _check("keepalive_interval", self.keepalive_interval, float, least=0)
        _check("keepalive_timeout", self.keepalive_timeout, float, above=0)
        # A stream window of 0 would let the server send no body at all.
        _check("stream_window", self.stream_window, int, least=1, most=MAX_WINDOW)
        # The protocol opens a connection at DEFAULT_WINDOW and can only widen it.
        _check("connection_window", self.connection_window, int, least=DEFAULT_WINDOW,
               most=MAX_WINDOW)  # fmt: skip
        _check("max_transparent_retries", self.max_transparent_retries, int, least=0)
        _check("resolve_interval", self.resolve_interval, float, above=0)
        if self.balancing not in BALANCING:
            raise ValueError(
                f"balancing={self.balancing!r}: must be one of {', '.join(map(repr, BALANCING))}"
            )
        _check("ejection_failures", self.ejection_failures, int, least=1)
        _check("ejection_time", self.ejection_time, float, above=0)
        _check("max_ejection_time", self.max_ejection_time, float, least=self.ejection_time)
        _check("max_ejection_percent", self.max_ejection_percent, int, least=0, most=100)
        if not isinstance(self.trace, bool):
            raise ValueError(f"trace={self.trace!r}: must be True or False")
        if not (isinstance(self.opentelemetry, bool) or self.opentelemetry == "auto"):
            raise ValueError(f"opentelemetry={self.opentelemetry!r}: must be True, False or 'auto'")
        check_settings(self.verify, self.cert)

    def connection_config(self) -> ConnectionConfig:
        """The sans-IO core's configuration for one new connection (its own Settings)."""
        return ConnectionConfig(
            settings=Settings(initial_window_size=self.stream_window),
            connection_window_size=self.connection_window,
        )

    def tls_context(self, protocol: str) -> ssl.SSLContext:
        """The SSLContext of ``protocol`` ("mux" or "uwsgi") TLS connections: made at the
        first one, then shared (loading the system's CAs takes milliseconds)."""
        context = self._tls_contexts.get(protocol)
        if context is None:
            context = self._tls_contexts[protocol] = build_context(self.verify, self.cert, protocol)
        return context

    def probe_context(self, protocol: str) -> ssl.SSLContext | None:
        """A context that verifies the chain but not the name, to read the names of a
        certificate that failed the name check (for the error message); None when the
        context is the caller's (it cannot be copied)."""
        if isinstance(self.verify, ssl.SSLContext):
            return None
        return build_context(self.verify, self.cert, protocol, check_hostname=False)

    @cached_property
    def _tls_contexts(self) -> dict[str, ssl.SSLContext]:
        return {}


def _check(
    name: str,
    value: object,
    kind: type[int] | type[float],
    *,
    least: float = -math.inf,
    above: float | None = None,
    most: float = math.inf,
) -> None:
    """Raise ValueError unless ``value`` is a ``kind`` (an int will do for a float) within
    the bounds: at least ``least``, more than ``above``, at most ``most``."""
    kinds = (int, float) if kind is float else (int,)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: must be a{'n integer' if kind is int else ' number'}")
    if not least <= value <= most or (above is not None and not value > above):
        bounds = [f"above {above}" if above is not None else f"at least {least}"]
        if most != math.inf:
            bounds.append(f"at most {most}")
        raise ValueError(f"{name}={value!r}: must be {' and '.join(bounds)}")
