"""Logging: the error log, the access log (off by default: it costs per request), USR1 reopen."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from .config import Config

__all__ = ("AccessLog", "reopen_logs", "setup_logging", "trace_id")

_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
#: W3C Trace Context: version-traceid-parentid-flags, lower-case hex; versions after 00 may
#: append fields after a dash.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?", re.S)


def trace_id(traceparent: str | None) -> str:
    """The trace id (32 hex digits) of a W3C ``traceparent`` value, or "-" when there is none
    or the value is not valid (version ff, an all-zero id, a version 00 value with more
    fields, two headers joined by a comma): never an error."""
    if not traceparent:
        return "-"
    match = _TRACEPARENT.fullmatch(traceparent.strip(" \t"))
    if match is None:
        return "-"
    version, trace, parent, more = match.groups()
    if version == "ff" or (version == "00" and more) or trace == "0" * 32 or parent == "0" * 16:
        return "-"
    return trace


def _handler(target: str | None) -> logging.Handler:
    if target in (None, "", "-"):
        return logging.StreamHandler(sys.stderr)
    return logging.FileHandler(target, encoding="utf-8")


def setup_logging(config: Config) -> None:
    """Configure ``muxwsgi.error`` (and ``muxwsgi.config``) and, if enabled, ``muxwsgi.access``."""
    error = logging.getLogger("muxwsgi")
    error.handlers[:] = [_handler(config.error_log)]
    error.handlers[0].setFormatter(logging.Formatter(_FORMAT))
    error.setLevel(config.log_level.upper())
    error.propagate = False
    access = logging.getLogger("muxwsgi.access")
    access.propagate = False
    if config.access_log:
        handler = _handler(config.access_log)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.handlers[:] = [handler]
        access.setLevel(logging.INFO)
    else:
        access.handlers[:] = []
        access.setLevel(logging.CRITICAL + 1)


def reopen_logs() -> None:
    """Reopen every log file (after logrotate moved it away)."""
    for name in ("muxwsgi", "muxwsgi.access"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    if handler.stream:
                        handler.stream.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()


class AccessLog:
    """One line per request, text or JSON, when ``--access-log`` is set."""

    def __init__(self, config: Config) -> None:
        self.logger = logging.getLogger("muxwsgi.access")
        self.json = config.log_format == "json"
        self.enabled = bool(config.access_log)

    def log(
        self,
        *,
        environ: dict[str, Any],
        status: int,
        size: int,
        duration: float,
        protocol: str,
        stream_id: int,
        request_id: str,
    ) -> None:
        method = environ.get("REQUEST_METHOD", "-")
        path = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "-")
        remote = environ.get("REMOTE_ADDR", "-")
        trace = trace_id(environ.get("HTTP_TRACEPARENT"))
        if self.json:
            line = json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "remote": remote,
                    "method": method,
                    "path": path,
                    "status": status,
                    "bytes": size,
                    "duration_ms": round(duration * 1000, 3),
                    "protocol": protocol,
                    "stream_id": stream_id,
                    "request_id": request_id,
                    "trace_id": trace,
                }
            )
        else:
            line = (
                f'{remote} - - [{time.strftime("%d/%b/%Y:%H:%M:%S %z")}] "{method} {path}" '
                f"{status} {size} {duration * 1000:.3f}ms {protocol} stream={stream_id} "
                f"request_id={request_id} trace_id={trace}"
            )
        self.logger.info(line)
