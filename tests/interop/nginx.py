"""Run a real nginx for interop tests: its own prefix directory, 127.0.0.1 only, its own
process group, stopped by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..servers import wait_listening

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

MAIN = """
worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
{site}
}}
"""

UWSGI_PASS_SITE = """
    client_max_body_size 16m;
    upstream app {{ server {upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include /etc/nginx/uwsgi_params;
            uwsgi_pass app;
            {extra}
        }}
    }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def nginx(upstream: str, prefix: Path, *, extra: str = "") -> Iterator[int]:
    """Yield the port of an nginx that uwsgi_passes everything to ``upstream``."""
    port = free_port()
    with run_nginx(UWSGI_PASS_SITE.format(upstream=upstream, port=port, extra=extra), prefix, port):
        yield port


@contextmanager
def run_nginx(site: str, prefix: Path, port: int, *, user: str | None = None) -> Iterator[None]:
    """A real nginx serving ``site`` (what goes inside ``http {}``) until it answers on
    127.0.0.1:``port``. ``user``: its ``user`` directive (default: root when we are root)."""
    if user is None:
        user = "user root;" if os.geteuid() == 0 else ""
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(MAIN.format(prefix=prefix, site=site, user=user))
    with open(prefix / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        logs = [prefix / "stderr.log", prefix / "error.log"]
        wait_listening(port, proc, 10, lambda: "nginx did not start: " + "".join(
            p.read_text() for p in logs if p.exists()))  # fmt: skip
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)
