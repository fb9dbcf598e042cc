"""PEP 3333 glue that needs no event loop: the environ, start_response, response checks.

The environ is built from the request's uwsgi vars the way uWSGI builds it for nginx's
``uwsgi_params``: the vars are taken as they are (they already are CGI names and PEP 3333 native
strings) and the ``wsgi.*`` keys are added. Response status and headers are checked before
anything is sent, because a CR or LF in them would let the application split the response
(CVE-2023-27522 is that bug in another server).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import IO, Any, Final, Protocol

__all__ = (
    "MAGIC_VARS",
    "FileWrapper",
    "HeadersError",
    "ResponseHead",
    "StartResponse",
    "constant_environ",
    "prepare_environ",
    "status_code",
)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

#: Vars with which uWSGI lets a request load code or open files. We never act on any var, and
#: we also remove these from the environ so that no uWSGI-aware library acts on them either
#: (PROTOCOL.md [H-9]).
MAGIC_VARS: Final = (
    "UWSGI_FILE",
    "UWSGI_SCRIPT",
    "UWSGI_MODULE",
    "UWSGI_CALLABLE",
    "UWSGI_CHDIR",
    "UWSGI_PYHOME",
    "UWSGI_POSTFILE",
    "UWSGI_TOUCH_RELOAD",
    "UWSGI_SCHEME",
    "UWSGI_APPID",
    "UWSGI_SETENV",
)

#: Removed from every environ: the magic vars, and the HTTP_ duplicates of CONTENT_LENGTH and
#: CONTENT_TYPE that nginx's uwsgi_pass sends beside the CGI ones (PEP 3333 forbids them, and
#: the CGI ones are what count).
_REMOVED: Final = (*MAGIC_VARS, "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE")
#: CGI vars PEP 3333 requires, with the value a request without them gets.
_DEFAULTS: Final = (
    ("REQUEST_METHOD", "GET"),
    ("SCRIPT_NAME", ""),
    ("PATH_INFO", ""),
    ("QUERY_STRING", ""),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
)
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_STATUS: Final = re.compile(r"([1-9][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?\Z")
_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SECURE: Final = frozenset({"on", "1", "yes", "true"})


class HeadersError(ValueError):
    """The application's status line or headers cannot be sent (the server answers 500)."""


