"""A small blocking mux client on the protocol core, for tests that need to see frames exactly
and for the hostile benchmark's healthy client (the real client library is muxwsgi.client)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import muxwsgi
from muxwsgi import Connection, ConnectionConfig, Role


@dataclass
class Reply:
    stream_id: int
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    ended: bool = False
    reset: muxwsgi.ErrorCode | None = None

    @property
    def finished(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def vars_for(method: str, path: str, body: bytes = b"", **extra: str) -> dict[str, str]:
    path_info, _, query = path.partition("?")
    return {
        "REQUEST_METHOD": method,
        "REQUEST_URI": path,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "HTTP_HOST": "test",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        **extra,
    }


class RawMux:
    def __init__(self, address: tuple[str, int] | str, *, window: int = 1 << 24) -> None:
        if isinstance(address, str):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(address)
        else:
            self.sock = socket.create_connection(address, timeout=10)
        self.sock.settimeout(10)
        self.conn = Connection(Role.CLIENT, ConnectionConfig(connection_window_size=window))
        self.replies: dict[int, Reply] = {}
        self.events: list[muxwsgi.Event] = []
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, method: str, path: str, body: bytes = b"", **extra: str) -> int:
        """Open a stream; a body larger than the window is sent as the window opens."""
        sid = self.conn.send_request(vars_for(method, path, body, **extra), end_stream=not body)
        self.replies[sid] = Reply(sid)
        self.flush()
        view = memoryview(body)
        while view and self.conn.is_open(sid):
            window = self.conn.outbound_window(sid)
            if window <= 0:
                self.pump(1.0)
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(sid, bytes(chunk), end_stream=not view)
            self.flush()
        return sid

    def pump(self, timeout: float = 10.0) -> bool:
        """Read once (up to ``timeout``); file the events. False once the server closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return True
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self.events.append(event)
            reply = self.replies.get(getattr(event, "stream_id", -1))
            if reply is None:
                continue
            if type(event) is muxwsgi.ResponseReceived:
                reply.status, reply.headers = event.status, event.headers
            elif type(event) is muxwsgi.DataReceived:
                reply.body += event.data
                self.conn.acknowledge_received_data(event.stream_id, event.flow_controlled_length)
            elif type(event) is muxwsgi.StreamEnded:
                reply.ended = True
            elif type(event) is muxwsgi.StreamReset:
                reply.reset = event.error_code
        self.flush()
        return True

    def wait(self, *sids: int, timeout: float = 20.0) -> list[Reply]:
        sids = sids or tuple(self.replies)
        deadline = time.monotonic() + timeout
        while not all(self.replies[s].finished for s in sids):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"streams not finished: {[s for s in sids if not self.replies[s].finished]}"
                )
            if not self.pump(max(0.01, deadline - time.monotonic())):
                break
        return [self.replies[s] for s in sids]

    def request(self, method: str, path: str, body: bytes = b"", **extra: str) -> Reply:
        return self.wait(self.send(method, path, body, **extra))[0]

    def close(self) -> None:
        self.sock.close()
