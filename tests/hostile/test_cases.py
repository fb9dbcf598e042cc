"""The hostile-input table: each case is a raw byte script (mux frames, classic uwsgi packets or
HTTP/1.1) and the outcome it must get from a live ``muxwsgi serve``. While every case runs, a
healthy mux client on another connection keeps getting correct answers; after each one it must
have gone on doing so, on the same connection.

``items`` are the numbers of the list in part B of the reliability notes (uwsgi framing 1-6,
smuggling through vars 7-13, the response side 14-15, floods 19-27, flow control 28-29);
``spec`` names the PROTOCOL.md requirements a case shows. Floods at full speed, slow peers and
faults have their own modules; docs/hardening.md lists every case with its outcome.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest

from muxwsgi import ErrorCode, FrameType

from ..core.helpers import data, frame, goaway, preface, reset, window_update
from ..muxclient import vars_for
from ..servers import ServerProcess, start
from .kit import Healthy, Seen, converse, get, log_problems, marks

pytestmark = pytest.mark.slow

#: The module's server: small limits, so that every limit is cheap to reach.
SERVER_ARGS = (
    "--threads", "8", "--buffer-size", "8192", "--max-vars", "64", "--limit-post", "1m",
    "--max-concurrent-streams", "16", "--reset-burst", "40", "--ping-burst", "10",
    "--settings-burst", "5", "--glitch-burst", "50",
    "--initial-window-size", "256k", "--connection-window-size", "1m",
    "--body-buffer-size", "64k",
)  # fmt: skip
#: A body over --body-buffer-size: the application reads it as it arrives.
STREAMED = 100_000
E = ErrorCode


# ------------------------------------------------------------------------------ outcomes


class Expect:
    """What a case must see; ``problem`` says what is missing (None: all there)."""

    mux = False

    def problem(self, seen: Seen) -> str | None:
        raise NotImplementedError


@dataclass
class Reset(Expect):
    """Mux: RESET with ``code`` on stream ``sid``; the connection stays open."""

    code: ErrorCode
    sid: int = 1
    mux = True

    def problem(self, seen: Seen) -> str | None:
        got = seen.resets().get(self.sid)
        if got != self.code:
            return f"stream {self.sid}: RESET {got}, expected {self.code.name}"
        if seen.goaway() is not None:
            return f"unexpected GOAWAY {seen.goaway()}"
        return None


@dataclass
class GoAway(Expect):
    """Mux: GOAWAY with ``code``, then the server closes the connection."""

    code: ErrorCode
    mux = True

    def problem(self, seen: Seen) -> str | None:
        if seen.goaway() != self.code:
            return f"GOAWAY {seen.goaway()}, expected {self.code.name}"
        return None if seen.closed else "GOAWAY but the connection stays open"


@dataclass
class Answer(Expect):
    """Mux: a response on ``sid`` with ``status`` (and ``body`` when given), its stream ended."""

    status: int
    sid: int = 1
    body: bytes | None = None
    reset: ErrorCode | None = None
    #: Also fine: a RESET with this code after the end (NO_ERROR: the server stops an
    #: upload its application did not read, RFC 9113 8.1).
    or_reset: ErrorCode | None = None
    mux = True

    def problem(self, seen: Seen) -> str | None:
        got = seen.statuses().get(self.sid)
        if got != self.status:
            return f"stream {self.sid}: status {got}, expected {self.status}"
        ended = any(
            f.stream_id == self.sid
            and f.flags & 1
            and f.type in (FrameType.DATA, FrameType.HEADERS)
            for f in seen.frames
        )
        reset = seen.resets().get(self.sid)
        if self.or_reset is not None and reset == self.or_reset and ended:
            reset = self.reset
        if reset != self.reset or (self.reset is None and not ended):
            return f"stream {self.sid}: ended {ended}, reset {reset}, expected reset {self.reset}"
        if self.body is not None and seen.body(self.sid) != self.body:
            return f"stream {self.sid}: body {seen.body(self.sid)[:80]!r}"
        return None


@dataclass
class Status(Expect):
    """Classic uwsgi or HTTP/1.1: the first response has ``status`` and the server closes."""

    status: int
    close: bool = True
    body: bytes | None = None

    def problem(self, seen: Seen) -> str | None:
        if seen.http_status != self.status:
            return f"status {seen.http_status} ({seen.raw[:60]!r}), expected {self.status}"
        if self.body is not None and not seen.raw.endswith(self.body):
            return f"body {seen.raw[-80:]!r}"
        if self.close and not seen.closed:
            return "the connection stays open"
        return None


@dataclass
class Closed(Expect):
    """The server closes without answering a byte."""

    def problem(self, seen: Seen) -> str | None:
        if seen.raw:
            return f"answered {seen.raw[:60]!r}"
        return None if seen.closed else "the connection stays open"


@dataclass
class MuxClosed(Expect):
    """Mux: the server closes with no stream answered (its PREFACE and ACKs aside)."""

    mux = True

    def problem(self, seen: Seen) -> str | None:
        streams = [f for f in seen.frames if f.stream_id]
        if streams:
            return f"frames on streams: {streams[:3]}"
        return None if seen.closed else "the connection stays open"


@dataclass
class Ends(Expect):
    """Classic uwsgi or HTTP/1.1: the server closes (whatever it answered first)."""

    def problem(self, seen: Seen) -> str | None:
        return None if seen.closed else "the connection stays open"


@dataclass
class Both(Expect):
    """Every one of ``parts`` (and ``check(seen)``, when given, returns None)."""

    parts: tuple[Expect, ...]
    check: Callable[[Seen], str | None] | None = None

    @property
    def mux(self) -> bool:  # type: ignore[override]
        return any(p.mux for p in self.parts)

    def problem(self, seen: Seen) -> str | None:
        for part in self.parts:
            if (why := part.problem(seen)) is not None:
                return why
        return self.check(seen) if self.check is not None else None


@dataclass
class Case:
    id: str
    items: tuple[int, ...]
    script: list[bytes]
    expect: Expect
    spec: tuple[str, ...] = ()
    #: A /mark/ path that must never reach the application (a rejected request).
    never: str | None = None
    #: A /mark/ path that must reach it (the control: the request was well formed otherwise).
    reached: str | None = None
    half_close: bool = False
    timeout: float = 5.0
    after: Callable[[tuple[str, int]], str | None] | None = field(default=None)


# ------------------------------------------------------------------------------ byte builders


def req(path: str, body: bytes = b"", **extra: str) -> dict[str, str]:
    return vars_for("POST" if body or "CONTENT_LENGTH" in extra else "GET", path, body, **extra)


def hdrs(sid: int, items: dict[str, str] | list[str], end: bool = True) -> bytes:
    flat = [x for kv in items.items() for x in kv] if isinstance(items, dict) else items
    return frame(FrameType.HEADERS, int(end), sid, msgpack.packb(flat))


#: A client's opening: its PREFACE and the ACK of the server's settings, which the server
#: enforces from that ACK on (PROTOCOL.md [E-5]; test_slow_peers.py covers a client that
#: never sends it).
OPENING = preface() + frame(FrameType.SETTINGS, 1, 0)


def mux(*frames: bytes) -> list[bytes]:
    """A mux script: the opening, then the frames (each sent on its own)."""
    return [OPENING, *frames]


def block(pairs: list[tuple[bytes, bytes]]) -> bytes:
    u16 = struct.Struct("<H").pack
    return b"".join(u16(len(k)) + k + u16(len(v)) + v for k, v in pairs)


def packet(
    raw_block: bytes, body: bytes = b"", modifier1: int = 0, size: int | None = None
) -> bytes:
    datasize = len(raw_block) if size is None else size
    return struct.pack("<BHB", modifier1, datasize, 0) + raw_block + body


def cvars(
    path: str, *extra: tuple[bytes, bytes], method: bytes = b"GET"
) -> list[tuple[bytes, bytes]]:
    return [
        (b"REQUEST_METHOD", method), (b"PATH_INFO", path.encode()), (b"QUERY_STRING", b""),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"SERVER_NAME", b"t"), (b"SERVER_PORT", b"80"),
        *extra,
    ]  # fmt: skip


def classic(path: str, *extra: tuple[bytes, bytes], body: bytes = b"") -> list[bytes]:
    return [packet(block(cvars(path, *extra, method=b"POST" if body else b"GET")), body)]


def http(*lines: str, body: bytes = b"") -> list[bytes]:
    return [("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body]


# ------------------------------------------------------------------------------ checks


def env_lacks(*names: str, sid: int | None = None) -> Callable[[Seen], str | None]:
    """The /environ answer (mux stream ``sid``, else the raw HTTP body) has none of ``names``."""

    def check(seen: Seen) -> str | None:
        body = seen.body(sid) if sid is not None else seen.raw.partition(b"\r\n\r\n")[2]
        environ = json.loads(body)
        present = [n for n in names if n in environ]
        return f"environ carries {present}" if present else None

    return check


def no_file(path: str) -> Callable[[tuple[str, int]], str | None]:
    return lambda address: f"{path} exists" if Path(path).exists() else None


MAGIC_FILE = "/tmp/muxwsgi-hostile-magic-var"
MAGIC = {
    "UWSGI_FILE": f"exec://touch {MAGIC_FILE}",
    "UWSGI_SCRIPT": "os:system",
    "UWSGI_MODULE": "os",
    "UWSGI_CHDIR": "/",
    "UWSGI_PYHOME": "/tmp",
    "UWSGI_POSTFILE": "/etc/passwd",
    "UWSGI_TOUCH_RELOAD": MAGIC_FILE,
    "UWSGI_SCHEME": "https",
}
BAD_CONTENT_LENGTHS = ["-5", "+1", "0_1", " 5", "5, 5", "1e3", "\u0663"]

# ------------------------------------------------------------------------------ the table


def cases() -> Iterator[Case]:
    # B1. uwsgi framing ------------------------------------------------------------------
    yield Case("uwsgi-block-over-buffer-size", (1,), [packet(b"x" * 64, size=40000)],
               Status(431), ("U-1",))  # fmt: skip
    yield Case("mux-head-over-buffer-size", (1, 23),
               mux(hdrs(1, req("/mark/big", HTTP_X_BIG="x" * 9000))),
               Reset(E.HEADERS_TOO_LARGE), ("H-4",), never="big")  # fmt: skip
    yield Case("uwsgi-truncated-header", (2,), [b"\x00\x10"], Closed(), half_close=True)
    yield Case("uwsgi-eof-in-vars-block", (2,),
               [packet(block(cvars("/mark/eof-block")), size=400)], Closed(),
               never="eof-block", half_close=True)  # fmt: skip
    yield Case("mux-eof-in-frame", (2,), mux(hdrs(1, req("/mark/eof-frame"))[:-3]),
               MuxClosed(), half_close=True, never="eof-frame")  # fmt: skip
    body = block(cvars("/mark/past-end"))
    yield Case("uwsgi-key-runs-past-block", (3,),
               [packet(body + struct.pack("<H", 500) + b"KEY")], Status(400), ("U-2",),
               never="past-end")  # fmt: skip
    yield Case("uwsgi-value-runs-past-block", (3,),
               [packet(body + struct.pack("<H", 3) + b"KEY" + struct.pack("<H", 90) + b"v")],
               Status(400), never="past-end")  # fmt: skip
    yield Case("uwsgi-truncated-key-size", (3,), [packet(body + b"\x05")], Status(400),
               never="past-end")  # fmt: skip
    yield Case("uwsgi-empty-key", (3,), classic("/mark/empty-key", (b"", b"v")), Status(400),
               ("U-2",), never="empty-key")  # fmt: skip
    empty_name = [*sum(req("/mark/empty").items(), ()), "", "v"]
    yield Case("mux-empty-name", (3,), mux(hdrs(1, empty_name)),
               Reset(E.PROTOCOL_ERROR), ("H-3",), never="empty")  # fmt: skip
    many = [(f"HTTP_X_{i}".encode(), b"v") for i in range(80)]
    yield Case("uwsgi-too-many-vars", (4,), classic("/mark/many", *many), Status(400),
               never="many")  # fmt: skip
    yield Case("mux-too-many-vars", (4,),
               mux(hdrs(1, req("/mark/many-mux", **{f"HTTP_X_{i}": "v" for i in range(80)}))),
               Reset(E.HEADERS_TOO_LARGE), ("H-4",), never="many-mux")  # fmt: skip
    yield Case("http-too-many-headers", (4,),
               http("GET /mark/many-http HTTP/1.1", "Host: t", *(f"X-{i}: v" for i in range(80))),
               Status(431), never="many-http")  # fmt: skip
    yield Case("uwsgi-modifier1-not-served", (5,),
               [packet(block(cvars("/mark/mod5")), modifier1=5)], Closed(), ("U-5",),
               never="mod5")  # fmt: skip
    yield Case("unknown-first-byte", (5,), [b"\x01\x02\x03\x04garbage"], Closed(), ("D-1",))
    yield Case("http-garbage-request-line", (6,), [b"GET\x01/ HTTP/1.1\r\n\r\n"], Status(400))
    yield Case("http2-preface-on-the-socket", (6,), [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"],
               Status(505))  # fmt: skip

    # B2. body length and smuggling through vars ------------------------------------------
    for i, bad in enumerate(BAD_CONTENT_LENGTHS):
        yield Case(f"uwsgi-content-length-{i}-{bad.strip() or 'space'}", (7,),
                   classic(f"/mark/cl{i}", (b"CONTENT_LENGTH", bad.encode("utf-8"))),
                   Status(400), ("U-3",), never=f"cl{i}")  # fmt: skip
        yield Case(f"mux-content-length-{i}-{bad.strip() or 'space'}", (7,),
                   mux(hdrs(1, req(f"/mark/mcl{i}", CONTENT_LENGTH=bad), end=False)),
                   Reset(E.PROTOCOL_ERROR), ("H-6",), never=f"mcl{i}")  # fmt: skip
    for i, bad in enumerate(["+1", "-5", "5, 5", "1e3", "0x10"]):
        yield Case(f"http-content-length-{i}-{bad}", (7,),
                   http(f"POST /mark/hcl{i} HTTP/1.1", "Host: t", f"Content-Length: {bad}"),
                   Status(400), never=f"hcl{i}")  # fmt: skip
    yield Case("uwsgi-content-length-over-limit", (8,),
               classic("/mark/huge", (b"CONTENT_LENGTH", b"999999999999999999")), Status(413),
               ("U-3",), never="huge")  # fmt: skip
    yield Case("uwsgi-content-length-over-2-63", (8,),
               classic("/mark/huge2", (b"CONTENT_LENGTH", b"18446744073709551617")), Status(400),
               never="huge2")  # fmt: skip
    yield Case("mux-content-length-over-limit", (8,),
               mux(hdrs(1, req("/mark/mhuge", CONTENT_LENGTH="2000000"), end=False)),
               Answer(413, reset=E.NO_ERROR), never="mhuge")  # fmt: skip
    yield Case("mux-content-length-19-digits", (8,),
               mux(hdrs(1, req("/mark/m19", CONTENT_LENGTH="1" * 19), end=False)),
               Reset(E.PROTOCOL_ERROR), ("H-6",), never="m19")  # fmt: skip
    yield Case("http-content-length-over-limit", (8,),
               http("POST /mark/hhuge HTTP/1.1", "Host: t", "Content-Length: 99999999999"),
               Status(413), never="hhuge")  # fmt: skip
    yield Case("http-content-length-over-2-64", (8,),
               http("POST /mark/h64 HTTP/1.1", "Host: t", "Content-Length: 18446744073709551617"),
               Status(400), never="h64")  # fmt: skip
    yield Case("mux-body-beyond-content-length", (9,),
               mux(hdrs(1, req("/input-error", CONTENT_LENGTH="5"), end=False),
                   data(1, b"0123456789", end=True)),
               Reset(E.PROTOCOL_ERROR), ("H-7",))  # fmt: skip
    # A body up to --body-buffer-size is read before the application is called: one cut
    # short never reaches it. A larger one is read by the application as it arrives: its
    # wsgi.input.read() raises at once (not after body-timeout).
    yield Case("mux-body-short-of-content-length", (9,),
               mux(hdrs(1, req("/mark/short-mux", CONTENT_LENGTH="10"), end=False),
                   data(1, b"01234", end=True)),
               Reset(E.PROTOCOL_ERROR), ("H-7",), never="short-mux")  # fmt: skip
    yield Case("mux-body-unfinished-then-eof", (9,),
               mux(hdrs(1, req("/mark/unfinished-mux", CONTENT_LENGTH="100"), end=False),
                   data(1, b"only ten..")),
               Ends(), half_close=True, timeout=8.0, never="unfinished-mux")  # fmt: skip
    yield Case("uwsgi-body-short-then-eof", (9,),
               classic("/mark/short-uwsgi", (b"CONTENT_LENGTH", b"100"), body=b"only ten.."),
               Ends(), half_close=True, timeout=8.0, never="short-uwsgi")  # fmt: skip
    yield Case("http-body-short-then-eof", (9,),
               http("POST /mark/short-http HTTP/1.1", "Host: t", "Content-Length: 100",
                    body=b"ten"),
               Ends(), half_close=True, timeout=8.0, never="short-http")  # fmt: skip
    streamed = b"s" * (STREAMED * 7 // 10)
    yield Case("mux-streamed-body-unfinished-then-eof", (9,),
               mux(hdrs(1, req("/input-error", CONTENT_LENGTH=str(STREAMED)), end=False),
                   data(1, streamed[:65535]), data(1, streamed[65535:])),
               Ends(), half_close=True, timeout=8.0,
               after=lambda a: input_error_seen(a))  # fmt: skip
    yield Case("uwsgi-streamed-body-short-then-eof", (9,),
               classic("/input-error", (b"CONTENT_LENGTH", str(STREAMED).encode()),
                       body=streamed),
               Ends(), half_close=True, timeout=8.0,
               after=lambda a: input_error_seen(a))  # fmt: skip
    yield Case("http-streamed-body-short-then-eof", (9,),
               http("POST /input-error HTTP/1.1", "Host: t", f"Content-Length: {STREAMED}",
                    body=streamed),
               Ends(), half_close=True, timeout=8.0,
               after=lambda a: input_error_seen(a))  # fmt: skip
    inner = packet(block(cvars("/mark/smuggled")))
    yield Case("uwsgi-unread-body-is-not-a-request", (10,),
               classic("/mark/outer", (b"CONTENT_LENGTH", str(len(inner)).encode()), body=inner),
               Status(200), ("U-4",), never="smuggled", reached="outer")  # fmt: skip
    yield Case("uwsgi-bytes-after-body-are-not-a-request", (10,),
               [classic("/mark/outer2", (b"CONTENT_LENGTH", b"2"), body=b"ab")[0] + inner],
               Status(200), ("U-4",), never="smuggled", reached="outer2")  # fmt: skip
    smuggled_frames = hdrs(3, req("/mark/smuggled-mux"))
    yield Case("mux-body-holding-frames-is-data", (10,),
               mux(hdrs(1, req("/hello", CONTENT_LENGTH=str(len(smuggled_frames))), end=False),
                   data(1, smuggled_frames, end=True)),
               Answer(200, body=b"Hello, World!", or_reset=E.NO_ERROR), ("H-8",),
               never="smuggled-mux")  # fmt: skip
    yield Case("http-content-length-and-chunked", (10,),
               http("POST /mark/clte HTTP/1.1", "Host: t", "Content-Length: 4",
                    "Transfer-Encoding: chunked",
                    body=b"0\r\n\r\nGET /mark/clte2 HTTP/1.1\r\n\r\n"),
               Status(400), never="clte2")  # fmt: skip
    yield Case("uwsgi-duplicate-content-length", (11,),
               classic("/mark/dupcl", (b"CONTENT_LENGTH", b"0"), (b"CONTENT_LENGTH", b"5")),
               Status(400), ("U-2",), never="dupcl")  # fmt: skip
    yield Case("uwsgi-duplicate-host", (11,),
               classic("/mark/duphost", (b"HTTP_HOST", b"a"), (b"HTTP_HOST", b"b")),
               Status(400), never="duphost")  # fmt: skip
    yield Case("mux-duplicate-var", (11,),
               mux(hdrs(1, [*sum(req("/mark/dupmux").items(), ()), "HTTP_HOST", "evil"])),
               Reset(E.PROTOCOL_ERROR), ("H-2",), never="dupmux")  # fmt: skip
    yield Case("http-duplicate-content-length", (11,),
               http("POST /mark/hdupcl HTTP/1.1", "Host: t", "Content-Length: 0",
                    "Content-Length: 5", body=b"hello"),
               Status(400), never="hdupcl")  # fmt: skip
    yield Case("http-duplicate-host", (11,),
               http("GET /mark/hduphost HTTP/1.1", "Host: a", "Host: b"), Status(400),
               never="hduphost")  # fmt: skip
    yield Case("http-underscore-header-is-dropped", (12,),
               http("GET /environ HTTP/1.1", "Host: t", "Transfer_Encoding: chunked",
                    "Connection: close"),
               Both((Status(200),), env_lacks("HTTP_TRANSFER_ENCODING")))  # fmt: skip
    for name, bad in (("cr", b"a\rb"), ("lf", b"a\nb"), ("nul", b"a\x00b")):
        yield Case(f"uwsgi-{name}-in-value", (12,),
                   classic(f"/mark/u{name}", (b"HTTP_X", bad)), Status(400), ("U-2",),
                   never=f"u{name}")  # fmt: skip
        yield Case(f"mux-{name}-in-value", (12,),
                   mux(hdrs(1, req(f"/mark/m{name}", HTTP_X=bad.decode()))),
                   Reset(E.PROTOCOL_ERROR), ("H-3",), never=f"m{name}")  # fmt: skip
    yield Case("mux-code-point-above-ff", (12,), mux(hdrs(1, req("/mark/wide", HTTP_X="\u0100"))),
               Reset(E.PROTOCOL_ERROR), ("H-3",), never="wide")  # fmt: skip
    yield Case("http-nul-in-header", (12,),
               [b"GET /mark/hnul HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n"], Status(400),
               never="hnul")  # fmt: skip
    yield Case("mux-magic-vars-are-data", (13,), mux(hdrs(1, req("/environ", **MAGIC))),
               Both((Answer(200),), env_lacks(*MAGIC, sid=1)), ("H-9",),
               after=no_file(MAGIC_FILE))  # fmt: skip
    yield Case("uwsgi-magic-vars-are-data", (13,),
               classic("/environ", *((k.encode(), v.encode()) for k, v in MAGIC.items())),
               Both((Status(200),), env_lacks(*MAGIC)), after=no_file(MAGIC_FILE))  # fmt: skip

    # B3. the response side ----------------------------------------------------------------
    for path in ("/bad-header", "/bad-status"):
        yield Case(f"mux-app{path}", (14,), mux(hdrs(1, req(path))), Answer(500))
        yield Case(f"uwsgi-app{path}", (14,), classic(path), Status(500))
        yield Case(f"http-app{path}", (14,), http(f"GET {path} HTTP/1.1", "Host: t"),
                   Status(500, close=False))  # fmt: skip
    yield Case(
        "mux-app-body-over-its-content-length",
        (15,),
        mux(hdrs(1, req("/short-content-length"))),
        Answer(200, body=b"12345"),
    )
    yield Case(
        "mux-app-body-under-its-content-length",
        (15,),
        mux(hdrs(1, req("/long-content-length"))),
        Answer(200, reset=E.INTERNAL_ERROR),
    )
    yield Case("http-app-body-over-its-content-length", (15,),
               http("GET /short-content-length HTTP/1.1", "Host: t", "Connection: close"),
               Status(200, body=b"\r\n\r\n12345"))  # fmt: skip
    yield Case("mux-app-start-response-twice", (15,), mux(hdrs(1, req("/twice"))), Answer(500))

    # B5. multiplexing floods (in small: the full-speed runs are in test_floods.py) --------
    yield Case("mux-rapid-reset-burst", (19,),
               mux(b"".join(hdrs(s, req("/hello")) + reset(s, E.CANCEL) for s in range(1, 120, 2))),
               GoAway(E.ENHANCE_YOUR_CALM), ("L-1",))  # fmt: skip
    yield Case("mux-ping-flood", (20,), mux(frame(FrameType.PING, 0, 0, b"p" * 8) * 30),
               GoAway(E.ENHANCE_YOUR_CALM), ("L-1",))  # fmt: skip
    settings = frame(FrameType.SETTINGS, 0, 0, struct.pack("<HI", 0x1, 100))
    yield Case("mux-settings-flood", (20,), mux(settings * 10), GoAway(E.ENHANCE_YOUR_CALM),
               ("L-1",))  # fmt: skip
    yield Case("mux-settings-33-entries", (20,),
               mux(frame(FrameType.SETTINGS, 0, 0, struct.pack("<HI", 0x99, 1) * 33)),
               GoAway(E.ENHANCE_YOUR_CALM), ("E-8",))  # fmt: skip
    yield Case("mux-empty-data-flood", (21,),
               mux(hdrs(1, req("/sleep?s=0.5", CONTENT_LENGTH=""), end=False) + data(1, b"") * 80),
               GoAway(E.ENHANCE_YOUR_CALM), ("L-1",))  # fmt: skip
    yield Case("mux-unknown-frame-flood", (21, 24), mux(frame(0x09, 0, 1, b"c" * 100) * 80),
               GoAway(E.ENHANCE_YOUR_CALM), ("F-4",))  # fmt: skip
    yield Case("mux-frames-on-closed-stream-flood", (21,),
               mux(hdrs(1, req("/hello")) + reset(1, E.CANCEL) + data(1, b"late") * 80),
               GoAway(E.ENHANCE_YOUR_CALM), ("R-3",))  # fmt: skip
    yield Case("mux-unknown-frame-ignored", (22, 24),
               mux(frame(0x09, 0, 1, b"h2 CONTINUATION"), frame(0x02, 0, 1, b"h2 PRIORITY"),
                   hdrs(1, req("/hello"))),
               Answer(200, body=b"Hello, World!"), ("F-4",))  # fmt: skip
    yield Case("mux-second-headers-on-a-stream", (22,),
               mux(hdrs(1, req("/input-error", CONTENT_LENGTH=""), end=False), hdrs(1, req("/x"))),
               Reset(E.PROTOCOL_ERROR), ("H-5",))  # fmt: skip
    bomb = b"\xdd\xff\xff\xff\xff" + b"\xa1a" * 4  # array32 claiming 2^32-1 items
    yield Case("mux-msgpack-length-bomb", (23,), mux(frame(FrameType.HEADERS, 1, 1, bomb)),
               Reset(E.PROTOCOL_ERROR), ("H-1",))  # fmt: skip
    nested = b"\x91" * 5000 + b"\xa1a"  # 5000 nested one-element arrays
    yield Case("mux-msgpack-nesting-bomb", (23,), mux(frame(FrameType.HEADERS, 1, 1, nested)),
               Reset(E.PROTOCOL_ERROR), ("H-1",))  # fmt: skip
    yield Case("mux-head-is-a-map", (23,),
               mux(frame(FrameType.HEADERS, 1, 1, msgpack.packb(req("/mark/map")))),
               Reset(E.PROTOCOL_ERROR), ("H-1",), never="map")  # fmt: skip
    yield Case("mux-window-update-0-on-stream", (25,),
               mux(hdrs(1, req("/sleep?s=0.3")), window_update(1, 0)),
               Reset(E.PROTOCOL_ERROR), ("W-4",))  # fmt: skip
    yield Case("mux-window-update-0-on-connection", (25,), mux(window_update(0, 0)),
               GoAway(E.PROTOCOL_ERROR), ("W-4",))  # fmt: skip
    yield Case("mux-window-overflow-on-stream", (25,),
               mux(hdrs(1, req("/sleep?s=0.3")), window_update(1, 0x7FFFFFFF)),
               Reset(E.FLOW_CONTROL_ERROR), ("W-5",))  # fmt: skip
    yield Case("mux-window-overflow-on-connection", (25,), mux(window_update(0, 0x7FFFFFFF)),
               GoAway(E.FLOW_CONTROL_ERROR), ("W-5",))  # fmt: skip
    yield Case("mux-stream-id-reuse", (26,), mux(hdrs(1, req("/hello")), hdrs(1, req("/hello"))),
               GoAway(E.PROTOCOL_ERROR), ("I-3",))  # fmt: skip
    yield Case("mux-stream-id-decrease", (26,),
               mux(hdrs(5, req("/hello")), hdrs(3, req("/mark/decrease"))),
               GoAway(E.PROTOCOL_ERROR), ("I-2", "I-3"), never="decrease")  # fmt: skip
    yield Case("mux-even-stream-id", (26,), mux(hdrs(2, req("/mark/even"))),
               GoAway(E.PROTOCOL_ERROR), ("I-1",), never="even")  # fmt: skip
    yield Case("mux-stream-id-above-2-31", (26,), mux(hdrs(0x80000001, req("/mark/big-id"))),
               GoAway(E.PROTOCOL_ERROR), ("G-2",), never="big-id")  # fmt: skip
    yield Case("mux-data-on-idle-stream", (26,), mux(data(7, b"x")), GoAway(E.PROTOCOL_ERROR),
               ("I-4",))  # fmt: skip
    yield Case("mux-headers-on-stream-0", (26,), mux(hdrs(0, req("/hello"))),
               GoAway(E.PROTOCOL_ERROR), ("F-7",))  # fmt: skip
    yield Case("mux-reset-of-3-bytes", (26,), mux(frame(FrameType.RESET, 0, 1, b"abc")),
               GoAway(E.FRAME_SIZE_ERROR), ("F-8",))  # fmt: skip
    yield Case("mux-bad-preface-magic", (26,), [frame(FrameType.PREFACE, 0, 0, b"muxwsgi/9")],
               GoAway(E.PROTOCOL_ERROR), ("P-2",))  # fmt: skip
    yield Case("mux-second-preface", (26,), mux(preface()), GoAway(E.PROTOCOL_ERROR), ("P-3",))
    yield Case("mux-unexpected-settings-ack", (26,),
               mux(frame(FrameType.SETTINGS, 1, 0)),
               GoAway(E.PROTOCOL_ERROR), ("E-6",))  # fmt: skip
    yield Case("mux-setting-out-of-bounds", (26,), [preface({0x3: 100})],
               GoAway(E.PROTOCOL_ERROR), ("E-2",))  # fmt: skip
    yield Case("mux-goaway-raising-last-stream-id", (26,),
               mux(goaway(1, 0) + goaway(9, 0)), GoAway(E.PROTOCOL_ERROR), ("S-4",))  # fmt: skip
    yield Case("mux-too-many-streams", (27,),
               mux(b"".join(hdrs(s, req("/sleep?s=0.5")) for s in range(1, 36, 2))),
               Both((Reset(E.REFUSED_STREAM, sid=33), Reset(E.REFUSED_STREAM, sid=35),
                     *(Answer(200, sid=s) for s in range(1, 32, 2)))),
               ("C-2",))  # fmt: skip

    # B6. memory through flow control ------------------------------------------------------
    chunk = b"u" * 65535
    yield Case("mux-stream-window-overrun", (29,),
               mux(hdrs(1, req("/sleep?s=0.5", CONTENT_LENGTH="400000"), end=False)
                   + data(1, chunk) * 5),
               Reset(E.FLOW_CONTROL_ERROR), ("W-3",))  # fmt: skip
    yield Case("mux-connection-window-overrun", (29,),
               mux(b"".join(hdrs(s, req("/sleep?s=0.5", CONTENT_LENGTH="250000"), end=False)
                            + data(s, chunk) * 3 for s in range(1, 13, 2))),
               GoAway(E.FLOW_CONTROL_ERROR), ("W-3",))  # fmt: skip


def input_error_seen(address: tuple[str, int]) -> str | None:
    """The last /input-error call saw wsgi.input raise (not complete, not hang)."""
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        seen = json.loads(get(address, "/input-errors"))
        if len(seen) > input_error_seen.count:  # type: ignore[attr-defined]
            input_error_seen.count = len(seen)  # type: ignore[attr-defined]
            last = seen[-1]
            return None if "ClientDisconnected" in last else f"wsgi.input ended with {last!r}"
        time.sleep(0.1)
    return "the application is still waiting for the body"


input_error_seen.count = 0  # type: ignore[attr-defined]

CASES = list(cases())


# ------------------------------------------------------------------------------ the run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start("tests.hostile.apps:app", *SERVER_ARGS, log_dir=tmp_path_factory.mktemp("hostile"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def healthy(server: ServerProcess) -> Iterator[Healthy]:
    with Healthy(server.address) as client:
        client.check(0)
        yield client
    # The same worker served every case: none of them crashed it.
    assert len(server.worker_pids()) == 1


def test_every_case_is_documented() -> None:
    text = (Path(__file__).parents[2] / "docs" / "hardening.md").read_text()
    assert [c.id for c in CASES if f"`{c.id}`" not in text] == []


def test_the_table_covers_the_list() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    covered = {i for c in CASES for i in c.items}
    # 16-18 (slow peers), 28 (a reader that never reads): test_slow_peers.py, test_floods.py;
    # 30-31 (deployment defaults): test_deployment_defaults below.
    assert covered >= set(range(1, 16)) | set(range(19, 28)) | {29}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(server: ServerProcess, healthy: Healthy, case: Case) -> None:
    before = healthy.ok
    expect = case.expect
    seen = converse(
        server.address,
        case.script,
        done=lambda s: expect.problem(s) is None,
        timeout=case.timeout,
        mux=expect.mux,
        half_close=case.half_close,
    )
    assert expect.problem(seen) is None, (expect.problem(seen), seen.raw[:300])
    if case.after is not None:
        assert case.after(server.address) is None, case.after(server.address)
    if case.never or case.reached:
        reached = marks(server.address)
        assert case.never not in reached
        assert case.reached is None or case.reached in reached
    healthy.check(before)
    # Another new connection is served normally too.
    assert get(server.address, "/hello") == b"Hello, World!"


def test_the_log_has_no_internal_error(server: ServerProcess, healthy: Healthy) -> None:
    """Runs after the table: every rejection was handled, none escaped as a traceback."""
    assert log_problems(server.log()) == []


# ------------------------------------------------------------------------------ B7. deployment


def test_deployment_defaults(tmp_path: Path) -> None:
    """Items 30-31: 127.0.0.1 unless asked, an allow-list for TCP peers (a refused peer is
    closed before a byte is read; unix sockets are always allowed), unix sockets 0660.
    (Parsing of these settings: tests/server/test_config.py::test_defaults.)"""
    import os
    import stat

    from muxwsgi.server.config_load import load_config

    assert load_config(["tests.hostile.apps:app"], {}).bind == ("127.0.0.1:3031",)
    path = tmp_path / "mux.sock"
    srv = start("tests.hostile.apps:app", "--allow-from", "192.0.2.0/24", "--bind",
                f"unix:{path}", log_dir=tmp_path, ready=False)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not path.exists() or not srv.addresses:
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.05)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        tcp = next(a for a in srv.addresses if not a.startswith("unix"))
        host, _, port = tcp.rpartition(":")
        seen = converse((host, int(port)), [b"GET /mark/refused HTTP/1.1\r\nHost: t\r\n\r\n"])
        assert seen.raw == b"" and seen.closed  # 127.0.0.1 is not in 192.0.2.0/24
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert b"".join(iter(lambda: sock.recv(65536), b"")).endswith(b"Hello, World!")
        assert "not in allow-from" in srv.log()
    finally:
        srv.stop()
