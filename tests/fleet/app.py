"""The application of the fleet's backends: every request waits FLEET_DELAY seconds (as a
backend call would), then answers with the worker's pid, which tells a reload or a restart.

While the file named by FLEET_HOLD exists, requests wait for it to go away: the test holds a
backend's requests in flight, so that killing it is sure to cut some."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

DELAY = float(os.environ.get("FLEET_DELAY", "0.02"))
HOLD = os.environ.get("FLEET_HOLD", "")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    time.sleep(DELAY)
    while HOLD and os.path.exists(HOLD):
        time.sleep(0.01)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
