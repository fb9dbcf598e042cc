"""``muxwsgi serve``: parse the settings, then hand over to the master."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .config import ConfigError, load_config, render_config

__all__ = ("main",)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"muxwsgi: {exc}", file=sys.stderr)
        return 2
    if "--print-config" in args:
        print(render_config(config), end="")
        return 0
    if not config.app and not config.wsgi_file:
        print(
            "muxwsgi: no application given; usage: muxwsgi serve MODULE:ATTRIBUTE "
            "(try muxwsgi serve muxwsgi.demo:app)",
            file=sys.stderr,
        )
        return 2
    from .arbiter import run

    return run(config)
