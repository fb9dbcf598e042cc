"""Flow control (PROTOCOL.md §9): the windows of both directions, in one class.

Each side keeps a send window and a receive window for the connection, and a pair per stream.
A send window is the DATA this side may still send; a receive window, the DATA the peer may still
send. Both shrink by each DATA payload and grow by WINDOW_UPDATE (received for a send window,
sent for a receive window). A change of INITIAL_WINDOW_SIZE shifts every stream window of its
direction ([E-7]), possibly below zero.

The methods do the arithmetic and say whether a limit was crossed; which error that is (stream
or connection, local or remote) depends on where the window is, so the caller raises it.
"""

from __future__ import annotations

from ._frames import MAX_WINDOW

__all__ = ("DEFAULT_WINDOW", "FlowControl")

#: Both connection windows start here ([W-1]); so do a stream's, until SETTINGS say otherwise.
DEFAULT_WINDOW = 65535


class FlowControl:
    """The send window and the receive window of the connection, or of one stream.

    The connection holds one; a stream *is* one (``_Stream`` extends this class), because a
    stream is made for every request, and window objects of its own would cost more to create
    than the stream itself.
    """

    __slots__ = ("recv_maximum", "recv_processed", "recv_window", "send_window")

    def __init__(self, send_window: int, recv_window: int) -> None:
        #: DATA this side may still send; below zero after the peer's INITIAL_WINDOW_SIZE shrank.
        self.send_window = send_window
        #: DATA the peer may still send; below zero after this side's INITIAL_WINDOW_SIZE shrank.
        self.recv_window = recv_window
        #: The size that returning credit reopens the receive window to.
        self.recv_maximum = recv_window
        #: Bytes the application consumed whose credit has not gone back to the peer yet.
        self.recv_processed = 0

    # ---------------------------------------------------------------- sending

    def sent(self, size: int, connection: FlowControl) -> None:
        """(stream) Take the credit of ``size`` bytes of DATA sent on this stream from its send
        window and from the ``connection``'s ([W-2]). The caller made sure of the room: no more
        than the smaller window, except an empty frame, which needs none."""
        self.send_window -= size
        connection.send_window -= size

    def open(self, increment: int) -> bool:
        """Add ``increment`` to the send window: a WINDOW_UPDATE ([W-4]), or a change of the
        peer's INITIAL_WINDOW_SIZE (which may be negative: [E-7]).

        Returns False, changing nothing, when the window would exceed 2^31-1 ([W-5]).
        """
        size = self.send_window + increment
        if size > MAX_WINDOW:
            return False
        self.send_window = size
        return True

    # ---------------------------------------------------------------- receiving

    def received(self, size: int) -> bool:
        """Take the credit of ``size`` bytes of DATA received.

        Returns False when they overran the receive window ([W-3]). An empty frame overruns
        nothing, not even a window that a SETTINGS decrease left below zero.
        """
        left = self.recv_window - size
        self.recv_window = left
        return left >= 0 or not size

    def shift_receive(self, delta: int) -> None:
        """This side's INITIAL_WINDOW_SIZE changed by ``delta`` and the peer acknowledged it."""
        self.recv_window += delta
        self.recv_maximum += delta

    def acknowledge(self, size: int) -> int:
        """The application consumed ``size`` received bytes: return the increment to send in a
        WINDOW_UPDATE now (already added to the receive window), or 0 to wait for more.

        [W-7]: nothing until half the window was consumed and processed, because small updates
        waste frames; except that a window run down to zero reopens once 1024 bytes (or a
        quarter of a smaller window) were processed, so that a peer blocked on it is not kept
        waiting for half a window.
        """
        processed = self.recv_processed + size
        current = self.recv_window
        maximum = self.recv_maximum
        if processed >= maximum // 2 or (current <= 0 and processed >= min(1024, maximum // 4)):
            increment = max(0, min(processed, maximum - current))
            self.recv_window = current + increment
            self.recv_processed = processed - increment
            return increment
        self.recv_processed = processed
        return 0
