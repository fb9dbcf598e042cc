"""W3C Trace Context on the server: ``traceparent`` and ``tracestate`` reach the application's
environ over mux, classic uwsgi and HTTP/1.1, and the access log (text and JSON) carries the
trace id; a malformed traceparent is logged as "-", never an error (issue 18)."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from muxwsgi.client import Client
from muxwsgi.server.config import Config
from muxwsgi.server.logs import AccessLog, trace_id

from ..servers import running, until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def traceparent(trace: str, parent: str = "00f067aa0ba902b7", version: str = "00") -> str:
    return f"{version}-{trace}-{parent}-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (traceparent(TRACE), TRACE),
        (f"  {traceparent(TRACE)} ", TRACE),  # optional whitespace around a header value
        (traceparent(TRACE, version="01") + "-more-fields", TRACE),  # a later version
        (traceparent(TRACE) + "-more-fields", "-"),  # version 00 has exactly four fields
        (traceparent(TRACE, version="ff"), "-"),  # ff is forbidden
        (traceparent("0" * 32), "-"),
        (traceparent(TRACE, parent="0" * 16), "-"),
        (traceparent(TRACE.upper()), "-"),  # lower-case hex only
        (traceparent(TRACE[:-1]), "-"),
        (f"{traceparent(TRACE)}, {traceparent(TRACE)}", "-"),  # two headers joined
        ("garbage", "-"),
        ("", "-"),
        (None, "-"),
    ],
)
def test_trace_id(value: str | None, expected: str) -> None:
    assert trace_id(value) == expected


def test_the_access_log_is_off_by_default() -> None:
    """Off, the dispatcher holds no AccessLog and does no per-request work for it."""
    assert Config().access_log is None
    assert AccessLog(Config()).enabled is False


def via_client(scheme: str) -> Callable[[tuple[str, int], dict[str, str]], dict[str, str]]:
    """A sender of GET /environ with ``muxwsgi.client`` over ``scheme`` (mux or uwsgi)."""

    def send(address: tuple[str, int], headers: dict[str, str]) -> dict[str, str]:
        with Client(f"{scheme}://{address[0]}:{address[1]}") as client:
            response = client.get("/environ", headers=headers, timeout=10)
        assert response.status == 200
        environ: dict[str, str] = response.json()
        return environ

    return send


via_mux = via_client("mux")


def via_http(address: tuple[str, int], headers: dict[str, str]) -> dict[str, str]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", "/environ", headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        environ: dict[str, str] = json.loads(response.read())
    finally:
        conn.close()
    return environ


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_traceparent_reaches_environ_and_the_access_log(log_format: str, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    senders = {"mux": via_mux, "uwsgi": via_client("uwsgi"), "http": via_http}
    with running("tests.server.apps:app", "--access-log", str(access), "--log-format",
                 log_format, log_dir=tmp_path) as server:  # fmt: skip
        sent: dict[str, str] = {}
        for i, (protocol, send) in enumerate(senders.items()):
            trace = f"{i + 1:x}" + TRACE[1:]
            sent[protocol] = trace
            environ = send(server.address, {"traceparent": traceparent(trace), "tracestate": STATE})
            assert environ["HTTP_TRACEPARENT"] == traceparent(trace)
            assert environ["HTTP_TRACESTATE"] == STATE
            assert environ["muxwsgi.protocol"] == protocol
        # Malformed: served as usual, passed through as sent, logged without a trace id.
        environ = via_mux(server.address, {"traceparent": "00-not-a-trace"})
        assert environ["HTTP_TRACEPARENT"] == "00-not-a-trace"
        via_http(server.address, {})  # none at all

        def ours() -> list[str]:  # not the readiness check's /hello
            text = access.read_text() if access.exists() else ""
            return [line for line in text.splitlines() if "/environ" in line]

        lines = until(lambda: len(ours()) == 5 and ours(), 10, what="five access log lines")
    if log_format == "json":
        logged = [(e["protocol"], e["trace_id"]) for e in map(json.loads, lines)]
    else:
        logged = []
        for line in lines:
            found = re.search(r" (mux|uwsgi|http) stream=\d+ request_id=\S+ trace_id=(\S+)$", line)
            assert found, line
            logged.append((found[1], found[2]))
    # Sorted: a classic request answered by its application thread writes its line with the
    # loop's next batch, so the lines may come in another order than the requests.
    assert sorted(logged) == sorted([*sent.items(), ("mux", "-"), ("http", "-")])
    assert "Traceback" not in server.log()
