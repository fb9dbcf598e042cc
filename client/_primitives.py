"""The only I/O and concurrency primitives the client uses, in an async and a sync flavour with
the same method names, so that ``scripts/unasync.py`` can turn ``_async/`` into ``_sync/``.

Async: anyio (asyncio or trio). Sync: sockets and threads; no event loop, no portal, so the sync
client costs no thread hop per call and survives ``os.fork`` (the pool drops inherited sockets).
Every blocking call takes an explicit timeout in seconds (None: wait forever), because the sync
flavour has no cancel scopes; timeouts surface as the builtin TimeoutError.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.streams.tls

from ._tls import describe_tls_error

__all__ = (
    "AsyncBackground",
    "AsyncEvent",
    "AsyncGuard",
    "AsyncStream",
    "Background",
    "Event",
    "Guard",
    "Stream",
    "async_connect",
    "async_gather_point",
    "async_resolve",
    "async_sleep",
    "connect",
    "gather_point",
    "resolve",
    "sleep",
)


# ---------------------------------------------------------------- locks


class AsyncGuard:
    """Guards shared state across a block that never awaits (``with``, not ``async with``).

    Async: nothing to do, and nothing is done: every task runs on the one event-loop thread and
    a block without ``await`` cannot be interleaved. Sync: callers are threads, so it is a lock.
    """

    __slots__ = ()

    def __enter__(self) -> AsyncGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class Guard:
    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> Guard:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


# ---------------------------------------------------------------- events

#: Final: the compiled build reads it from a C static, not asyncio's module dict, per wait.
_Future: Final = asyncio.Future


class AsyncEvent:
    """An event that can be cleared. ``wait`` returns False on timeout.

    Waiters clear it, check their condition, then wait; setters change the condition, then
    set it. That order loses no wakeup, with tasks or with threads. Under asyncio a waiter
    waits on a bare future (an anyio.Event costs ~3 us to make: one per request adds up);
    under other backends, on an anyio.Event.
    """

    __slots__ = ("_flag", "_loop", "_others", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._flag = False
        #: The waiter, or the first of them: most events have one at most (a request's
        #: stream), and a slot costs less than a list made, grown and shrunk per wait.
        self._waiter: asyncio.Future[None] | anyio.Event | None = None
        self._others: list[asyncio.Future[None] | anyio.Event] | None = None
        #: The asyncio loop waiters run on, when the owner knows it: asyncio's own lookup
        #: calls getpid() every time (its fork check; CPython 3.11), a system call per wait.
        self._loop = loop

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        if self._waiter is not None:
            _wake(self._waiter)
        if self._others:
            for waiter in self._others:
                _wake(waiter)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, timeout: float | None) -> bool:
        if self._flag:
            return True
        loop = self._loop or asyncio_loop()
        waiter: asyncio.Future[None] | anyio.Event
        woken: Awaitable[object]
        if loop is not None:
            waiter = woken = loop.create_future()
        else:
            waiter = anyio.Event()
            woken = waiter.wait()
        if self._waiter is None:
            self._waiter = waiter
        elif self._others is None:
            self._others = [waiter]
        else:
            self._others.append(waiter)
        try:
            if timeout is None:
                await woken
            else:
                with anyio.move_on_after(max(0.0, timeout)):
                    await woken
        finally:
            if self._waiter is waiter:
                self._waiter = None
            elif self._others is not None:
                self._others.remove(waiter)
        # Woken, even if someone cleared it since: not a timeout.
        if isinstance(waiter, _Future):
            return waiter.done() and not waiter.cancelled()
        return waiter.is_set()


def _wake(waiter: asyncio.Future[None] | anyio.Event) -> None:
    if isinstance(waiter, _Future):
        if not waiter.done():
            waiter.set_result(None)
    else:
        waiter.set()


async def async_gather_point() -> None:
    """Let every other ready task run once, never raising cancellation: a writer calls it
    before collecting the outbox, so that requests made in the same loop iteration leave in
    one write."""
    await anyio.lowlevel.cancel_shielded_checkpoint()


def gather_point() -> None:
    pass  # threads queue concurrently anyway


def asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None (trio, or no loop)."""
    # asyncio._get_running_loop is private, but it is asyncio's own non-raising lookup (the
    # public get_running_loop is it plus a raise): this is asked on the per-wait path, where
    # a try/except per call costs. tests/client/test_primitives.py pins that it still exists
    # and behaves so, and fails loudly on a Python that drops it.
    return asyncio._get_running_loop()


