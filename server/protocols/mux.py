"""A multiplexed muxwsgi connection: the core's events in, application results out as frames.

The protocol reads frames in turns (a flooding peer gets fewer frames per turn, and its turns
from the worker's :class:`~muxwsgi.server.protocols.flood.FloodGovernor`), gives every stream
an :class:`~muxwsgi.server.exchange.Exchange` for the application threads, and is that
exchange's :class:`~muxwsgi.server.interfaces.Sink`. Response bytes that do not fit the peer's
flow-control window wait in the :class:`~muxwsgi.server.protocols.scheduler.OutputScheduler`.
The connection's lifecycle (the two-step GOAWAY of a graceful stop, the timeouts) is the last
section of the class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from muxwsgi import (
    MAX_STREAM_ID,
    Connection,
    ConnectionConfig,
    ConnectionState,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    Event,
    FloodError,
    FloodLimits,
    PingAcknowledged,
    ProtocolError,
    RequestReceived,
    Role,
    Settings,
    StreamReset,
    WindowUpdated,
)

from ..bodies import RequestBody
from ..config import Config
from ..exchange import EMPTY_INPUT, Exchange
from ..wsgi import ResponseHead
from .base import BaseProtocol, ServerContext
from .scheduler import OutputScheduler

__all__ = ("MuxProtocol", "connection_config")

log = logging.getLogger("muxwsgi.error")
_monotonic: Final = time.monotonic

_TOO_LARGE_HEAD: Final = ResponseHead(
    413, "Content Too Large", [("Content-Type", "text/plain"), ("Content-Length", "23")]
)
_TOO_LARGE_BODY: Final = b"Request body too large\n"
#: The payload of the PING that ends the first step of a graceful GOAWAY.
_DRAIN_PING: Final = b"muxdrain"
#: How long the first step of a graceful GOAWAY waits for the PING's ACK before the final
#: GOAWAY goes out anyway. The ACK takes one round trip; a client that never answers pings
#: must not keep a draining worker waiting for it, nor be kept from learning the last stream.
_DRAIN_PING_TIMEOUT: Final = 2.0


def connection_config(config: Config) -> ConnectionConfig:
    """The core's configuration for server connections, from the server settings."""
    return ConnectionConfig(
        settings=Settings(
            max_concurrent_streams=config.max_concurrent_streams,
            initial_window_size=config.initial_window_size,
            max_frame_size=config.max_frame_size,
            max_headers_size=min(config.buffer_size, 65535),
            max_headers_count=config.max_vars,
        ),
        connection_window_size=config.connection_window_size,
        # The server checks its application's heads itself, more strictly (wsgi.py).
        validate_outbound=False,
        flood=FloodLimits(
            reset_burst=config.reset_burst,
            reset_rate=config.reset_rate,
            ping_burst=config.ping_burst,
            ping_rate=config.ping_rate,
            settings_burst=config.settings_burst,
            settings_rate=config.settings_rate,
            glitch_burst=config.glitch_burst,
            glitch_rate=config.glitch_rate,
            max_queued_control=config.max_queued_control,
        ),
    )