class ReadableInput(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def readline(self, size: int = -1, /) -> bytes: ...
    def readlines(self, hint: int = -1, /) -> list[bytes]: ...
    def __iter__(self) -> Iterator[bytes]: ...


class TextSink(Protocol):
    """What ``wsgi.errors`` must offer (PEP 3333)."""

    def write(self, text: str, /) -> int: ...
    def writelines(self, lines: Iterable[str], /) -> None: ...
    def flush(self) -> None: ...


def constant_environ(*, errors: TextSink, multiprocess: bool) -> dict[str, Any]:
    """The environ keys that are the same for every request of a worker."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        # mod_wsgi's extension, honoured by Werkzeug: reading wsgi.input to EOF is safe.
        "wsgi.input_terminated": True,
    }


def prepare_environ(
    environ: dict[str, Any],
    *,
    wsgi_input: ReadableInput,
    constants: dict[str, Any],
    server_name: str,
    server_port: str,
    tls: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """Complete a vars dict into a PEP 3333 environ, in place, and return it.

    ``environ`` is owned by the caller (it comes from one request): it is extended rather than
    copied, which saves a dict copy per request. ``constants`` comes from
    :func:`constant_environ`. Missing CGI keys that PEP 3333 requires get defaults; the magic
    UWSGI_* vars are removed.

    ``tls`` (a request that came over TLS: server/tls.py's ``tls_environ``) adds its vars
    where the request brought none of its own, and ``HTTPS=on`` unless the request says it
    arrived otherwise (a gateway's ``REQUEST_SCHEME=http``: nginx describing its own client).
    """
    # Looked up before removed or set: a request rarely has any of these to remove or lacks
    # the ones to default, and ``in`` costs less than pop() and setdefault() calls (these
    # lines: 530 -> 450 ns compiled, 510 -> 370 ns pure, for nginx's 16 vars).
    for name in _REMOVED:
        if name in environ:
            del environ[name]  # noqa: RUF051 (see above)
    for name, default in _DEFAULTS:
        if name not in environ:
            environ[name] = default
    if not environ.get("SERVER_NAME"):
        environ["SERVER_NAME"] = server_name
    if not environ.get("SERVER_PORT"):
        environ["SERVER_PORT"] = server_port
    # nginx sends these empty when the request has none; PEP 3333 says they may be absent.
    if environ.get("CONTENT_LENGTH") == "":
        del environ["CONTENT_LENGTH"]
    if environ.get("CONTENT_TYPE") == "":
        del environ["CONTENT_TYPE"]
    if tls is not None:
        if "HTTPS" not in environ and environ.get("REQUEST_SCHEME", "https") == "https":
            environ["HTTPS"] = "on"
        for key, value in tls.items():
            environ.setdefault(key, value)
    scheme = environ.get("REQUEST_SCHEME")
    if scheme not in ("http", "https"):
        scheme = "https" if environ.get("HTTPS", "").lower() in _SECURE else "http"
    environ.update(constants)
    environ["wsgi.url_scheme"] = scheme
    environ["wsgi.input"] = wsgi_input
    return environ


# Applications send the same few status lines and header pairs over and over: remember the
# ones already checked (bounded; cleared when full) instead of running regexes per response.
_CACHE_LIMIT: Final = 4096
_good_status: Final[dict[str, tuple[int, str]]] = {}
_good_headers: Final[set[tuple[str, str]]] = set()


def status_code(status: object) -> tuple[int, str]:
    """Split a WSGI status string ("200 OK") into (200, "OK"); raise HeadersError if invalid.

    Takes any object: what an application passes is checked here, with a clear error, the same
    in the pure and the compiled build (which would otherwise refuse a non-str at the call)."""
    if type(status) is not str:
        raise HeadersError(f"status must be a str, not {type(status).__name__}")
    known = _good_status.get(status)
    if known is not None:
        return known
    match = _STATUS.match(status)
    if match is None:
        raise HeadersError("invalid status line (3 digits, a space, a reason without CR/LF)")
    result = int(match.group(1)), match.group(2) or ""
    if len(_good_status) >= _CACHE_LIMIT:
        _good_status.clear()
    _good_status[status] = result
    return result


def check_headers(headers: object) -> list[tuple[str, str]]:
    """Return ``headers`` once checked: raise HeadersError unless it is a list of (token, text
    without CR/LF/NUL) str pairs. Takes any object, as status_code does."""
    if type(headers) is not list:
        raise HeadersError(f"response_headers must be a list, not {type(headers).__name__}")
    good = _good_headers
    for item in headers:
        if (
            type(item) is tuple
            and len(item) == 2
            and type(item[0]) is str
            and type(item[1]) is str
            and item in good
        ):
            continue
        _check_header(item)
        if len(good) >= _CACHE_LIMIT:
            good.clear()
        good.add(item)
    return headers


def _check_header(item: object) -> None:
    if type(item) is not tuple or len(item) != 2:
        raise HeadersError("each response header must be a (name, value) tuple")
    name, value = item
    if type(name) is not str or not _TOKEN.match(name):
        raise HeadersError("invalid response header name")
    if type(value) is not str or _BAD_VALUE.search(value):
        # The value is not echoed: it may be the attacker's payload.
        raise HeadersError(f"invalid value for response header {name!r} (control characters)")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise HeadersError(f"response header {name!r} is not latin-1") from None


class ResponseHead:
    """What start_response recorded: status and headers, checked, plus the declared length."""

    __slots__ = ("content_length", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length: int | None = None
        for name, value in headers:
            if len(name) == 14 and name.lower() == "content-length":
                if not (value.isascii() and value.isdigit()) or len(value) > 18:
                    raise HeadersError("invalid Content-Length response header")
                self.content_length = int(value)


class StartResponse:
    """The ``start_response`` callable for one request, with PEP 3333's rules.

    It may be called again only with ``exc_info`` and only before the head is sent; then it
    replaces the head (or re-raises ``exc_info`` if the head is already on the wire).
    """

    __slots__ = ("head", "head_sent", "write")

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.head: ResponseHead | None = None
        self.head_sent = False
        self.write = write

    def __call__(
        self,
        status: object,
        response_headers: object,
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the traceback cycle (PEP 3333)
        elif self.head is not None:
            raise AssertionError("start_response called twice without exc_info")
        code, reason = status_code(status)
        self.head = ResponseHead(code, reason, check_headers(response_headers))
        return self.write


class FileWrapper:
    """``wsgi.file_wrapper``: iterate a file-like object in blocks; close() closes the file."""

    def __init__(self, filelike: IO[bytes], block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while block := read(self.block_size):
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def close_iterable(iterable: Iterable[bytes]) -> None:
    """Call the iterable's close(), as PEP 3333 requires whatever happened."""
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


class ErrorStream:
    """``wsgi.errors``: text written here goes to the server's error log (stderr)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        sys.stderr.writelines(lines)

    def flush(self) -> None:
        sys.stderr.flush()
