"""The worker-wide half of flood fairness: the penalty lane where suspect connections wait for
their turns to read, and the log of connections closed for a flood.

The per-connection half (how many frames one turn handles, when a peer becomes a suspect) is
in :class:`~muxwsgi.server.protocols.mux.MuxProtocol`; the allowances themselves are the
core's (:class:`muxwsgi.FloodLimits`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol

from muxwsgi import ProtocolError

__all__ = ("FloodGovernor", "Suspect")

log = logging.getLogger("muxwsgi.error")


class Suspect(Protocol):
    """A connection waiting in the penalty lane."""

    @property
    def closed(self) -> bool:
        """A closed connection's turn goes to the next in line."""

    def next_turn(self) -> None:
        """Handle the frames a previous turn left buffered (and maybe wait again)."""


class FloodGovernor:
    """Where suspect connections wait for their turns, worker-wide; one per worker, owned by
    its :class:`~muxwsgi.server.protocols.base.ServerContext`.

    A suspect, a peer that spent FloodLimits.suspect_at (half) of any flood allowance (resets,
    pings, settings, glitches), gets frames_per_turn / flood_turn_share frames per turn, and
    its turns come from here: one suspect's turn every ``turn_interval`` seconds, first come
    first served, however many connections flood at once (as h2o's http2-dos-delay, but
    shared: a flooder gains nothing from opening more connections). It stays a suspect until
    its bucket refills, runs out (GOAWAY ENHANCE_YOUR_CALM), or it has kept frames waiting for
    flood_suspect_timeout (GOAWAY too). All of these are server settings.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, turn_interval: float) -> None:
        self._loop = loop
        self._interval = turn_interval
        self._waiting: deque[Suspect] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._log_next = 0.0
        self._log_quiet = 0

    def wait_turn(self, suspect: Suspect) -> None:
        """Queue ``suspect``: its ``next_turn()`` runs when the lane reaches it."""
        self._waiting.append(suspect)
        if self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._tick)

    def _tick(self) -> None:
        waiting = self._waiting
        while waiting:
            suspect = waiting.popleft()
            if not suspect.closed:
                suspect.next_turn()  # may wait again, at the end of the line
                break
        self._timer = self._loop.call_later(self._interval, self._tick) if waiting else None

    def log_closed(self, peer: str, exc: ProtocolError) -> None:
        """Log a connection closed for a flood, at most once a second: a reconnecting flooder
        would otherwise cost a log line (and its syscalls) per connection."""
        now = time.monotonic()
        if now < self._log_next:
            self._log_quiet += 1
            return
        quiet = self._log_quiet
        more = f" (and {quiet} more flooding connections since)" if quiet else ""
        log.warning("mux connection from %s: %s; closing (GOAWAY %s)%s",
                    peer, exc, exc.error_code.name, more)  # fmt: skip
        self._log_next = now + 1.0
        self._log_quiet = 0
