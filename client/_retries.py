"""The parts of the client's retry policy (client/_async/client.py says it) that both
flavours share: which methods may be sent again after a failure, and how long a refused
request waits before it is sent again."""

from __future__ import annotations

__all__ = ("IDEMPOTENT", "refused_pause")

#: The methods that may be sent again after a failure: doing them twice does what once does.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

#: A refused request means a busy server: wait before the next attempt, from the first pause
#: doubling up to the longest.
REFUSED_PAUSE_FIRST = 0.01
REFUSED_PAUSE_LONGEST = 1.0


def refused_pause(attempt: int) -> float:
    """How long to wait before the ``attempt``-th transparent retry (1 for the first)."""
    return min(REFUSED_PAUSE_LONGEST, REFUSED_PAUSE_FIRST * 2.0 ** (attempt - 1))
