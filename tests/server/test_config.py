"""Settings: one definition drives CLI, environment, TOML, uWSGI ini and docs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from muxwsgi.server._ini import read_ini
from muxwsgi.server.cli import main
from muxwsgi.server.config import (
    SETTINGS,
    Config,
    ConfigError,
    build_parser,
    load_config,
    render_settings_markdown,
)
from muxwsgi.server.importer import AppImportError, import_app

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_and_has_a_flag_and_env() -> None:
    help_text = build_parser().format_help()
    table = render_settings_markdown()
    assert len(SETTINGS) > 40
    for item in SETTINGS:
        assert f"`{item.name}`" in table
        assert item.env == "MUXWSGI_" + item.name.upper()
        if not item.positional:
            assert item.cli[-1] in help_text
        assert item.help.endswith(".")


def test_docs_file_is_generated_from_the_settings() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_settings_doc.py", "--check"], cwd=ROOT, capture_output=True
    )
    assert result.returncode == 0, result.stdout.decode()[-2000:]


def test_defaults() -> None:
    config = load_config([], environ={})
    assert config.bind == ["127.0.0.1:3031"]  # never all interfaces unless asked
    assert config.unix_socket_mode == 0o660
    assert config.backlog == 1024
    assert config.workers == 1 and config.threads == 8


def test_precedence_ini_toml_env_cli(tmp_path: Path) -> None:
    ini = tmp_path / "app.ini"
    ini.write_text("[uwsgi]\nthreads = 2\nprocesses = 2\nlisten = 10\nharakiri = 7\n")
    toml = tmp_path / "app.toml"
    toml.write_text("threads = 3\nworkers = 3\nbacklog = 20\n")
    env = {"MUXWSGI_THREADS": "4", "MUXWSGI_WORKERS": "4"}
    config = load_config(["--ini", str(ini), "--config", str(toml), "--threads", "5"], env)
    assert config.threads == 5  # command line beats all
    assert config.workers == 4  # environment beats files
    assert config.backlog == 20  # TOML beats ini
    assert config.harakiri == 7.0  # ini beats defaults


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--threads", "x"], {},
         "invalid value for --threads (from --threads on the command line): 'x' is not an integer"),
        ([], {"MUXWSGI_THREADS": "0"},
         "invalid value for --threads (from MUXWSGI_THREADS): '0' is outside 1..4096"),
        (["--limit-post", "12q"], {}, "is not a size"),
        (["--loop", "tokio"], {}, "is not one of auto, asyncio, uvloop"),
        (["--chmod-socket", "rw"], {}, "octal file mode"),
        (["--bind", "localhost"], {}, "is not an address"),
        (["--allow-from", "10.0.0.0/33"], {}, "--allow-from"),
        ([], {"MUXWSGI_HARAKIRI": "-1"}, "is outside 0.."),
    ],
)  # fmt: skip
def test_invalid_values_name_the_setting_and_source(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, env)
    assert message in str(info.value)


def test_conversions() -> None:
    config = load_config(
        ["--limit-post", "64k", "--initial-window-size", "1m", "--chmod-socket", "0600",
         "-b", "127.0.0.1:1", "-b", "unix:/tmp/x.sock", "--allow-from", "127.0.0.1,10.0.0.0/8"],
        {"MUXWSGI_GRACEFUL_TIMEOUT": "2.5"},
    )  # fmt: skip
    assert config.limit_post == 65536
    assert config.initial_window_size == 1 << 20
    assert config.unix_socket_mode == 0o600
    assert config.bind == ["127.0.0.1:1", "unix:/tmp/x.sock"]
    assert config.allow_from == ["127.0.0.1", "10.0.0.0/8"]
    assert config.graceful_timeout == 2.5


def test_config_is_immutable() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.workers = 3  # type: ignore[misc]
    assert config.replace(workers=3).workers == 3


def test_toml_unknown_key_is_an_error(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("thread = 4\n")
    with pytest.raises(ConfigError, match="unknown setting 'thread'"):
        load_config(["--config", str(toml)], {})


def test_uwsgi_ini(tmp_path: Path) -> None:
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(
        "; a typical uWSGI deployment\n[uwsgi]\nmodule = myproject.wsgi\ncallable = app\n"
        "master = true\nprocesses = 4\nthreads = 2\nsocket = 127.0.0.1:3031\n"
        "http-socket = :8080\nchmod-socket = 664\nvacuum = true\nharakiri = 30\n"
        "max-requests = 5000\nbuffer-size = 32768\nstats = 127.0.0.1:9191\n"
        "pidfile = /tmp/app.pid\nchdir = /srv/app\ncheaper = 2\n"
        "[other]\nprocesses = 99\n"
    )
    warnings: list[str] = []
    raw = read_ini(str(ini), warnings)
    config = load_config(["--ini", str(ini)], {})
    assert config.app == "myproject.wsgi:app"
    assert config.workers == 4 and config.threads == 2
    assert config.bind == ["127.0.0.1:3031", "0.0.0.0:8080"]
    assert config.unix_socket_mode == 0o664
    assert (config.harakiri, config.max_requests, config.buffer_size) == (30.0, 5000, 32768)
    assert config.stats == "127.0.0.1:9191" and config.pid_file == "/tmp/app.pid"
    assert config.chdir == "/srv/app"
    assert raw["bind"] == ["127.0.0.1:3031", "0.0.0.0:8080"]
    assert any("means all interfaces" in w for w in warnings)
    assert any("'cheaper'" in w for w in warnings)  # unsupported options are reported
    assert not any("vacuum" in w or "master" in w for w in warnings)  # accepted no-ops


def test_ini_wsgi_file(tmp_path: Path) -> None:
    ini = tmp_path / "uwsgi.ini"
    ini.write_text("[uwsgi]\nwsgi-file = /srv/app/wsgi.py\ncallable = application\n")
    config = load_config(["--ini", str(ini)], {})
    assert config.wsgi_file == "/srv/app/wsgi.py"


# ---------------------------------------------------------------- importer and CLI errors


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "goodapp.py").write_text(
        "class Factory:\n    app = staticmethod(lambda e, s: [])\napplication = lambda e, s: []\n"
        "notcallable = 5\n"
    )
    (tmp_path / "brokenapp.py").write_text("import definitely_missing_dependency\n")
    (tmp_path / "raisingapp.py").write_text("raise RuntimeError('config missing')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("goodapp", "brokenapp", "raisingapp"):
        sys.modules.pop(name, None)
    return tmp_path


def test_import_app_forms(app_dir: Path) -> None:
    assert callable(import_app("goodapp:application"))
    assert callable(import_app("goodapp"))  # uWSGI's default callable name
    assert callable(import_app("goodapp:Factory.app"))
    assert callable(import_app(None, wsgi_file=str(app_dir / "goodapp.py")))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("goodapp:", 'Import string "goodapp:" must be in format "<module>:<attribute>".'),
        ("nosuchmodule:app", 'Could not import module "nosuchmodule".'),
        ("goodapp:nope", 'Attribute "nope" not found in module "goodapp".'),
        ("goodapp:notcallable", "is not callable"),
        ("brokenapp:app", "No module named 'definitely_missing_dependency'"),
        ("raisingapp:app", "RuntimeError: config missing"),
    ],
)
def test_import_errors_are_one_clear_line(app_dir: Path, spec: str, message: str) -> None:
    with pytest.raises(AppImportError) as info:
        import_app(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_config_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["muxwsgi.demo:app", "--workers", "zero"]) == 2
    assert "muxwsgi: invalid value for --workers" in capsys.readouterr().err


def test_cli_requires_an_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "no application given" in capsys.readouterr().err


def test_cli_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["muxwsgi.demo:app", "--threads", "3", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "threads = 3\n" in out and 'app = "muxwsgi.demo:app"' in out
