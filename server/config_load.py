"""Load a Config from a ``muxwsgi serve`` command line and the sources it names.

Precedence, lowest first: defaults, ``--ini`` file, ``--config`` file, environment
(``MUXWSGI_<NAME>``), command line. The command-line parser comes from the settings table:
one option per setting, grouped by section, its help text the setting's description.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from muxwsgi.server.config import SECTIONS, SETTINGS, Config, ConfigError, Kind, Setting
from muxwsgi.server.config_ini import read_ini
from muxwsgi.server.config_sources import Layer, RawValue, resolve
from muxwsgi.server.config_toml import read_toml

__all__ = ("ServeArgs", "build_parser", "load_config", "parse_serve_args")

#: What --help shows as the value of an option, by kind (choices list themselves).
_METAVARS: dict[Kind, str] = {
    "str": "VALUE",
    "int": "N",
    "float": "SECONDS",
    "size": "BYTES",
    "bool": "BOOL",
    "mode": "MODE",
    "address": "ADDRESS",
    "addresses": "ADDRESS",
    "networks": "NETWORK",
}


@dataclass(frozen=True)
class ServeArgs:
    """What a ``muxwsgi serve`` command line asks for: the settings and the meta options."""

    config: Config
    print_config: bool = False


class _Args(argparse.Namespace):
    """The parsed command line: the meta options here, and an attribute (a raw string, or a
    list for list settings) for each setting given; absent settings stay absent."""

    config_file: str | None = None
    ini_file: str | None = None
    print_config: bool = False


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but never breaking a word at a hyphen (--wsgi-file stays whole)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """argparse with errors raised as ConfigError (one line, exit code 2 in cli.main)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see muxwsgi serve --help)")


def build_parser(settings: Sequence[Setting] = SETTINGS) -> argparse.ArgumentParser:
    """Return the ``muxwsgi serve`` parser: one option per setting, grouped by section.

    Parsed values stay raw strings (lists for list settings) and absent options stay absent,
    so that :func:`parse_serve_args` converts every source the same way. Errors raise
    ConfigError; ``--help`` prints and raises SystemExit(0), as argparse does.
    """
    parser = _Parser(
        prog="muxwsgi serve",
        usage="muxwsgi serve [options] [MODULE:ATTR]",
        description="Serve a WSGI application over mux, classic uwsgi and HTTP/1.1, all on "
        "the same sockets.",
        epilog="Every option is also an environment variable MUXWSGI_<NAME> (e.g. "
        "MUXWSGI_THREADS=16) and a key of the --config TOML file. Precedence, lowest first: "
        "defaults, --ini, --config, environment, command line.",
        formatter_class=_HelpFormatter,
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,  # an abbreviation would silently change meaning as flags are added
    )
    parser.add_argument(
        "--config", dest="config_file", metavar="FILE", help="Read settings from a TOML file."
    )
    parser.add_argument(
        "--ini", dest="ini_file", metavar="FILE", help="Read a uWSGI ini file ([uwsgi] section)."
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="Print the effective settings as TOML (usable with --config) and exit.",
    )
    groups = {section: parser.add_argument_group(section) for section in SECTIONS}
    for item in settings:
        group = groups[item.section]
        help_text = _help(item).replace("%", "%%")  # argparse %-formats help strings
        if item.positional:
            group.add_argument(item.name, nargs="?", metavar=item.metavar, help=help_text)
            continue
        metavar = _metavar(item)
        if item.kind == "bool":  # --flag alone means true
            group.add_argument(
                *item.cli, nargs="?", const="true", dest=item.name, metavar=metavar, help=help_text
            )
            continue
        action = "append" if item.is_list else "store"
        group.add_argument(
            *item.cli, action=action, dest=item.name, metavar=metavar, help=help_text
        )
    return parser


def _metavar(item: Setting) -> str:
    if item.metavar:
        return item.metavar
    if item.kind == "choice":
        return "{" + ",".join(item.choices) + "}"
    return _METAVARS[item.kind]


def _help(item: Setting) -> str:
    details = [] if item.positional else [f"default: {item.shown_default}"]
    if item.minimum is not None or item.maximum is not None:
        details.append(item.bounds)
    details.append(f"env {item.env}")
    return f"{item.desc} [{'; '.join(details)}]"


def parse_serve_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> ServeArgs:
    """Parse a ``muxwsgi serve`` command line (the arguments after ``serve``) together with
    its ini file, TOML file and environment (``os.environ`` by default).

    Returns the validated Config and the meta options. Raises ConfigError for any invalid
    value, unreadable file, unknown option, or a missing application (unless --print-config).
    """
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(list(argv), namespace=_Args())
    layers: list[Layer] = []  # lowest precedence first
    if args.ini_file is not None:
        layers.append(read_ini(args.ini_file).values)
    if args.config_file is not None:
        layers.append(read_toml(args.config_file))
    given: dict[str, object] = vars(args)  # only the settings given, as raw values
    env: Layer = {}
    cli: Layer = {}
    for item in SETTINGS:
        if item.env in environ:
            env[item.name] = RawValue(environ[item.env], item.env)
        if item.name in given:
            cli[item.name] = RawValue(given[item.name], "the command line")
    config = resolve([*layers, env, cli])
    if config.app is None and config.wsgi_file is None and not args.print_config:
        raise ConfigError(
            "no application given: muxwsgi serve MODULE:ATTR (or --wsgi-file FILE, "
            "MUXWSGI_APP, or module in an --ini file)"
        )
    return ServeArgs(config, args.print_config)


def load_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Return the validated Config of a ``muxwsgi serve`` command line; see
    :func:`parse_serve_args` (which also reports --print-config) for the sources and errors."""
    return parse_serve_args(argv, environ).config
