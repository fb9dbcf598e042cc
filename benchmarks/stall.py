"""Stalled uploaders: requests that promise a body, send part of it, and stop sending.

Used by the starvation table of ``python -m benchmarks hostile`` and by
tests/hostile/test_starvation.py. One mux connection carries all of its stalled streams; over
HTTP/1.1 and classic uwsgi each stalled request has its own connection.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from muxwsgi import ConnectionTerminated, PingAcknowledged, ResponseReceived, StreamReset, classic

from .rawmux import RawMux, vars_for

__all__ = ("Stalled", "request_head", "stall")

#: PING payload that marks "the server has handled every frame sent before it".
_BARRIER = b"stalled!"


def request_head(protocol: str, path: str, length: int) -> bytes:
    """The head of a POST of ``length`` body bytes over HTTP/1.1 or classic uwsgi (one
    request per connection: the server closes after the response)."""
    if protocol == "http":
        return (
            f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
    request = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_PROTOCOL": "HTTP/1.1",
               "CONTENT_LENGTH": str(length)}  # fmt: skip
    return classic.encode_request(request)


class Stalled:
    """``peers`` POSTs of ``length`` body bytes, ``sent`` of them sent, then silence."""

    def __init__(
        self, address: tuple[str, int], protocol: str, peers: int, length: int, sent: int, path: str
    ) -> None:
        self.protocol = protocol
        self.mux: RawMux | None = None
        self.socks: list[socket.socket] = []
        self.sids: list[int] = []
        try:
            if protocol == "mux":
                self._open_mux(address, peers, length, sent, path)
            else:
                head = request_head(protocol, path, length)
                for _ in range(peers):
                    sock = socket.create_connection(address, timeout=10)
                    self.socks.append(sock)
                    sock.sendall(head + b"x" * sent)
        except BaseException:
            self.close()
            raise

    def _open_mux(
        self, address: tuple[str, int], peers: int, length: int, sent: int, path: str
    ) -> None:
        client = self.mux = RawMux(address)
        conn = client.conn
        for _ in range(peers):
            sid = conn.send_request(
                vars_for("POST", path, CONTENT_LENGTH=str(length)), end_stream=False
            )
            self.sids.append(sid)
            left = sent
            while left:
                window = conn.outbound_window(sid)
                if window <= 0:
                    client.flush()
                    client.pump(1.0)  # the server's SETTINGS or WINDOW_UPDATEs
                    continue
                piece = min(left, window)
                conn.send_data(sid, b"x" * piece)
                left -= piece
        client.flush()
        self.barrier()

    def barrier(self, timeout: float = 30.0) -> None:
        """Mux: until the server has handled every frame sent so far (its PING ACK)."""
        client = self.mux
        assert client is not None
        seen = len(client.events)
        client.conn.ping(_BARRIER)
        client.flush()
        deadline = time.monotonic() + timeout
        while not any(
            type(e) is PingAcknowledged and e.data == _BARRIER for e in client.events[seen:]
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no PING ACK in {timeout:g} s")
            if not client.pump(1.0):
                raise ConnectionError("the server closed the connection")

    def untouched(self) -> bool:
        """Whether the server has neither answered, reset nor closed any stalled request (and,
        over mux, has handled everything sent so far)."""
        if self.mux is not None:
            self.barrier()
            sids = set(self.sids)
            touched = [
                e
                for e in self.mux.events
                if type(e) is ConnectionTerminated
                or (type(e) in (StreamReset, ResponseReceived) and e.stream_id in sids)
            ]
            return not (touched or self.mux.closed)
        for sock in self.socks:
            sock.setblocking(False)
            try:
                sock.recv(1)
            except BlockingIOError:
                continue  # nothing sent, not closed: still waiting for the body
            except OSError:
                return False  # reset
            return False  # an answer, or the server's FIN
        return True

    def close(self) -> None:
        if self.mux is not None:
            self.mux.close()
        for sock in self.socks:
            sock.close()


@contextmanager
def stall(
    address: tuple[str, int],
    protocol: str,
    peers: int,
    length: int,
    sent: int,
    path: str = "/input-error",
) -> Iterator[Stalled]:
    """``peers`` stalled POSTs to ``path`` (see :class:`Stalled`), closed on exit."""
    stalled = Stalled(address, protocol, peers, length, sent, path)
    try:
        yield stalled
    finally:
        stalled.close()
