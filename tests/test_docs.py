"""The code in README.md, examples/README.md and docs/ is real.

- every Python block runs against a live server, from outside the repository;
- every `muxwsgi serve` command line (shell blocks, the systemd unit) parses;
- every ini and TOML file is accepted, the ini files without a warning;
- each nginx site proxies to a real server through a real nginx (the keep-alive one over one
  reused connection), and the unix socket permissions described let nginx's workers in, or
  keep them out, as the docs say;
- the systemd units pass `systemd-analyze verify` (a .socket unit with its service);
- the migration table marks as "read from --ini" exactly the keys the ini reader honours;
- the client's settings table lists exactly the client's settings, in order, with their defaults;
- every relative link resolves.

Blocks talk to 127.0.0.1:3031 (and :3032 for a second endpoint, :9191 for stats); the tests
point those addresses at servers of their own. A block fenced as ```python no-run is shown,
not run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import io
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from muxwsgi.server.cli import main as serve_main
from tests.interop.nginx import NGINX, free_port, run_nginx
from tests.servers import ROOT, ServerProcess, running, start

pytestmark = pytest.mark.slow

#: docs/configuration.md is generated (and checked by tests/server/test_config.py);
#: docs/hardening.md is tested where it is written.
_NOT_HERE = ("configuration.md", "hardening.md")
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "examples" / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in _NOT_HERE),
]
_FENCE = re.compile(r"^```(\S*)[ \t]*(\S*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def blocks(language: str) -> list[tuple[str, str]]:
    """``(id, code)`` of every fenced block in ``language`` (those marked no-run excluded)."""
    found = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            if match[1] == language and match[2] != "no-run":
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(ROOT)}:{line}", match[3]))
    return found


def params(language: str) -> list[pytest.ParameterSet]:
    return [pytest.param(code, id=where) for where, code in blocks(language)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo application on two loopback ports (the docs' :3031 and :3032), with stats (the
    docs' :9191)."""
    log_dir = tmp_path_factory.mktemp("docs-demo")
    server = start("muxwsgi.demo:app", "--threads", "16", "--stats", "127.0.0.1:0", log_dir=log_dir)
    second = start("muxwsgi.demo:app", log_dir=log_dir)
    server.addresses += second.addresses
    try:
        yield server
    finally:
        second.stop()
        server.stop()


@pytest.mark.parametrize("code", params("python"))
def test_python_block_runs(code: str, demo: ServerProcess, tmp_path: Path) -> None:
    first, second = demo.addresses[0], demo.addresses[-1]
    code = code.replace("127.0.0.1:3031", first).replace("127.0.0.1:3032", second)
    stats_host, stats_port = demo.stats_address
    code = code.replace("127.0.0.1:9191", f"{stats_host}:{stats_port}")
    # Outside the repository, as the README says: its root would shadow an installed package.
    script = tmp_path / "snippet.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def serve_commands() -> list[pytest.ParameterSet]:
    """Every ``muxwsgi serve`` command line in a shell block (continuations joined)."""
    commands = []
    for where, code in blocks("sh") + blocks("systemd"):
        for line in code.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split(" && ")[-1].rstrip(" &"), comments=True)
            if words and words[0].startswith("ExecStart="):
                words[0] = words[0].removeprefix("ExecStart=")
            while words and "=" in words[0] and not words[0].startswith("-"):
                words.pop(0)  # VAR=value before the command
            if len(words) > 1 and words[0].endswith("muxwsgi") and words[1] == "serve":
                commands.append(pytest.param(words[2:], id=f"{where}: {' '.join(words[:4])}"))
    return commands


@pytest.mark.parametrize("args", serve_commands())
def test_serve_command_line_parses(args: list[str], tmp_path: Path) -> None:
    for option in ("--ini", "--config"):  # the files themselves are checked below
        if option in args:
            index = args.index(option)
            args = args[:index] + args[index + 2 :]
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = serve_main([*args, "--print-config"])
    assert code == 0, stderr.getvalue()


@pytest.mark.parametrize("text", params("ini"))
def test_ini_file_is_accepted(text: str, tmp_path: Path) -> None:
    path = tmp_path / "uwsgi.ini"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "muxwsgi", "serve", "--ini", str(path), "--print-config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    # Every warning the docs' files produce is one the docs mean to show: none.
    assert "ignoring uWSGI option" not in result.stderr, result.stderr


