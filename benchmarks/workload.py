"""What every benchmark request looks like, and the scenarios that send them.

Every request carries the headers of a typical browser navigation. Over uwsgi (classic or mux)
the client turns them into HTTP_* vars beside the 12 CGI vars nginx's uwsgi_params set, 28 vars
in all; over HTTP they travel as headers and the server builds the same environ. That is what
a request costs a real deployment: a benchmark without them flatters whoever parses vars slowest.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("BROWSER_HEADERS", "SCENARIOS", "Scenario", "headers_for")

#: Typical browser headers (Firefox navigating a page), Host apart: 15 headers.
BROWSER_HEADERS: tuple[tuple[str, str], ...] = (
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Connection", "keep-alive"),
    ("Cookie", "session=3f1c2a7e55d14c1e9e0b3f5b8a1d2c4e; theme=dark; lang=en"),
    ("Upgrade-Insecure-Requests", "1"),
    ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Site", "none"),
    ("Sec-Fetch-User", "?1"),
    ("Cache-Control", "max-age=0"),
    ("DNT", "1"),
    ("Referer", "http://api.example.com/items?page=1"),
    ("X-Request-Id", "9f1c2a7e-55d1-4c1e-9e0b-3f5b8a1d2c4e"),
)

# HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2): h2 clients (httpx-h2, gRPC's
# metadata) must drop them.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade"})


def headers_for(driver: str) -> list[tuple[str, str]]:
    """The browser headers as the given driver may send them.

    uwsgi clients (mux and classic) also send Host, as nginx passes it on; HTTP clients set
    Host themselves from the URL.
    """
    headers = list(BROWSER_HEADERS)
    if driver in ("mux", "uwsgi"):
        headers.insert(0, ("Host", "api.example.com"))
    if driver in ("httpx-h2", "grpc"):
        headers = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
    return headers


@dataclass(frozen=True)
class Scenario:
    """One kind of load: which request, how many in flight."""

    id: str
    method: str
    path: str
    concurrency: tuple[int, ...]
    quick_concurrency: tuple[int, ...]
    body_size: int = 0
    #: Head-of-line: a second window with one /slow request always in flight beside the load.
    slow_path: str | None = None
    what: str = ""
    #: A fleet: this many muxwsgi backends on 127.0.0.2, .3, ... (one port) behind one name,
    #: the last one 10x slower (benchmarks/fleet.py); one client balances them.
    backends: int = 0


SCENARIOS: dict[str, Scenario] = {
    s.id: s
    for s in (
        Scenario("hello", "GET", "/hello", (1, 16, 64, 256), (64,), what="hello world"),
        # 64 in flight against 2 workers x 8 threads: the thread budget is the bound
        # (at most 1600 req/s), and how a server queues beyond it shows in p99.
        Scenario("sleep", "GET", "/sleep", (64,), (64,), what="10 ms sleep (I/O bound)"),
        Scenario("echo-1m", "POST", "/echo", (8,), (8,), body_size=1 << 20, what="1 MiB echo"),
        Scenario(
            "hol",
            "GET",
            "/hello",
            (16,),
            (16,),
            slow_path="/slow",
            what="fast requests beside one 1 s request",
        ),
        Scenario("churn", "GET", "/hello", (16,), (16,), what="connections opened, TIME_WAIT"),
        Scenario(
            "fleet",
            "GET",
            "/fleet",
            (16,),
            (16,),
            backends=4,
            what="4 backends behind one name, one 10x slower (10 ms / 100 ms per request)",
        ),
    )
}
