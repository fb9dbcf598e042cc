"""The TLS layer (server/tls.py) on its own, with a client in memory and a real event loop: how
much one turn decrypts, that the inner protocol's pause holds and its resume waits for the next
loop turn, and what closing sends. Deterministic: every step is counted, nothing is timed."""

from __future__ import annotations

import asyncio
import gc
import ssl
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from muxwsgi.server.config import Config
from muxwsgi.server.dispatch import AppRunner
from muxwsgi.server.protocols.base import BaseProtocol, ServerContext
from muxwsgi.server.tls import _SLICE, RECORDS_PER_TURN, TlsProtocol, server_context

from ..certs import Certs, make_certs


class Socket(asyncio.Transport):
    """The layer's socket: what it wrote, and whether it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.writes: list[int] = []
        self.reading = True
        self.closed = False
        self.eof_sent = False

    def write(self, data: Any) -> None:
        self.sent += data
        self.writes.append(len(data))

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_sent = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "socket": object()}.get(name, default)


class Inner(BaseProtocol):
    """The protocol inside TLS: records what it is given."""

    kind = "http"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.received = bytearray()
        self.calls = 0
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.calls += 1

    def eof_received(self) -> bool:
        self.eof = True
        return True


class Peer:
    """A TLS client in memory, talking to one layer through its Socket."""

    def __init__(self, certs: Certs, layer: TlsProtocol, sock: Socket) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = certs.client_context().wrap_bio(
            self.incoming, self.outgoing, server_hostname="localhost"
        )
        self.layer, self.sock = layer, sock

    def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.layer.data_received(self.outgoing.read())
                self.pull()
        self.layer.data_received(self.outgoing.read())  # our Finished
        self.pull()

    def pull(self) -> None:
        self.incoming.write(bytes(self.sock.sent))
        self.sock.sent.clear()

    def records(self, count: int) -> bytes:
        """``count`` records of one byte each (b"0123456789012...")."""
        for i in range(count):
            self.tls.write(str(i % 10).encode())
        return self.outgoing.read()

    def read(self) -> bytes:
        self.pull()
        chunks = []
        while True:
            try:
                chunks.append(self.tls.read(1 << 16))
            except ssl.SSLWantReadError:
                return b"".join(chunks)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def ctx(certs: Certs, loop: asyncio.AbstractEventLoop) -> Iterator[ServerContext]:
    config = Config(certfile=str(certs.server_cert), keyfile=str(certs.server_key))
    runner = AppRunner(lambda e, s: [], loop, threads=1, send_buffer_size=4096,
                       multiprocess=False)  # fmt: skip
    yield ServerContext(config, runner, loop)
    runner.stop(1.0)


def connect(certs: Certs, ctx: ServerContext) -> tuple[TlsProtocol, Socket, Peer, list[Inner]]:
    """A layer with its inner protocol, after a handshake with a Peer."""
    context = server_context(ctx.config)
    assert context is not None
    made: list[Inner] = []

    def make_inner(sslobj: ssl.SSLObject) -> BaseProtocol:
        made.append(Inner(ctx))
        return made[-1]

    layer = TlsProtocol(ctx, context, make_inner)
    sock = Socket()
    layer.connection_made(sock)
    peer = Peer(certs, layer, sock)
    peer.handshake()
    return layer, sock, peer, made


@pytest.fixture
def tls(certs: Certs, ctx: ServerContext) -> tuple[TlsProtocol, Socket, Peer, list[Inner]]:
    return connect(certs, ctx)


def next_turn(loop: asyncio.AbstractEventLoop) -> None:
    """Run one iteration of the loop: the callbacks scheduled before it, not theirs."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_a_turn_decrypts_a_bounded_number_of_records(
    tls: tuple[TlsProtocol, Socket, Peer, list[Inner]], loop: asyncio.AbstractEventLoop
) -> None:
    layer, sock, peer, (inner,) = tls
    count = RECORDS_PER_TURN * 10 + 5
    layer.data_received(peer.records(count))
    # One turn's worth, in one call; the socket waits until the rest is handed over.
    assert len(inner.received) == RECORDS_PER_TURN and inner.calls == 1
    assert not sock.reading
    turns = 1
    while len(inner.received) < count:
        next_turn(loop)
        turns += 1
        assert len(inner.received) <= RECORDS_PER_TURN * turns
    assert turns == 11 and sock.reading
    assert inner.received == bytes(str(i % 10).encode()[0] for i in range(count))


