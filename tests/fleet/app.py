"""The application of the fleet's backends: every request waits FLEET_DELAY seconds (as a
backend call would), then answers with the worker's pid, which tells a reload or a restart."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

DELAY = float(os.environ.get("FLEET_DELAY", "0.02"))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    time.sleep(DELAY)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