class MuxProtocol(BaseProtocol):
    kind = "mux"

    def __init__(self, ctx: ServerContext, core_config: ConnectionConfig) -> None:
        super().__init__(ctx)
        self.conn = Connection(Role.SERVER, core_config)
        self.exchanges: dict[int, Exchange] = {}
        self.output = OutputScheduler(self.conn, self._sent)
        #: Exchanges of this connection queued or running: bounded separately from the core's
        #: open streams, because a reset stream keeps its application call (rapid reset).
        self.active = 0
        #: Request bodies still arriving, by stream (buffered, or read by the application).
        self.bodies: dict[int, RequestBody] = {}
        #: Requests whose application call waits for their body (buffered, or waiting for an
        #: upload slot): not submitted yet, and holding no thread.
        self.pending: dict[int, RequestBody] = {}
        #: Body bytes of the pending requests: withheld from the connection window.
        self._held = 0
        #: Streams whose application reads their body as it arrives: each holds an upload slot.
        self._uploading: set[int] = set()
        #: Streams whose whole body was handed to the application, and its size: the window
        #: credit goes back once the application is done with it.
        self._unacked: dict[int, int] = {}
        self._body_bound = min(
            self.config.body_buffer_size,
            self.config.initial_window_size,  # a client cannot send more without credit
            self.config.connection_window_size // 2,
        )
        # Past this many held bytes the client (nearly) cannot send on: see _relieve.
        self._held_limit = self.config.connection_window_size - self.config.max_frame_size
        self._drain_ping_at = 0.0
        self._final_goaway_sent = False
        self._limit_post = self.config.limit_post
        self._max_active = self.config.max_concurrent_streams
        self._body_timeout = self.config.body_timeout
        self._frames_per_turn = self.config.frames_per_turn
        self._suspect_at = core_config.flood.suspect_at
        #: Since when this peer is a suspect with frames waiting (0: it is not).
        self._suspect_since = 0.0
        self._turn_pending = False
        #: Exchanges opened in the current turn, submitted at its end (see _submit_new).
        self._new: list[Exchange] = []

    # ---------------------------------------------------------------- input

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # lingering after our close: dropped
        self.last_activity = _monotonic()
        self._receive(data)

    def next_turn(self) -> None:
        """Handle the frames a previous turn left buffered, then read again if all are done."""
        self._turn_pending = False
        if self.closed:
            return
        self._receive(b"")
        if not (self._turn_pending or self.closed or self.writing_paused):
            assert self.transport is not None
            self.transport.resume_reading()

    def _receive(self, data: bytes) -> None:
        conn = self.conn
        budget = self._frames_per_turn
        if conn.flood_pressure >= self._suspect_at:
            budget = max(1, budget // self.config.flood_turn_share)
        try:
            # Stops early after a frame that takes this peer past half of a flood allowance
            # (FloodLimits.suspect_at): the first read of a PING flood holds its whole burst.
            events = conn.receive_data(data, budget)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        self._handle(events)
        if self._new:
            self._submit_new()
        self.flush()
        if self._turn_pending or self.closed:
            return
        suspect = conn.flood_pressure >= self._suspect_at
        buffered = conn.frames_buffered
        if not buffered:
            self._suspect_since = 0.0
        elif suspect or self._suspect_since:
            # Sending faster than its turns allow since it became a suspect (even if its
            # buckets refilled a little since: many suspects at once each get a share of the
            # lane smaller than their refill rate): cut after flood_suspect_timeout.
            now = _monotonic()
            if not self._suspect_since:
                self._suspect_since = now
            elif now - self._suspect_since > self.config.flood_suspect_timeout:
                conn.send_goaway(ErrorCode.ENHANCE_YOUR_CALM, debug=b"flood: slowed too long")
                self._protocol_error(FloodError("a flood slowed down for too long"))
                return
        if buffered or (suspect and data):
            # More frames than one turn's share: the rest (and the socket) wait for the next
            # loop turn, so that a flood on this connection costs the other connections at
            # most frames_per_turn frames of work between two of their own turns. A suspect
            # (past half of a flood allowance) gets 1/flood_turn_share of that per turn, and its
            # next turn from the penalty lane, even once its frames are handled, until its
            # bucket refills or runs out and GOAWAY ENHANCE_YOUR_CALM ends the connection.
            assert self.transport is not None
            self._turn_pending = True
            self.transport.pause_reading()
            if suspect:
                self.ctx.flood.wait_turn(self)
            else:
                self.ctx.loop.call_soon(self.next_turn)

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is RequestReceived:
                self._on_request(event)
            elif type(event) is DataReceived:
                self._on_data(event)
            elif type(event) is StreamReset:
                self._on_reset(event.stream_id)
            elif type(event) is WindowUpdated:
                self._pump(None if event.stream_id == 0 else event.stream_id)
            elif type(event) is ConnectionTerminated:
                self._maybe_close()
            elif type(event) is PingAcknowledged and event.data == _DRAIN_PING:
                self._final_goaway()

    def _on_request(self, event: RequestReceived) -> None:
        sid = event.stream_id
        if self.active >= self._max_active:
            # The core's slot count does not see calls still running for reset streams.
            self.conn.reset_stream(sid, ErrorCode.REFUSED_STREAM)
            return
        environ = event.vars
        if "REMOTE_ADDR" not in environ and self.peer != "unix":
            environ["REMOTE_ADDR"], _, environ["REMOTE_PORT"] = self.peer.rpartition(":")
        deadline = None
        if event.timeout_ms is not None:
            deadline = _monotonic() + event.timeout_ms / 1000
        limit = self._limit_post
        if limit and event.content_length is not None and event.content_length > limit:
            self.conn.send_response(
                sid, 413, _TOO_LARGE_HEAD.headers, body=_TOO_LARGE_BODY, end_stream=True
            )
            self.conn.reset_stream(sid, ErrorCode.NO_ERROR)  # stop the upload (RFC 9113 8.1)
            return
        exchange = Exchange(self.runner, self, sid, environ, EMPTY_INPUT, deadline, "mux")
        self.exchanges[sid] = exchange
        self.active += 1
        if not event.end_stream:
            # The body is read first (bodies.py): the application is called once it is
            # complete, or once it outgrew the bound and got an upload slot.
            body = self.bodies[sid] = self.pending[sid] = RequestBody(
                event.content_length, self._body_bound
            )
            if body.outgrown:  # body_buffer_size 0: every body streams
                self._ask_slot(sid, body)
            return
        # Submitted once this turn's frames are handled: a RESET right behind the HEADERS
        # (rapid reset) then costs no application thread a wake-up.
        self._new.append(exchange)

    def _submit_new(self) -> None:
        submit = self.runner.submit
        for exchange in self._new:
            if exchange.cancelled.fired:
                self._unacked.pop(exchange.key, None)
                self.active -= 1  # reset before it was ever queued: nothing will report done
            else:
                submit(exchange)
        self._new.clear()

    def _ask_slot(self, sid: int, body: RequestBody) -> None:
        body.ticket = self.ctx.uploads.acquire(self, lambda: self._start_streaming(sid))

    def _start_streaming(self, sid: int) -> None:
        """The pending request got an upload slot: its application reads the body as it
        arrives (the bytes so far first)."""
        body = self.pending.pop(sid, None)
        exchange = self.exchanges.get(sid)
        if body is None or exchange is None:
            self.ctx.uploads.release(self)  # gone meanwhile (not withdrawn: a bug, but safe)
            return
        body.ticket = None
        self._held -= body.size
        self._uploading.add(sid)
        exchange.input = body.stream_input(self._consumer(sid), self._body_timeout)
        self.runner.submit(exchange)

    def _start_buffered(self, sid: int, body: RequestBody) -> None:
        """The pending request's body is complete: call the application with all of it."""
        del self.pending[sid]
        self._held -= body.size
        if body.ticket is not None:
            self.ctx.uploads.withdraw(body.ticket)  # it ended before it got a slot
            body.ticket = None
        exchange = self.exchanges[sid]
        exchange.input = body.buffered_input()
        if body.size:
            self._unacked[sid] = body.size
        self._new.append(exchange)

    def _drop_pending(self, sid: int) -> RequestBody | None:
        """Forget a pending request (its stream is gone): it never reaches the application."""
        body = self.pending.pop(sid, None)
        if body is not None:
            self._held -= body.size
            if body.ticket is not None:
                self.ctx.uploads.withdraw(body.ticket)
                body.ticket = None
            self.active -= 1  # never submitted: nothing will report it done
        return body

    def _relieve(self) -> None:
        """The bodies held for pending requests (nearly) fill the connection window, so the
        client can send no more, and none of them may ever complete: refuse the newest of
        those still being buffered (REFUSED_STREAM: never processed, safe to retry) until the
        client can send again. A client that sends its bodies one after another never gets
        here; one that spreads the window over many uploads at once does."""
        while self._held > self._held_limit:
            buffering = [sid for sid, body in self.pending.items() if body.ticket is None]
            if not buffering:
                return  # all wait for an upload slot: they go on as slots free up
            sid = max(buffering)
            log.info(
                "stream %d from %s: request bodies fill the connection window; refused",
                sid,
                self.peer,
            )
            self.conn.reset_stream(sid, ErrorCode.REFUSED_STREAM)
            self._on_reset(sid)

    def _consumer(self, sid: int) -> Callable[[int], None]:
        post = self.runner.post
        ack = self._ack

        def consumed(size: int) -> None:
            post(ack, sid, size)

        return consumed

    def _ack(self, sid: int, size: int) -> None:
        self.conn.acknowledge_received_data(sid, size)
        self.runner.dirty.add(self)

    def _on_data(self, event: DataReceived) -> None:
        sid = event.stream_id
        body = self.bodies.get(sid)
        if body is None:
            # Nobody will read these bytes: give the window back now.
            self.conn.acknowledge_received_data(sid, event.flow_controlled_length)
            return
        data = event.data
        if self._limit_post and body.size + len(data) > self._limit_post:
            log.warning("stream %d from %s: body over limit-post; reset", sid, self.peer)
            self.conn.reset_stream(sid, ErrorCode.CANCEL)
            self._on_reset(sid)
            return
        if data:
            body.feed(data)
        pending = sid in self.pending
        if pending:
            self._held += len(data)
        if event.end_stream:
            body.end()
            del self.bodies[sid]
            if pending:
                self._start_buffered(sid, body)
        elif pending:
            if body.outgrown:
                self._ask_slot(sid, body)
            if self._held > self._held_limit:
                self._relieve()

    def _on_reset(self, sid: int) -> None:
        exchange = self.exchanges.pop(sid, None)
        self.output.discard(sid)
        self.bodies.pop(sid, None)
        self._unacked.pop(sid, None)  # the core returned the credit with the stream
        if self._drop_pending(sid) is not None:
            self._maybe_close()
        elif exchange is not None:
            exchange.cancel()

    # ---------------------------------------------------------------- output (Sink)

    def respond(self, exchange: Exchange, head: ResponseHead, body: bytes) -> None:
        self._send_whole(exchange, head, body)
        self.done(exchange)

    def _send_whole(self, exchange: Exchange, head: ResponseHead, body: bytes) -> None:
        sid = exchange.key
        conn = self.conn
        if not conn.is_open(sid):
            return
        self.runner.dirty.add(self)
        try:
            if len(body) <= conn.outbound_window(sid):
                conn.send_response(
                    sid, head.status, head.headers, reason=head.reason, body=body, end_stream=True
                )
                return
            conn.send_response(sid, head.status, head.headers, reason=head.reason)
        except ProtocolError as exc:
            self._response_failed(exchange, exc)
            return
        output = self.output
        output.open(sid)
        output.write(sid, body)
        output.end(sid)
        self._pump(sid)

    def send_head(self, exchange: Exchange, head: ResponseHead) -> None:
        sid = exchange.key
        if not self.conn.is_open(sid):
            return
        try:
            self.conn.send_response(sid, head.status, head.headers, reason=head.reason)
        except ProtocolError as exc:
            self._response_failed(exchange, exc)
            return
        self.output.open(sid)
        self.runner.dirty.add(self)

    def send_chunk(self, exchange: Exchange, chunk: bytes) -> None:
        if not self.output.write(exchange.key, chunk):
            exchange.sent(len(chunk))  # the stream is gone; wake the application so it notices
            return
        self._pump(exchange.key)

    def end_response(self, exchange: Exchange) -> None:
        if self.output.end(exchange.key):
            self._pump(exchange.key)

    def abort_response(self, exchange: Exchange, reason: str) -> None:
        sid = exchange.key
        self.output.discard(sid)
        if self.conn.is_open(sid):
            code = ErrorCode.DEADLINE_EXCEEDED if reason == "deadline" else ErrorCode.INTERNAL_ERROR
            self.conn.reset_stream(sid, code)
            self.runner.dirty.add(self)

    def done(self, exchange: Exchange) -> None:
        self.runner.done(exchange)
        self.active -= 1
        sid = exchange.key
        if self._uploading and sid in self._uploading:
            self._uploading.discard(sid)
            self.ctx.uploads.release(self)
        if self._unacked:
            size = self._unacked.pop(sid, 0)
            if size:  # the application is done with its buffered body: reopen the window
                self.conn.acknowledge_received_data(sid, size)
                self.runner.dirty.add(self)
        # The thread is finished: body bytes still arriving are acknowledged unread, and a
        # response still in its outbox goes on without the exchange.
        if self.exchanges.get(sid) is exchange:
            del self.exchanges[sid]
            unread = self.bodies.pop(sid, None) is not None
            if unread and sid not in self.output and self.conn.is_open(sid):
                # The response is complete but the request body is not, and no one will read
                # it: stop the upload (RFC 9113 8.1), which also ends the stream so that an
                # idle connection is not kept open by a client that stopped sending.
                self.conn.reset_stream(sid, ErrorCode.NO_ERROR)
                self.runner.dirty.add(self)
        self._maybe_close()

    def _response_failed(self, exchange: Exchange, exc: ProtocolError) -> None:
        log.error("stream %d: cannot send the response: %s", exchange.key, exc)
        if self.conn.is_open(exchange.key):
            self.conn.reset_stream(exchange.key, ErrorCode.INTERNAL_ERROR)
        exchange.cancel()

    def _pump(self, only: int | None) -> None:
        """Move queued response bytes into frames as far as the windows allow, unless the
        socket is not draining: a client may grant a huge window and then not read, and its
        bytes must then wait in the bounded outboxes, not in the transport's buffer."""
        if not self.output or self.writing_paused:
            return
        self.output.pump(only)
        self.runner.dirty.add(self)

    def _sent(self, sid: int, size: int) -> None:
        """The scheduler framed ``size`` bytes of the stream: its thread may be waiting for
        buffer room (unless the exchange is done and its response goes on without it)."""
        exchange = self.exchanges.get(sid)
        if exchange is not None:
            exchange.sent(size)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed and self.transport is not None:
            self.transport.write(data)
        if self.conn.state is ConnectionState.CLOSED:
            self.close()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.output and not self.closed:
            self._pump(None)
            self.flush()

    # ---------------------------------------------------------------- lifecycle

    @property
    def busy(self) -> bool:
        return bool(self.active or self.output)

    def _abandon_all(self) -> None:
        for sid in list(self.pending):
            self._drop_pending(sid)
        for exchange in self.exchanges.values():
            exchange.cancel()
        self.exchanges.clear()
        self.bodies.clear()
        self.output.clear()

    def _close_now(
        self,
        reason: str | None,
        goaway: ErrorCode | None = None,
        debug: bytes = b"",
    ) -> None:
        """End the connection at once: log ``reason`` (None: logged already, or nothing worth
        a line), queue a GOAWAY with ``goaway`` (None: the core queued its own, or none is
        due), cancel every exchange, write what is queued, and close."""
        if reason is not None:
            log.info("mux connection from %s: %s; closing", self.peer, reason)
        if goaway is not None:
            self.conn.send_goaway(goaway, debug=debug)
        self._abandon_all()
        self.flush()
        self.close()

    def _protocol_error(self, exc: ProtocolError) -> None:
        """A connection error: the core queued its GOAWAY; send it and close."""
        if not isinstance(exc, FloodError):
            log.warning(
                "mux connection from %s: %s; closing (GOAWAY %s)",
                self.peer,
                exc,
                exc.error_code.name,
            )
            self._close_now(None)
            return
        self._abandon_all()
        self.ctx.flood.log_closed(self.peer, exc)
        if self.transport is not None and not self.closed:
            # No lingering close for a flooder: it kept sending while its turns waited, and
            # draining megabytes of its backlog to spare the GOAWAY an RST cost more than the
            # flood itself. The GOAWAY is written before the close (the RST then only follows
            # it), which is as much as a flooder is owed.
            self.transport.write(self.conn.data_to_send())
            self.close(linger=False)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._abandon_all()

    def on_peer_eof(self) -> None:
        # Bodies still arriving never will: fail their readers now, not after body_timeout,
        # and drop the requests still waiting for theirs (they never reach the application).
        for sid in list(self.pending):
            self.exchanges.pop(sid, None)
            self.bodies.pop(sid, None)
            self._drop_pending(sid)
        for body in self.bodies.values():
            body.fail("the client closed the connection before the end of the body")
        super().on_peer_eof()

    def _maybe_close(self) -> None:
        """Close once nothing is left in flight, if the connection is ending: our final GOAWAY
        went out, the client sent GOAWAY or its FIN, or a connection error closed it."""
        if self.closed or self.busy:
            return
        conn = self.conn
        ending = (
            self._final_goaway_sent
            or self.peer_eof
            or conn.goaway_received is not None
            or conn.state is ConnectionState.CLOSED
        )
        if ending:
            self.flush()
            self.close()

    def refuse_unstarted(self) -> None:
        for sid, exchange in list(self.exchanges.items()):
            if not exchange.started and self.conn.is_open(sid):
                self.conn.reset_stream(sid, ErrorCode.REFUSED_STREAM)
                self._on_reset(sid)

    def shutdown(self) -> None:
        """Graceful stop, HTTP/2's two steps (PROTOCOL.md [S-5]): GOAWAY(2^31-1) and a PING
        first, so the client stops opening streams without any being refused; once the PING
        ACK proves it saw that (or _DRAIN_PING_TIMEOUT passed), the final GOAWAY with the real
        last stream id."""
        if self.closed or self._drain_ping_at:
            return
        self._drain_ping_at = _monotonic()
        if self.conn.state is ConnectionState.OPEN and self.conn.goaway_sent is None:
            self.conn.send_goaway(last_stream_id=MAX_STREAM_ID)
            self.conn.ping(_DRAIN_PING)
            self.flush()
        else:
            self._final_goaway()

    def _final_goaway(self) -> None:
        if self._final_goaway_sent:
            return
        self._final_goaway_sent = True
        if self.conn.state is not ConnectionState.CLOSED:
            self.conn.send_goaway()
        self.flush()
        self._maybe_close()

    def enforce_timeouts(self, now: float) -> None:
        config = self.config
        timeout = config.header_timeout
        drain_ping_at = self._drain_ping_at
        if (
            drain_ping_at
            and not self._final_goaway_sent
            and now - drain_ping_at > _DRAIN_PING_TIMEOUT
        ):
            self._final_goaway()  # the client does not answer pings: stop waiting for it
            return
        conn = self.conn
        if not conn.preface_received:
            if now - self.opened > timeout:
                self._close_now(f"no preface in {timeout:g}s")
            return
        if not conn.settings_acknowledged and now - self.opened > timeout:
            # Until the client ACKs our settings we enforce the protocol defaults, not our
            # limits (PROTOCOL.md [E-5]): a client must not keep them by never acknowledging.
            self._close_now(
                f"settings not acknowledged in {timeout:g}s",
                ErrorCode.SETTINGS_TIMEOUT,
                b"settings not acknowledged",
            )
            return
        since = conn.incomplete_frame_since
        if since is not None and now - since > timeout:
            # One frame (at most 64 KiB) dribbled for longer than a whole head may take:
            # slowloris on the framing (PROTOCOL.md [L-4]).
            self._close_now(
                f"a frame took more than {timeout:g}s to arrive",
                ErrorCode.PROTOCOL_ERROR,
                b"frame too slow",
            )
            return
        body_timeout = self._body_timeout
        for sid, body in list(self.pending.items()):
            # A body the server buffers, stalled (one waiting for an upload slot waits on us).
            if body.ticket is None and now - body.last_at > body_timeout:
                log.info(
                    "stream %d from %s: no request body bytes for %gs; reset",
                    sid,
                    self.peer,
                    body_timeout,
                )
                conn.reset_stream(sid, ErrorCode.CANCEL)
                self._on_reset(sid)
                self.flush()
        for sid in self.output.stuck(now, config.stuck_window_timeout):
            log.warning(
                "stream %d from %s: send window shut for %gs; reset",
                sid,
                self.peer,
                config.stuck_window_timeout,
            )
            conn.reset_stream(sid, ErrorCode.CANCEL)
            self._on_reset(sid)
            self.flush()
        idle = not self.busy and not conn.open_streams
        if idle and now - self.last_activity > config.idle_timeout:
            self._close_now(None, ErrorCode.NO_ERROR, b"idle")