def test_the_inner_protocols_pause_holds_and_resume_waits_for_a_turn(
    tls: tuple[TlsProtocol, Socket, Peer, list[Inner]], loop: asyncio.AbstractEventLoop
) -> None:
    layer, sock, peer, (inner,) = tls
    assert inner.transport is not None
    inner.transport.pause_reading()
    assert not sock.reading
    layer.data_received(peer.records(5))
    next_turn(loop)
    assert inner.received == b""  # paused: nothing delivered
    inner.transport.resume_reading()
    assert inner.received == b""  # not inside resume_reading
    next_turn(loop)
    assert inner.received == b"01234" and sock.reading


def test_the_end_comes_after_the_data_it_follows(
    tls: tuple[TlsProtocol, Socket, Peer, list[Inner]], loop: asyncio.AbstractEventLoop
) -> None:
    layer, _, peer, (inner,) = tls
    assert inner.transport is not None
    inner.transport.pause_reading()
    data = peer.records(3)
    try:
        peer.tls.unwrap()
    except ssl.SSLWantReadError:
        pass  # our close_notify is queued; the server's is not awaited
    layer.data_received(data + peer.outgoing.read())
    assert layer.eof_received() is True  # the socket's FIN: kept open for the answer
    next_turn(loop)
    assert not inner.eof and inner.received == b""
    inner.transport.resume_reading()
    next_turn(loop)
    assert inner.received == b"012" and inner.eof


def test_writes_are_encrypted_and_closing_sends_close_notify(
    tls: tuple[TlsProtocol, Socket, Peer, list[Inner]],
) -> None:
    layer, sock, peer, (inner,) = tls
    transport = inner.transport
    assert transport is not None
    # The raw socket is not offered: it carries ciphertext.
    assert transport.get_extra_info("socket") is None
    assert transport.get_extra_info("peername") == ("127.0.0.1", 5555)
    assert transport.get_extra_info("ssl_object") is layer._ssl
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.writelines([b"a", b"b"])
    assert b"200 OK" not in sock.sent
    assert peer.read() == b"HTTP/1.1 200 OK\r\n\r\nab"
    transport.write_eof()
    peer.pull()
    assert peer.tls.read(10) == b""  # close_notify: a clean end
    assert sock.eof_sent
    transport.write(b"after the end")  # dropped, as a closed transport drops it
    layer.data_received(peer.records(2))  # after our close_notify: dropped unread
    assert sock.sent == b"" and inner.received == b""


def test_openssls_buffers_are_filled_a_slice_at_a_time(
    tls: tuple[TlsProtocol, Socket, Peer, list[Inner]], loop: asyncio.AbstractEventLoop
) -> None:
    """OpenSSL's memory buffers keep their largest size: a socket read of 256 KiB goes in a
    slice at a time, and so does a large write."""
    layer, sock, peer, (inner,) = tls
    payload = bytes(range(256)) * 1024
    peer.tls.write(payload)
    layer.data_received(peer.outgoing.read())
    while len(inner.received) < len(payload):
        assert layer._incoming.pending <= _SLICE + 17 * 1024
        next_turn(loop)
    assert inner.received == payload
    assert inner.transport is not None
    encrypted: list[int] = []
    encrypt = layer._ssl.write

    def spy(data: Any) -> int:
        encrypted.append(len(data))
        return encrypt(data)

    assert layer.facade is not None
    layer.facade._encrypt = spy  # type: ignore[method-assign]
    sock.writes.clear()
    inner.transport.write(payload)
    assert encrypted == [_SLICE] * (len(payload) // _SLICE)
    assert len(sock.writes) == 1  # one socket write all the same
    assert peer.read() == payload


def test_a_closed_connection_frees_openssls_state_without_the_collector(
    certs: Certs, ctx: ServerContext
) -> None:
    """Even when the inner protocol is garbage in a cycle of its own (a request's input
    stream refers back to it), the layer and its SSLObject go when the connection does."""
    layer, sock, peer, (inner,) = connect(certs, ctx)
    inner.__dict__["cycle"] = inner  # a reference cycle through the inner protocol
    freed = weakref.ref(layer._ssl)
    gc.disable()
    try:
        layer.connection_lost(None)
        assert inner.transport is None and inner.peer == "127.0.0.1:5555"
        del layer, sock, peer, inner
        assert freed() is None
    finally:
        gc.enable()
