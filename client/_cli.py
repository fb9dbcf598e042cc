"""``muxwsgi request URL``: one request with the client library, printed like curl.

    muxwsgi request mux://127.0.0.1:3031/health
    muxwsgi request -X POST -H 'Content-Type: application/json' -d '{"a": 1}' mux://h:3031/api
    muxwsgi request -i uwsgi://127.0.0.1:3031/        # classic uwsgi, e.g. the real uWSGI
    muxwsgi request mux+unix:///run/app.sock --path /health
    muxwsgi request --cacert ca.pem --cert me.pem --key me.key muxs://api.internal:3031/

Exit status: 0 for a 2xx/3xx response, 1 for 4xx/5xx (with -f) or any error, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._exceptions import ClientError
from ._models import parse_url
from ._sync.client import Client

__all__ = ("main",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="muxwsgi request",
        description="Send one request to a muxwsgi (mux://) or classic uwsgi (uwsgi://) server; "
        "muxs:// and uwsgis:// speak TLS.",
    )
    parser.add_argument(
        "url",
        help="mux://HOST:PORT/PATH, uwsgi://..., mux+unix:///SOCKET, muxs://..., uwsgis://...",
    )
    parser.add_argument("-X", "--request", dest="method", default=None, help="method (GET)")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'")
    parser.add_argument("-d", "--data", default=None, help="body; @FILE reads a file, @- stdin")
    parser.add_argument("-i", "--include", action="store_true", help="print status and headers")
    parser.add_argument("-f", "--fail", action="store_true", help="exit 1 on a 4xx/5xx status")
    parser.add_argument("--path", default=None, help="request target for unix socket URLs")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds (30)")
    tls = parser.add_argument_group("TLS (muxs://, uwsgis://)")
    tls.add_argument("--cacert", metavar="FILE", help="verify the server with these CAs (PEM)")
    tls.add_argument("--cert", metavar="FILE", help="client certificate (PEM; with its key)")
    tls.add_argument("--key", metavar="FILE", help="the client certificate's key, if apart")
    tls.add_argument("-k", "--insecure", action="store_true",
                     help="do not verify the server's certificate (tests only)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        endpoint, target = parse_url(args.url)
    except ValueError as exc:
        print(f"muxwsgi request: {exc}", file=sys.stderr)
        return 2
    if args.path:
        target = args.path
    headers = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            print(
                f"muxwsgi request: bad header {header!r}: expected 'Name: value'", file=sys.stderr
            )
            return 2
        headers.append((name.strip(), value.strip()))
    body = b""
    if args.data is not None:
        if args.data == "@-":
            body = sys.stdin.buffer.read()
        elif args.data.startswith("@"):
            with open(args.data[1:], "rb") as f:
                body = f.read()
        else:
            body = args.data.encode()
    method = args.method or ("POST" if args.data is not None else "GET")
    if args.key and not args.cert:
        print("muxwsgi request: --key needs --cert", file=sys.stderr)
        return 2
    verify: bool | str = False if args.insecure else (args.cacert or True)
    cert = (args.cert, args.key) if args.key else args.cert
    try:
        client = Client(str(endpoint), timeout=args.timeout, verify=verify, cert=cert)
    except ValueError as exc:
        print(f"muxwsgi request: {exc}", file=sys.stderr)
        return 2
    try:
        with client:
            response = client.request(method, target, headers=headers, body=body)
    except ClientError as exc:
        print(f"muxwsgi request: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    if args.include:
        out.write(f"{response.http_version} {response.status} {response.reason}\r\n".encode())
        for name, value in response.headers.items():
            out.write(f"{name}: {value}\r\n".encode("latin-1"))
        out.write(b"\r\n")
    out.write(response.content)
    out.flush()
    return 1 if args.fail and response.status >= 400 else 0