class Event:
    __slots__ = ("_event",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:  # unused by threads
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(None if timeout is None else max(0.0, timeout))


async def async_sleep(seconds: float) -> None:
    await anyio.sleep(seconds)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


# ---------------------------------------------------------------- background work


class AsyncBackground:
    """Runs a connection's reader. Async: a task in a task group the client owns."""

    def __init__(self) -> None:
        self._group: anyio.abc.TaskGroup | None = None

    async def start(self) -> None:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()

    def spawn(self, func: Callable[..., Any], *args: Any) -> None:
        if self._group is None:
            raise RuntimeError("the client is not open: use it as a context manager")
        self._group.start_soon(func, *args)

    async def stop(self) -> None:
        if self._group is not None:
            group, self._group = self._group, None
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)


class Background:
    """Sync: a daemon thread per spawned reader."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        pass

    def spawn(self, func: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=func, args=args, daemon=True, name="muxwsgi-reader")
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def stop(self) -> None:
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5)
        self._threads = []


# ---------------------------------------------------------------- streams


def _typed_attribute(owner: type, name: str) -> object:
    """An anyio typed attribute: the key ``extra()`` looks a value up by. It is declared with
    the type of that value but is a sentinel object, which compiled code would check against
    the declared type (and refuse): it is read here as the object it is."""
    return getattr(owner, name)


_LOCAL_ADDRESS = _typed_attribute(anyio.abc.SocketAttribute, "local_address")
_RAW_SOCKET = _typed_attribute(anyio.abc.SocketAttribute, "raw_socket")
_PEER_CERTIFICATE = _typed_attribute(anyio.streams.tls.TLSAttribute, "peer_certificate")


class AsyncStream:
    """A connected byte stream (TCP or unix)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None) -> bytes:
        """Return up to ``max_bytes``; b"" when the peer closed. TimeoutError on timeout."""
        try:
            if timeout is None:
                return await self._stream.receive(max_bytes)
            with anyio.fail_after(max(0.0, timeout)):
                return await self._stream.receive(max_bytes)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return b""
        except anyio.BrokenResourceError as exc:
            raise ConnectionResetError(_broken(exc)) from exc
        except ssl.SSLError as exc:
            raise ConnectionResetError(describe_tls_error(exc)) from exc

    async def write(self, data: bytes, timeout: float | None) -> None:
        """Write all of ``data``. Shielded: cancelling the caller does not cut a write short
        (half a frame would corrupt the connection); ``timeout`` still bounds it."""
        try:
            with anyio.fail_after(None if timeout is None else max(0.0, timeout), shield=True):
                await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ConnectionResetError(str(exc) or "connection broken") from exc

    def local_address(self) -> tuple[str, str]:
        return _address_of(self._stream.extra(_LOCAL_ADDRESS, None))

    def peer_certificate(self) -> dict[str, Any]:
        """The server's verified certificate (``SSLSocket.getpeercert()``); {} without TLS."""
        cert = self._stream.extra(_PEER_CERTIFICATE, None)
        return cert if isinstance(cert, dict) else {}

    async def close(self) -> None:
        await self._stream.aclose()


#: Stop reading from the socket beyond this many buffered bytes (the reader is behind).
_HIGH_WATER = 1 << 20


