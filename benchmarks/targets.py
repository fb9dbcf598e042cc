"""The APPS table: how each server is started, and the targets (server + load driver) measured.

Every server runs the same ``benchmarks/app.py`` with the same workers x threads, binds
127.0.0.1 only, and starts in its own process group. Nothing is installed here: a target whose
program is missing is skipped with the command that installs it.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from muxwsgi import classic

from .procs import HTTP_ANSWER

__all__ = (
    "SERVERS",
    "TARGETS",
    "Layout",
    "ServerSpec",
    "Target",
    "missing_tools",
    "tls_files",
    "tls_options",
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP_FILE = ROOT / "benchmarks" / "app.py"
APP = "benchmarks.app:app"
INSTALL_HINT = "pip install -e '.[bench]'"


@dataclass(frozen=True)
class Layout:
    """Where and how big: the same for every server of one run."""

    port: int
    workers: int
    threads: int
    run_dir: Path
    backend_port: int = 0  # the proxied server, for nginx


def _tool(name: str) -> str:
    """The program from this venv if it is there, else from PATH (nginx, wrk)."""
    local = BIN / name
    if local.exists():
        return str(local)
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin") or name


def _muxwsgi(lay: Layout) -> list[str]:
    # 1024 streams per connection: the 256-in-flight cell must fit on one connection.
    return [sys.executable, "-m", "muxwsgi", "serve", APP, *(
        f"--bind 127.0.0.1:{lay.port} --workers {lay.workers} --threads {lay.threads} "
        "--max-concurrent-streams 1024 --log-level warning"
    ).split()]  # fmt: skip


def _uwsgi(socket_option: str) -> Callable[[Layout], list[str]]:
    def argv(lay: Layout) -> list[str]:
        # Paths stay whole list items: a checkout's path may contain spaces.
        return [_tool("uwsgi"), "--wsgi-file", str(APP_FILE), "--pythonpath", str(ROOT), *(
            f"{socket_option} 127.0.0.1:{lay.port} --callable app --master "
            f"--processes {lay.workers} --threads {lay.threads} "
            "--listen 1024 --die-on-term --disable-logging --buffer-size 32768"
        ).split()]  # fmt: skip

    return argv


def _granian(lay: Layout) -> list[str]:
    return [_tool("granian"), *(
        f"--interface wsgi --http 1 --host 127.0.0.1 --port {lay.port} --workers {lay.workers} "
        f"--blocking-threads {lay.threads} --backlog 1024 --no-ws --log-level warning {APP}"
    ).split()]  # fmt: skip


def _gunicorn(*protocol: str) -> Callable[[Layout], list[str]]:
    def argv(lay: Layout) -> list[str]:
        return [_tool("gunicorn"), *(
            f"--worker-class gthread --workers {lay.workers} --threads {lay.threads} "
            f"--bind 127.0.0.1:{lay.port} --backlog 1024 --log-level warning"
        ).split(), *protocol, APP]  # fmt: skip

    return argv


H2C_OPTIONS = (
    "--http-protocols", "h2,h1", "--http2-cleartext", "prior-knowledge",
    "--http2-max-concurrent-streams", "1024",
)  # fmt: skip


def _grpc(lay: Layout) -> list[str]:
    return [sys.executable, "-m", "benchmarks.grpc_server", *(
        f"--port {lay.port} --workers {lay.workers} --threads {lay.threads}"
    ).split()]  # fmt: skip


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {run_dir}/nginx.pid;
error_log {run_dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {run_dir}/body;
    proxy_temp_path {run_dir}/proxy;
    fastcgi_temp_path {run_dir}/fastcgi;
    uwsgi_temp_path {run_dir}/uwsgi;
    scgi_temp_path {run_dir}/scgi;
    client_max_body_size 16m;
    # Bodies and responses stay in memory: temporary files would measure the disk.
    client_body_buffer_size 2m;
    uwsgi_max_temp_file_size 0;
    proxy_max_temp_file_size 0;
    keepalive_requests 1000000;
    upstream backend {{
        server 127.0.0.1:{backend_port};
{upstream}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
{location}
        }}
    }}
}}
"""