@pytest.mark.parametrize("text", params("toml"))
def test_toml_file_is_accepted(text: str, tmp_path: Path) -> None:
    path = tmp_path / "muxwsgi.toml"
    path.write_text(text)
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = serve_main(["--config", str(path), "--print-config"])
    assert code == 0, stderr.getvalue()


def docs_site(site: str, sock: Path, port: int) -> str:
    """The docs' nginx site, pointed at ``sock`` and listening on 127.0.0.1:``port``."""
    site = site.replace("/run/muxwsgi/app.sock", str(sock))
    site = re.sub(r"listen\s+80;", f"listen 127.0.0.1:{port};", site)
    site = site.replace("include uwsgi_params;", "include /etc/nginx/uwsgi_params;")
    assert str(sock) in site and f"127.0.0.1:{port}" in site, "the docs' block changed shape"
    return site


@contextlib.contextmanager
def nginx(site: str, prefix: Path, port: int, user: str) -> Iterator[None]:
    """A real nginx serving ``site`` until it answers on ``port`` (tests/interop/nginx.py)."""
    if not os.path.exists(NGINX):
        pytest.fail("nginx is needed: ./scripts/test installs it")
    with run_nginx(site, prefix, port, user=user):
        yield


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def accepted(sock: Path) -> set[str]:
    """The inodes of the server's ends of the connections open on the unix socket ``sock``."""
    rows = [line.split() for line in Path("/proc/net/unix").read_text().splitlines()[1:]]
    # Num RefCount Protocol Flags Type St Inode Path; St 03 is connected (01: the listener).
    return {row[6] for row in rows if len(row) == 8 and row[7] == str(sock) and row[5] == "03"}


@pytest.mark.parametrize("site", params("nginx"))
def test_nginx_configuration_proxies(site: str, tmp_path: Path) -> None:
    sock, port = tmp_path / "app.sock", free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    keepalive = "proxy_pass" in site
    with (
        running("muxwsgi.demo:app", log_dir=tmp_path, bind=f"unix:{sock}"),
        nginx(docs_site(site, sock, port), tmp_path, port, user),
    ):
        status, body = get(f"http://127.0.0.1:{port}/environ")
        first = accepted(sock)
        later = [get(f"http://127.0.0.1:{port}/environ")[0] for _ in range(3)]
        last = accepted(sock)
    assert status == 200, body
    assert later == [200] * 3
    environ = json.loads(body)
    # Debian's uwsgi_params sends $host (no port), nginx's own sends the header as given.
    assert environ["HTTP_HOST"].startswith("127.0.0.1"), environ
    assert environ["REQUEST_URI"] == "/environ", environ
    if keepalive:
        # HTTP/1.1 from nginx's pool: every request over the one connection opened first.
        assert environ["muxwsgi.protocol"] == "http"
        assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1", environ
        assert environ["HTTP_X_FORWARDED_PROTO"] == "http", environ
        assert len(first) == 1 and last == first, (first, last)
    else:
        assert environ["muxwsgi.protocol"] == "uwsgi"


@pytest.mark.parametrize("site", params("nginx"))
@pytest.mark.parametrize("group", ["root", "www-data"])
def test_unix_socket_permissions_for_nginx(site: str, group: str) -> None:
    """docs/nginx.md: nginx's workers (www-data) reach a 0660 socket only when the server's
    primary group is theirs."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the server and nginx's workers as other users")
    try:
        grp.getgrnam("www-data")
        pwd.getpwnam("www-data")
    except KeyError:
        pytest.skip("no www-data user (Debian's nginx runs its workers as www-data)")
    # A directory nginx's workers may enter (pytest's tmp_path is 0700).
    prefix = Path(tempfile.mkdtemp(prefix="muxwsgi-nginx-"))
    try:
        prefix.chmod(0o755)
        sock, port = prefix / "app.sock", free_port()
        argv = ["-m", "muxwsgi", "serve", "muxwsgi.demo:app", "--bind", f"unix:{sock}"]
        server = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            group=group,
            extra_groups=[],
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            while not sock.exists():
                assert server.poll() is None and time.monotonic() < deadline, "no socket"
                time.sleep(0.05)
            assert stat.S_IMODE(sock.stat().st_mode) == 0o660
            assert sock.stat().st_gid == grp.getgrnam(group).gr_gid
            with nginx(docs_site(site, sock, port), prefix, port, "user www-data;"):
                status, _ = get(f"http://127.0.0.1:{port}/")
            errors = (prefix / "error.log").read_text()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
    if group == "www-data":
        assert status == 200, errors
    else:
        assert status == 502
        assert f"connect() to unix:{sock} failed (13: Permission denied)" in errors


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    missing = []
    for target in _LINK.findall(path.read_text(encoding="utf-8")):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (path.parent / target).exists():
            missing.append(target)
    pending = {"benchmarks/README.md", "../benchmarks/README.md"}
    if missing and set(missing) <= pending:
        pytest.skip("benchmarks/README.md is not written yet")
    assert not missing, f"{path.name}: broken links {missing}"


ASYNC_TRANSPORT_FIRST_USE_IN_TASKS = """
import asyncio, httpx
from muxwsgi.client import AsyncMuxTransport

