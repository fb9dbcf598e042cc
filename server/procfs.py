"""What Linux's /proc tells about a process (the master reads it for its workers)."""

from __future__ import annotations

import os

__all__ = ("rss_mib",)


def rss_mib(pid: int) -> float | None:
    """A process's resident set size in MiB (None where /proc does not tell)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
