"""``muxwsgi serve``: read the settings, then hand over to the master process."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from muxwsgi.server.config import ConfigError
from muxwsgi.server.config_load import parse_serve_args
from muxwsgi.server.config_toml import render_config

__all__ = ("main",)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``muxwsgi serve`` with ``argv``, the arguments after ``serve`` (default: all of
    ``sys.argv[1:]``). Returns the exit code: 2 for invalid settings (one line on stderr),
    0 after ``--help`` or ``--print-config``, else what the master returns."""
    try:
        command = parse_serve_args(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"muxwsgi: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help has been printed
        return exc.code if isinstance(exc.code, int) else 0
    if command.print_config:
        sys.stdout.write(render_config(command.config))
        return 0
    # Imported only now: the master pulls in the event loop, sockets and workers, none of
    # which reading the settings (or --help) needs.
    from muxwsgi.server.arbiter import run

    return run(command.config)
