"""A raw muxwsgi client that sends exactly the bytes a case scripts and checks every frame the
server sends back against PROTOCOL.md (its own reading of it, from wire.py).

What the server sends is checked as it arrives: a frame that breaks a sender's MUST (a DATA
frame beyond the window we granted, a frame after END_STREAM, a malformed response head, ...)
is recorded in :attr:`Peer.violations`, which every case asserts empty at its end. Frames the
server must answer (PING, SETTINGS) are answered as a well-behaved client would, unless a case
turns that off.

Waiting is always bounded and always for a state (a frame, the end of the connection), never a
fixed sleep: "nothing more arrived" is shown by a PING round trip (:meth:`Peer.barrier`).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from .wire import (
    ACK,
    CONNECTION_WINDOW,
    DEFAULTS,
    END_STREAM,
    MAGIC,
    SETTINGS_TABLE,
    Decoder,
    Frame,
    S,
    T,
    decode_response_head,
    error_name,
    get,
    parse_settings_list,
    ping,
    preface,
    settings,
    settings_ack,
    u32,
)

F = TypeVar("F", bound=Callable[..., Any])

#: How long any one wait may take before the case fails (generous: the machine is shared).
TIMEOUT = 15.0
_ping_ids = itertools.count(1)

#: The exact length, or the minimum, of each type's payload ([F-8], [P-2]).
_EXACT = {T.RESET: 4, T.WINDOW_UPDATE: 4, T.PING: 8}
_MINIMUM = {T.GOAWAY: 8, T.PREFACE: len(MAGIC)}
_ON_STREAM_0 = {T.PREFACE, T.SETTINGS, T.PING, T.GOAWAY}
_NOT_ON_STREAM_0 = {T.HEADERS, T.DATA, T.RESET}


class Closed(AssertionError):
    """The server closed the connection while a case waited for a frame."""


@dataclass
class Stream:
    """What the server did on one stream we opened, and the windows we granted it."""

    stream_id: int
    window: int
    #: Our settings lists sent before this stream opened (an ACK of a later one shifts it).
    generation: int
    status: int | None = None
    reason: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    ended: bool = False  # the server sent END_STREAM
    reset: int | None = None  # the server's RESET code
    we_reset: bool = False

    @property
    def finished(self) -> bool:
        return self.ended or self.reset is not None


class Peer:
    """One connection to the server under test."""

    def __init__(self, address: tuple[str, int], *, answer: bool = True) -> None:
        self.address = address
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        #: Answer the server's PINGs and SETTINGS as a client must ([K-1], [E-4]).
        self.answer = answer
        self.decoder = Decoder()
        self.outbound = Decoder()
        self.log: list[Frame] = []
        self.violations: list[str] = []
        self.eof = False
        # What the server advertised (defaults until its PREFACE: [P-5]).
        self.server_settings: dict[int, int] = dict(DEFAULTS)
        self.server_preface: Frame | None = None
        # Our side: the settings lists sent, in order; the server ACKs them in order.
        self.local: dict[int, int] = dict(DEFAULTS)
        self.sent_lists: list[dict[int, int]] = []
        self.acked = 0
        self.largest_frame_size = DEFAULTS[S.MAX_FRAME_SIZE]
        self.streams: dict[int, Stream] = {}
        self.highest = 0
        self.window = CONNECTION_WINDOW  # what the server may still send on the connection
        self.goaways: list[tuple[int, int, bytes]] = []
        self.pings_sent: set[bytes] = set()
        self._pending: deque[Frame] = deque()  # checked, not yet taken by next_frame

    # ------------------------------------------------------------------ connecting

    @classmethod
    def connect(
        cls,
        address: tuple[str, int],
        settings: dict[int, int] | None = None,
        *,
        answer: bool = True,
    ) -> Peer:
        """Send our PREFACE and read the server's (acknowledged at once when ``answer``)."""
        peer = cls(address, answer=answer)
        peer.send(preface(settings))
        first = peer.next_frame()
        assert first.type == T.PREFACE, f"the server's first frame is {first!r} [P-1]"
        return peer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # ------------------------------------------------------------------ sending

    def send(self, *chunks: bytes) -> None:
        """Write the bytes as one write, and note what they mean for the server's side."""
        raw = b"".join(chunks)
        for f in self.outbound.feed(raw):
            self._note_sent(f)
        try:
            self.sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a case may send after the server closed; the reads say what happened

    def send_bytewise(self, raw: bytes) -> None:
        """Write one byte at a time ([F-6])."""
        for f in self.outbound.feed(raw):
            self._note_sent(f)
        for i in range(len(raw)):
            self.sock.sendall(raw[i : i + 1])

    def _note_sent(self, f: Frame) -> None:
        if f.type in (T.PREFACE, T.SETTINGS) and not (f.type == T.SETTINGS and f.flags & ACK):
            body = f.payload[len(MAGIC) :] if f.type == T.PREFACE else f.payload
            with contextlib.suppress(ValueError):
                pairs = dict(parse_settings_list(body))
                self.sent_lists.append(pairs)
                self.local.update(pairs)
                frame_size = pairs.get(S.MAX_FRAME_SIZE, self.largest_frame_size)
                self.largest_frame_size = max(self.largest_frame_size, frame_size)
        elif f.type == T.HEADERS and f.stream_id > self.highest and f.stream_id % 2:
            self.highest = f.stream_id
            self.streams[f.stream_id] = Stream(
                f.stream_id, self.local[S.INITIAL_WINDOW_SIZE], len(self.sent_lists)
            )
        elif f.type == T.WINDOW_UPDATE and len(f.payload) == 4:
            if f.stream_id == 0:
                self.window += u32(f.payload)
            elif f.stream_id in self.streams:
                self.streams[f.stream_id].window += u32(f.payload)
        elif f.type == T.RESET and f.stream_id in self.streams:
            self.streams[f.stream_id].we_reset = True
        elif f.type == T.PING and not f.flags & ACK:
            self.pings_sent.add(f.payload)

    # ------------------------------------------------------------------ receiving

    def next_frame(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame from the server. Raises :class:`Closed` at the end of the
        connection, TimeoutError when nothing comes within ``timeout``."""
        while not self._pending:
            self._read(timeout)
        return self._pending.popleft()

    def _read(self, timeout: float) -> None:
        if self.eof:
            raise Closed(f"the server closed the connection; it sent {self.log}")
        deadline = time.monotonic() + timeout
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            raise TimeoutError(f"nothing in {timeout}s; the server sent {self.log}") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            if self.decoder.buffer:
                self.violations.append(f"the connection ended inside a frame [F-1]: "
                                       f"{self.decoder.buffer[:40]!r}")  # fmt: skip
            raise Closed(f"the server closed the connection; it sent {self.log}")
        for f in self.decoder.feed(chunk):
            self._check(f)
            self._pending.append(f)

    def frames(self) -> list[Frame]:
        """Every frame already received and not yet taken by next_frame."""
        frames = list(self._pending)
        self._pending.clear()
        return frames

    def expect(self, ftype: int, stream_id: int | None = None, timeout: float = TIMEOUT) -> Frame:
        """Read until a frame of ``ftype`` (on ``stream_id``) arrives; return it."""
        while True:
            f = self.next_frame(timeout)
            if f.type == ftype and (stream_id is None or f.stream_id == stream_id):
                return f

    def barrier(self) -> list[Frame]:
        """Send an empty SETTINGS and read up to its ACK; return the frames read meanwhile.

        Every reply due to a frame sent before it has then arrived: a SETTINGS ACK never
        overtakes a frame queued before it ([E-5]). (A PING ACK may: [K-2].) Frames received
        before the call and not taken yet are dropped: they answer earlier frames."""
        self.frames()
        self.send(settings())
        index = len(self.sent_lists)
        seen: list[Frame] = []
        while self.acked < index:
            seen.append(self.next_frame())
        return seen

    def ping_pong(self) -> None:
        """A PING round trip: the connection is open and read."""
        data = struct.pack("<Q", next(_ping_ids) | 0xC0 << 56)
        self.send(ping(data))
        while True:
            f = self.next_frame()
            if f.type == T.PING and f.flags & ACK and f.payload == data:
                return

    def read_raw(self, timeout: float = TIMEOUT) -> bytes:
        """Every byte until the server closes (for the protocols that are not framed)."""
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the server kept the connection open: {b''.join(chunks)!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def closed(self, timeout: float = TIMEOUT) -> list[Frame]:
        """Read until the server closes the connection; return the frames read meanwhile."""
        seen = self.frames()
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the server kept the connection open; it sent {self.log}")
            with contextlib.suppress(Closed):
                seen.append(self.next_frame(left))
        return seen

    def connection_error(self, code: int) -> int:
        """Expect GOAWAY(``code``) then the end of the connection, with nothing in between
        ([S-6]); return the GOAWAY's last stream id."""
        f = self.expect(T.GOAWAY)
        last, got = struct.unpack_from("<II", f.payload)
        assert got == code, f"GOAWAY {error_name(got)}, expected {error_name(code)}: {f!r}"
        after = self.closed()
        assert after == [], f"frames after a connection error's GOAWAY: {after}"
        return last

    def stream_error(self, stream_id: int, code: int) -> None:
        """Expect RESET(``code``) on the stream, and the connection still open after it."""
        stream = self.response(stream_id)
        assert stream.reset is not None, f"stream {stream_id} was answered, not reset: {stream}"
        got = stream.reset
        assert got == code, f"RESET {error_name(got)} on {stream_id}, expected {error_name(code)}"
        self.barrier()

    def response(self, stream_id: int, timeout: float = TIMEOUT) -> Stream:
        """Read until the server ends or resets the stream."""
        stream = self.streams[stream_id]
        while not stream.finished:
            self.next_frame(timeout)
        return stream

    def blocked_at(self, stream_id: int, size: int) -> None:
        """Read the stream's DATA until ``size`` bytes of body came, and show that no more
        comes (the windows we granted allow no more)."""
        stream = self.streams[stream_id]
        while len(stream.body) < size:
            self.expect(T.DATA, stream_id)
        self.barrier()
        assert len(stream.body) == size, f"{len(stream.body)} bytes of body, expected {size}"

    def request(self, stream_id: int, path: str = "/hello", **extra: str) -> Stream:
        self.send(get(stream_id, path, **extra))
        return self.response(stream_id)

    @property
    def goaway(self) -> tuple[int, int, bytes] | None:
        return self.goaways[-1] if self.goaways else None

    # ------------------------------------------------------------------ checking

    def _violation(self, rule: str, what: str, f: Frame) -> None:
        self.violations.append(f"[{rule}] {what}: {f!r}")

    def _check(self, f: Frame) -> None:
        """Check one frame from the server against the sender's rules, and keep the books."""
        self.log.append(f)
        if self.server_preface is None:
            if f.type != T.PREFACE:
                self._violation("P-1", "the server's first frame is not a PREFACE", f)
            self._on_preface(f)
            return
        try:
            ftype = T(f.type)
        except ValueError:
            return  # the server may send unknown types ([F-4]): nothing to check
        if ftype in _ON_STREAM_0 and f.stream_id != 0:
            self._violation("F-7", "must be sent on stream 0", f)
        if ftype in _NOT_ON_STREAM_0 and f.stream_id == 0:
            self._violation("F-7", "must not be sent on stream 0", f)
        if ftype in _EXACT and len(f.payload) != _EXACT[ftype]:
            self._violation("F-8", "wrong payload length", f)
            return
        if ftype in _MINIMUM and len(f.payload) < _MINIMUM[ftype]:
            self._violation("F-8", "payload too short", f)
            return
        handler = getattr(self, f"_on_{ftype.name.lower()}")
        handler(f)

    def _on_preface(self, f: Frame) -> None:
        if self.server_preface is not None:
            self._violation("P-3", "a second PREFACE", f)
            return
        self.server_preface = f
        if not f.payload.startswith(MAGIC):
            self._violation("P-2", "wrong magic", f)
            return
        self._on_settings_list(f, f.payload[len(MAGIC) :])

    def _on_settings(self, f: Frame) -> None:
        if f.flags & ACK:
            if f.payload:
                self._violation("E-4", "a SETTINGS ACK with a payload", f)
            if self.acked >= len(self.sent_lists):
                self._violation("E-6", "a SETTINGS ACK for no settings of ours", f)
                return
            self._settings_acked(self.acked)
            self.acked += 1
            return
        self._on_settings_list(f, f.payload)

    def _on_settings_list(self, f: Frame, body: bytes) -> None:
        try:
            pairs = parse_settings_list(body)
        except ValueError:
            self._violation("E-1", "a settings list not a multiple of 6 bytes", f)
            return
        if len(pairs) > 32:
            self._violation("E-8", "more than 32 settings", f)
        for code, value in pairs:
            if code in SETTINGS_TABLE:
                _, low, high = SETTINGS_TABLE[code]
                if not low <= value <= high:
                    self._violation("E-2", f"setting {code:#x}={value} out of bounds", f)
                self.server_settings[code] = value
        if self.answer:
            self.send(settings_ack())

    def _settings_acked(self, index: int) -> None:
        """The server applied our index-th settings list: shift the windows it moved ([E-7])."""
        before: dict[int, int] = dict(DEFAULTS)
        for pairs in self.sent_lists[:index]:
            before.update(pairs)
        after = {**before, **self.sent_lists[index]}
        delta = after[S.INITIAL_WINDOW_SIZE] - before[S.INITIAL_WINDOW_SIZE]
        for stream in self.streams.values():
            if stream.generation <= index:  # opened before the server read this list
                stream.window += delta

    def _stream_of(self, f: Frame) -> Stream | None:
        stream = self.streams.get(f.stream_id)
        if stream is None:
            self._violation("I-4", "a frame on a stream we never opened", f)
        return stream

    def _on_headers(self, f: Frame) -> None:
        stream = self._stream_of(f)
        if stream is None:
            return
        if stream.status is not None or stream.finished:
            if not stream.we_reset:
                self._violation("H-5", "a second HEADERS, or HEADERS after the end", f)
            return
        if len(f.payload) > self.local[S.MAX_HEADERS_SIZE]:
            self._violation("H-4", "a head larger than our MAX_HEADERS_SIZE", f)
        try:
            status, reason, fields = decode_response_head(f.payload)
        except (ValueError, msgpack.UnpackException) as exc:
            self._violation("H-1", f"a malformed response head ({exc})", f)
            return
        if len(fields) > self.local[S.MAX_HEADERS_COUNT]:
            self._violation("H-4", "more fields than our MAX_HEADERS_COUNT", f)
        stream.status, stream.reason, stream.fields = status, reason, fields
        stream.ended = bool(f.flags & END_STREAM)

    def _on_data(self, f: Frame) -> None:
        stream = self._stream_of(f)
        if stream is None:
            return
        size = len(f.payload)
        if size > self.largest_frame_size:
            self._violation("F-3", "DATA larger than our MAX_FRAME_SIZE", f)
        if stream.finished or stream.status is None:
            if not stream.we_reset:
                self._violation("R-1", "DATA before HEADERS or after the end of the stream", f)
            return
        if size > stream.window or size > self.window:
            self._violation(
                "W-2", f"DATA beyond the windows (stream {stream.window}, conn {self.window})", f
            )
        stream.window -= size
        self.window -= size
        stream.body += f.payload
        stream.ended = bool(f.flags & END_STREAM)

    def _on_reset(self, f: Frame) -> None:
        stream = self._stream_of(f)
        if stream is None:
            return
        if stream.reset is not None:
            self._violation("R-1", "a second RESET", f)
        elif stream.ended and not stream.we_reset:
            # A RESET after END_STREAM is legal: it stops our upload (no longer needed).
            pass
        stream.reset = u32(f.payload)

    def _on_ping(self, f: Frame) -> None:
        if f.flags & ACK:
            if f.payload not in self.pings_sent:
                self._violation("K-1", "a PING ACK for a PING we never sent", f)
            self.pings_sent.discard(f.payload)
        elif self.answer:
            self.send(ping(f.payload, ack=True))

    def _on_goaway(self, f: Frame) -> None:
        last, code = struct.unpack_from("<II", f.payload)
        if self.goaways and last > self.goaways[-1][0]:
            self._violation("S-4", "the last stream id increased", f)
        self.goaways.append((last, code, f.payload[8:]))

    def _on_window_update(self, f: Frame) -> None:
        if not u32(f.payload):
            self._violation("W-4", "a WINDOW_UPDATE of 0", f)
        if f.stream_id and f.stream_id not in self.streams:
            self._violation("I-4", "a WINDOW_UPDATE on a stream we never opened", f)


def app_saw(address: tuple[str, int], case: str) -> bool:
    """Whether a request with the header ``X-Case: case`` reached the application."""
    peer = Peer.connect(address)
    try:
        reply = peer.request(1, f"/seen?case={case}")
        assert reply.status == 200, reply
        return reply.body == b"yes"
    finally:
        peer.close()


def spec(*ids: str) -> Callable[[F], F]:
    """Name the PROTOCOL.md requirements a case shows (tests/core/test_spec_coverage.py reads
    the quoted ids)."""

    def mark(func: F) -> F:
        func.spec_ids = (*getattr(func, "spec_ids", ()), *ids)  # type: ignore[attr-defined]
        return func

    return mark
