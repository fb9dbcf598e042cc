"""A worker acts on a stop the moment it says it is ready (real process, real signal).

The master treats READY as "this worker can be stopped gracefully". uvloop only learns of a
signal while its loop runs: a worker that installed its handlers and announced READY before
running the loop recorded a SIGTERM sent in between and never acted on it, and served on
until the master killed it, taking its requests with it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from muxwsgi.server.config import Config
    from muxwsgi.server.sockets import bind
    from muxwsgi.server.worker import Worker

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b""]

    def ready():
        print("ready", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # the master's stop, right after READY

    config = Config(app="t:app", loop=sys.argv[1], threads=1)
    listener = bind("127.0.0.1:0", backlog=8, unix_mode=0o600)
    code = Worker(config, [listener], lambda: app, on_ready=ready).run()
    print("stopped", code, flush=True)
    """
)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_stop_right_after_ready_stops_the_worker(loop: str) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", WORKER, loop], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired as exc:  # run() killed it: the stop was never seen
        pytest.fail(f"the worker did not stop: {exc.stdout!r} {exc.stderr!r}")
    assert done.stdout.split() == ["ready", "stopped", "0"], done.stderr
