"""Token buckets for the acts a peer can repeat to burn our CPU or memory (PROTOCOL.md §10).

Pure arithmetic on a caller-supplied clock, so the core stays free of I/O and tests can drive
time by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ("FloodLimits", "TokenBucket")


@dataclass(frozen=True, kw_only=True)
class FloodLimits:
    """Burst sizes and refill rates (per second) of each bucket; exceeding one ends the
    connection with GOAWAY(ENHANCE_YOUR_CALM).

    Defaults follow nghttp2's (reset burst 1000, glitch burst 10000 / 330 per s are theirs; ours
    are stricter for pings and settings, which a well-behaved muxwsgi peer sends rarely).
    """

    reset_burst: int = 1000
    reset_rate: float = 100.0
    ping_burst: int = 50
    ping_rate: float = 5.0
    settings_burst: int = 20
    settings_rate: float = 1.0
    #: Suspicious but legal frames: empty DATA without END_STREAM, frames on closed streams,
    #: unknown frame types, unsolicited PING ACKs.
    glitch_burst: int = 1000
    glitch_rate: float = 100.0
    #: Control replies (PING ACK, SETTINGS ACK, RESET) queued and not yet taken by
    #: data_to_send(): a peer that floods requests for replies cannot grow our output buffer.
    max_queued_control: int = 1000
    #: Entries in one SETTINGS frame (nghttp2 refuses more than 32 too).
    max_settings_entries: int = 32
    #: The share of any burst past which a peer is suspect: ``receive_data(data, max_frames)``
    #: stops right after the frame that took a bucket past it, so that a caller sharing its
    #: time between connections can slow this one down from there (see ``flood_pressure``).
    suspect_at: float = 0.5


class TokenBucket:
    """``take()`` spends one token; it returns False when the bucket is empty. ``on_suspect``
    (if given) is called by the ``take()`` that leaves the share ``suspect_at`` of the burst
    spent, or more: once, until the bucket has refilled completely."""

    __slots__ = ("_armed", "_clock", "_mark", "_on_suspect", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self,
        burst: int,
        rate: float,
        clock: Callable[[], float],
        on_suspect: Callable[[], None] | None = None,
        suspect_at: float = 0.5,
    ) -> None:
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._on_suspect = on_suspect
        #: Tokens left when the share suspect_at is spent.
        self._mark = burst * (1.0 - suspect_at)
        self._armed = on_suspect is not None

    @property
    def spent(self) -> float:
        """The share of the burst spent as of the last ``take()`` (0.0 full, 1.0 empty)."""
        return 1.0 - self._tokens / self.burst

    def take(self) -> bool:
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        if self._armed:
            if tokens - 1.0 <= self._mark:
                self._armed = False
                on_suspect = self._on_suspect
                if on_suspect is not None:
                    on_suspect()
        elif tokens >= self.burst and self._on_suspect is not None:
            self._armed = True
        return True
