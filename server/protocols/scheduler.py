"""Response bytes waiting for flow-control window, sent as the peer's windows open.

A mux response that does not fit the stream's (or the connection's) window waits here, one
queue (an *outbox*) per stream, and leaves as DATA frames when WINDOW_UPDATEs arrive. Every
stream gets its turn, so one slow stream never delays the others. The queues are bounded by
the application threads: a thread blocks once ``send_buffer_size`` bytes of its stream are
in flight, and :meth:`OutputScheduler.pump` reports the bytes it moved (``on_sent``) so that
the thread can go on.

No I/O: the frames go into the core :class:`~muxwsgi.Connection`, whose ``data_to_send()``
the caller writes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

from muxwsgi import Connection

__all__ = ("OutputScheduler",)

_monotonic: Final = time.monotonic


class _Outbox:
    """Response bytes of one stream waiting for flow-control window."""

    __slots__ = ("chunks", "ended", "since")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.ended = False
        #: When the stream last made progress (for the stuck-window timeout).
        self.since = _monotonic()


class OutputScheduler:
    """The outboxes of one connection's streams, drained into ``conn`` as windows allow.

    ``on_sent(stream_id, size)`` is called when ``size`` queued bytes of the stream became
    frames. Truthy while any stream has an outbox.
    """

    def __init__(self, conn: Connection, on_sent: Callable[[int, int], None]) -> None:
        self._conn = conn
        self._on_sent = on_sent
        self._outboxes: dict[int, _Outbox] = {}

    def __len__(self) -> int:
        return len(self._outboxes)

    def __contains__(self, stream_id: int) -> bool:
        return stream_id in self._outboxes

    def open(self, stream_id: int) -> None:
        """The stream's response head was sent: its body is queued here from now on."""
        self._outboxes[stream_id] = _Outbox()

    def write(self, stream_id: int, data: bytes) -> bool:
        """Queue ``data`` for the next :meth:`pump`; False if the stream has no outbox (never
        opened, finished, or discarded)."""
        outbox = self._outboxes.get(stream_id)
        if outbox is None:
            return False
        outbox.chunks.append(data)
        return True

    def end(self, stream_id: int) -> bool:
        """The body is complete after the queued bytes; False if the stream has no outbox."""
        outbox = self._outboxes.get(stream_id)
        if outbox is None:
            return False
        outbox.ended = True
        return True

    def discard(self, stream_id: int) -> None:
        """Forget the stream's queued bytes (it was reset)."""
        self._outboxes.pop(stream_id, None)

    def clear(self) -> None:
        """Forget every stream's queued bytes (the connection is closing)."""
        self._outboxes.clear()

    def pump(self, stream_id: int | None = None) -> None:
        """Move queued bytes into DATA frames as far as the windows allow: of ``stream_id``
        (its window grew, or it queued more), or of every stream (the connection's window
        grew). A stream whose bytes and end are all sent loses its outbox; the end goes with
        the last bytes when it was known by then, else as an empty END_STREAM frame."""
        conn = self._conn
        outboxes = self._outboxes
        sids = [stream_id] if stream_id is not None else list(outboxes)
        for sid in sids:
            outbox = outboxes.get(sid)
            if outbox is None:
                continue
            chunks = outbox.chunks
            moved = 0
            ended = False
            while chunks:
                window = conn.outbound_window(sid)
                if window <= 0:
                    break
                chunk = chunks[0]
                if len(chunk) <= window:
                    chunks.popleft()
                    ended = outbox.ended and not chunks
                    conn.send_data(sid, chunk, end_stream=ended)
                else:
                    chunks[0] = chunk[window:]
                    chunk = chunk[:window]
                    conn.send_data(sid, chunk)
                moved += len(chunk)
            if moved:
                outbox.since = _monotonic()
                self._on_sent(sid, moved)
            if not chunks and outbox.ended:
                if not ended:
                    conn.end_stream(sid)  # everything was sent before the end was known
                del outboxes[sid]

    def stuck(self, now: float, timeout: float) -> list[int]:
        """The streams with bytes waiting whose window has let nothing through for longer
        than ``timeout`` seconds (PROTOCOL.md [L-3])."""
        return [
            sid
            for sid, outbox in self._outboxes.items()
            if outbox.chunks and now - outbox.since > timeout
        ]
