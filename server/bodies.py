"""Request bodies on the event loop: read before the application runs, or streamed on a budget.

A ``wsgi.input.read()`` that waits for the client holds an application thread. If the event
loop handed every request to a thread when its head arrived, a client that promises a body and
stalls (or many such clients) could hold all of a worker's threads, and every other request
would wait for ``body_timeout``. So the loop reads bodies itself (:class:`RequestBody`):

- a body of at most ``body_buffer_size`` bytes is read in full before the application is
  called; its ``wsgi.input`` never waits, and a client that stalls costs a buffer, not a thread;
- a larger body (or one of unknown length that outgrows the bound) starts the application once
  the bound has arrived and streams the rest, but only on one of the worker's
  :class:`UploadSlots`: at most ``upload_threads`` threads at once (half of ``--threads`` by
  default), at most ``upload_threads_per_connection`` of them for one connection. A request
  waiting for a slot holds no thread: its bytes wait in its buffer, bounded by flow control.

docs/hardening.md ("Request bodies") says why, and how the memory stays bounded.
"""

from __future__ import annotations

import io
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from .config import Config
from .exchange import InputStream

__all__ = ("READ_AHEAD", "RequestBody", "UploadSlots", "UploadTicket", "upload_slots")

_monotonic: Final = time.monotonic
#: Body bytes an HTTP/1.1 or classic uwsgi connection reads ahead of an application that reads
#: its body as it arrives, before it stops reading (one buffering a body reads up to
#: body_buffer_size, if that is more).
READ_AHEAD: Final = 256 * 1024


class RequestBody:
    """One request body as it arrives on the loop thread.

    Its bytes are buffered (:meth:`feed`) until the protocol starts the application with them:
    the whole body once it is :attr:`complete` (:meth:`buffered_input`), or what has arrived so
    far followed by the rest as it arrives (:meth:`stream_input`). From then on, bytes go
    straight to that stream.
    """

    __slots__ = ("chunks", "complete", "last_at", "size", "stream", "stream_at", "ticket")

    def __init__(self, declared: int | None, bound: int) -> None:
        #: The size at which the application should start reading the body as it arrives,
        #: for a body declared larger than ``bound`` or of unknown length; -1: never (it is
        #: read in full first).
        self.stream_at = bound if declared is None or declared > bound else -1
        #: Bytes received and not yet handed to the application.
        self.chunks: list[bytes] = []
        #: Body bytes received so far.
        self.size = 0
        #: The whole body has arrived.
        self.complete = False
        #: When the last bytes arrived (for body_timeout while the loop buffers them).
        self.last_at = _monotonic()
        #: The wsgi.input that bytes go to once the application reads the body as it arrives.
        self.stream: InputStream | None = None
        #: The request's place in the queue for an upload slot, while it waits for one.
        self.ticket: UploadTicket | None = None

    @property
    def outgrown(self) -> bool:
        """Whether the body, still incomplete, has reached the size at which it streams, and
        has neither a slot nor a place in the queue for one yet."""
        return (
            0 <= self.stream_at <= self.size
            and not self.complete
            and self.stream is None
            and self.ticket is None
        )

    def feed(self, data: bytes) -> None:
        """Body bytes arrived: buffer them, or pass them on to the application's stream."""
        self.size += len(data)
        self.last_at = _monotonic()
        stream = self.stream
        if stream is not None:
            stream.feed(data)
        else:
            self.chunks.append(data)

    def end(self) -> None:
        """The body is complete."""
        self.complete = True
        if self.stream is not None:
            self.stream.feed_eof()

    def fail(self, reason: str) -> None:
        """The body will never be complete: an application reading it gets ClientDisconnected."""
        if self.stream is not None:
            self.stream.fail(reason)

    def buffered_input(self) -> io.BytesIO:
        """The wsgi.input of a complete body: every byte is there, no read ever waits."""
        chunks = self.chunks
        self.chunks = []
        return io.BytesIO(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def stream_input(self, on_consumed: Callable[[int], None], timeout: float) -> InputStream:
        """The wsgi.input of a body still arriving: the bytes buffered so far, then the rest
        as :meth:`feed` passes it on. ``on_consumed`` and ``timeout``: see InputStream."""
        stream = self.stream = InputStream(on_consumed, timeout, self.chunks)
        self.chunks = []
        if self.complete:
            stream.feed_eof()
        return stream


class UploadTicket:
    """A request waiting for an upload slot: ``start`` is called when it gets one."""

    __slots__ = ("owner", "start")

    def __init__(self, owner: object, start: Callable[[], None]) -> None:
        self.owner = owner
        self.start: Callable[[], None] | None = start


class UploadSlots:
    """A worker's budget of application threads for requests whose body is still arriving.

    ``total`` slots in all, at most ``per_connection`` held by one connection (the *owner*).
    :meth:`acquire` starts a request at once when its owner may take a slot, or queues it; a
    :meth:`release` starts the oldest queued request whose owner is under its share. Loop
    thread only.
    """

    def __init__(self, total: int, per_connection: int) -> None:
        self.total = max(1, total)
        self.per_connection = max(1, min(per_connection, self.total))
        #: Slots held now.
        self.in_use = 0
        self._held: dict[object, int] = {}
        self._waiting: deque[UploadTicket] = deque()
        self._granting = False

    def acquire(self, owner: object, start: Callable[[], None]) -> UploadTicket | None:
        """Call ``start()`` now if a slot is free for ``owner`` (and return None), else queue
        the request and return its ticket (for :meth:`withdraw`). Whoever got a slot, started
        or not yet, calls :meth:`release` once its application call is over."""
        if (
            self.in_use < self.total
            and self._held.get(owner, 0) < self.per_connection
            and not self._waiting
        ):
            self._take(owner)
            start()
            return None
        ticket = UploadTicket(owner, start)
        self._waiting.append(ticket)
        self._grant()  # the queue may hold only requests of owners at their share
        return ticket if ticket.start is not None else None

    def withdraw(self, ticket: UploadTicket) -> None:
        """The waiting request is gone (reset, or its connection closed): never start it."""
        ticket.start = None

    def release(self, owner: object) -> None:
        """A slot's application call is over: start the next waiting request that may go."""
        held = self._held[owner] - 1
        if held:
            self._held[owner] = held
        else:
            del self._held[owner]
        self.in_use -= 1
        self._grant()

    def _take(self, owner: object) -> None:
        self._held[owner] = self._held.get(owner, 0) + 1
        self.in_use += 1

    def _grant(self) -> None:
        if self._granting:
            return  # a start() released a slot: the loop below carries on with it
        self._granting = True
        waiting = self._waiting
        skipped: list[UploadTicket] = []
        try:
            while waiting and self.in_use < self.total:
                ticket = waiting.popleft()
                start = ticket.start
                if start is None:
                    continue  # withdrawn
                if self._held.get(ticket.owner, 0) >= self.per_connection:
                    skipped.append(ticket)  # its owner is at its share: keeps its place
                    continue
                ticket.start = None
                self._take(ticket.owner)
                start()
        finally:
            waiting.extendleft(reversed(skipped))
            self._granting = False


def upload_slots(config: Config) -> UploadSlots:
    """The upload slots of a worker with ``config``."""
    total = config.upload_threads or max(1, config.threads // 2)
    return UploadSlots(total, config.upload_threads_per_connection)
