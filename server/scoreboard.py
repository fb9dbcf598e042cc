"""The scoreboard: one slot of shared memory per worker, written by the worker, read by the master.

An anonymous ``mmap`` created by the master before it forks is shared with every worker (like
uWSGI's shared worker table). Each worker writes only its own slot, once a second and at a few
state changes; the master reads all slots for liveness (heartbeat), readiness (rolling reload),
harakiri (the oldest running request), recycling and the stats endpoint. No locks: a slot is a
handful of aligned 8-byte fields, and a reader that catches a half-updated slot sees figures at
most a second stale.

Beside the slots, one live figure per worker that the workers read from each other: how many
connections it holds while it accepts (:class:`Balance`), so that a worker holding more than its
share leaves new connections to the others.
"""

from __future__ import annotations

import enum
import mmap
import struct
from dataclasses import dataclass

__all__ = ("NOT_ACCEPTING", "Balance", "Scoreboard", "Slot", "WorkerStatus")


class WorkerStatus(enum.IntEnum):
    """Where a worker is in its life, as its slot tells the master."""

    FREE = 0  # no worker in this slot
    BOOTING = 1  # forked, importing the application
    READY = 2  # accepting connections
    DRAINING = 3  # graceful stop in progress (reload, recycle, shutdown)
    RETIRE = 4  # asks the master for a replacement (max-requests, lifetime, RSS, harakiri)


#: pid, generation, status, heartbeat, requests, exceptions, connections, streams,
#: oldest running request start (monotonic; 0 = none), total response time (s),
#: harakiri count, retire reason code
_SLOT = struct.Struct("<qqqdqqqqddqq")

#: The load figure of a slot whose worker does not accept (free, booting, draining): above any
#: real count, so that the least loaded worker is simply the smallest figure.
NOT_ACCEPTING = 2**62


@dataclass
class Slot:
    """One worker's slot, decoded: what it wrote last (the fields of ``_SLOT``, in order)."""

    pid: int = 0
    generation: int = 0
    status: WorkerStatus = WorkerStatus.FREE
    heartbeat: float = 0.0
    requests: int = 0
    exceptions: int = 0
    connections: int = 0
    streams: int = 0
    oldest_request: float = 0.0
    response_time: float = 0.0
    harakiri_count: int = 0
    retire_reason: int = 0


class Scoreboard:
    """``size`` slots in shared memory. Create it before forking."""

    def __init__(self, size: int) -> None:
        self.size = size
        slots = _SLOT.size * size
        self._mem = mmap.mmap(-1, slots + 8 * size)
        #: One native int64 per slot after the slots: the connections its worker holds while
        #: it accepts, else NOT_ACCEPTING (:class:`Balance`).
        self.loads = memoryview(self._mem)[slots:].cast("q")
        for index in range(size):
            self.loads[index] = NOT_ACCEPTING

    def read(self, index: int) -> Slot:
        fields = _SLOT.unpack_from(self._mem, index * _SLOT.size)
        slot = Slot(*fields)
        slot.status = WorkerStatus(slot.status)
        return slot

    def write(self, index: int, slot: Slot) -> None:
        _SLOT.pack_into(
            self._mem,
            index * _SLOT.size,
            slot.pid,
            slot.generation,
            int(slot.status),
            slot.heartbeat,
            slot.requests,
            slot.exceptions,
            slot.connections,
            slot.streams,
            slot.oldest_request,
            slot.response_time,
            slot.harakiri_count,
            slot.retire_reason,
        )

    def free_index(self) -> int | None:
        for index in range(self.size):
            if self.read(index).status is WorkerStatus.FREE:
                return index
        return None

    def clear(self, index: int) -> None:
        self.write(index, Slot())
        self.loads[index] = NOT_ACCEPTING

    def balance(self, index: int) -> Balance:
        """Slot ``index``'s worker's side of the accept balancing."""
        return Balance(self.loads, index)


class Balance:
    """A worker's live load figure among the others': it publishes how many connections it
    holds whenever it is about to accept, and learns whether that is more than its share.

    The figures are written without locks, and a worker publishes a closed connection only
    at its next accept or tick: another worker's figure may be a little high, never low, so
    the least loaded worker always finds itself within its share. Only a worker stopped
    while it serves (its loop stuck, or killed and not reaped yet) leaves a figure that is
    too low: the others then wait for it a moment before they accept (server/sockets.py).
    """

    __slots__ = ("_index", "_loads")

    def __init__(self, loads: memoryview, index: int) -> None:
        self._loads = loads
        self._index = index

    def over_share(self, held: int) -> bool:
        """Publish ``held`` (the connections this worker holds) and say whether it is more
        than the least loaded accepting worker's figure: a worker accepts only while it is
        (one of) the least loaded, so that a pool of long-lived connections ends up within
        one of even."""
        loads = self._loads
        loads[self._index] = held
        return held > min(loads)

    def withdraw(self) -> None:
        """This worker stops accepting: its figure no longer holds the others back."""
        self._loads[self._index] = NOT_ACCEPTING
