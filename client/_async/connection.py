"""One multiplexed muxwsgi connection: a socket, the sans-IO core, and a reader.

The reader (a task, or a thread in the sync flavour) is the only one that reads from the socket.
It feeds the core and files each stream's events into that stream's inbox, waking only the
caller waiting on it.

Two guards. The core is used only inside ``self._guard`` blocks, which never await (in the
sync flavour callers are threads and the guard is a lock; in the async one it costs nothing).
Bytes the core made go, in the core's order, into one outbox; one caller at a time writes
it (``self._writing``) until it is empty, and the others leave their bytes to that writer. So
frames leave in the order the core made them (a HEADERS overtaken by a later one would be a
stream-id decrease, a connection error), no caller waits for another's write, and requests
queued by many callers while one write is in progress leave together in the next one: one
system call for all of them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

import muxwsgi
from muxwsgi import (
    MAX_TIMEOUT_MS,
    TIMEOUT_VAR,
    Connection,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    PingAcknowledged,
    ProtocolError,
    ResponseReceived,
    Role,
    SettingsChanged,
    StreamEnded,
    StreamReset,
    TooManyStreamsError,
    VarsBlock,
    WindowUpdated,
    describe_peer_bytes,
)

from .._config import ClientConfig
from .._exceptions import (
    ConnectError,
    ConnectTimeout,
    NotMuxWSGIError,
    ProtocolViolation,
    ReadError,
    RequestTimeout,
    Retry,
    StreamResetError,
    WriteError,
)
from .._metrics import EndpointStats
from .._models import Chunk, Endpoint, Readable, body_chunks, remaining
from .._primitives import (
    AsyncBackground,
    AsyncEvent,
    AsyncGuard,
    AsyncStream,
    async_connect,
    async_gather_point,
    asyncio_loop,
)
from .._tls import certificate_names, describe_handshake_failure, is_name_mismatch

__all__ = ("AsyncMuxConnection", "AsyncResponseBody", "StreamState")

#: What a stream's inbox holds, in the order the server sent it.
StreamEvent = ResponseReceived | DataReceived | StreamEnded | StreamReset

# The names used per request are Final: the compiled build reads a Final name from a C static,
# and any other global from the module's dict on every use (~130 instructions each). Names
# imported from the core's package (not compiled) are read from the dict too, so the ones
# used per request have Final aliases here.
_monotonic: Final = time.monotonic
_READ_SIZE: Final = 1 << 18
#: Frames handled between two chances for the callers to run. A read can bring the answers to
#: every request in flight; handling them all before any caller sends its next request makes
#: the client and the server take turns, each idle while the other works (measured: both
#: processes ~50% busy at 64 in flight). Handing the answers over in slices lets the first
#: callers' next requests leave while the rest are still being read: ~1.7x the req/s. Hello
#: x64 (128 frames a round): slices of 32 and 64 frames both reach ~5x uWSGI classic, 64 with
#: ~5% less CPU per request on each side; 128 (one slice) is back to taking turns.
_FRAMES_PER_SLICE: Final = 64
_KEEPALIVE_PING: Final = b"kpalive!"
#: While requests with deadlines are in flight, the reader wakes at least this often to expire
#: them (how late a deadline may fire). Cheaper than a timer per waiting request.
DEADLINE_TICK: Final = 0.01
_RESPONSE_RECEIVED: Final = ResponseReceived
_DATA_RECEIVED: Final = DataReceived
_STREAM_ENDED: Final = StreamEnded
_STREAM_RESET: Final = StreamReset
_TIMEOUT_VAR: Final = TIMEOUT_VAR
_MAX_TIMEOUT_MS: Final = MAX_TIMEOUT_MS
_deque: Final = deque


async def open_stream(
    endpoint: Endpoint, timeout: float | None, config: ClientConfig
) -> AsyncStream:
    """Connect to ``endpoint`` (and run the TLS handshake, for muxs:// and uwsgis://);
    ConnectTimeout or ConnectError (saying why, and what to do where that is known) when it
    fails."""
    tls = config.tls_context(endpoint.protocol) if endpoint.tls else None
    try:
        return await async_connect(
            endpoint.connect_host, endpoint.port, endpoint.path, timeout, tls, endpoint.host
        )
    except TimeoutError:
        raise ConnectTimeout(f"{endpoint}: connect timed out after {timeout}s") from None
    except ssl.SSLError as exc:
        names = (
            await _certificate_names(endpoint, timeout, config) if is_name_mismatch(exc) else None
        )
        why = describe_handshake_failure(exc, endpoint.host, names)
        raise ConnectError(f"{endpoint}: {why}") from None
    except OSError as exc:
        raise ConnectError(
            f"{endpoint}: cannot connect: {endpoint.describe_connect_error(exc)}"
        ) from None


async def _certificate_names(
    endpoint: Endpoint, timeout: float | None, config: ClientConfig
) -> list[str] | None:
    """The names on the certificate of a server that failed the name check, read over a
    second connection that checks the chain only (for the error message; None if that fails
    too, or the context is the caller's own)."""
    probe = config.probe_context(endpoint.protocol)
    if probe is None:
        return None
    try:
        stream = await async_connect(
            endpoint.connect_host, endpoint.port, "", timeout, probe, endpoint.host
        )
    except (OSError, TimeoutError):
        return None
    try:
        return certificate_names(stream.peer_certificate())
    finally:
        await stream.close()


class StreamState(AsyncEvent):
    """One request's view of the connection: its events, and who waits for them. It is itself
    the event set when its inbox grows (one object per request, not two); the send window's
    event is made by the first upload that has to wait for it.

    A waiter clears the event, then checks its condition again; a waker changes the
    condition, then sets the event. In that order no wake-up is lost, with tasks or with
    threads.
    """

    __slots__ = ("deadline", "done", "expired", "inbox", "loop", "window")

    def __init__(self, deadline: float | None, loop: asyncio.AbstractEventLoop | None) -> None:
        super().__init__(loop)
        self.loop = loop  # the connection's asyncio loop, or None (see AsyncEvent)
        self.inbox: deque[StreamEvent] = _deque()
        self.window: AsyncEvent | None = None  # set when a send window opens
        self.done = False
        self.deadline = deadline
        self.expired = False  # the reader saw the deadline pass (and woke the waiters)

    def wake(self) -> None:
        self.set()

    def wake_window(self) -> None:
        if self.window is not None:
            self.window.set()

    def inbox_event(self) -> AsyncEvent:
        """The event to wait on for the inbox (this state), cleared: check the inbox again
        after this."""
        self.clear()
        return self

    def window_event(self) -> AsyncEvent:
        """The event to wait on for the send window, cleared (check again after this)."""
        if self.window is None:
            self.window = AsyncEvent(self.loop)
        else:
            self.window.clear()
        return self.window


class AsyncMuxConnection:
    """A connection to ``endpoint``. Open it with :meth:`open`; close with :meth:`aclose`."""

    def __init__(
        self,
        endpoint: Endpoint,
        stream: AsyncStream,
        background: AsyncBackground,
        config: ClientConfig,
        stats: EndpointStats,
    ) -> None:
        self.endpoint = endpoint
        #: The endpoint's figures: latency, failures (shared with its other connections).
        self.stats = stats
        self.url = str(endpoint)  # for every response: formatted once
        self.config = config
        self._stream = stream
        self._background = background
        self._core = Connection(Role.CLIENT, config.connection_config())
        self._guard = AsyncGuard()
        self._writing = False  # a caller is writing the outbox (see _flush)
        self._outbox: list[bytes] = []
        self._streams: dict[int, StreamState] = {}
        #: Streams with a deadline, which the reader expires (see _expire_deadlines).
        self._timed: dict[int, StreamState] = {}
        #: Whether the reader's current read is bounded by DEADLINE_TICK: a waiter may then
        #: leave its deadline to the reader instead of arming a timer of its own.
        self._ticking = False
        self._next_expiry = 0.0
        self._last_read = _monotonic()
        #: The asyncio loop the connection lives on (None: another backend, or sync): found
        #: once, not per wait (see AsyncEvent).
        self._loop = asyncio_loop()
        self._ready = AsyncEvent(self._loop)
        self._error: Exception | None = None
        #: The server sent a GOAWAY without an error: it is draining, not failing.
        self._goaway = False
        self._closing = False  # closed by us (aclose)
        #: Called once when the connection gets a GOAWAY, and once when it dies (the pool's).
        self.on_change: Callable[[AsyncMuxConnection], None] | None = None
        self._ping_sent = 0.0
        #: Why the server said it ends the connection (a GOAWAY with an error), for the error
        #: its close then raises.
        self._goaway_reason = ""
        #: Streams reserved by the pool and not yet finished (the balancing figure).
        self.outstanding = 0
        self.local = stream.local_address()
        self.opened = _monotonic()

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        background: AsyncBackground,
        config: ClientConfig,
        timeout: float | None,
        stats: EndpointStats | None = None,
    ) -> AsyncMuxConnection:
        """Connect, send our PREFACE, start the reader, wait for the server's PREFACE.

        Raises ConnectError / ConnectTimeout, or NotMuxWSGIError when the peer answers
        something else (an HTTP server) or closes at once (a classic uwsgi server).
        """
        deadline = None if timeout is None else _monotonic() + timeout
        stream = await open_stream(endpoint, timeout, config)
        conn = cls(endpoint, stream, background, config, stats or EndpointStats())
        try:
            await conn._flush()
        except WriteError as exc:
            await stream.close()
            raise ConnectError(str(exc)) from None
        background.spawn(conn._reader)
        if not await conn._ready.wait(remaining(deadline)):
            await conn.aclose()
            raise NotMuxWSGIError(
                f"{endpoint}: no muxwsgi PREFACE from the server in {timeout:g}s: is it a muxwsgi "
                "server? (an HTTP server waits silently for a request line)"
            )
        if conn._goaway_reason or (
            isinstance(conn._error, ReadError | WriteError) and not conn._core.preface_received
        ):
            # Refused before any request: a GOAWAY with an error right after the PREFACE, or
            # a failure before it (a TLS alert refusing our certificate). Nothing was
            # processed, and the pool treats it as any other failure to connect. (A draining
            # server's PREFACE, GOAWAY and close is no refusal: that error goes on as it is.)
            why = str(conn._error)
            if conn._goaway_reason:
                why = f"{endpoint}: the server refused the connection{conn._goaway_reason}"
            await conn.aclose()
            raise ConnectError(why)
        if conn._error is not None:
            raise conn._error
        return conn

    async def aclose(self) -> None:
        self._closing = True
        if self._error is None:
            self._error = ReadError(f"{self.endpoint}: the connection was closed by the client")
        self._wake_all()
        await self._stream.close()

    @property
    def usable(self) -> bool:
        """Whether new streams may go here (open, no GOAWAY either way)."""
        return self._error is None and self._core.can_open_stream

    @property
    def capacity(self) -> int:
        """How many more streams the server allows here now."""
        if not self.usable:
            return 0
        return self._core.remote_settings.max_concurrent_streams - self.outstanding

    @property
    def closed(self) -> bool:
        return self._error is not None

    @property
    def failed(self) -> bool:
        """Whether it died without a GOAWAY, and not closed by us: a failure of its endpoint
        (refused, reset, a keepalive PING unanswered, a protocol error)."""
        return self._error is not None and not self._goaway and not self._closing

    @property
    def error(self) -> Exception | None:
        """Why it is closed (None while it is open)."""
        return self._error

    # ---------------------------------------------------------------- the reader

    async def _reader(self) -> None:
        config = self.config
        got_any = False
        interval = config.keepalive_interval
        try:
            while True:
                self._ticking = bool(self._timed)
                timeout = interval or None
                if self._ticking:
                    timeout = DEADLINE_TICK if timeout is None else min(timeout, DEADLINE_TICK)
                try:
                    data = await self._stream.read(_READ_SIZE, timeout)
                except TimeoutError:
                    self._expire_deadlines()
                    if interval and _monotonic() - self._last_read >= interval:
                        await self._keepalive()
                    continue
                self._last_read = _monotonic()
                if not data:
                    if not got_any:
                        classic = self.endpoint.with_protocol("uwsgi")
                        raise NotMuxWSGIError(
                            f"{self.endpoint}: the server closed the connection instead of "
                            "answering the muxwsgi PREFACE (a classic uwsgi server? to speak "
                            f"classic uwsgi to it, use {classic})"
                        )
                    raise ReadError(
                        f"{self.endpoint}: the server closed the connection{self._goaway_reason}"
                    )
                while True:  # a slice of the frames at a time (see _FRAMES_PER_SLICE)
                    with self._guard:
                        try:
                            events = self._core.receive_data(data, _FRAMES_PER_SLICE)
                        except muxwsgi.PrefaceError:
                            raise NotMuxWSGIError(
                                f"{self.endpoint}: not a muxwsgi server: it sent "
                                f"{describe_peer_bytes(data)}"
                            ) from None
                    try:
                        await self._flush()  # acknowledgements and window updates the data caused
                    except WriteError:
                        self._dispatch(events)  # what the server said last (a GOAWAY's reason)
                        raise
                    got_any = True
                    self._dispatch(events)
                    if not self._core.frames_buffered:
                        break
                    data = b""  # the rest is buffered in the core
                    await async_gather_point()
                if self._timed and self._last_read >= self._next_expiry:
                    self._expire_deadlines()
        except Exception as exc:  # the connection is over: tell every waiter why
            self._fail(exc)
            await self._stream.close()

    def _fail(self, exc: Exception) -> None:
        first = self._error is None
        if first:
            if isinstance(exc, ProtocolError):
                exc = ProtocolViolation(f"{self.endpoint}: protocol error: {exc}")
            elif isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                exc = ReadError(f"{self.endpoint}: {exc.strerror or exc}")
            self._error = exc
        self._wake_all()
        self._ready.set()
        if first and self.on_change is not None:
            self.on_change(self)

    def _expire_deadlines(self) -> None:
        """Wake the waiters of streams whose deadline passed; they raise RequestTimeout."""
        now = _monotonic()
        self._next_expiry = now + DEADLINE_TICK
        for sid, state in list(self._timed.items()):
            if state.deadline is not None and state.deadline <= now:
                self._timed.pop(sid, None)
                state.expired = True
                state.wake()
                state.wake_window()

    def _wake_all(self) -> None:
        for stream in self._streams.values():
            stream.wake()
            stream.wake_window()

    def _dispatch(self, events: list[muxwsgi.Event]) -> None:  # not Event: the sync twin's
        streams = self._streams
        for event in events:
            # type(event) each time, not once in a variable: mypy narrows the event on it.
            if (
                type(event) is _RESPONSE_RECEIVED
                or type(event) is _DATA_RECEIVED
                or type(event) is _STREAM_ENDED
            ):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.inbox.append(event)
                    stream.wake()
            elif type(event) is _STREAM_RESET:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.inbox.append(event)
                    stream.wake()
                    stream.wake_window()
            elif type(event) is WindowUpdated:
                if event.stream_id == 0:
                    for stream in streams.values():
                        stream.wake_window()
                else:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream.wake_window()
            elif type(event) is SettingsChanged:
                self._ready.set()
            elif type(event) is PingAcknowledged and event.data == _KEEPALIVE_PING:
                self._ping_sent = 0.0
            elif type(event) is ConnectionTerminated:
                # Refused streams were reported as StreamReset, and usable turns False. A
                # GOAWAY with an error code is a failure; without, a drain (reload, stop).
                self._goaway = event.error_code == ErrorCode.NO_ERROR
                if not self._goaway:
                    debug = event.debug.decode("utf-8", "replace")
                    self._goaway_reason = f" (GOAWAY {event.error_code.name}: {debug})"
                if self.on_change is not None:
                    self.on_change(self)

    async def _keepalive(self) -> None:
        """No byte for keepalive_interval: ping; no answer in keepalive_timeout: dead peer."""
        if self._ping_sent and _monotonic() - self._ping_sent > self.config.keepalive_timeout:
            raise ReadError(f"{self.endpoint}: no answer to a keepalive PING: the peer is gone")
        if not self._ping_sent:
            with self._guard:
                self._core.ping(_KEEPALIVE_PING)
            await self._flush()
            self._ping_sent = _monotonic()

    async def _flush(self) -> None:
        """Write everything the core has queued, ours and other callers' alike; or, when a
        write is already in progress, leave it to that writer, which writes until the outbox
        is empty (so a caller never waits for another's write, and many share one).

        Raises WriteError when the write fails or exceeds ``write_timeout``; the connection is
        then failed with it for every stream (part of a frame may have left: nothing more can
        be written after it).
        """
        outbox = self._outbox
        with self._guard:
            data = self._core.data_to_send()
            if data:
                outbox.append(data)
            if self._writing or not outbox:
                return
            self._writing = True
        await async_gather_point()
        try:
            while True:
                with self._guard:
                    if not outbox:
                        self._writing = False
                        return
                    data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
                    outbox.clear()
                await self._stream.write(data, self.config.write_timeout)
        except BaseException as exc:
            # Writes are shielded from cancellation (a frame cut short would corrupt the
            # connection; the write timeout still bounds them): this is a failed socket, or
            # an interrupt with the bytes taken and their fate unknown. Either way the
            # connection cannot go on.
            self._writing = False
            if isinstance(exc, TimeoutError):
                why = f"no write progress in write_timeout={self.config.write_timeout:g}s"
            elif isinstance(exc, OSError):
                why = exc.strerror or str(exc)
            else:
                why = "interrupted"
            error = WriteError(f"{self.endpoint}: {why}{self._goaway_reason}")
            self._fail(error)
            if isinstance(exc, Exception):
                raise error from None
            raise

    # ---------------------------------------------------------------- one request

    async def request(
        self,
        vars: dict[str, str],
        block: VarsBlock | None,
        body: bytes | Iterable[Chunk] | Readable,
        deadline: float | None,
    ) -> tuple[ResponseReceived, StreamState, int]:
        """Send a request (``vars``, then ``block``'s); return its response head, its stream
        state and its stream id.

        Raises Retry when the request never reached the server's application (the stream was
        refused, the connection was already going away, or nothing was written).
        """
        timeout = remaining(deadline)
        if timeout is not None:
            if timeout <= 0:
                raise RequestTimeout(f"{self.endpoint}: the deadline passed before sending")
            vars[_TIMEOUT_VAR] = str(min(_MAX_TIMEOUT_MS, max(1, int(timeout * 1000))))
        # The body goes with the head (small), or after it as the windows allow (streamed).
        streamed: Iterable[Chunk] | None
        if isinstance(body, bytes):
            small, streamed = body, None
        else:
            small, streamed = b"", body_chunks(body)
        state = StreamState(deadline, self._loop)
        with self._guard:
            if self._error is not None:
                raise Retry(f"{self.endpoint}: the connection is closed")
            if small and len(small) > min(
                self._core.remote_settings.initial_window_size,
                self._core.outbound_connection_window,
                self._core.remote_settings.max_frame_size,
            ):
                small, streamed = b"", [small]
            try:
                sid = self._core.send_request(
                    vars, body=small, end_stream=streamed is None, block=block
                )
            except TooManyStreamsError as exc:
                raise Retry(f"{self.endpoint}: {exc}") from None
            self._streams[sid] = state
            if deadline is not None:
                self._timed[sid] = state
        try:
            await self._flush()
        except WriteError:
            # Whether any of it reached the server is unknown: not a transparent retry.
            self._streams.pop(sid, None)
            raise
        try:
            if streamed is not None:
                await self._upload(sid, state, streamed, deadline)
            head = await self.next_event(sid, state, deadline)
        except BaseException as exc:
            await self.cancel(sid)
            raise exc  # not a bare raise after an await: see sending.py
        if type(head) is not _RESPONSE_RECEIVED:
            raise ProtocolViolation(f"{self.endpoint}: stream {sid}: {head!r} before the response")
        return head, state, sid

    async def _upload(
        self, sid: int, state: StreamState, body: Iterable[object], deadline: float | None
    ) -> None:
        """Send a streamed body as the flow-control windows allow, then END_STREAM. Raises
        TypeError for a piece that is not bytes (the caller's types are not trusted)."""
        core = self._core
        for chunk in body:
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"request body chunks must be bytes, not {type(chunk).__name__}")
            view = memoryview(chunk)
            while view:
                with self._guard:
                    if not core.is_open(sid):
                        return  # reset, or answered early: the reply says what happened
                    window = min(core.outbound_window(sid), 1 << 20)
                    if window > 0:
                        piece, view = view[:window], view[window:]
                        core.send_data(sid, bytes(piece))
                    else:
                        waiting = state.window_event()
                if window > 0:
                    await self._flush()
                    continue
                if self._error is not None:
                    raise self._error
                if state.expired or not await waiting.wait(self._wait_timeout(deadline)):
                    raise RequestTimeout(
                        f"{self.endpoint}: stream {sid}: deadline passed uploading"
                    )
        with self._guard:
            if not core.is_open(sid):
                return
            core.end_stream(sid)
        await self._flush()

    async def next_event(
        self, sid: int, state: StreamState, deadline: float | None
    ) -> ResponseReceived | DataReceived | StreamEnded:
        """The stream's next event; raise for resets, a dead connection or the deadline."""
        inbox = state.inbox
        while not inbox:
            if self._error is not None:
                raise self._error
            waiting = state.inbox_event()
            if inbox:  # filed while we cleared: no lost wakeup (set happens after append)
                break
            if state.expired or not await waiting.wait(self._wait_timeout(deadline)):
                await self.cancel(sid)
                raise RequestTimeout(f"{self.endpoint}: stream {sid}: deadline passed")
        event = inbox.popleft()
        if isinstance(event, _STREAM_RESET):  # not type(): mypy narrows the rest on isinstance
            self._forget(sid)
            code = event.error_code
            if code == ErrorCode.REFUSED_STREAM:
                raise Retry(f"{self.endpoint}: stream {sid} refused (never processed)")
            if code == ErrorCode.DEADLINE_EXCEEDED:
                raise RequestTimeout(f"{self.endpoint}: stream {sid}: the server's deadline passed")
            raise StreamResetError(
                f"{self.endpoint}: stream {sid} reset by the server: {code.name}", code
            )
        if type(event) is _STREAM_ENDED:
            self._forget(sid)
        return event

    def _wait_timeout(self, deadline: float | None) -> float | None:
        """How long a waiter times its own wait: not at all when the reader is ticking (it
        expires the deadline, within DEADLINE_TICK); else the time left."""
        return None if self._ticking else remaining(deadline)

    async def consumed(self, sid: int, size: int) -> None:
        """The caller read ``size`` body bytes: give the server its window back."""
        with self._guard:
            if not self._core.is_open(sid):
                return
            self._core.acknowledge_received_data(sid, size)
        await self._flush()

    async def cancel(self, sid: int) -> None:
        """Abandon a stream (RESET CANCEL) unless it already finished."""
        self._forget(sid)
        if self._error is not None:
            return
        try:
            with self._guard:
                if not self._core.is_open(sid):
                    return
                self._core.reset_stream(sid, ErrorCode.CANCEL)
            await self._flush()
        except WriteError:
            pass

    def take_complete(self, sid: int, state: StreamState) -> bytes | None:
        """The whole body, if every event up to the end of the stream is already filed (the
        usual case for small responses: no wait, no generator); else None, touching nothing."""
        inbox = state.inbox
        if not inbox or type(inbox[-1]) is not _STREAM_ENDED:
            return None
        first = inbox[0]
        if len(inbox) == 2 and type(first) is _DATA_RECEIVED:
            body = first.data  # the usual small body, one DATA then the end: no list, no join
        else:
            chunks = []
            for event in inbox:
                if type(event) is _DATA_RECEIVED:
                    chunks.append(event.data)
                elif type(event) is not _STREAM_ENDED:
                    return None
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        inbox.clear()
        self._forget(sid)  # ended: the core returned the stream's window credit itself
        return body

    def _forget(self, sid: int) -> None:
        self._timed.pop(sid, None)
        state = self._streams.pop(sid, None)
        if state is not None:
            state.done = True


