"""The scoreboard: one slot of shared memory per worker, written by the worker, read by the master.

An anonymous ``mmap`` created by the master before it forks is shared with every worker (like
uWSGI's shared worker table). Each worker writes only its own slot, once a second and at a few
state changes; the master reads all slots for liveness (heartbeat), readiness (rolling reload),
harakiri (the oldest running request), recycling and the stats endpoint. No locks: a slot is a
handful of aligned 8-byte fields, and a reader that catches a half-updated slot sees figures at
most a second stale.
"""

from __future__ import annotations

import enum
import mmap
import struct
from dataclasses import dataclass

__all__ = ("Scoreboard", "Slot", "WorkerStatus")


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
        self._mem = mmap.mmap(-1, _SLOT.size * size)

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