#: uwsgi_pass: the drop-in. A new connection to the backend for every request.
UWSGI_PASS = ("", """\
            # nginx's own uwsgi_params, inline so that no file outside the run is needed.
            uwsgi_param QUERY_STRING $query_string;
            uwsgi_param REQUEST_METHOD $request_method;
            uwsgi_param CONTENT_TYPE $content_type;
            uwsgi_param CONTENT_LENGTH $content_length;
            uwsgi_param REQUEST_URI $request_uri;
            uwsgi_param PATH_INFO $document_uri;
            uwsgi_param DOCUMENT_ROOT $document_root;
            uwsgi_param SERVER_PROTOCOL $server_protocol;
            uwsgi_param REQUEST_SCHEME $scheme;
            uwsgi_param HTTPS $https if_not_empty;
            uwsgi_param REMOTE_ADDR $remote_addr;
            uwsgi_param REMOTE_PORT $remote_port;
            uwsgi_param SERVER_PORT $server_port;
            uwsgi_param SERVER_NAME $server_name;
            uwsgi_pass backend;""")  # fmt: skip

#: proxy_pass over HTTP/1.1 with a pool of idle upstream connections, as docs/nginx.md shows
#: it: requests reuse the backend's connections. The pool holds every connection the busiest
#: cell keeps in flight (256), so none is closed for lack of room.
PROXY_PASS_KEEPALIVE = ("""\
        keepalive 256;
        keepalive_requests 1000000;""", """\
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;""")  # fmt: skip


def _nginx(upstream_and_location: tuple[str, str]) -> Callable[[Layout], list[str]]:
    upstream, location = upstream_and_location

    def argv(lay: Layout) -> list[str]:
        conf = lay.run_dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(
            run_dir=lay.run_dir, port=lay.port, backend_port=lay.backend_port,
            upstream=upstream, location=location,
        ))  # fmt: skip
        return [_tool("nginx"), "-p", str(lay.run_dir), "-c", str(conf)]

    return argv


# ---------------------------------------------------------------- TLS rows
# muxwsgi with mutual TLS (certificates made by trustme in the run's directory), driven over
# muxs:// by our client, and behind nginx's uwsgi_pass suwsgi:// with a client certificate.


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server: Path  # chain and key
    client: Path  # chain and key (our client)
    client_cert: Path  # nginx wants them apart
    client_key: Path


def tls_files(run_dir: Path) -> TlsFiles:
    """The run's certificates, made on first use: a CA, the server's (127.0.0.1), a client's."""
    files = TlsFiles(*(run_dir / "tls" / name for name in (
        "ca.pem", "server.pem", "client.pem", "client-cert.pem", "client-key.pem")))  # fmt: skip
    if not files.ca.exists():
        import trustme

        files.ca.parent.mkdir(exist_ok=True)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(files.ca))
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            str(files.server)
        )
        client = ca.issue_cert("bench-client@example.com", common_name="bench-client")
        client.private_key_and_cert_chain_pem.write_to_path(str(files.client))
        files.client_cert.write_bytes(b"".join(b.bytes() for b in client.cert_chain_pems))
        client.private_key_pem.write_to_path(str(files.client_key))
    return files


def _muxwsgi_tls(lay: Layout) -> list[str]:
    files = tls_files(lay.run_dir)
    return [*_muxwsgi(lay), "--certfile", str(files.server), "--ca-certs", str(files.ca)]


#: nginx's side of suwsgi:// with mutual TLS; session reuse is nginx's default (on).
NGINX_SUWSGI = """uwsgi_pass suwsgi://backend;
            uwsgi_ssl_certificate {tls.client_cert};
            uwsgi_ssl_certificate_key {tls.client_key};
            uwsgi_ssl_trusted_certificate {tls.ca};
            uwsgi_ssl_verify on;
            uwsgi_ssl_name localhost;
            uwsgi_ssl_session_reuse {reuse};"""