class AsyncResponseBody:
    """The body of one stream's response as it arrives (``async for``), each piece's window
    given back to the server when the caller asks for the next one (what was read is
    consumed). A class, not an async generator: the compiled build has no async generators."""

    __slots__ = ("_conn", "_deadline", "_sid", "_state", "_unacknowledged")

    def __init__(
        self, conn: AsyncMuxConnection, sid: int, state: StreamState, deadline: float | None
    ) -> None:
        self._conn = conn
        self._sid = sid
        self._state = state
        self._deadline = deadline
        self._unacknowledged = 0  # of the piece returned last

    def __aiter__(self) -> AsyncResponseBody:
        return self

    async def __anext__(self) -> bytes:
        """The next piece of the body. StopAsyncIteration at its end; raises what
        :meth:`AsyncMuxConnection.next_event` raises (resets, a dead connection, the
        deadline)."""
        conn, sid, state = self._conn, self._sid, self._state
        while not state.done:
            if self._unacknowledged:
                size, self._unacknowledged = self._unacknowledged, 0
                await conn.consumed(sid, size)
            event = await conn.next_event(sid, state, self._deadline)
            if type(event) is _STREAM_ENDED:
                break
            if type(event) is _DATA_RECEIVED:
                if not event.end_stream:
                    self._unacknowledged = event.flow_controlled_length
                if event.data:
                    return event.data
        raise StopAsyncIteration
