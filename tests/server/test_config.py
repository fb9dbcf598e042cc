"""Settings: one table drives the CLI, the environment, TOML, the uWSGI ini mapping, --help and
the docs; values are converted and validated once, with one-line errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from types import ModuleType

import pytest

from muxwsgi.server.cli import main
from muxwsgi.server.config import (
    SETTINGS,
    Config,
    ConfigError,
    Kind,
    Setting,
    config_mismatches,
)
from muxwsgi.server.config_docs import render_settings_markdown
from muxwsgi.server.config_load import build_parser, load_config, parse_serve_args
from muxwsgi.server.config_toml import render_config

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.server.apps:app"
BY_NAME = {item.name: item for item in SETTINGS}


def error_of(argv: list[str], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(argv, env or {})
    return str(info.value)


# ---------------------------------------------------------------- the table and Config


def test_config_fields_match_the_settings_table() -> None:
    assert config_mismatches() == []
    assert [f.name for f in dataclasses.fields(Config)] == [item.name for item in SETTINGS]


def test_the_consistency_check_catches_each_kind_of_drift() -> None:
    workers = BY_NAME["workers"]
    missing = config_mismatches(Config, SETTINGS[:-1])
    assert f"Config field {SETTINGS[-1].name!r} has no setting" in missing
    extra = Setting("reuse_port", "Sockets", False, "Reuse the port.", kind="bool")
    assert "setting 'reuse_port' has no Config field" in config_mismatches(
        Config, (*SETTINGS, extra)
    )
    wrong_type = dataclasses.make_dataclass("C", [("workers", str, 1)], frozen=True)
    assert config_mismatches(wrong_type, (workers,)) == [
        "Config.workers is typed <class 'str'>, its int setting needs <class 'int'>"
    ]
    wrong_default = dataclasses.make_dataclass("C", [("workers", int, 2)], frozen=True)
    assert config_mismatches(wrong_default, (workers,)) == [
        "Config.workers default differs from the setting's"
    ]
    bad = dataclasses.replace(workers, default=0, desc="No period")
    problems = config_mismatches(wrong_default, (bad, bad))
    assert "setting 'workers': the description must end with a period" in problems
    assert (
        "setting 'workers': bad default: invalid value for --workers (from the default): "
        "0 is out of range (1..1024)"
    ) in problems
    assert "name 'workers' is used by two settings" in problems
    assert "flag '--workers' is used by two settings" in problems
    assert "uWSGI ini key 'processes' is used by two settings" in problems


def test_the_consistency_check_catches_order_section_and_default_type() -> None:
    swapped = (SETTINGS[1], SETTINGS[0], *SETTINGS[2:])
    assert config_mismatches(Config, swapped) == ["Config fields are not in the order of SETTINGS"]
    misplaced = dataclasses.replace(BY_NAME["workers"], section="Workerz")
    wrong_kind = dataclasses.replace(BY_NAME["harakiri"], default=0)  # 0 == 0.0, but an int
    fields = [("workers", int, 1), ("harakiri", float, 0)]
    config_class = dataclasses.make_dataclass("C", fields, frozen=True)
    assert config_mismatches(config_class, (misplaced, wrong_kind)) == [
        "setting 'workers': unknown section 'Workerz'",
        "setting 'harakiri': default is not of its kind",
    ]
    optional = dataclasses.make_dataclass("C", [("workers", int | None, 1)], frozen=True)
    assert config_mismatches(optional, (BY_NAME["workers"],)) == [
        "Config.workers is typed int | None, its int setting needs <class 'int'>"
    ]


#: A text and its value for every kind of setting.
SAMPLES: dict[str, tuple[str, object]] = {
    "str": ("text", "text"),
    "int": ("12", 12),
    "float": ("1.5", 1.5),
    "size": ("2k", 2048),
    "bool": ("yes", True),
    "choice": ("B", "b"),
    "mode": ("640", 0o640),
    "address": ("127.0.0.1:1", "127.0.0.1:1"),
    "addresses": ("127.0.0.1:1,unix:/x", ("127.0.0.1:1", "unix:/x")),
    "networks": ("10.0.0.0/8", ("10.0.0.0/8",)),
}


@pytest.mark.parametrize("kind", typing.get_args(Kind))
def test_every_kind_converts_has_a_field_type_and_an_option(kind: Kind) -> None:
    """A kind added to Kind without its converter, Config field type or --help placeholder
    fails here (each is a table keyed by kind)."""
    text, value = SAMPLES[kind]
    item = Setting("x", "Sockets", value, "X.", kind=kind, choices=("a", "b"))
    assert item.convert(text, "test") == value
    field_type = tuple[str, ...] if isinstance(value, tuple) else type(value)
    config_class = dataclasses.make_dataclass("C", [("x", field_type, value)], frozen=True)
    assert config_mismatches(config_class, (item,)) == []
    assert vars(build_parser((item,)).parse_args(["--x", text])) == {
        "x": [text] if item.is_list else text
    }
    assert "--x" in build_parser((item,)).format_help()


def test_samples_cover_every_kind() -> None:
    assert set(SAMPLES) == set(typing.get_args(Kind))


def test_defaults() -> None:
    config = load_config([APP], {})
    assert config == Config(app=APP)
    assert config.bind == ("127.0.0.1:3031",)  # never all interfaces unless asked
    assert config.allow_from == ("*",)
    assert config.unix_socket_mode == 0o660
    assert (config.backlog, config.workers, config.threads, config.loop) == (1024, 1, 8, "auto")
    assert config.limit_post == 100 * 1024 * 1024
    assert (config.max_frame_size, config.buffer_size, config.max_vars) == (65535, 32768, 256)
    assert (config.header_timeout, config.harakiri, config.heartbeat_timeout) == (10.0, 0.0, 30.0)
    assert (config.reset_burst, config.reset_rate, config.max_queued_control) == (1000, 100.0, 1000)
    assert config.pid_file is None and config.stats is None and config.access_log is None
    assert (config.log_format, config.log_level) == ("text", "info")
    assert config.request_id_header == "X-Request-ID"


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 3  # type: ignore[misc]
    assert dataclasses.replace(config, workers=3).workers == 3


# ---------------------------------------------------------------- sources and precedence


def test_precedence_defaults_ini_toml_env_cli(tmp_path: Path) -> None:
    ini = tmp_path / "uwsgi.ini"
    ini.write_text("[uwsgi]\nthreads = 2\nprocesses = 2\nlisten = 10\nharakiri = 7\n")
    toml = tmp_path / "muxwsgi.toml"
    toml.write_text("threads = 3\nworkers = 3\nbacklog = 20\n")
    env = {"MUXWSGI_THREADS": "4", "MUXWSGI_WORKERS": "4"}
    files = ["--ini", str(ini), "--config", str(toml)]
    config = load_config([APP, *files, "--threads", "5"], env)
    assert config.threads == 5  # command line beats everything
    assert config.workers == 4  # environment beats both files
    assert config.backlog == 20  # TOML beats ini
    assert config.harakiri == 7.0  # ini beats the default
    assert config.max_requests == 0  # the default
    # Take the sources away from the top: each time the next one down shows through.
    assert load_config([APP, *files], env).threads == 4
    assert load_config([APP, *files], {}).threads == 3
    assert load_config([APP, "--ini", str(ini)], {}).threads == 2
    assert load_config([APP], {}).threads == 8


def test_the_file_options_can_come_in_any_order(tmp_path: Path) -> None:
    ini = tmp_path / "uwsgi.ini"
    ini.write_text("[uwsgi]\nthreads = 2\n")
    toml = tmp_path / "muxwsgi.toml"
    toml.write_text("threads = 3\n")
    assert load_config(["--config", str(toml), "--ini", str(ini), APP], {}).threads == 3


def test_app_from_each_source(tmp_path: Path) -> None:
    toml = tmp_path / "muxwsgi.toml"
    toml.write_text('app = "fromtoml:app"\n')
    assert load_config(["--config", str(toml)], {}).app == "fromtoml:app"
    assert load_config([], {"MUXWSGI_APP": "fromenv:app"}).app == "fromenv:app"
    assert load_config(["cli:app"], {"MUXWSGI_APP": "fromenv:app"}).app == "cli:app"
    assert load_config(["--wsgi-file", "app.py"], {}).wsgi_file == "app.py"


def test_an_app_is_required() -> None:
    assert error_of([]).startswith("no application given: muxwsgi serve MODULE:ATTR")
    assert parse_serve_args(["--print-config"], {}).config.app is None  # fine for printing


def test_only_the_winning_value_is_validated() -> None:
    assert load_config([APP, "--threads", "3"], {"MUXWSGI_THREADS": "lots"}).threads == 3


def test_an_empty_value_unsets_an_optional_setting(tmp_path: Path) -> None:
    ini = tmp_path / "uwsgi.ini"
    ini.write_text("[uwsgi]\npidfile = /run/app.pid\n")
    assert load_config([APP, "--ini", str(ini)], {}).pid_file == "/run/app.pid"
    assert load_config([APP, "--ini", str(ini)], {"MUXWSGI_PID_FILE": ""}).pid_file is None


def test_repeated_bind_and_lists() -> None:
    config = load_config(
        [APP, "-b", "127.0.0.1:1", "--bind", "[::1]:2,unix:/tmp/x.sock", "-b", "host.local:3"],
        {"MUXWSGI_BIND": "10.0.0.1:9"},  # the command line replaces, not extends, lower sources
    )
    assert config.bind == ("127.0.0.1:1", "[::1]:2", "unix:/tmp/x.sock", "host.local:3")
    env = {"MUXWSGI_BIND": "127.0.0.1:1, 127.0.0.1:2", "MUXWSGI_ALLOW_FROM": "10.0.0.0/8,::1"}
    config = load_config([APP], env)
    assert config.bind == ("127.0.0.1:1", "127.0.0.1:2")
    assert config.allow_from == ("10.0.0.0/8", "::1")


def test_toml_values(tmp_path: Path) -> None:
    toml = tmp_path / "muxwsgi.toml"
    toml.write_text(
        'bind = ["127.0.0.1:1", "unix:/tmp/a.sock"]\nunix-socket-mode = 0o600\n'
        'limit_post = "64k"\nsend_buffer_size = 8192\ngraceful_timeout = 2\nloop = "asyncio"\n'
    )
    config = load_config([APP, "--config", str(toml)], {})
    assert config.bind == ("127.0.0.1:1", "unix:/tmp/a.sock")
    assert config.unix_socket_mode == 0o600
    assert (config.limit_post, config.send_buffer_size) == (65536, 8192)
    assert config.graceful_timeout == 2.0 and isinstance(config.graceful_timeout, float)
    assert config.loop == "asyncio"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("thread = 4\n", "unknown setting 'thread' (did you mean 'threads'?)"),
        ("threads = true\n", "invalid value for --threads (from {path}, key 'threads'): "
                             "True is not an integer"),
        ("unix_socket_mode = 660\n", "660 is not an octal file mode (like 0660)"),
        ("bind = [1]\n", "[1] is not a list of strings"),
        ("threads = \n", "is not valid TOML"),
    ],
)  # fmt: skip
def test_toml_errors(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "muxwsgi.toml"
    toml.write_text(text)
    assert message.format(path=toml) in error_of([APP, "--config", str(toml)])


def test_unreadable_files() -> None:
    missing = "/nonexistent/muxwsgi.toml"
    assert error_of([APP, "--config", missing]) == (
        f"cannot read config file {missing}: No such file or directory"
    )
    assert error_of([APP, "--ini", "/nonexistent/uwsgi.ini"]) == (
        "cannot read ini file /nonexistent/uwsgi.ini: No such file or directory"
    )


# ---------------------------------------------------------------- conversions and bounds


@pytest.mark.parametrize(
    ("flag", "text", "name", "expected"),
    [
        ("--threads", "16", "threads", 16),
        ("--threads", " +16 ", "threads", 16),
        ("--graceful-timeout", "2.5", "graceful_timeout", 2.5),
        ("--harakiri", "30", "harakiri", 30.0),
        ("--limit-post", "0", "limit_post", 0),
        ("--limit-post", "100", "limit_post", 100),
        ("--limit-post", "64k", "limit_post", 65536),
        ("--limit-post", "64K", "limit_post", 65536),
        ("--limit-post", "1m", "limit_post", 1 << 20),
        ("--limit-post", "1g", "limit_post", 1 << 30),
        ("--chmod-socket", "0600", "unix_socket_mode", 0o600),
        ("--chmod-socket", "666", "unix_socket_mode", 0o666),
        ("--chmod-socket", "0o640", "unix_socket_mode", 0o640),
        ("--loop", "ASYNCIO", "loop", "asyncio"),
        ("--log-format", "json", "log_format", "json"),
        ("--stats", "unix:/run/stats.sock", "stats", "unix:/run/stats.sock"),
        ("--stats", "[::1]:9191", "stats", "[::1]:9191"),
        ("--allow-from", "192.168.0.0/16", "allow_from", ("192.168.0.0/16",)),
        ("--access-log", "-", "access_log", "-"),
        ("--backlog", "65535", "backlog", 65535),
        ("--listen", "1", "backlog", 1),
        ("-w", "1024", "workers", 1024),
        ("-t", "4096", "threads", 4096),
    ],
)
def test_conversions(flag: str, text: str, name: str, expected: object) -> None:
    value = getattr(load_config([APP, flag, text], {}), name)
    assert value == expected and type(value) is type(expected)


BOOL = Setting("reuse_port", "Sockets", False, "Reuse the port.", kind="bool")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("on", True),
     ("0", False), ("false", False), ("no", False), ("OFF", False), (True, True)],
)  # fmt: skip
def test_booleans(text: object, expected: bool) -> None:
    assert BOOL.convert(text, "test") is expected


def test_boolean_errors_and_bare_flag() -> None:
    with pytest.raises(ConfigError) as info:
        BOOL.convert("maybe", "MUXWSGI_REUSE_PORT")
    assert str(info.value) == (
        "invalid value for --reuse-port (from MUXWSGI_REUSE_PORT): 'maybe' is not a boolean "
        "(1/0, true/false, yes/no, on/off)"
    )
    parser = build_parser((BOOL,))
    assert vars(parser.parse_args(["--reuse-port"])) == {"reuse_port": "true"}
    assert vars(parser.parse_args(["--reuse-port", "no"])) == {"reuse_port": "no"}


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--threads", "x"], {},
         "invalid value for --threads (from the command line): 'x' is not an integer"),
        ([], {"MUXWSGI_THREADS": "x"},
         "invalid value for --threads (from MUXWSGI_THREADS): 'x' is not an integer"),
        ([], {"MUXWSGI_THREADS": "1.5"},
         "invalid value for --threads (from MUXWSGI_THREADS): '1.5' is not an integer"),
        ([], {"MUXWSGI_THREADS": "0"},
         "invalid value for --threads (from MUXWSGI_THREADS): '0' is out of range (1..4096)"),
        (["-t", "4097"], {},
         "invalid value for --threads (from the command line): '4097' is out of range (1..4096)"),
        (["--listen", "0"], {},
         "invalid value for --backlog (from the command line): '0' is out of range (1..65535)"),
        (["--harakiri", "-1"], {},
         "invalid value for --harakiri (from the command line): '-1' is out of range (>= 0)"),
        (["--header-timeout", "0"], {},
         "invalid value for --header-timeout (from the command line): '0' is out of range "
         "(>= 0.1)"),
        (["--graceful-timeout", "soon"], {},
         "invalid value for --graceful-timeout (from the command line): 'soon' is not a number"),
        (["--graceful-timeout", "inf"], {}, "'inf' is not a finite number"),
        (["--limit-post", "12q"], {},
         "invalid value for --limit-post (from the command line): '12q' is not a size (bytes, "
         "or with a suffix: 64k, 1m, 1g)"),
        (["--limit-post", "-1"], {}, "'-1' is not a size"),
        (["--buffer-size", "128k"], {},
         "invalid value for --buffer-size (from the command line): '128k' is out of range "
         "(1024..65535)"),
        (["--max-frame-size", "16383"], {}, "'16383' is out of range (16384..65535)"),
        (["--connection-window-size", "2g"], {}, "'2g' is out of range (65535..2147483647)"),
        (["--loop", "tokio"], {},
         "invalid value for --loop (from the command line): 'tokio' is not one of: auto, "
         "asyncio, uvloop"),
        (["--log-level", "verbose"], {}, "'verbose' is not one of: debug, info, warning, error"),
        (["--chmod-socket", "rw"], {},
         "invalid value for --chmod-socket (from the command line): 'rw' is not an octal file "
         "mode (like 0660)"),
        (["--chmod-socket", "0680"], {}, "'0680' is not an octal file mode"),
        (["--chmod-socket", "1777"], {}, "'1777' is not an octal file mode"),
        (["--bind", "localhost"], {},
         "invalid value for --bind (from the command line): 'localhost' is not an address "
         "(HOST:PORT, [IPV6]:PORT or unix:PATH)"),
        (["--bind", "127.0.0.1:65536"], {}, "'127.0.0.1:65536' is not an address"),
        (["--bind", ":8080"], {},
         "':8080' has no host (write 0.0.0.0:8080 for all interfaces)"),
        (["--bind", "::1:80"], {}, "write IPv6 addresses as [ADDR]:PORT"),
        (["--bind", "[::g]:80"], {}, "'[::g]:80' is not an address: bad IPv6 address"),
        (["--bind", "unix:"], {}, "'unix:' is not an address: unix: needs a path"),
        (["-b", "127.0.0.1:1", "-b", "bad host:2"], {}, "'bad host:2' is not an address"),
        ([], {"MUXWSGI_BIND": " , "}, "' , ' is empty: give at least one value"),
        (["--stats", "9191"], {}, "invalid value for --stats (from the command line): '9191'"),
        (["--allow-from", "10.0.0.0/33"], {},
         "invalid value for --allow-from (from the command line): '10.0.0.0/33' is not an IP "
         "address or network (like 10.0.0.0/8, or * for any)"),
        (["--request-id-header", ""], {}, "invalid value for --request-id-header"),
        (["--workers"], {}, "argument -w/--workers: expected one argument"),
        (["--no-such-flag"], {},
         "unrecognized arguments: --no-such-flag (see muxwsgi serve --help)"),
        (["--thread", "3"], {}, "unrecognized arguments: --thread 3"),  # no abbreviations
    ],
)  # fmt: skip
def test_invalid_values_name_the_setting_and_source(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    assert message in error_of([APP, *argv], env)


@pytest.mark.parametrize(
    "item", [s for s in SETTINGS if s.minimum is not None], ids=lambda s: s.name
)
def test_every_lower_bound_is_enforced(item: Setting) -> None:
    assert item.minimum is not None
    low = int(item.minimum) if item.kind != "float" else item.minimum
    below = low - 1 if item.kind != "float" else low - 0.05
    assert getattr(load_config([APP], {item.env: str(low)}), item.name) == low
    message = error_of([APP], {item.env: str(below)})
    assert message.startswith(f"invalid value for {item.label} (from {item.env}): ")
    assert "out of range" in message or "not a size" in message  # a size cannot be negative


@pytest.mark.parametrize(
    "item", [s for s in SETTINGS if s.maximum is not None], ids=lambda s: s.name
)
def test_every_upper_bound_is_enforced(item: Setting) -> None:
    assert item.maximum is not None
    high = int(item.maximum)
    assert getattr(load_config([APP], {item.env: str(high)}), item.name) == high
    assert error_of([APP], {item.env: str(high + 1)}) == (
        f"invalid value for {item.label} (from {item.env}): '{high + 1}' is out of range "
        f"({item.minimum:g}..{high})"
    )


# ---------------------------------------------------------------- help, docs, CLI


def test_help_lists_every_setting() -> None:
    help_text = build_parser().format_help()
    for item in SETTINGS:
        for flag in item.cli:
            assert flag in help_text, item.name
        assert item.env in help_text, item.name
    for section in ("Application:", "Sockets:", "Protocol limits:", "Logging and stats:"):
        assert section in help_text
    assert "MODULE:ATTR" in help_text and "--print-config" in help_text


def test_main_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: muxwsgi serve [options] [MODULE:ATTR]")


def test_docs_table_lists_every_setting() -> None:
    table = render_settings_markdown()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(SETTINGS)
    assert (
        "| `backlog` | `--listen`, `--backlog` | `MUXWSGI_BACKLOG` | `listen` | `1024` | "
        "Listen backlog of each socket (the kernel caps it at somaxconn). Range: 1..65535. |"
    ) in rows
    assert (
        "| `limit_post` | `--limit-post` | `MUXWSGI_LIMIT_POST` | `limit-post` | "
        "`104857600 (100m)` | Largest request body, bytes (0: unlimited). Range: >= 0. |"
    ) in rows


def test_docs_file_is_up_to_date() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert docs == render_settings_markdown(), "run: python scripts/gen_settings_doc.py"
    result = subprocess.run(
        [sys.executable, "scripts/gen_settings_doc.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_doc", ROOT / "scripts/gen_settings_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_doc_generator_check_mode_reports_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    generator = load_generator()
    target = tmp_path / "configuration.md"
    monkeypatch.setattr(generator, "TARGET", target)
    target.write_text("# Configuration\n\nold text\n")
    assert generator.main(["--check"]) == 1
    captured = capsys.readouterr()
    assert "-old text" in captured.out and "is stale" in captured.err
    assert generator.main([]) == 0
    assert target.read_text() == render_settings_markdown()
    assert generator.main(["--check"]) == 0


def test_cli_invalid_value_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MUXWSGI_THREADS", "x")
    assert main([APP]) == 2
    assert capsys.readouterr().err == (
        "muxwsgi: invalid value for --threads (from MUXWSGI_THREADS): 'x' is not an integer\n"
    )


def test_cli_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([APP, "--workers", "zero"]) == 2
    assert capsys.readouterr().err == (
        "muxwsgi: invalid value for --workers (from the command line): 'zero' is not an integer\n"
    )
    assert main(["--no-such-flag", APP]) == 2
    assert "muxwsgi: unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("muxwsgi: no application given")


def test_cli_print_config_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [APP, "-t", "3", "-b", "127.0.0.1:1", "-b", "unix:/tmp/x.sock", "--chmod-socket"]
    argv += ["600", "--limit-post", "1m", "--harakiri", "2.5", "--pid-file", 'my "quoted".pid']
    assert main([*argv, "--print-config"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert f'app = "{APP}"' in lines and "threads = 3" in lines
    assert 'bind = ["127.0.0.1:1", "unix:/tmp/x.sock"]' in lines
    assert "unix_socket_mode = 0o600" in lines and "harakiri = 2.5" in lines
    assert "# stats = (unset)" in lines
    assert len(lines) == len(SETTINGS)
    printed = tmp_path / "printed.toml"
    printed.write_text(out)
    assert tomllib.loads(out)["pid_file"] == 'my "quoted".pid'
    assert load_config(["--config", str(printed)], {}) == load_config(argv, {})
    assert render_config(load_config(["--config", str(printed)], {})) == out