def _nginx_suwsgi(reuse: str) -> Callable[[Layout], list[str]]:
    def argv(lay: Layout) -> list[str]:
        suwsgi = NGINX_SUWSGI.format(tls=tls_files(lay.run_dir), reuse=reuse)
        location = UWSGI_PASS[1].replace("uwsgi_pass backend;", suwsgi)
        return _nginx(("", location))(lay)

    return argv


def tls_options(target_id: str, run_dir: Path) -> dict[str, str]:
    """The client settings of a target driven over TLS (muxs://): {} for the others."""
    if TARGETS[target_id].scheme not in ("muxs", "uwsgis"):
        return {}
    files = tls_files(run_dir)
    return {"verify": str(files.ca), "cert": str(files.client)}


HTTP_PROBE = b"GET /hello HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
UWSGI_PROBE = classic.encode_request(
    {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/hello",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "probe",
        "SERVER_PORT": "80",
    }
)
#: HTTP/2's connection preface, then an empty SETTINGS frame.
H2_PROBE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_ANSWER = re.compile(rb"...\x04", re.S)  # a frame header: 3 bytes of length, type SETTINGS


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: Callable[[Layout], list[str]]
    probe: bytes
    tool: str  # the program (or, for grpcio, the Python distribution) that must exist
    answer: re.Pattern[bytes] = HTTP_ANSWER  # what the probe's answer starts with


SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec("muxwsgi", _muxwsgi, HTTP_PROBE, "python"),
        ServerSpec("uwsgi-socket", _uwsgi("--socket"), UWSGI_PROBE, "uwsgi"),
        # Plain --http-socket answers and closes: wrk reconnects for every request.
        ServerSpec("uwsgi-http", _uwsgi("--http-socket"), HTTP_PROBE, "uwsgi"),
        # --http11-socket keeps connections alive: uWSGI's fastest HTTP mode.
        ServerSpec("uwsgi-http11", _uwsgi("--http11-socket"), HTTP_PROBE, "uwsgi"),
        ServerSpec("granian", _granian, HTTP_PROBE, "granian"),
        # gunicorn answers an HTTP/1.1 probe on a prior-knowledge port with a 400: enough to
        # know a worker listens.
        ServerSpec("gunicorn-h2c", _gunicorn(*H2C_OPTIONS), HTTP_PROBE, "gunicorn"),
        ServerSpec("gunicorn", _gunicorn(), HTTP_PROBE, "gunicorn"),
        ServerSpec("nginx", _nginx(UWSGI_PASS), HTTP_PROBE, "nginx"),
        ServerSpec("nginx-keepalive", _nginx(PROXY_PASS_KEEPALIVE), HTTP_PROBE, "nginx"),
        # A gRPC server answers the HTTP/2 preface with its SETTINGS.
        ServerSpec("grpc", _grpc, H2_PROBE, "grpcio", answer=H2_ANSWER),
        ServerSpec("muxwsgi-tls", _muxwsgi_tls, HTTP_PROBE, "python"),
        ServerSpec("nginx-suwsgi", _nginx_suwsgi("on"), HTTP_PROBE, "nginx"),
        ServerSpec("nginx-suwsgi-noreuse", _nginx_suwsgi("off"), HTTP_PROBE, "nginx"),
    )
}


@dataclass(frozen=True)
class Target:
    """One row: a server (maybe behind nginx) and the client that drives it."""

    id: str
    server: str
    driver: str  # a benchmarks.loadgen driver, or "wrk"
    scheme: str  # of the URL given to the driver
    what: str
    connections: int = 1
    front: str | None = None  # "nginx": the driver talks to nginx, nginx to the server
    server_closes: bool = False  # the server closes the connection after each response

    @property
    def tools(self) -> list[str]:
        names = [SERVERS[self.server].tool]
        if self.front:
            names.append(SERVERS[self.front].tool)
        if self.driver == "wrk":
            names.append("wrk")
        return names