async def main():
    transport = AsyncMuxTransport("mux://127.0.0.1:3031")
    async with httpx.AsyncClient(transport=transport, base_url="http://backend") as http:
        await asyncio.gather(*(http.get("/") for _ in range(5)))

asyncio.run(main())
"""


def test_async_transport_first_used_by_concurrent_tasks(demo: ServerProcess) -> None:
    code = ASYNC_TRANSPORT_FIRST_USE_IN_TASKS.replace("127.0.0.1:3031", demo.addresses[0])
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_client_settings_table_matches_the_config() -> None:
    """docs/client.md's "Settings" rows are ClientConfig's fields, in order, with their defaults
    (and so every keyword of the clients: tests/client/test_config.py)."""
    from muxwsgi.client._config import ClientConfig

    text = (ROOT / "docs" / "client.md").read_text(encoding="utf-8")
    table = text[text.index("## Settings") : text.index("## Errors")]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", table, re.M)
    expected = [(f.name, repr(f.default)) for f in dataclasses.fields(ClientConfig)]
    assert rows == expected


def test_migration_table_matches_the_ini_reader() -> None:
    """Rows marked "yes" in docs/migrating-from-uwsgi.md are exactly the ini keys honoured."""
    from muxwsgi.server.config_ini import INI_KEYS, NO_OPS

    honoured = set(INI_KEYS) | set(NO_OPS) | {"callable"}
    text = (ROOT / "docs" / "migrating-from-uwsgi.md").read_text(encoding="utf-8")
    table = text[text.index("## Options") : text.index("## Behaviour that differs")]
    documented: set[str] = set()
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`--"):
            continue
        options = set(re.findall(r"`--([a-z0-9-]+)", cells[0]))
        if cells[2].startswith("yes"):
            assert options <= honoured, f"not read from an ini file: {options - honoured}"
            documented |= options
        else:
            assert not options & honoured, f"read from an ini file: {options & honoured}"
    assert honoured <= documented, f"honoured but not in the table: {honoured - documented}"


def systemd_units() -> list[pytest.ParameterSet]:
    """The systemd units of each document, together: a .socket unit needs its service."""
    units: dict[str, list[str]] = {}
    for where, code in blocks("systemd"):
        units.setdefault(where.partition(":")[0], []).append(code)
    return [pytest.param(found, id=document) for document, found in units.items()]


@pytest.mark.parametrize("units", systemd_units())
def test_systemd_units_verify(units: list[str], tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    paths = []
    for unit in units:
        # The unit names paths of a deployment; point them at this checkout.
        muxwsgi = Path(sys.executable).with_name("muxwsgi")
        unit = re.sub(r"ExecStart=\S+/muxwsgi ", f"ExecStart={muxwsgi} ", unit)
        unit = re.sub(r"WorkingDirectory=\S+", f"WorkingDirectory={tmp_path}", unit)
        path = tmp_path / ("myapp.socket" if "[Socket]" in unit else "myapp.service")
        assert not path.exists(), f"two {path.name} units in one document"
        path.write_text(unit)
        paths.append(str(path))
    result = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys or bad values; it only says so.
    complaints = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and not complaints, result.stderr
