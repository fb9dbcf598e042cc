"""uWSGI ini files: repeated keys, the key -> setting mapping, and warnings for the rest."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from muxwsgi.server.config import SETTINGS, ConfigError
from muxwsgi.server.config_ini import IniEntry, parse_ini, read_ini
from muxwsgi.server.config_load import load_config
from muxwsgi.server.config_sources import RawValue

TYPICAL = """\
; a typical uWSGI deployment
[uwsgi]
module = myproject.wsgi
callable = app
master = true
processes = 4
threads = 2
socket = 127.0.0.1:3031
http-socket = :8080
uwsgi-socket = /run/app.sock
chmod-socket = 664
vacuum = true
die-on-term = true
enable-threads = true
harakiri = 30
max-requests = 5000
buffer-size = 32768
limit-post = 1048576
listen = 512
stats = 127.0.0.1:9191
pidfile = /tmp/app.pid
chdir = /srv/app
max-worker-lifetime = 3600
reload-on-rss = 512
cheaper = 2
lazy-apps = true

[other]
processes = 99
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "uwsgi.ini"
    path.write_text(text)
    return str(path)


def test_typical_file_maps_to_settings(tmp_path: Path) -> None:
    path = write(tmp_path, TYPICAL)
    config = load_config(["--ini", path], {})
    assert config.app == "myproject.wsgi:app"
    assert (config.workers, config.threads, config.backlog) == (4, 2, 512)
    assert config.bind == ("127.0.0.1:3031", "0.0.0.0:8080", "unix:/run/app.sock")
    assert config.unix_socket_mode == 0o664
    assert (config.harakiri, config.max_requests) == (30.0, 5000)
    assert (config.buffer_size, config.limit_post) == (32768, 1048576)
    assert config.stats == "127.0.0.1:9191" and config.pid_file == "/tmp/app.pid"
    assert config.chdir == "/srv/app"
    assert (config.max_worker_lifetime, config.reload_on_rss) == (3600.0, 512)


def test_typical_file_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, TYPICAL)
    with caplog.at_level(logging.WARNING, logger="muxwsgi.config"):
        result = read_ini(path)
    assert result.warnings == (
        "muxwsgi: uWSGI address ':8080' (http-socket) means all interfaces: binding 0.0.0.0:8080",
        "muxwsgi: ignoring uWSGI option 'cheaper' (not supported)",
        "muxwsgi: ignoring uWSGI option 'lazy-apps' (not supported)",
    )
    # No-ops (master, vacuum, die-on-term, enable-threads) are accepted silently.
    assert [r.getMessage() for r in caplog.records if r.name == "muxwsgi.config"] == list(
        result.warnings
    )


def test_repeated_socket_lines_all_bind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[uwsgi]\nmodule = app\nsocket = 127.0.0.1:1\nsocket = 127.0.0.1:2\n"
        "uwsgi-socket = [::1]:3\nsocket = 127.0.0.1:4\n",
    )
    assert read_ini(path).values["bind"] == RawValue(
        ["127.0.0.1:1", "127.0.0.1:2", "[::1]:3", "127.0.0.1:4"],
        f"{path}, key 'socket', 'uwsgi-socket'",
    )
    config = load_config(["--ini", path], {})
    assert config.bind == ("127.0.0.1:1", "127.0.0.1:2", "[::1]:3", "127.0.0.1:4")


def test_the_command_line_replaces_ini_sockets(tmp_path: Path) -> None:
    path = write(tmp_path, "[uwsgi]\nmodule = app\nsocket = 127.0.0.1:1\nsocket = 127.0.0.1:2\n")
    assert load_config(["--ini", path, "-b", "127.0.0.1:9"], {}).bind == ("127.0.0.1:9",)


def test_stats_port_only_also_means_all_interfaces(tmp_path: Path) -> None:
    path = write(tmp_path, "[uwsgi]\nmodule = app\nstats = :9191\n")
    result = read_ini(path)
    assert result.values["stats"].value == "0.0.0.0:9191"
    assert result.warnings == (
        "muxwsgi: uWSGI address ':9191' (stats) means all interfaces: binding 0.0.0.0:9191",
    )


