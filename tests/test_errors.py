"""The first mistakes a person makes, and what muxwsgi says about them.

Each test makes the mistake for real (a real server, a real uWSGI, a real HTTP server, a real
permission check by the kernel) and checks that the message names the problem and the fix.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from muxwsgi.client import Client, ConnectError, NotMuxWSGIError
from muxwsgi.server.sockets import BindError, bind
from tests.servers import ROOT, running

pytestmark = pytest.mark.slow

NOBODY = 65534


def serve(*args: str, cwd: Path = ROOT, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``muxwsgi serve ARGS`` to its end (it is expected to fail at start)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "muxwsgi", "serve", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def message_lines(stderr: str) -> list[str]:
    """The lines a person reads first: ours, not the log's."""
    return [line for line in stderr.splitlines() if line.startswith("muxwsgi: ")]


# ---------------------------------------------------------------- bad application path


def test_module_not_found_says_where_it_looked(tmp_path: Path) -> None:
    result = serve("nosuch.module:app", "--bind", "127.0.0.1:0", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    [line] = message_lines(result.stderr)
    assert 'Could not import module "nosuch.module".' in line
    assert str(tmp_path) in line and "--chdir" in line


def test_file_path_instead_of_module_suggests_both_fixes(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text("def app(environ, start_response):\n    return []\n")
    result = serve("myapp.py:app", "--bind", "127.0.0.1:0", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    [line] = message_lines(result.stderr)
    assert '"myapp:app"' in line and "--wsgi-file myapp.py" in line


def test_missing_attribute(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text("def app(environ, start_response):\n    return []\n")
    result = serve("myapp:application", "--bind", "127.0.0.1:0", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert message_lines(result.stderr) == [
        'muxwsgi: Attribute "application" not found in module "myapp".'
    ]


def test_exception_at_import_is_named_and_traced(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "import os\nDATABASE = os.environ['MYAPP_DATABASE_URL']\n"
        "def app(environ, start_response):\n    return []\n"
    )
    result = serve("myapp:app", "--bind", "127.0.0.1:0", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    [line] = message_lines(result.stderr)
    assert 'module "myapp": KeyError' in line and "MYAPP_DATABASE_URL" in line


# ---------------------------------------------------------------- sockets


def test_port_in_use_names_the_address_and_the_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve("muxwsgi.demo:app", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    [line] = message_lines(result.stderr)
    assert f"127.0.0.1:{port} is already in use" in line and "--bind" in line


def test_unix_socket_in_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "app.sock"
    result = serve("muxwsgi.demo:app", "--bind", f"unix:{path}")
    assert result.returncode == 1, result.stderr
    assert message_lines(result.stderr) == [
        f"muxwsgi: unix:{path}: directory {path.parent} does not exist"
    ]


@contextlib.contextmanager
def shared_directory() -> Iterator[Path]:
    """A directory anyone may enter but only its owner may write (pytest's tmp_path is 0700,
    which would refuse another user before the socket's own mode is even looked at)."""
    path = Path(tempfile.mkdtemp(prefix="muxwsgi-test-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_other_user(func: Callable[[], Any]) -> Any:
    """Run ``func`` in a forked child as an unprivileged user and return what it returns or
    raises. As root the child becomes nobody; otherwise it stays this user, and the test makes
    the file modes refuse this user instead."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            try:
                result: Any = ("returned", func())
            except Exception as exc:
                result = ("raised", type(exc).__name__, str(exc))
            with os.fdopen(write, "wb") as out:
                pickle.dump(result, out)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the child failed"
    return pickle.loads(data)


def test_permission_denied_creating_a_unix_socket() -> None:
    with shared_directory() as directory:
        if os.geteuid() != 0:
            directory.chmod(0o555)
        path = directory / "app.sock"

        def try_bind() -> None:
            bind(f"unix:{path}", backlog=8, unix_mode=0o660).close()

        outcome = as_other_user(try_bind)
        directory.chmod(0o755)
    assert outcome[:2] == ("raised", BindError.__name__), outcome
    message = outcome[2]
    assert f"permission denied creating {path}" in message
    assert f"cannot write to {directory}" in message and "uid" in message


def refused_unix_request(tmp_path: Path) -> tuple[str, Any]:
    """A request to a unix socket whose mode refuses the caller: the URL and the outcome."""
    with shared_directory() as directory:
        path = directory / "app.sock"
        with running(
            "muxwsgi.demo:app", "--chmod-socket", "600", log_dir=tmp_path, bind=f"unix:{path}"
        ):
            url = f"mux+unix://{path}"
            with Client(url, timeout=5) as client:  # its owner may (and warms the imports)
                assert client.get("/").status == 200
            if os.geteuid() != 0:
                path.chmod(0o000)

            def try_request() -> int:
                with Client(url, timeout=5) as client:
                    return client.get("/").status

            return url, as_other_user(try_request)


def test_permission_denied_connecting_to_a_unix_socket(tmp_path: Path) -> None:
    url, outcome = refused_unix_request(tmp_path)
    assert outcome[:2] == ("raised", ConnectError.__name__), outcome
    assert url in outcome[2] and "Permission denied" in outcome[2]


def test_permission_denied_connecting_names_the_fix(tmp_path: Path) -> None:
    _, outcome = refused_unix_request(tmp_path)
    assert "--chmod-socket" in outcome[2], outcome


# ---------------------------------------------------------------- the client, wrong peer

HTTP_SERVER = """\
import http.server
server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextlib.contextmanager
def process(argv: list[str], **kw: Any) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(argv, text=True, start_new_session=True, **kw)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_mux_client_to_an_http_server_that_waits(tmp_path: Path) -> None:
    # An HTTP server reads a request line and stays silent until it has one.
    with process(
        [sys.executable, "-c", HTTP_SERVER],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        url = f"mux://127.0.0.1:{port}"
        with Client(url, connect_timeout=1.0) as client, pytest.raises(NotMuxWSGIError) as info:
            client.get("/")
    message = str(info.value)
    assert message.startswith(url) and "no muxwsgi PREFACE" in message
    assert "is it a muxwsgi server?" in message


def test_mux_client_to_an_http_server_that_answers(tmp_path: Path) -> None:
    # The stats endpoint speaks only HTTP and answers whatever it is sent.
    stats = tmp_path / "stats.sock"
    with running("muxwsgi.demo:app", "--stats", f"unix:{stats}", log_dir=tmp_path) as server:
        deadline = time.monotonic() + 10
        while not stats.exists() and server.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"mux+unix://{stats}"
        with Client(url, timeout=5) as client, pytest.raises(NotMuxWSGIError) as info:
            client.get("/")
    assert str(info.value).startswith(url)
    assert "not a muxwsgi server: it sent an HTTP response" in str(info.value)


@pytest.fixture
def classic_uwsgi(tmp_path: Path) -> Iterator[Path]:
    """The real uWSGI serving muxwsgi.demo over classic uwsgi on a unix socket."""
    binary = shutil.which("uwsgi") or str(Path(sys.executable).with_name("uwsgi"))
    if not os.path.exists(binary):
        pytest.fail("the real uWSGI is needed: pip install uwsgi (the test extra has it)")
    path = tmp_path / "uwsgi.sock"
    log = tmp_path / "uwsgi.log"
    argv = [binary, "--socket", str(path), "--module", "muxwsgi.demo:app", "--master",
            "--processes", "1", "--die-on-term", "--pythonpath", str(ROOT)]  # fmt: skip
    with open(log, "wb") as out, process(argv, stdout=out, stderr=subprocess.STDOUT) as proc:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(path))
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("uWSGI did not start:\n" + log.read_text())
                time.sleep(0.1)
        yield path


def test_mux_client_to_classic_uwsgi_says_so(classic_uwsgi: Path) -> None:
    url = f"mux+unix://{classic_uwsgi}"
    with Client(url, timeout=5) as client, pytest.raises(NotMuxWSGIError) as info:
        client.get("/")
    assert str(info.value).startswith(url) and "a classic uwsgi server?" in str(info.value)
    # The remedy: the same client speaks classic uwsgi when the URL says so.
    with Client(f"uwsgi+unix://{classic_uwsgi}", timeout=5) as client:
        response = client.get("/")
    assert response.status == 200 and response.content


def test_request_command_to_classic_uwsgi(classic_uwsgi: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "muxwsgi", "request", f"mux+unix://{classic_uwsgi}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("muxwsgi request: mux+unix://")
    assert "a classic uwsgi server?" in result.stderr


def test_mux_client_to_classic_uwsgi_names_the_scheme_to_use(classic_uwsgi: Path) -> None:
    url = f"mux+unix://{classic_uwsgi}"
    with Client(url, timeout=5) as client, pytest.raises(NotMuxWSGIError) as info:
        client.get("/")
    assert "uwsgi+unix://" in str(info.value)


def test_http_url_given_to_the_client() -> None:
    with pytest.raises(ValueError, match=r"unsupported URL scheme in 'http://127\.0\.0\.1:3031/'"):
        Client("http://127.0.0.1:3031/")
    result = subprocess.run(
        [sys.executable, "-m", "muxwsgi", "request", "http://127.0.0.1:3031/"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "use mux://, uwsgi://, mux+unix:// or uwsgi+unix://" in result.stderr