TARGETS: dict[str, Target] = {
    t.id: t
    for t in (
        Target(
            "uwsgi-classic",
            "uwsgi-socket",
            "uwsgi",
            "uwsgi",
            "uWSGI --socket, our client in classic mode (connection per request)",
        ),
        Target("mux-1conn", "muxwsgi", "mux", "mux", "muxwsgi, 1 mux connection"),
        # The multiplexed RPC Python services use today, beside mux-1conn: one HTTP/2 channel.
        Target(
            "grpc",
            "grpc",
            "grpc",
            "grpc",
            "grpcio sync server (a thread pool per process), grpc.aio client, 1 channel",
        ),
        Target("mux-pool", "muxwsgi", "mux", "mux", "muxwsgi, 4 mux connections", connections=4),
        Target(
            "muxwsgi-classic",
            "muxwsgi",
            "uwsgi",
            "uwsgi",
            "muxwsgi's classic uwsgi path (connection per request)",
        ),
        Target(
            "granian-aiohttp", "granian", "aiohttp", "http", "granian HTTP/1.1, aiohttp keep-alive"
        ),
        Target("granian-httpx", "granian", "httpx", "http", "granian HTTP/1.1, httpx keep-alive"),
        Target(
            "gunicorn-h2-httpx",
            "gunicorn-h2c",
            "httpx-h2",
            "http",
            "gunicorn gthread h2c, httpx HTTP/2",
        ),
        Target(
            "uwsgi-http-wrk",
            "uwsgi-http",
            "wrk",
            "http",
            "uWSGI --http-socket, wrk (C client; uWSGI closes each connection)",
            server_closes=True,
        ),
        Target(
            "uwsgi-http11-wrk",
            "uwsgi-http11",
            "wrk",
            "http",
            "uWSGI --http11-socket, wrk (C client) keep-alive",
        ),
        Target(
            "nginx-uwsgi",
            "uwsgi-socket",
            "wrk",
            "http",
            "wrk -> nginx -> uWSGI --socket",
            front="nginx",
        ),
        Target(
            "nginx-muxwsgi",
            "muxwsgi",
            "wrk",
            "http",
            "wrk -> nginx -> muxwsgi (classic uwsgi)",
            front="nginx",
        ),
        *(
            Target(
                f"nginx-keepalive-{name}",
                server,
                "wrk",
                "http",
                f"wrk -> nginx proxy_pass, upstream keepalive -> {what}",
                front="nginx-keepalive",
            )
            for name, server, what in (
                ("muxwsgi", "muxwsgi", "muxwsgi HTTP/1.1"),
                ("uwsgi", "uwsgi-http11", "uWSGI --http11-socket"),
                ("granian", "granian", "granian WSGI HTTP/1.1"),
                ("gunicorn", "gunicorn", "gunicorn gthread HTTP/1.1"),
            )
        ),
        Target("mux-1conn-tls", "muxwsgi-tls", "mux", "muxs",
               "muxwsgi, 1 mux connection over mutual TLS (muxs://)"),
        Target("nginx-muxwsgi-tls", "muxwsgi-tls", "wrk", "http",
               "wrk -> nginx -> muxwsgi over suwsgi:// with mutual TLS (sessions resumed)",
               front="nginx-suwsgi"),
        Target("nginx-muxwsgi-tls-full", "muxwsgi-tls", "wrk", "http",
               "the same, uwsgi_ssl_session_reuse off: a full handshake per request",
               front="nginx-suwsgi-noreuse"),
    )
}  # fmt: skip


#: Tools that are Python distributions (server and client both import them), by module name.
PYTHON_TOOLS = {"grpcio": "grpc"}
INSTALL = {
    "uwsgi": INSTALL_HINT,
    "granian": INSTALL_HINT,
    "gunicorn": INSTALL_HINT,
    "grpcio": INSTALL_HINT,
    "nginx": "apt-get install nginx-light",
    "wrk": "apt-get install wrk",
}


def missing_tools(target: Target) -> list[tuple[str, str]]:
    """(program, how to install it) for each program the target needs and cannot find."""
    missing = []
    for name in target.tools:
        if name == "python":
            continue
        if name in PYTHON_TOOLS:
            if importlib.util.find_spec(PYTHON_TOOLS[name]) is None:
                missing.append((name, INSTALL[name]))
            continue
        path = _tool(name)
        if not Path(path).exists() and shutil.which(path) is None:
            missing.append((name, INSTALL[name]))
    return missing