@pytest.mark.parametrize(
    ("lines", "app", "wsgi_file"),
    [
        ("module = pkg.wsgi\n", "pkg.wsgi:application", None),  # uWSGI's default callable
        ("module = pkg.wsgi\ncallable = app\n", "pkg.wsgi:app", None),
        ("callable = app\nmodule = pkg.wsgi\n", "pkg.wsgi:app", None),  # order does not matter
        ("module = pkg.wsgi:make\ncallable = app\n", "pkg.wsgi:make", None),
        ("wsgi-file = /srv/app/wsgi.py\n", None, "/srv/app/wsgi.py"),
        ("wsgi-file = /srv/app/wsgi.py\ncallable = app\n", "app", "/srv/app/wsgi.py"),
        ("wsgi_file = wsgi.py\n", None, "wsgi.py"),  # underscores read as dashes
    ],
)
def test_module_callable_and_wsgi_file(
    tmp_path: Path, lines: str, app: str | None, wsgi_file: str | None
) -> None:
    path = write(tmp_path, "[uwsgi]\n" + lines)
    config = load_config(["--ini", path], {})
    assert (config.app, config.wsgi_file) == (app, wsgi_file)
    assert read_ini(path).warnings == ()


def test_module_wins_over_wsgi_file_and_callable_alone_is_ignored(tmp_path: Path) -> None:
    both = write(tmp_path, "[uwsgi]\nwsgi-file = x.py\nmodule = pkg\n")
    result = read_ini(both)
    assert result.values["app"].value == "pkg:application" and "wsgi_file" not in result.values
    assert result.warnings == (f"muxwsgi: {both}: both module and wsgi-file given: using module",)
    alone = write(tmp_path, "[uwsgi]\ncallable = app\n")
    result = read_ini(alone)
    assert result.values == {}
    assert result.warnings == (
        f"muxwsgi: {alone}: 'callable' without 'module' or 'wsgi-file' is ignored",
    )


def test_parse_ini_syntax() -> None:
    text = (
        "# comment\n[other]\nsocket = elsewhere:1\n[uwsgi]\n  ; indented comment\n"
        "socket = 127.0.0.1:1 ; inline comment\nsocket=127.0.0.1:2\nmaster\nchmod-socket\n"
        "max_requests = 10\n\n[uwsgi]\nthreads = 3 # again\n"
    )
    assert parse_ini(text) == [
        IniEntry("socket", "127.0.0.1:1", 6),
        IniEntry("socket", "127.0.0.1:2", 7),
        IniEntry("master", "true", 8),
        IniEntry("chmod-socket", "666", 9),  # uWSGI: a bare chmod-socket means 666
        IniEntry("max-requests", "10", 10),
        IniEntry("threads", "3", 13),
    ]
    assert parse_ini("[other]\nthreads = 3\n") is None
    assert parse_ini(text, section="other") == [IniEntry("socket", "elsewhere:1", 3)]


def test_placeholders_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "[uwsgi]\nmodule = app\nchdir = %(base)/app\n")
    assert read_ini(path).warnings == (
        f"muxwsgi: {path}:3: uWSGI placeholders are not expanded in 'chdir'",
    )


def test_invalid_ini_value_names_setting_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[uwsgi]\nmodule = app\n\nprocesses = many\n")
    with pytest.raises(ConfigError) as info:
        load_config(["--ini", path], {})
    assert str(info.value) == (
        f"invalid value for --workers (from {path}:4, key 'processes'): 'many' is not an integer"
    )


def test_file_without_uwsgi_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[app]\nprocesses = 2\n")
    with pytest.raises(ConfigError, match=r"has no \[uwsgi\] section"):
        read_ini(path)


def test_every_declared_ini_key_is_read(tmp_path: Path) -> None:
    keys = [(key, item) for item in SETTINGS for key in item.ini]
    assert {key for key, _ in keys} >= {
        "module", "wsgi-file", "chdir", "socket", "uwsgi-socket", "http-socket", "processes",
        "workers", "threads", "listen", "harakiri", "max-requests", "buffer-size", "limit-post",
        "stats", "pidfile", "chmod-socket", "max-worker-lifetime", "reload-on-rss",
    }  # fmt: skip
    for key, item in keys:
        path = write(tmp_path, f"[uwsgi]\n{key} = 1.2.3.4:5\n")
        result = read_ini(path)
        assert item.name in result.values, key
        assert not any("ignoring" in w for w in result.warnings), key