class _StreamProtocol(asyncio.Protocol):
    """The asyncio side of _AsyncioStream: buffers what arrives, wakes the one reader."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        #: connection_lost was called: error is final.
        self.lost = False
        self.reader: asyncio.Future[None] | None = None
        self.drain: asyncio.Future[None] | None = None
        self.write_paused = False
        self.read_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered > _HIGH_WATER and not self.read_paused and self.transport:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.lost = True
        self.error = exc
        self._wake_reader()
        self.write_paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError("timed out"))


class _AsyncioStream(AsyncStream):
    """AsyncStream straight on an asyncio transport, used when anyio runs on asyncio: no
    task switch or cancel scope per write (a write only waits when the socket's buffer is
    full), timeouts as plain timer handles. Cancelling a caller never cuts a write short: the
    bytes are in the transport's buffer before any wait."""

    def __init__(self, transport: asyncio.Transport, protocol: _StreamProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        #: close() was called: the end of the stream is ours, not news from the peer.
        self._closed = False

    async def _wait(self, future: asyncio.Future[None], timeout: float | None) -> None:
        timer = (
            None if timeout is None else self._loop.call_later(max(0.0, timeout), _expire, future)
        )
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()

    async def read(self, max_bytes: int, timeout: float | None) -> bytes:
        protocol = self._protocol
        # A transport that is closing by itself (a fatal TLS error, e.g. the server's alert
        # refusing our certificate) says why only in connection_lost, a loop turn later: wait
        # for it, or the reason is lost and the end looks like a clean close.
        if not protocol.buffer and not protocol.eof and not self._closed:
            protocol.reader = self._loop.create_future()
            try:
                await self._wait(protocol.reader, timeout)
            finally:
                protocol.reader = None
        if not protocol.buffer:  # the end of the stream, a failed one, or closed by us
            if protocol.error is not None:
                raise ConnectionResetError(_broken(protocol.error))
            return b""
        data = protocol.buffer.popleft()
        if len(data) > max_bytes:
            data, rest = data[:max_bytes], data[max_bytes:]
            protocol.buffer.appendleft(rest)
        protocol.buffered -= len(data)
        if protocol.read_paused and protocol.buffered <= _HIGH_WATER // 2:
            protocol.read_paused = False
            self._transport.resume_reading()
        return data

    async def write(self, data: bytes, timeout: float | None) -> None:
        protocol = self._protocol
        if self._transport.is_closing():
            if not self._closed and not protocol.lost:  # why it closes comes next (see read)
                await self._drained(timeout)
            error = protocol.error
            raise ConnectionResetError("connection closed" if error is None else _broken(error))
        self._transport.write(data)
        if protocol.write_paused:
            await self._drained(timeout)
            if protocol.error is not None:
                raise ConnectionResetError(str(protocol.error))

    async def _drained(self, timeout: float | None) -> None:
        """Wait until writing resumes or the connection is lost (TimeoutError after
        ``timeout``)."""
        protocol = self._protocol
        protocol.drain = self._loop.create_future()
        try:
            await self._wait(protocol.drain, timeout)
        finally:
            protocol.drain = None

    def local_address(self) -> tuple[str, str]:
        return _address_of(self._transport.get_extra_info("sockname"))

    def peer_certificate(self) -> dict[str, Any]:
        return self._transport.get_extra_info("peercert") or {}

    async def close(self) -> None:
        self._closed = True
        self._transport.close()
        self._protocol._wake_reader()


class Stream:
    """A connected socket shared by a reader thread and writer threads.

    The socket is non-blocking and every call waits with poll() for its own timeout: a socket's
    timeout is per socket, not per call, and one thread changing it while another is blocked in
    recv() would switch the descriptor to non-blocking under that thread (EAGAIN).
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._readable = select.poll()
        self._readable.register(sock, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(sock, select.POLLOUT)

    def read(self, max_bytes: int, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self._readable.poll(_poll_ms(deadline)):
                raise TimeoutError("timed out reading")
            try:
                return self._sock.recv(max_bytes)
            except BlockingIOError:
                continue
            except OSError:
                if self._sock.fileno() == -1:  # closed by us from another thread
                    return b""
                raise

    def write(self, data: bytes, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        while True:
            try:
                # Sent, then sliced: compiled, a call inside a memoryview's slice runs twice
                # (mypyc 2.4.1 evaluates the bound again when no fast path applies).
                sent = self._sock.send(view)
                view = view[sent:]
            except BlockingIOError:
                pass
            if not view:
                return
            if not self._writable.poll(_poll_ms(deadline)):
                raise TimeoutError("timed out writing")

    def local_address(self) -> tuple[str, str]:
        try:
            return _address_of(self._sock.getsockname())
        except OSError:
            return ("", "")

    def peer_certificate(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv()
        except OSError:
            pass
        self._sock.close()


class _TlsStream(Stream):
    """A Stream over TLS: an SSLObject between the socket and the caller.

    The reader thread decrypts while writer threads encrypt: OpenSSL's state is only touched
    under ``_state``, and ciphertext is taken from the outgoing buffer and sent by one thread
    at a time (``_sending``), so records leave in the order they were made. Encrypting a write
    never waits for the socket, so a writer blocked on a full socket never keeps the reader
    from decrypting what the server sends.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__(sock)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname or None
        )
        self._state = threading.Lock()
        self._sending = threading.Lock()

    def handshake(self, timeout: float | None) -> None:
        """Run the TLS handshake. ssl.SSLError if it fails, TimeoutError if it takes longer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            Stream.write(self, self._outgoing.read(), _left(deadline))
            data = Stream.read(self, _TLS_READ_SIZE, _left(deadline))
            if not data:
                raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "closed during the TLS handshake")
            self._incoming.write(data)
        Stream.write(self, self._outgoing.read(), _left(deadline))

    def read(self, max_bytes: int, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._state:
                try:
                    data: bytes | None = self._tls.read(max_bytes)
                except ssl.SSLWantReadError:
                    data = None
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    data = b""  # close_notify, or the socket's end
                except ssl.SSLError as exc:
                    raise ConnectionResetError(describe_tls_error(exc)) from exc
                unsent = self._outgoing.pending
            if unsent:
                self._send_unsent(deadline)
            if data is not None:
                return data
            raw = Stream.read(self, _TLS_READ_SIZE, _left(deadline))
            with self._state:
                if raw:
                    self._incoming.write(raw)
                else:
                    self._incoming.write_eof()

    def _send_unsent(self, deadline: float | None) -> None:
        """Send what reading made OpenSSL say (a KeyUpdate's answer), unless a writer is
        sending: it then sends these bytes before its own (they are first in the buffer)."""
        if not self._sending.acquire(blocking=False):
            return
        try:
            with self._state:
                data = self._outgoing.read()
            Stream.write(self, data, _left(deadline))
        finally:
            self._sending.release()

    def write(self, data: bytes, timeout: float | None) -> None:
        with self._sending:
            with self._state:
                try:
                    self._tls.write(data)
                except ssl.SSLError as exc:
                    raise ConnectionResetError(describe_tls_error(exc)) from exc
                ciphertext = self._outgoing.read()
            Stream.write(self, ciphertext, timeout)

    def peer_certificate(self) -> dict[str, Any]:
        return self._tls.getpeercert() or {}

    def close(self) -> None:
        # close_notify, if the socket takes it at once: a peer that stopped reading must not
        # hold up closing.
        if self._sending.acquire(blocking=False):
            try:
                with self._state:
                    try:
                        self._tls.unwrap()
                    except (ssl.SSLError, ValueError):
                        pass
                    data = self._outgoing.read()
                self._sock.send(data, socket.MSG_DONTWAIT)
            except OSError:
                pass
            finally:
                self._sending.release()
        super().close()


#: The most ciphertext read from the socket at once.
_TLS_READ_SIZE = 1 << 18


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _broken(exc: BaseException) -> str:
    """Why a connection broke, in words (a TLS error says what it means)."""
    cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if isinstance(cause, ssl.SSLError):
        return describe_tls_error(cause)
    return str(exc) or "connection broken"


def _poll_ms(deadline: float | None) -> int | None:
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000 + 0.999))


def _address_of(address: object) -> tuple[str, str]:
    if isinstance(address, tuple):
        return str(address[0]), str(address[1])
    return ("", "")


async def async_connect(
    host: str,
    port: int,
    path: str,
    timeout: float | None,
    tls: ssl.SSLContext | None = None,
    server_hostname: str = "",
) -> AsyncStream:
    """Connect over TCP (``path`` empty) or to a unix socket; with ``tls``, then run the TLS
    handshake, verifying ``server_hostname`` (as the context says). TimeoutError, or OSError
    (ssl.SSLError when the handshake fails)."""
    loop = asyncio_loop()
    if loop is not None:
        with anyio.fail_after(timeout):
            if path:
                transport, protocol = await loop.create_unix_connection(_StreamProtocol, path)
            else:
                transport, protocol = await loop.create_connection(
                    _StreamProtocol,
                    host,
                    port,
                    ssl=tls,
                    server_hostname=(server_hostname or host) if tls is not None else None,
                )
        sock = transport.get_extra_info("socket")
        if not path and sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _AsyncioStream(transport, protocol)
    with anyio.fail_after(timeout):
        if path:
            return AsyncStream(await anyio.connect_unix(path))
        stream: anyio.abc.ByteStream
        if tls is None:
            stream = await anyio.connect_tcp(host, port)
        else:
            stream = await anyio.connect_tcp(
                host,
                port,
                ssl_context=tls,
                tls_hostname=server_hostname or host,
                # A server that closes without close_notify ends the stream, as a socket does.
                tls_standard_compatible=False,
            )
    sock = stream.extra(_RAW_SOCKET)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return AsyncStream(stream)


def connect(
    host: str,
    port: int,
    path: str,
    timeout: float | None,
    tls: ssl.SSLContext | None = None,
    server_hostname: str = "",
) -> Stream:
    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return Stream(sock)
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is None:
        return Stream(sock)
    stream = _TlsStream(sock, tls, server_hostname)
    try:
        stream.handshake(_left(deadline))
    except BaseException:
        Stream.close(stream)
        raise
    return stream


async def async_resolve(host: str, port: int) -> list[str]:
    """The distinct addresses ``host`` resolves to for TCP, in the resolver's order. OSError
    (socket.gaierror) when it does not resolve."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
