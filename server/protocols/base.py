"""What every connection protocol shares: the worker context, timeouts, write backpressure."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Final, cast

from mypy_extensions import mypyc_attr

from ..bodies import READ_AHEAD, upload_slots
from ..config import Config
from ..dispatch import AppRunner
from ..exchange import Exchange
from ..wsgi import ResponseHead
from .flood import FloodGovernor

__all__ = ("BaseProtocol", "ServerContext")

log = logging.getLogger("muxwsgi.error")

#: How long a draining worker keeps a connection that has not sent a (next) request yet. It
#: was accepted before the drain began, so its client expects an answer; one more request is
#: served (then the connection closes) if it arrives within this time.
DRAIN_GRACE: Final = 1.0
#: How long a closing connection keeps reading (and dropping) what the peer still sends. Closing
#: a socket with unread bytes makes the kernel answer with an RST, and an RST can destroy our
#: last frames (a GOAWAY, the end of a response) before the peer reads them; nginx's
#: lingering_close exists for the same reason.
LINGER: Final = 2.0


class ServerContext:
    """A worker's shared state, read by every connection: config, runner, live connections,
    and the flood governor that gives flooding connections their turns."""

    def __init__(self, config: Config, runner: AppRunner, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.runner = runner
        self.loop = loop
        self.connections: set[BaseProtocol] = set()
        #: Set when the worker stops accepting work (graceful stop or reload).
        self.draining = False
        self.flood = FloodGovernor(loop, config.flood_turn_interval)
        #: The application threads that requests still receiving their body may hold.
        self.uploads = upload_slots(config)


# Compiled, it may still be subclassed by Python code: the TLS layer's tests, an embedder's own.
@mypyc_attr(allow_interpreted_subclasses=True)
class BaseProtocol(asyncio.Protocol):
    """Connection bookkeeping shared by the mux, classic uwsgi and HTTP protocols."""

    kind = "base"
    #: What the connection's TLS adds to each request's environ (set by the TLS layer,
    #: server/tls.py); None on a plaintext connection.
    tls_environ: Mapping[str, object] | None = None

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.runner = ctx.runner
        self.transport: asyncio.Transport | None = None
        self._peer = ""
        self.opened = self.last_activity = time.monotonic()
        self.closed = False
        self.writing_paused = False
        #: When a graceful stop reached this connection while it had no request (0: not yet).
        self.drain_started = 0.0
        #: When close() sent our FIN and started dropping the peer's bytes (0: not yet).
        self.lingering = 0.0
        #: The peer half-closed (sent FIN): answer what it sent, then close.
        self.peer_eof = False
        #: Request body bytes received and not yet read by the application (classic uwsgi
        #: and HTTP): reading from the socket pauses above _high_water, resumes below half.
        self._unread = 0
        self._high_water = max(self.config.body_buffer_size, READ_AHEAD)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.ctx.connections.add(self)

    @property
    def peer(self) -> str:
        """The peer's "host:port" ("unix" on a unix socket), looked up on first use: most
        connections never need it (a proxied request carries REMOTE_ADDR)."""
        if not self._peer:
            transport = self.transport
            peer = transport.get_extra_info("peername") if transport is not None else None
            self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        return self._peer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)

    def pause_writing(self) -> None:
        # The peer does not read: stop reading its requests rather than queue replies without
        # bound (PROTOCOL.md [L-2]).
        self.writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self, *, linger: bool = True) -> None:
        """Close gracefully: send FIN after the queued output, then read and drop the peer's
        remaining bytes for up to LINGER seconds (see there) before the socket is closed.

        ``linger=False`` closes the socket once the queued output is written: for a peer that
        left nothing unread, or one not owed the protection (a flooder)."""
        if self.closed or self.transport is None:
            return
        self.closed = True
        transport = self.transport
        if not linger or self.peer_eof or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()
            return
        self.lingering = time.monotonic()
        transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection at once (RST): the way to say a response was cut short."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        self.peer_eof = True
        if self.closed:
            return False  # lingering is over: let the transport close
        self.on_peer_eof()
        return True  # keep our side open to answer what the peer sent

    def on_peer_eof(self) -> None:
        """The peer will send nothing more: close unless a response is still due."""
        if not self.busy:
            self.close()

    def _consumed(self, size: int) -> None:
        """Body bytes were read by the application (its thread): read more once few wait."""
        self.runner.post(self._on_consumed, size)

    def _on_consumed(self, size: int) -> None:
        self._unread -= size
        if (
            self._unread < self._high_water // 2
            and self.transport is not None
            and not self.closed
            and not self.writing_paused
            and self.wants_more_body()
        ):
            self.transport.resume_reading()

    def wants_more_body(self) -> bool:
        """Whether reading may resume once the application has read its body's buffered
        bytes (the protocol's own conditions beside the buffer's level)."""
        return True

    def linger_expired(self, now: float) -> None:
        if self.lingering and now - self.lingering > LINGER and self.transport is not None:
            self.transport.close()

    def respond_now(self, exchange: Exchange, head: ResponseHead, body: bytes) -> bool:
        """Application thread: see Sink.respond_now. Here: never (respond is posted)."""
        return False

    def flush(self) -> None:
        """Write whatever output the protocol has queued (once per batch)."""

    def check_timeouts(self, now: float) -> None:
        """Called about once a second by the worker: end a lingering close whose time is up,
        or enforce the open connection's own timeouts (enforce_timeouts)."""
        if self.closed:
            self.linger_expired(now)
        else:
            self.enforce_timeouts(now)

    def enforce_timeouts(self, now: float) -> None:
        """The protocol's timeouts on an open connection (check_timeouts calls it)."""

    def check_preface_timeout(self, now: float, missing: str, *, linger: bool = True) -> None:
        """enforce_timeouts of a connection that has not chosen its protocol yet: close it
        once header_timeout passed, logging what is ``missing`` ("nothing received")."""
        if not self.drain_expired(now) and now - self.opened > self.config.header_timeout:
            log.info("closing a connection from %s: %s in %gs", self.peer, missing,
                     self.config.header_timeout)  # fmt: skip
            self.close(linger=linger)

    def shutdown(self) -> None:
        """Graceful stop: finish what was accepted, accept nothing new, then close.

        A connection without a request in progress gets DRAIN_GRACE to send one (see there).
        """
        if not self.busy:
            self.drain_started = time.monotonic()

    def drain_expired(self, now: float) -> bool:
        """Close an idle connection whose drain grace has run out; True if it did."""
        if self.drain_started and not self.busy and now - self.drain_started > DRAIN_GRACE:
            self.close()
            return True
        return False

    @property
    def draining_idle(self) -> bool:
        """An idle connection within its drain grace: the worker waits for it."""
        return bool(self.drain_started) and not self.closed

    def refuse_unstarted(self) -> None:
        """Give back requests accepted but not yet started by an application thread (the
        worker is going away after a harakiri)."""

    @property
    def busy(self) -> bool:
        """Whether an accepted request is still being worked on."""
        return False
