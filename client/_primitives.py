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
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

__all__ = (
    "AsyncBackground",
    "AsyncEvent",
    "AsyncGuard",
    "AsyncLock",
    "AsyncStream",
    "Background",
    "Event",
    "Guard",
    "Lock",
    "Stream",
    "async_connect",
    "async_resolve",
    "async_sleep",
    "connect",
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


class AsyncLock:
    """A lock held across awaits (in the sync flavour, across blocking calls). Taking it when
    it is free does not yield to other tasks (anyio's fast_acquire)."""

    def __init__(self) -> None:
        self._lock = anyio.Lock(fast_acquire=True)

    async def __aenter__(self) -> AsyncLock:
        await self._lock.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


class Lock:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> Lock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


# ---------------------------------------------------------------- events


class AsyncEvent:
    """An event that can be cleared. ``wait`` returns False on timeout.

    Waiters clear it, check their condition, then wait; setters change the condition, then
    set it. That order loses no wakeup, with tasks or with threads. Under asyncio a waiter
    waits on a bare future (an anyio.Event costs ~3 us to make: one per request adds up);
    under other backends, on an anyio.Event.
    """

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[Any] = []

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        for waiter in self._waiters:
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiter.set()

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, timeout: float | None) -> bool:
        if self._flag:
            return True
        loop = asyncio_loop()
        waiter: Any = loop.create_future() if loop is not None else anyio.Event()
        self._waiters.append(waiter)
        try:
            if timeout is None:
                await (waiter if loop is not None else waiter.wait())
            else:
                with anyio.move_on_after(max(0.0, timeout)):
                    await (waiter if loop is not None else waiter.wait())
        finally:
            self._waiters.remove(waiter)
        # Woken, even if someone cleared it since: not a timeout.
        if loop is not None:
            return waiter.done() and not waiter.cancelled()
        return bool(waiter.is_set())


def asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None (trio, or no loop)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Event:
    __slots__ = ("_event",)

    def __init__(self) -> None:
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
            raise ConnectionResetError(str(exc) or "connection broken") from exc

    async def write(self, data: bytes, timeout: float | None) -> None:
        """Write all of ``data``. Shielded: cancelling the caller does not cut a write short
        (half a frame would corrupt the connection); ``timeout`` still bounds it."""
        try:
            with anyio.fail_after(None if timeout is None else max(0.0, timeout), shield=True):
                await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ConnectionResetError(str(exc) or "connection broken") from exc

    def local_address(self) -> tuple[str, str]:
        return _address_of(self._stream.extra(anyio.abc.SocketAttribute.local_address, None))

    async def close(self) -> None:
        await self._stream.aclose()


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
                view = view[self._sock.send(view) :]
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

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv()
        except OSError:
            pass
        self._sock.close()


def _poll_ms(deadline: float | None) -> int | None:
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000 + 0.999))


def _address_of(address: Any) -> tuple[str, str]:
    if isinstance(address, tuple):
        return str(address[0]), str(address[1])
    return ("", "")


async def async_connect(host: str, port: int, path: str, timeout: float | None) -> AsyncStream:
    """Connect over TCP (``path`` empty) or to a unix socket. TimeoutError or OSError."""
    with anyio.fail_after(timeout):
        if path:
            return AsyncStream(await anyio.connect_unix(path))
        stream = await anyio.connect_tcp(host, port)
    stream.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )
    return AsyncStream(stream)


def connect(host: str, port: int, path: str, timeout: float | None) -> Stream:
    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return Stream(sock)
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Stream(sock)


async def async_resolve(host: str, port: int) -> list[str]:
    """The distinct addresses ``host`` resolves to for TCP, in the resolver's order. OSError
    (socket.gaierror) when it does not resolve."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
