"""OpenTelemetry on the server (``--opentelemetry``): a SERVER span per request, child of the
caller's traceparent over every protocol, current while the application runs and while its
streamed response is iterated, ended with the status, the exception or the cancellation; and
one trace from a client span through the server span to the application's own (issue 18).

The server is another process: its application (tests/server/otel_app.py) configures the SDK
to write every span that ends as a JSON line to a file of the test's.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from muxwsgi.client import Client, RequestTimeout, StreamResetError

from ..otel import recording
from ..servers import ServerProcess, running, until

pytestmark = pytest.mark.slow

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def spans_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "spans.jsonl"
    monkeypatch.setenv("MUXWSGI_TEST_SPANS", str(path))
    return path


@pytest.fixture
def server(tmp_path: Path, spans_file: Path) -> Iterator[ServerProcess]:
    with running("tests.server.otel_app:app", "--opentelemetry", log_dir=tmp_path) as srv:
        yield srv


def ended(path: Path) -> list[dict[str, Any]]:
    """The spans the server has written so far (the SDK's JSON)."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


def server_span(path: Path, url_path: str) -> dict[str, Any]:
    """The one SERVER span of ``url_path``, once it has ended."""

    def found() -> list[dict[str, Any]]:
        return [
            span
            for span in ended(path)
            if span["kind"] == "SpanKind.SERVER" and span["attributes"]["url.path"] == url_path
        ]

    (span,) = until(found, 10, what=f"a server span for {url_path}")
    return span


def named(path: Path, name: str) -> dict[str, Any]:
    (span,) = until(lambda: [s for s in ended(path) if s["name"] == name], 10, what=name)
    return span


def ids(span: ReadableSpan | dict[str, Any]) -> tuple[str, str]:
    """(trace id, span id) as the SDK's JSON writes them."""
    if isinstance(span, dict):
        return span["context"]["trace_id"], span["context"]["span_id"]
    context = span.get_span_context()
    return f"0x{context.trace_id:032x}", f"0x{context.span_id:016x}"


def test_one_trace_from_the_client_through_the_server_to_the_application(
    server: ServerProcess, spans_file: Path
) -> None:
    host, port = server.address
    with recording() as exporter, Client(f"mux://{host}:{port}") as client:
        with trace.get_tracer("tests").start_as_current_span("caller"):
            seen = client.get("/work", headers={"User-Agent": "tests"}).json()
        (sent,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    served = server_span(spans_file, "/work")
    work = named(spans_file, "app.work")
    trace_id, client_id = ids(sent)
    # client -> server -> application: one trace, each span the parent of the next.
    assert ids(served)[0] == ids(work)[0] == trace_id
    assert served["parent_id"] == client_id
    assert work["parent_id"] == ids(served)[1]
    assert seen == {"trace_id": trace_id[2:], "span_id": ids(work)[1][2:]}
    assert served["name"] == "GET" and served["status"] == {"status_code": "UNSET"}
    attributes = served["attributes"]
    request_id = attributes.pop("muxwsgi.request_id")
    assert request_id and attributes.pop("network.peer.port") > 0
    assert attributes == {
        "http.request.method": "GET",
        "url.path": "/work",
        "url.scheme": "http",
        "client.address": "127.0.0.1",
        "network.peer.address": "127.0.0.1",
        "user_agent.original": "tests",
        "muxwsgi.protocol": "mux",
        "muxwsgi.stream_id": 1,
        "server.address": host,
        "server.port": port,
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
    }


def test_a_streamed_response_is_traced_until_it_is_closed(
    server: ServerProcess, spans_file: Path
) -> None:
    host, port = server.address
    with Client(f"mux://{host}:{port}") as client:
        seen = json.loads(client.get("/stream").content)
    served = server_span(spans_file, "/stream")
    chunk = named(spans_file, "app.chunk")
    # The generator ran after the application returned: the server span was current still.
    assert chunk["parent_id"] == ids(served)[1]
    assert seen["span_id"] == ids(chunk)[1][2:]
    assert served["end_time"] >= chunk["end_time"]
    assert served["attributes"]["http.response.status_code"] == 200


def test_failures_are_errors_and_4xx_is_not(server: ServerProcess, spans_file: Path) -> None:
    host, port = server.address
    with Client(f"mux://{host}:{port}") as client:
        assert client.get("/raise").status == 500
        with client.stream("GET", "/raise-midstream") as response, pytest.raises(StreamResetError):
            response.read()
        assert client.get("/status/503").status == 503
        assert client.get("/status/404").status == 404
        with pytest.raises(RequestTimeout):
            client.get("/wait-cancel", timeout=0.2)
    raised = server_span(spans_file, "/raise")
    assert raised["attributes"]["error.type"] == "RuntimeError"
    assert raised["status"] == {"status_code": "ERROR", "description": "the application failed"}
    assert [event["name"] for event in raised["events"]] == ["exception"]
    midstream = server_span(spans_file, "/raise-midstream")
    assert midstream["attributes"]["error.type"] == "RuntimeError"
    assert midstream["attributes"]["http.response.status_code"] == 200  # the head was sent
    unavailable = server_span(spans_file, "/status/503")
    assert unavailable["attributes"]["error.type"] == "503"
    assert unavailable["status"]["status_code"] == "ERROR"
    not_found = server_span(spans_file, "/status/404")
    assert "error.type" not in not_found["attributes"]
    assert not_found["status"]["status_code"] == "UNSET"
    cancelled = server_span(spans_file, "/wait-cancel")
    assert cancelled["attributes"]["error.type"] == "cancelled"
    assert cancelled["status"]["status_code"] == "ERROR"


def send_http(address: tuple[str, int], path: str, headers: dict[str, str]) -> None:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        assert conn.getresponse().read() == b"Hello, World!"
    finally:
        conn.close()


def send_classic(address: tuple[str, int], path: str, headers: dict[str, str]) -> None:
    with Client(f"uwsgi://{address[0]}:{address[1]}", opentelemetry=False) as client:
        assert client.get(path, headers=headers).content == b"Hello, World!"


@pytest.mark.parametrize(("protocol", "send"), [("http", send_http), ("uwsgi", send_classic)])
def test_every_protocol_gives_the_span_its_parent(
    protocol: str, send: Any, server: ServerProcess, spans_file: Path
) -> None:
    parent = f"00-{TRACE}-{PARENT}-01"
    send(server.address, "/child", {"traceparent": parent, "tracestate": "congo=t61rcWkgMzE"})
    send(server.address, "/malformed", {"traceparent": f"00-{TRACE}-{'0' * 16}-01"})
    child = server_span(spans_file, "/child")
    assert child["context"]["trace_id"] == f"0x{TRACE}"
    assert child["parent_id"] == f"0x{PARENT}"
    assert "t61rcWkgMzE" in child["context"]["trace_state"]  # its text varies by SDK version
    assert child["attributes"]["muxwsgi.protocol"] == protocol
    malformed = server_span(spans_file, "/malformed")  # a new trace, not an error
    assert malformed["parent_id"] is None
    assert malformed["context"]["trace_id"] != f"0x{TRACE}"
    assert malformed["status"]["status_code"] == "UNSET"


def test_off_by_default(tmp_path: Path, spans_file: Path) -> None:
    with running("tests.server.otel_app:app", log_dir=tmp_path) as server:
        send_http(server.address, "/hello", {"traceparent": f"00-{TRACE}-{PARENT}-01"})
        with Client(f"mux://{server.address[0]}:{server.address[1]}") as client:
            seen = client.get("/work").json()
    work = named(spans_file, "app.work")
    assert work["parent_id"] is None  # no server span, so the application's is a root
    assert seen["span_id"] == ids(work)[1][2:]
    assert not [span for span in ended(spans_file) if span["kind"] == "SpanKind.SERVER"]
