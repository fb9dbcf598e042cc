"""``muxwsgi`` / ``python -m muxwsgi``: dispatch to the server's or the client's command line.

The subcommand modules are imported only when chosen, so ``import muxwsgi`` never loads the
server or the client, and the server never loads the client.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """\
usage: muxwsgi <command> [options]

commands:
  serve MODULE:ATTR   serve a WSGI application (mux, classic uwsgi and HTTP/1.1 on one socket)
  request URL         send one request with the client library and print the response

Run 'muxwsgi <command> --help' for the options of a command.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from . import __version__, build_description

        print(f"muxwsgi {__version__}, {build_description}")
        return 0
    command, rest = args[0], args[1:]
    if command == "serve":
        from muxwsgi.server.cli import main as serve_main

        return serve_main(rest)
    if command == "request":
        from muxwsgi.client._cli import main as request_main

        return request_main(rest)
    print(f"muxwsgi: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
